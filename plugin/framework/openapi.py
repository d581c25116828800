"""Help text for `path-help` and the OpenAPI fragment the server merges into sys/internal/specs/openapi.

The server decodes our document strictly into its OpenAPI types and fails the whole endpoint on a bad
shape, so everything here sticks to the fields that type has.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from plugin.framework.fields import Field, FieldType
from plugin.framework.path import Path
from plugin.framework.request import Operation

if TYPE_CHECKING:
    from plugin.framework.backend import Backend

OPENAPI_VERSION = "3.0.2"
_META = re.compile(r"[\\^$*+?()\[\]{}|]")


def _split_alternatives(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _matching_paren(text: str, start: int) -> int:
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced pattern")


def expand_pattern(pattern: str) -> list[str] | None:
    """OpenAPI paths for a route regex, or None when the regex uses constructs we cannot expand."""
    body = pattern.removeprefix("^").removesuffix("$")
    if body.endswith("/?"):
        body = body[:-2]
    try:
        found = _expand(body)
    except ValueError:
        return None
    if found is None:
        return None
    out: list[str] = []
    for item in found:
        clean = "/" + item.strip("/")
        if clean not in out:
            out.append(clean)
    return out


def _expand(text: str) -> list[str] | None:
    start = -1
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "(":
            start = i
            break
        i += 1
    if start < 0:
        plain = text.replace("\\.", ".").replace("\\-", "-")
        stripped = plain.replace("/?", "/")
        return None if _META.search(stripped.replace("{", "").replace("}", "")) else [stripped]
    end = _matching_paren(text, start)
    inner = text[start + 1:end]
    rest = text[end + 1:]
    optional = rest.startswith("?")
    if optional:
        rest = rest[1:]
    named = re.match(r"\?P<(\w+)>", inner)
    if named:
        options = ["{" + named.group(1) + "}"]
    else:
        inner = inner.removeprefix("?:")
        options = []
        for alt in _split_alternatives(inner):
            sub = _expand(alt)
            if sub is None:
                return None
            options.extend(sub)
    if optional:
        options.append("")
    results: list[str] = []
    for opt in options:
        sub = _expand(text[:start] + _escape_braces(opt) + rest)
        if sub is None:
            return None
        results.extend(sub)
    return results


def _escape_braces(text: str) -> str:
    return text  # placeholders are plain braces; _expand treats them as literal text


def _schema(spec: Field) -> dict[str, Any]:
    out = dict(spec.type.openapi)
    if spec.description:
        out["description"] = spec.description
    if spec.allowed_values:
        out["enum"] = list(spec.allowed_values)
    if spec.default is not None and not callable(spec.default):
        out["default"] = spec.default
    if spec.deprecated:
        out["deprecated"] = True
    return out


def _path_matches_special(oapi_path: str, patterns: list[str]) -> bool:
    segs = oapi_path.strip("/").split("/")
    for pat in patterns:
        if pat.endswith("*"):
            prefix = pat[:-1]
            if oapi_path.strip("/").startswith(prefix.replace("+", "")) and "+" not in prefix:
                return True
            continue
        psegs = pat.strip("/").split("/")
        if len(psegs) == len(segs) and all(p == "+" or p == s or s.startswith("{") for p, s in zip(psegs, segs)):
            if all(p == "+" or p == s for p, s in zip(psegs, segs) if not s.startswith("{")):
                return True
    return False


def _op_id(prefix: str, verb: str, oapi_path: str) -> str:
    words = [w.strip("{}") for w in oapi_path.strip("/").split("/") if w]
    slug = "-".join(re.sub(r"[^A-Za-z0-9]+", "-", w) for w in words) or "root"
    return "-".join(p for p in (prefix, verb, slug) if p)


def _path_item(backend: "Backend", path: Path, oapi_path: str, prefix: str) -> dict[str, Any]:
    captures = re.findall(r"\{(\w+)\}", oapi_path)
    params = [{
        "name": name,
        "description": (path.fields[name].description if name in path.fields else ""),
        "in": "path",
        "schema": {"type": "string"},
        "required": True,
    } for name in captures]
    item: dict[str, Any] = {"description": path.synopsis, "parameters": params}
    if _path_matches_special(oapi_path, backend.special_paths.unauthenticated):
        item["x-vault-unauthenticated"] = True
    if _path_matches_special(oapi_path, backend.special_paths.root):
        item["x-vault-sudo"] = True
    if path.exists is not None:
        item["x-vault-createSupported"] = True
    body_fields = {n: f for n, f in path.fields.items() if n not in captures}
    ops = path.operations
    if Operation.READ in ops or Operation.LIST in ops:
        get: dict[str, Any] = {
            "summary": path.summary_for(Operation.READ if Operation.READ in ops else Operation.LIST),
            "operationId": _op_id(prefix, "read" if Operation.READ in ops else "list", oapi_path),
            "tags": ["secrets"],
            "responses": {"200": {"description": "OK"}},
        }
        if Operation.LIST in ops:
            get["parameters"] = [{
                "name": "list", "description": "Return a list if `true`", "in": "query",
                "schema": {"type": "string", "enum": ["true"]}, "required": Operation.READ not in ops,
            }]
        item["get"] = get
    properties = {n: _schema(f) for n, f in body_fields.items()}

    def with_body(op: Operation, verb: str, content_type: str) -> dict[str, Any]:
        return {
            "summary": path.summary_for(op),
            "operationId": _op_id(prefix, verb, oapi_path),
            "tags": ["secrets"],
            "requestBody": {"required": True, "content": {content_type: {"schema": {
                "type": "object", "properties": properties}}}},
            "responses": {"200": {"description": "OK"}},
        }

    if Operation.UPDATE in ops or Operation.CREATE in ops:
        item["post"] = with_body(Operation.UPDATE, "write", "application/json")
    if Operation.PATCH in ops:
        item["patch"] = with_body(Operation.PATCH, "patch", "application/merge-patch+json")
    if Operation.DELETE in ops:
        item["delete"] = {
            "summary": path.summary_for(Operation.DELETE),
            "operationId": _op_id(prefix, "delete", oapi_path),
            "tags": ["secrets"],
            "responses": {"204": {"description": "empty body"}},
        }
    return item


def document(backend: "Backend", prefix: str, only: Path | None = None) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path in backend.paths:
        if only is not None and path is not only:
            continue
        expanded = expand_pattern(path.pattern)
        if expanded is None:
            paths[path.pattern] = {"description": path.synopsis}
            continue
        for oapi_path in expanded:
            if oapi_path not in paths:
                paths[oapi_path] = _path_item(backend, path, oapi_path, prefix)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "python-pki", "description": backend.help.strip().splitlines()[0] if backend.help else "",
                 "version": "", "license": {"name": "", "url": ""}},
        "paths": paths,
        "components": {"schemas": {}},
    }


def _type_name(ftype: FieldType) -> str:
    return ftype.value


def path_help(path: Path, request_path: str) -> str:
    lines = [f"Request:        {request_path}", f"Matching Route: {path.regex.pattern}", "",
             path.synopsis or "(no synopsis)", ""]
    if path.fields:
        lines += ["## PARAMETERS", ""]
        for name in sorted(path.fields):
            spec = path.fields[name]
            lines.append(f"{name} ({_type_name(spec.type)})")
            if spec.description:
                lines += [f"    {spec.description}"]
            lines.append("")
    if path.description:
        lines += ["## DESCRIPTION", "", path.description.strip(), ""]
    return "\n".join(lines)


def root_help(backend: "Backend") -> str:
    lines = [backend.help.strip(), "", "## PATHS", "",
             "The following paths are supported by this backend. To view help for",
             "any of the paths below, use the help command with any route matching",
             "the path pattern.", ""]
    for path in backend.paths:
        lines.append(f"    {path.regex.pattern}")
        if path.synopsis:
            lines.append(f"        {path.synopsis}")
        lines.append("")
    return "\n".join(lines)
