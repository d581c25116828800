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
from functools import cached_property
from typing import Any, Callable, Iterable

from plugin.framework import goparse

NAME_RE = re.compile(r"^\w(([\w.-]+)?\w)?\Z", re.ASCII)   # ASCII, as Go's \w


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
    SLICE = "slice"                      # a list of any JSON values (Vault's TypeSlice)
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
    FieldType.SLICE: {"type": "array", "items": {"type": "object"}},
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
        value = self._converted_default
        # A fresh list or dict each time: a handler that extends its value must not change the next request's.
        return value.copy() if isinstance(value, (list, dict)) else value

    @cached_property
    def _converted_default(self) -> Any:
        # Converted once per field, not on every read of an absent field (a dozen per issue request).
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
    if ftype in (FieldType.COMMA_STRING_SLICE, FieldType.STRING_SLICE, FieldType.COMMA_INT_SLICE, FieldType.SLICE):
        return []
    if ftype in (FieldType.MAP, FieldType.KV_PAIRS, FieldType.HEADER):
        return {}
    if ftype is FieldType.TIME:
        return None
    raise AssertionError(ftype)


class JsonFloat(float):
    """A JSON number with a fraction or exponent, keeping its text: Go's framework sees that text (json.Number)."""

    text: str

    def __new__(cls, text: str) -> "JsonFloat":
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


class JsonBigInt(str):
    """A JSON integer too long for Python's int() limit; Go sees its digits, so a string of them is exact."""


def _number_text(raw: int | float) -> str:
    """The text Go's json.Number would hold for a decoded JSON number."""
    if isinstance(raw, JsonFloat):
        return raw.text
    return repr(raw) if isinstance(raw, float) else str(raw)


def parse_duration(raw: Any, *, signed: bool = False) -> int:
    """Whole seconds, as Vault's TypeDurationSecond: parseutil.ParseDurationSecond then int(Seconds()).

    Bare seconds ("90"), whole days ("2d") or a Go duration ("1h30m"); within int64 nanoseconds (~292 years),
    so whatever is accepted can be added to a timestamp and read back by the server.
    """
    if raw is None:
        return 0
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise FieldError("could not parse duration from input")
    text = raw if isinstance(raw, str) else _number_text(raw)
    try:
        seconds = goparse.whole_seconds(goparse.parse_duration_nanos(text))
    except goparse.GoSyntaxError as exc:
        raise FieldError(str(exc)) from None
    if seconds < 0 and not signed:
        raise FieldError("cannot provide a negative value")
    return seconds


def parse_bool(raw: Any) -> bool:
    """mapstructure's weak bool: a JSON bool, null, or a number/string strconv.ParseBool accepts ("" is false)."""
    if isinstance(raw, bool):
        return raw
    if raw is None:
        return False
    if isinstance(raw, (int, float)):
        raw = _number_text(raw)   # Go sees a JSON number as its text: only 0 and 1 parse
    if isinstance(raw, str):
        if raw == "":
            return False
        try:
            return goparse.parse_bool(raw)
        except goparse.GoSyntaxError as exc:
            raise FieldError(f"cannot parse value as 'bool': {exc}") from None
    raise FieldError("expected type 'bool', got an unconvertible type")


def parse_int(raw: Any) -> int:
    """mapstructure's weak int64: a JSON bool or null, or a number/string strconv.ParseInt(s, 0, 64) accepts."""
    if isinstance(raw, bool):
        return int(raw)
    if raw is None:
        return 0
    if isinstance(raw, (int, float)):
        raw = _number_text(raw)   # a JSON number with a fraction or exponent is not an int in Go either
    if isinstance(raw, str):
        if raw == "":
            return 0
        try:
            return goparse.parse_int(raw, base=0)
        except goparse.GoSyntaxError as exc:
            raise FieldError(f"cannot parse value as 'int': {exc}") from None
    raise FieldError("expected type 'int', got an unconvertible type")


def _scalar_str(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return _number_text(item)
    if item is None:
        return ""
    raise FieldError("expected type 'string', got an unconvertible type")


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
            raise FieldError("cannot parse the value as a map") from None
        if isinstance(parsed, dict):
            return parsed
    raise FieldError("cannot parse the value as a map")


def parse_kv_pairs(raw: Any) -> dict[str, str]:
    if isinstance(raw, (list, tuple)) or (isinstance(raw, str) and "=" in raw and not raw.strip().startswith("{")):
        out: dict[str, str] = {}
        for item in parse_comma_slice(raw):
            key, sep, value = item.partition("=")
            if not sep:
                raise FieldError("invalid key value pair: no '=' in an item")
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
            raise FieldError("could not parse string as date and time") from None
        if value.tzinfo is None:
            raise FieldError("could not parse string as date and time: missing time zone")
        return value
    raise FieldError("could not parse time from input type")


def convert(ftype: FieldType, raw: Any, name: str) -> Any:
    """Convert one raw request value; raises FieldError with Vault's message shape."""
    try:
        return _CONVERTERS[ftype](raw)
    except FieldError as exc:
        # Never the value itself: it may be a private key or a token (and the client has it anyway).
        raise FieldError(f'error converting input for field "{name}": {exc}') from None


def _name(raw: Any) -> str:
    text = _scalar_str(raw)
    if text and not NAME_RE.match(text):
        raise FieldError("value does not match the name pattern")
    return text


def _comma_ints(raw: Any) -> list[int]:
    return [parse_int(p) for p in parse_comma_slice(raw)]


def parse_float(raw: Any) -> float:
    if isinstance(raw, bool):
        return float(raw)
    if raw is None:
        return 0.0
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        if raw == "":
            return 0.0
        if raw.strip() == raw and "_" not in raw:
            try:
                return float(raw)
            except ValueError:
                pass
        raise FieldError("cannot parse value as 'float': strconv.ParseFloat: invalid syntax")
    raise FieldError("expected type 'float', got an unconvertible type")


# Vault's framework treats a JSON null for these as "not supplied" (the others decode null to their zero value).
_NULL_IS_ABSENT = frozenset({FieldType.DURATION, FieldType.SIGNED_DURATION, FieldType.TIME})

_CONVERTERS: dict[FieldType, Callable[[Any], Any]] = {
    FieldType.STRING: _scalar_str,
    FieldType.LOWERCASE_STRING: lambda r: _scalar_str(r).lower(),
    FieldType.NAME: _name,
    FieldType.INT: parse_int,
    FieldType.INT64: parse_int,
    FieldType.FLOAT: parse_float,
    FieldType.BOOL: parse_bool,
    FieldType.DURATION: parse_duration,
    FieldType.SIGNED_DURATION: lambda r: parse_duration(r, signed=True),
    FieldType.COMMA_STRING_SLICE: parse_comma_slice,
    FieldType.STRING_SLICE: parse_string_slice,
    FieldType.SLICE: lambda r: list(r) if isinstance(r, list) else ([] if r is None or r == "" else [r]),
    FieldType.COMMA_INT_SLICE: _comma_ints,
    FieldType.MAP: parse_map,
    FieldType.KV_PAIRS: parse_kv_pairs,
    FieldType.TIME: parse_time,
    FieldType.HEADER: parse_map,
}


_ABSENT = object()


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
            if spec is not None and self.has(name):
                self._cache[name] = convert(spec.type, value, name)

    def get_ok(self, name: str) -> tuple[Any, bool]:
        """The value and whether the client supplied it (as opposed to the default)."""
        cached = self._cache.get(name, _ABSENT)
        if cached is not _ABSENT:
            return cached, True      # only supplied fields are ever cached
        spec = self.schema.get(name)
        if spec is None:
            raise KeyError(f"field {name!r} is not in the path's schema")
        if self.has(name):
            if name not in self._cache:
                self._cache[name] = convert(spec.type, self.raw[name], name)
            return self._cache[name], True
        return spec.default_value(), False

    def get(self, name: str) -> Any:
        return self.get_ok(name)[0]

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def has(self, name: str) -> bool:
        """Whether the client supplied the field; a JSON null duration or time counts as absent, as in Vault."""
        if name not in self.raw:
            return False
        spec = self.schema.get(name)
        return not (self.raw[name] is None and spec is not None and spec.type in _NULL_IS_ABSENT)

    def unknown(self) -> list[str]:
        return sorted(k for k in self.raw if k not in self.schema)

    def supplied(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The converted values of the fields the client actually sent."""
        keys = self.schema if names is None else names
        return {n: self.get(n) for n in keys if n in self.schema and self.has(n)}
