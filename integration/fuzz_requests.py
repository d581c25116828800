"""Generated requests over every path pattern of our OpenAPI document, for the server-level differential fuzz.

Each request is drawn from a seeded `random.Random`, so a run is reproducible from (seed, index): the same
request goes to our mount and to the built-in. Values mix what a client would send with what an attacker
would: wrong types, Go-range edges, control characters, template syntax, huge and empty strings.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

STRINGS: list[Any] = [
    "", "a", "x.example.com", "*.example.com", "*", "../..", "default", "ec-root", "web", "\x00", "a\nb", "a\rb",
    "\u00e9xample.com", "xn--.example.com", "A" * 5000, "1e300", "-1", "0x10", "9" * 400, "F", "true",
    "{{identity.entity.id}}", "<script>", "%00", "localhost", "127.0.0.1", "::1", "spiffe://x/y", "a@example.com",
    "1.2.3.4;UTF8:x", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "rsa", "ec", "ed25519",
    "internal", "exported", "pem", "der", "pem_bundle", "72h", "-1h", "3000000d", "1.5", "USA", " ", ",", "a,b",
]
INTS: list[Any] = [0, 1, -1, 2, 224, 256, 384, 521, 2048, 2**31, 2**63 - 1, "2048", "abc", "", "0x800", "1e3",
                   "9" * 30, -(2**63), None, True]
BOOLS: list[Any] = [True, False, "true", "false", "F", "T", "1", "0", "2", "yes", "", 1, 0, -1, None]
DURATIONS: list[Any] = [0, 1, 60, 3600, "1h", "72h", "30d", "-1h", "3000000d", "1e300", "9223372037", "1.5",
                        "2562048h", "abc", "", None, -5]
ARRAYS: list[Any] = [[], ["a"], ["a.example.com", "b.example.com"], "a,b", [1], [None], [[]], [{"a": 1}], "",
                     ["\x00"], ["*"] * 50]
OBJECTS: list[Any] = [{}, {"a": "b"}, "a=b", [], "{bad json", {"a": {"b": [1]}}, "", None]
PATH_VALUES: list[str] = ["default", "ec-root", "web", "x", "a-b_c.d", "nosuch", "../..", "%", "\u00e9", "A" * 300,
                          "01", "00:11:22", "17-a5", "internal", "exported", "kms", "pem", "der", "json"]
# RSA key generation of 4096 bits and more takes seconds on both sides: fuzz key_bits without it.
SLOW_FIELDS = {"key_bits": [0, 224, 256, 384, 521, 2048, -1, 1, "x", "2048", 99999, None]}


@dataclass
class FuzzRequest:
    method: str
    path: str            # relative to the mount
    body: dict[str, Any] | None
    pattern: str         # the OpenAPI path it came from
    op: str              # read/list/write/delete/patch

    def describe(self) -> str:
        text = json.dumps(self.body, default=str)[:200] if self.body else ""
        return f"{self.method} {self.path} {text}"


def _value(rng: random.Random, name: str, schema: dict[str, Any]) -> Any:
    if name in SLOW_FIELDS:
        return rng.choice(SLOW_FIELDS[name])
    if rng.random() < 0.15:                             # the wrong type on purpose
        return rng.choice(rng.choice([STRINGS, INTS, BOOLS, ARRAYS, OBJECTS]))
    enum = schema.get("enum")
    if enum and rng.random() < 0.5:
        return rng.choice(enum)
    kind, fmt = schema.get("type"), schema.get("format")
    if fmt in ("seconds", "duration") or name.endswith(("ttl", "duration", "_buffer", "interval", "expiry")):
        return rng.choice(DURATIONS)
    if kind == "integer":
        return rng.choice(INTS)
    if kind == "boolean":
        return rng.choice(BOOLS)
    if kind == "array":
        return rng.choice(ARRAYS)
    if kind == "object":
        return rng.choice(OBJECTS)
    return rng.choice(STRINGS)


def _fill_path(rng: random.Random, template: str) -> str:
    def sub(m: re.Match[str]) -> str:
        return quote(rng.choice(PATH_VALUES), safe="")
    return re.sub(r"\{[^}]+\}", sub, template.lstrip("/"))


def _body_schema(doc: dict[str, Any], op_doc: dict[str, Any]) -> dict[str, Any]:
    content = (op_doc.get("requestBody") or {}).get("content", {}).get("application/json", {})
    schema = content.get("schema") or {}
    ref = schema.get("$ref")
    if ref:
        schema = doc.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], {})
    return schema.get("properties") or {}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(path template, op, properties of its body) for every operation the document lists."""
    out = []
    for template, item in sorted(doc.get("paths", {}).items()):
        for method in ("get", "post", "patch", "delete"):
            op_doc = item.get(method)
            if op_doc is None:
                continue
            props = _body_schema(doc, op_doc)
            if method == "get":
                params = {p["name"]: p.get("schema", {}) for p in op_doc.get("parameters", []) + item.get(
                    "parameters", []) if p.get("in") == "query"}
                out.append((template, "read", params))
                if "list" in params:
                    out.append((template, "list", params))
            else:
                out.append((template, {"post": "write", "patch": "patch", "delete": "delete"}[method], props))
    return out


def generate(doc: dict[str, Any], seed: int, count: int) -> list[FuzzRequest]:
    ops = operations(doc)
    rng = random.Random(seed)
    out: list[FuzzRequest] = []
    for _ in range(count):
        template, op, props = rng.choice(ops)
        if op == "delete" and rng.random() < 0.7:
            template, op, props = rng.choice(ops)       # fewer deletes: they empty the mount for everything after
        path = _fill_path(rng, template)
        body: dict[str, Any] = {}
        for name, schema in props.items():
            if name == "list" or rng.random() < 0.6:
                continue
            body[name] = _value(rng, name, schema)
        if rng.random() < 0.05:
            body["unknown_" + str(rng.randrange(100))] = rng.choice(STRINGS)
        method = {"read": "GET", "list": "LIST", "write": "POST", "patch": "PATCH", "delete": "DELETE"}[op]
        if method in ("GET", "LIST", "DELETE"):
            body = {k: v for k, v in body.items() if isinstance(v, (str, int, bool)) and v is not None}
        out.append(FuzzRequest(method, path, body or None, template, op))
    return out
