"""Compare two engines' OpenAPI documents path by path, the way a client generator or the web UI reads them.

Descriptions and summaries are prose (ours are our own words) and are left out; everything a generated client
or the UI acts on is compared: the expanded paths both documents have, path and query parameters, the
operations and their operationIds, request bodies property by property (type, format, pattern, items, enum,
default, deprecation, `x-vault-displayAttrs`, required), and the documented response codes.
"""
from __future__ import annotations

import json
from typing import Any

_PROSE = ("description", "summary")
_METHODS = ("get", "post", "patch", "delete")


def _resolve(doc: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    if not schema:
        return {}
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return doc.get("components", {}).get("schemas", {}).get(name) or {}
    return schema


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in sorted(value.items()) if k not in _PROSE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _params(params: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {f"{p.get('in')}:{p.get('name')}": _strip(p) for p in params or []}


def _body(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, Any] | None:
    body = op.get("requestBody")
    if not body:
        return None
    content = body.get("content") or {}
    out: dict[str, Any] = {"required": body.get("required", False), "content": {}}
    for media, obj in sorted(content.items()):
        schema = _resolve(doc, (obj or {}).get("schema"))
        out["content"][media] = {
            "type": schema.get("type"),
            "required": sorted(schema.get("required") or []),
            "properties": {k: _strip(v) for k, v in sorted((schema.get("properties") or {}).items())},
        }
    return out


def _compare(where: str, ref: Any, ours: Any, out: list[str]) -> None:
    if isinstance(ref, dict) and isinstance(ours, dict):
        for key in sorted(set(ref) | set(ours)):
            if key not in ours:
                out.append(f"{where}.{key}: missing in ours (built-in {json.dumps(ref[key], sort_keys=True)})")
            elif key not in ref:
                out.append(f"{where}.{key}: only in ours ({json.dumps(ours[key], sort_keys=True)})")
            else:
                _compare(f"{where}.{key}", ref[key], ours[key], out)
    elif ref != ours:
        out.append(f"{where}: built-in {json.dumps(ref, sort_keys=True)} != ours {json.dumps(ours, sort_keys=True)}")


def diff(ref_doc: dict[str, Any], ours_doc: dict[str, Any]) -> list[str]:
    """Every difference on the paths both documents have, one line each, sorted."""
    out: list[str] = []
    ref_paths, our_paths = ref_doc.get("paths", {}), ours_doc.get("paths", {})
    for path in sorted(set(ref_paths) & set(our_paths)):
        ref_item, our_item = ref_paths[path], our_paths[path]
        for item, name in ((ref_item, "built-in"), (our_item, "ours")):
            if "parameters" in item and not item["parameters"]:
                out.append(f"{path}.parameters: empty list in {name}")
        flat_ref = {k: _strip(v) for k, v in ref_item.items() if k not in _METHODS + _PROSE + ("parameters",)}
        flat_ours = {k: _strip(v) for k, v in our_item.items() if k not in _METHODS + _PROSE + ("parameters",)}
        _compare(path, flat_ref, flat_ours, out)
        _compare(f"{path}.parameters", _params(ref_item.get("parameters")), _params(our_item.get("parameters")), out)
        for method in _METHODS:
            ref_op, our_op = ref_item.get(method), our_item.get(method)
            where = f"{path}.{method}"
            if ref_op is None and our_op is None:
                continue
            if ref_op is None or our_op is None:
                out.append(f"{where}: {'missing in ours' if our_op is None else 'only in ours'}")
                continue
            for op, name in ((ref_op, "built-in"), (our_op, "ours")):
                if "parameters" in op and not op["parameters"]:
                    out.append(f"{where}.parameters: empty list in {name}")
            _compare(f"{where}.operationId", ref_op.get("operationId"), our_op.get("operationId"), out)
            _compare(f"{where}.deprecated", ref_op.get("deprecated", False), our_op.get("deprecated", False), out)
            _compare(f"{where}.tags", ref_op.get("tags"), our_op.get("tags"), out)
            _compare(f"{where}.parameters", _params(ref_op.get("parameters")), _params(our_op.get("parameters")), out)
            _compare(f"{where}.requestBody", _body(ref_doc, ref_op), _body(ours_doc, our_op), out)
            _compare(f"{where}.responses", sorted((ref_op.get("responses") or {})),
                     sorted((our_op.get("responses") or {})), out)
    return sorted(out)


def main(argv: list[str]) -> int:
    ref_doc = json.load(open(argv[1]))
    ours_doc = json.load(open(argv[2]))
    ref_doc = ref_doc.get("openapi", ref_doc)
    ours_doc = ours_doc.get("openapi", ours_doc)
    lines = diff(ref_doc, ours_doc)
    print("\n".join(lines))
    print(f"{len(lines)} differences", flush=True)
    return 1 if lines else 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv))
