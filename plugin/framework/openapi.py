"""Help text for `path-help` and the OpenAPI fragment the server merges into sys/internal/specs/openapi.

The server decodes our document strictly into its OpenAPI types and fails the whole endpoint on a bad
shape, so everything here sticks to the fields that type has.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from plugin.framework.fields import DisplayAttrs, Field, FieldType
from plugin.framework.path import Path
from plugin.framework.request import Operation

if TYPE_CHECKING:
    from plugin.framework.backend import Backend

OPENAPI_VERSION = "3.0.2"
_METHOD = {Operation.READ: "get", Operation.LIST: "get", Operation.CREATE: "post", Operation.UPDATE: "post",
           Operation.PATCH: "patch", Operation.DELETE: "delete"}
_NON_WORD = re.compile(r"[^\w]+")


class _Unexpandable(ValueError):
    """A route regex with a construct (class, repetition, wildcard) that has no OpenAPI path form."""


# Route regexes are parsed into a small tree: ("lit", char), ("param", name), ("alt", [[node...], ...]) for a
# group, ("opt", node) for `?`. Only what Vault's path patterns use; anything else makes the pattern
# unexpandable, and it is then documented by its regex without operations, as Vault does.

def _parse(text: str, i: int = 0, stop: str = "") -> tuple[list[list[tuple]], int]:
    alternatives: list[list[tuple]] = [[]]
    while i < len(text):
        ch = text[i]
        if ch == stop:
            return alternatives, i + 1
        seq = alternatives[-1]
        if ch == "|":
            alternatives.append([])
            i += 1
        elif ch == "\\":
            seq.append(("lit", text[i + 1]))
            i += 2
        elif ch in "^$":
            i += 1
        elif ch == "?":
            if not seq:
                raise _Unexpandable(text)
            seq[-1] = ("opt", seq[-1])
            i += 1
        elif ch == "(":
            named = re.match(r"\(\?P<(\w+)>", text[i:])
            if named:
                seq.append(("param", named.group(1)))
                i = _skip_group(text, i)
            else:
                i += 3 if text.startswith("(?:", i) else 1
                inner, i = _parse(text, i, ")")
                seq.append(("alt", inner))
        elif ch in ".[*+{":
            raise _Unexpandable(text)
        else:
            seq.append(("lit", ch))
            i += 1
    if stop:
        raise _Unexpandable(text)
    return alternatives, i


def _skip_group(text: str, start: int) -> int:
    depth, i = 0, start
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
                return i + 1
        i += 1
    raise _Unexpandable(text)


def _collect(nodes: list[tuple], paths: list[list]) -> list[list]:
    """Each path is [text, length at which a lone optional slash was appended]; like Vault, a variant that
    ends right after such a slash is dropped (`roles/?` documents `roles` only)."""
    for node in nodes:
        kind = node[0]
        if kind == "lit":
            for p in paths:
                p[0] += node[1]
        elif kind == "param":
            for p in paths:
                p[0] += "{" + node[1] + "}"
        elif kind == "alt":
            out: list[list] = []
            for alt in node[1]:
                out += _collect(alt, [list(p) for p in paths])
            paths = out
        else:  # opt: the variants without the part come first, then those with it
            child = node[1]
            extra = _collect([child], [list(p) for p in paths])
            if child == ("lit", "/"):
                for p in extra:
                    p[1] = len(p[0])
            paths = paths + extra
    return paths


def expand_pattern(pattern: str) -> list[str] | None:
    """The OpenAPI paths a route regex stands for, in Vault's order, or None when it has no such form."""
    try:
        alternatives, _ = _parse(pattern)
    except _Unexpandable:
        return None
    found = _collect([("alt", alternatives)], [["", -1]])
    out: list[str] = []
    for text, slash_at in found:
        if slash_at == len(text):
            continue
        clean = "/" + text
        if clean not in out:
            out.append(clean)
    return out


def _schema(spec: Field, with_description: bool = True) -> dict[str, Any]:
    out = dict(spec.type.openapi)
    if spec.type.value in ("comma_string_slice", "string_slice", "comma_int_slice"):
        out["items"] = dict(out["items"])
    if with_description and spec.description:
        out["description"] = " ".join(spec.description.split())
    if spec.allowed_values:
        out["enum"] = list(spec.allowed_values)
    if spec.default is not None and not callable(spec.default):
        out["default"] = spec.default
    if spec.deprecated:
        out["deprecated"] = True
    if spec.display is not None and (attrs := spec.display.openapi()):
        out["x-vault-displayAttrs"] = attrs
    return out


def special_path_match(path: str, patterns: list[str]) -> bool:
    """Whether an OpenAPI path (no leading slash) falls under a special-paths entry (`*` and `+` wildcards)."""
    parts = path.split("/")
    for pat in patterns:
        if pat == path or (pat.endswith("*") and path.startswith(pat[:-1])):
            return True
        if "+" not in pat:
            continue
        pparts = pat.split("/")
        if len(parts) < len(pparts):
            continue
        for part, want in zip(parts, pparts):
            if want == "+":
                continue
            if want == "*" or (want.endswith("*") and part.startswith(want[:-1])):
                return True
            if want != part:
                break
        else:
            if len(parts) == len(pparts):
                return True
    return False


def operation_id(path: str, index: int, path_attrs: DisplayAttrs | None, op: Operation,
                 op_attrs: DisplayAttrs | None, default_prefix: str) -> str:
    """Vault's rule: prefix-verb-suffix from the display hints (operation's first, then the path's); a
    `|`-separated suffix picks the entry of the expanded path's index; what is missing comes from the mount
    type prefix, the operation name and the path's words."""
    prefix = verb = suffix = ""
    for attrs in (op_attrs, path_attrs):
        if attrs is not None:
            prefix = prefix or attrs.operation_prefix
            verb = verb or attrs.operation_verb
            suffix = suffix or attrs.operation_suffix
    out_of_range = False
    suffixes = suffix.split("|")
    if len(suffixes) > 1 or index > 0:
        if index >= len(suffixes):
            suffix, out_of_range = "", True
        else:
            suffix = suffixes[index]
    if not prefix and not verb:
        prefix = default_prefix
    need_suffix = not suffix and (not verb or out_of_range)
    if not verb:
        verb = "write" if op is Operation.UPDATE else op.value
    if need_suffix:
        suffix = "-".join(w for w in _NON_WORD.split(path) if w)
    return "-".join(w for w in (prefix, verb, suffix) if w).lower()


def _title(op_id: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in op_id.split("-"))


def _path_item(backend: "Backend", path: Path, oapi_path: str, index: int, prefix: str,
               schemas: dict[str, Any]) -> dict[str, Any]:
    bare = oapi_path.lstrip("/")
    captures = re.findall(r"\{(\w+)\}", oapi_path)
    ops = path.operations
    documents_query = any(op in ops for op in (Operation.READ, Operation.UPDATE, Operation.CREATE))
    params = []
    for name, spec in path.fields.items():
        if name in captures:
            location = "path"
        elif spec.query and documents_query:
            location = "query"
        else:
            continue
        schema = _schema(spec, with_description=False)
        schema.pop("format", None)
        schema.pop("deprecated", None)
        schema.pop("items", None)
        param: dict[str, Any] = {"name": name, "in": location, "schema": schema}
        if spec.description:
            param["description"] = " ".join(spec.description.split())
        if location == "path":
            param["required"] = True
        if spec.deprecated:
            param["deprecated"] = True
        params.append(param)
    params.sort(key=lambda p: p["name"].lower())
    item: dict[str, Any] = {}
    if path.synopsis:
        item["description"] = " ".join(path.synopsis.split())
    if params:
        # Never an empty list: the web UI destructures the first parameter of a present list.
        item["parameters"] = params
    if special_path_match(bare, backend.special_paths.root):
        item["x-vault-sudo"] = True
    if special_path_match(bare, backend.special_paths.unauthenticated):
        item["x-vault-unauthenticated"] = True
    if path.exists is not None or Operation.CREATE in ops:
        item["x-vault-createSupported"] = True
    if path.display is not None and (attrs := path.display.openapi()):
        item["x-vault-displayAttrs"] = attrs
    body_fields = {n: f for n, f in path.fields.items() if n not in captures and not f.query}
    for op in (Operation.READ, Operation.LIST, Operation.UPDATE, Operation.CREATE, Operation.PATCH,
               Operation.DELETE):
        if op not in ops:
            continue
        if op is Operation.CREATE and Operation.UPDATE in ops:
            continue
        if op is Operation.LIST and Operation.READ in ops:
            continue
        op_id = operation_id(bare, index, path.display, op, path.display_for(op), prefix)
        entry: dict[str, Any] = {}
        summary = path.summary_for(op)
        if summary:
            entry["summary"] = " ".join(summary.split())
        entry["operationId"] = op_id
        entry["tags"] = ["secrets"] if backend.backend_type == 1 else ["auth"]
        if op is Operation.LIST:
            entry["parameters"] = [{"name": "list", "description": "Must be set to `true`", "in": "query",
                                    "schema": {"type": "string", "enum": ["true"]}, "required": True}]
        elif op is Operation.READ and Operation.LIST in ops:
            entry["parameters"] = [{"name": "list", "description": "Return a list if `true`", "in": "query",
                                    "schema": {"type": "string"}}]
        if op in (Operation.UPDATE, Operation.CREATE, Operation.PATCH) and body_fields:
            body: dict[str, Any] = {"type": "object",
                                    "properties": {n: _schema(f) for n, f in sorted(body_fields.items())}}
            required = sorted(n for n, f in body_fields.items() if f.required)
            if required:
                body["required"] = required
            name = _title(op_id) + "Request"
            schemas[name] = body
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{name}"}}}}
        codes = path.responses.get(op)
        if codes is None:
            codes = {204: "No Content"} if op is Operation.DELETE else {200: "OK"}
        entry["responses"] = {str(code): {"description": text} for code, text in sorted(codes.items())}
        item[_METHOD[op]] = entry
    return item


def document(backend: "Backend", prefix: str, only: Path | None = None) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for path in backend.paths:
        if only is not None and path is not only:
            continue
        expanded = expand_pattern(path.pattern)
        if expanded is None:
            paths.setdefault(path.pattern, {"description": path.synopsis})
            continue
        for index, oapi_path in enumerate(expanded):
            if oapi_path not in paths:
                paths[oapi_path] = _path_item(backend, path, oapi_path, index, prefix, schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "python-pki", "description": backend.help.strip().splitlines()[0] if backend.help else "",
                 "version": "", "license": {"name": "", "url": ""}},
        "paths": paths,
        "components": {"schemas": schemas},
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
