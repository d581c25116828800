"""Field parsing under arbitrary JSON: only FieldError escapes, and what is accepted stays in Go's ranges."""
from __future__ import annotations

import json

from hypothesis import given, strategies as st

from plugin.framework import goparse
from plugin.framework.fields import FieldError, FieldType, JsonFloat, convert
from plugin.host.translate import _json_int
from .settings import FUZZ

INT64 = st.integers(min_value=goparse.INT64_MIN, max_value=goparse.INT64_MAX)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=60),
                         st.sampled_from(["", "0", "-0", "1e300", "0x10", "1_0", "F", "9" * 400, "1h", "-1s",
                                          "3000000d", "\u0661", " 1", "1d", ".5h"]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def as_received(value):
    """The value as the plugin decodes it from the server's JSON (numbers keep their text)."""
    return json.loads(json.dumps(value), parse_float=JsonFloat, parse_int=_json_int)


@FUZZ
@given(st.sampled_from(list(FieldType)), json_values)
def test_any_value_converts_or_raises_field_error(ftype, value):
    try:
        out = convert(ftype, as_received(value), "f")
    except FieldError as exc:
        assert "error converting input for field" in str(exc)
        return
    if ftype in (FieldType.INT, FieldType.INT64):
        assert goparse.INT64_MIN <= out <= goparse.INT64_MAX
    if ftype is FieldType.DURATION:
        assert 0 <= out <= goparse.INT64_MAX // goparse.NANOS_PER_SECOND
    if ftype is FieldType.SIGNED_DURATION:
        assert abs(out) <= goparse.INT64_MAX // goparse.NANOS_PER_SECOND + 1
    if ftype is FieldType.BOOL:
        assert isinstance(out, bool)
    json.dumps(out, default=str)       # whatever is accepted can be stored and answered


@FUZZ
@given(INT64)
def test_every_int64_round_trips_in_each_base(n):
    for text in (str(n), ("-" if n < 0 else "") + hex(abs(n)), ("-" if n < 0 else "") + oct(abs(n)),
                 ("-" if n < 0 else "") + bin(abs(n))):
        assert convert(FieldType.INT, text, "f") == n
    assert convert(FieldType.INT, as_received(n), "f") == n


@FUZZ
@given(st.integers(min_value=1, max_value=10**500), st.booleans())
def test_ints_outside_int64_are_refused(excess, negative):
    n = goparse.INT64_MIN - excess if negative else goparse.INT64_MAX + excess
    for raw in (str(n), as_received(n)):
        try:
            convert(FieldType.INT, raw, "f")
        except FieldError:
            continue
        raise AssertionError(f"accepted {raw!r}")


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])),
                min_size=1, max_size=4))
def test_go_durations_add_up(parts):
    text = "".join(f"{n}{u}" for n, u in parts)
    nanos = sum(n * {"h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[u]
                for n, u in parts)
    assert convert(FieldType.DURATION, text, "f") == nanos // 10**9


@FUZZ
@given(st.integers(0, 2 * 10**10))
def test_bare_seconds_and_days_stop_at_go_range(n):
    limit = goparse.INT64_MAX // goparse.NANOS_PER_SECOND
    for text, secs in ((str(n), n), (f"{n // 86400}d", n // 86400 * 86400)):
        try:
            got = convert(FieldType.DURATION, text, "f")
        except FieldError:
            assert secs > limit or (n // 86400) * 86400 * 10**9 > goparse.INT64_MAX
            continue
        assert got == secs <= limit


@FUZZ
@given(st.text(max_size=12))
def test_bool_accepts_exactly_strconv_spellings(text):
    spellings = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False", ""}
    try:
        convert(FieldType.BOOL, text, "f")
        assert text in spellings
    except FieldError:
        assert text not in spellings
