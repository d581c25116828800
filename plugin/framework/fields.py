"""Typed request fields with Vault's coercion rules.

Clients send the same value in many shapes: the CLI sends every value as a string, Terraform sends
lists as arrays or comma strings, cert-manager sends booleans as "true". Each `FieldType` accepts the
shapes Vault's framework accepts and yields one Python type.
"""
from __future__ import annotations

import datetime as dt
import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
NAME_RE = re.compile(r"^\w(([\w.-]+)?\w)?$")


class FieldType(enum.Enum):
    STRING = "string"
    INT = "int"
    INT64 = "int64"
    FLOAT = "float"
    BOOL = "bool"
    DURATION = "duration_second"
    SIGNED_DURATION = "signed_duration_second"
    COMMA_STRING_SLICE = "comma_string_slice"
    STRING_SLICE = "string_slice"
    COMMA_INT_SLICE = "comma_int_slice"
    MAP = "map"
    KV_PAIRS = "kvpairs"
    NAME = "name_string"
    LOWERCASE_STRING = "lowercase_string"
    TIME = "time"
    HEADER = "header"

    @property
    def openapi(self) -> dict[str, Any]:
        return _OPENAPI_TYPES[self]


_OPENAPI_TYPES: dict[FieldType, dict[str, Any]] = {
    FieldType.STRING: {"type": "string"},
    FieldType.LOWERCASE_STRING: {"type": "string", "format": "lowercase"},
    FieldType.NAME: {"type": "string", "pattern": r"\w([\w-.]*\w)?"},
    FieldType.INT: {"type": "integer"},
    FieldType.INT64: {"type": "integer", "format": "int64"},
    FieldType.FLOAT: {"type": "number", "format": "float"},
    FieldType.BOOL: {"type": "boolean"},
    FieldType.DURATION: {"type": "integer", "format": "seconds"},
    FieldType.SIGNED_DURATION: {"type": "integer", "format": "seconds"},
    FieldType.COMMA_STRING_SLICE: {"type": "array", "items": {"type": "string"}},
    FieldType.STRING_SLICE: {"type": "array", "items": {"type": "string"}},
    FieldType.COMMA_INT_SLICE: {"type": "array", "items": {"type": "integer"}},
    FieldType.MAP: {"type": "object", "format": "map"},
    FieldType.KV_PAIRS: {"type": "object", "format": "kvpairs"},
    FieldType.TIME: {"type": "string", "format": "date-time"},
    FieldType.HEADER: {"type": "string"},
}


@dataclass(frozen=True)
class DisplayAttrs:
    """Vault's `x-vault-displayAttrs`: how the web UI labels and pre-fills a field, and (operation_* hints,
    never rendered) how a path's operationIds are built."""

    name: str = ""
    value: Any = None            # the UI pre-fills the form with this
    group: str = ""
    sensitive: bool = False
    edit_type: str = ""
    item_type: str = ""
    navigation: bool = False
    action: str = ""
    operation_prefix: str = ""
    operation_verb: str = ""
    operation_suffix: str = ""

    def openapi(self) -> dict[str, Any] | None:
        # `value` may be a falsy default the form shows (0, "", false); only None means "no value".
        out: dict[str, Any] = {} if self.value is None else {"value": self.value}
        for key, attr in (("name", "name"), ("sensitive", "sensitive"),
                          ("navigation", "navigation"), ("itemType", "item_type"), ("group", "group"),
                          ("action", "action"), ("editType", "edit_type")):
            value = getattr(self, attr)
            if value:
                out[key] = value
        return out or None


def with_display(fields: dict[str, "Field"], **attrs: DisplayAttrs) -> dict[str, "Field"]:
    """The fields with the web UI's labels and pre-filled values set on those named."""
    from dataclasses import replace

    return {name: replace(spec, display=attrs[name]) if name in attrs else spec for name, spec in fields.items()}


class FieldError(ValueError):
    """A value that cannot be converted to its field's type."""


@dataclass(frozen=True)
class Field:
    type: FieldType = FieldType.STRING
    description: str = ""
    default: Any = None
    required: bool = False
    allowed_values: tuple[Any, ...] = ()   # documentation only, as in Vault; handlers validate
    deprecated: bool = False
    query: bool = False                     # documented as a query parameter (reads/lists)
    display: DisplayAttrs | None = None

    def default_value(self) -> Any:
        if callable(self.default):
            return self.default()
        if self.default is not None:
            return convert(self.type, self.default, "")
        return zero_value(self.type)


def zero_value(ftype: FieldType) -> Any:
    if ftype in (FieldType.STRING, FieldType.NAME, FieldType.LOWERCASE_STRING):
        return ""
    if ftype in (FieldType.INT, FieldType.INT64, FieldType.DURATION, FieldType.SIGNED_DURATION):
        return 0
    if ftype is FieldType.FLOAT:
        return 0.0
    if ftype is FieldType.BOOL:
        return False
    if ftype in (FieldType.COMMA_STRING_SLICE, FieldType.STRING_SLICE, FieldType.COMMA_INT_SLICE):
        return []
    if ftype in (FieldType.MAP, FieldType.KV_PAIRS, FieldType.HEADER):
        return {}
    if ftype is FieldType.TIME:
        return None
    raise AssertionError(ftype)


def parse_duration(raw: Any, *, signed: bool = False) -> int:
    """Seconds from an int, a numeric string, or a Go-style duration ("72h", "1h30m", "2d")."""
    if isinstance(raw, bool):
        raise FieldError(f"invalid duration {raw!r}")
    if isinstance(raw, (int, float)):
        value = int(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if text == "":
            return 0
        sign = 1
        if text[0] in "+-":
            sign = -1 if text[0] == "-" else 1
            text = text[1:]
        if re.fullmatch(r"\d+", text):
            value = sign * int(text)
        else:
            pos, total = 0, 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
                pos = m.end()
            if pos != len(text) or pos == 0:
                raise FieldError(f'time: invalid duration "{raw}"')
            value = sign * int(total)
    else:
        raise FieldError(f"invalid duration {raw!r}")
    if value < 0 and not signed:
        raise FieldError("cannot parse a negative duration")
    return value


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)):
        return raw != 0
    if isinstance(raw, str):
        low = raw.strip()
        if low in ("1", "t", "T", "true", "TRUE", "True"):
            return True
        if low in ("0", "f", "F", "false", "FALSE", "False", ""):
            return False
    raise FieldError(f'strconv.ParseBool: parsing "{raw}": invalid syntax')


def parse_int(raw: Any) -> int:
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if raw != int(raw):
            raise FieldError(f"cannot parse {raw} as an integer")
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text == "":
            return 0
        try:
            return int(text, 10)
        except ValueError:
            raise FieldError(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None
    raise FieldError(f"cannot parse {raw!r} as an integer")


def _scalar_str(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return str(item)
    raise FieldError(f"cannot use {item!r} as a string")


def parse_comma_slice(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [p.strip() for p in raw.split(",") if p.strip()]
    if isinstance(raw, (list, tuple)):
        out: list[str] = []
        for item in raw:
            out.extend(parse_comma_slice(item) if isinstance(item, str) else [_scalar_str(item)])
        return out
    return [_scalar_str(raw)]


def parse_string_slice(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, (list, tuple)):
        return [_scalar_str(i) for i in raw]
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return [_scalar_str(i) for i in parsed]
        return [raw] if raw != "" else []
    return [_scalar_str(raw)]


def parse_map(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise FieldError(f"cannot parse {raw!r} as a map") from None
        if isinstance(parsed, dict):
            return parsed
    raise FieldError(f"cannot parse {raw!r} as a map")


def parse_kv_pairs(raw: Any) -> dict[str, str]:
    if isinstance(raw, (list, tuple)) or (isinstance(raw, str) and "=" in raw and not raw.strip().startswith("{")):
        out: dict[str, str] = {}
        for item in parse_comma_slice(raw):
            key, sep, value = item.partition("=")
            if not sep:
                raise FieldError(f"invalid key value pair {item!r}")
            out[key.strip()] = value.strip()
        return out
    return {str(k): _scalar_str(v) for k, v in parse_map(raw).items()}


def parse_time(raw: Any) -> dt.datetime | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return dt.datetime.fromtimestamp(raw, tz=dt.timezone.utc)
    if isinstance(raw, str):
        text = raw.strip()
        if re.fullmatch(r"\d+", text):
            return dt.datetime.fromtimestamp(int(text), tz=dt.timezone.utc)
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise FieldError(f'parsing time "{raw}": not RFC 3339') from None
        if value.tzinfo is None:
            raise FieldError(f'parsing time "{raw}": missing time zone')
        return value
    raise FieldError(f"cannot parse {raw!r} as a time")


def convert(ftype: FieldType, raw: Any, name: str) -> Any:
    """Convert one raw request value; raises FieldError with Vault's message shape."""
    try:
        return _CONVERTERS[ftype](raw)
    except FieldError as exc:
        shown = raw if isinstance(raw, str) else json.dumps(raw)
        raise FieldError(f'error converting input {shown} for field "{name}": {exc}') from None


def _name(raw: Any) -> str:
    text = _scalar_str(raw)
    if text and not NAME_RE.match(text):
        raise FieldError("value does not match the name pattern")
    return text


def _comma_ints(raw: Any) -> list[int]:
    return [parse_int(p) for p in parse_comma_slice(raw)]


_CONVERTERS: dict[FieldType, Callable[[Any], Any]] = {
    FieldType.STRING: _scalar_str,
    FieldType.LOWERCASE_STRING: lambda r: _scalar_str(r).lower(),
    FieldType.NAME: _name,
    FieldType.INT: parse_int,
    FieldType.INT64: parse_int,
    FieldType.FLOAT: lambda r: float(r) if not isinstance(r, bool) else float(int(r)),
    FieldType.BOOL: parse_bool,
    FieldType.DURATION: parse_duration,
    FieldType.SIGNED_DURATION: lambda r: parse_duration(r, signed=True),
    FieldType.COMMA_STRING_SLICE: parse_comma_slice,
    FieldType.STRING_SLICE: parse_string_slice,
    FieldType.COMMA_INT_SLICE: _comma_ints,
    FieldType.MAP: parse_map,
    FieldType.KV_PAIRS: parse_kv_pairs,
    FieldType.TIME: parse_time,
    FieldType.HEADER: parse_map,
}


@dataclass
class FieldData:
    """The fields of one request: raw values (body + URL captures) read through their schema."""

    raw: dict[str, Any]
    schema: dict[str, Field]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def validate(self) -> None:
        """Convert every supplied known field once, so type errors surface before the handler runs."""
        for name, value in self.raw.items():
            spec = self.schema.get(name)
            if spec is not None:
                self._cache[name] = convert(spec.type, value, name)

    def get_ok(self, name: str) -> tuple[Any, bool]:
        """The value and whether the client supplied it (as opposed to the default)."""
        spec = self.schema.get(name)
        if spec is None:
            raise KeyError(f"field {name!r} is not in the path's schema")
        if name in self.raw:
            if name not in self._cache:
                self._cache[name] = convert(spec.type, self.raw[name], name)
            return self._cache[name], True
        return spec.default_value(), False

    def get(self, name: str) -> Any:
        return self.get_ok(name)[0]

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def has(self, name: str) -> bool:
        return name in self.raw

    def unknown(self) -> list[str]:
        return sorted(k for k in self.raw if k not in self.schema)

    def supplied(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The converted values of the fields the client actually sent."""
        keys = self.schema if names is None else names
        return {n: self.get(n) for n in keys if n in self.raw and n in self.schema}
