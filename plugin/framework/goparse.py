"""Go's number, bool and duration syntax, as Vault's field parsing applies it.

Vault reads typed fields with Go's strconv and time packages (through mapstructure and go-secure-stdlib's
parseutil), so the accepted forms and ranges are Go's: int64 values, durations of at most 2^63-1 nanoseconds
(about 292 years), exact bool spellings. Python's int(), float() and bool rules differ in many small ways
(underscores anywhere, Unicode digits, whitespace, arbitrary size), and no Python library implements Go's
syntax, so the few functions here follow Go's rules by hand.

Error texts follow Go's, without the submitted value: it may be a secret, and it is the client's own input.
"""
from __future__ import annotations

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
NANOS_PER_SECOND = 1_000_000_000

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

_UNIT_NANOS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,   # micro sign
    "\u03bcs": 1_000,   # Greek mu
    "ms": 1_000_000,
    "s": NANOS_PER_SECOND,
    "m": 60 * NANOS_PER_SECOND,
    "h": 3600 * NANOS_PER_SECOND,
}
_DAY_NANOS = 86400 * NANOS_PER_SECOND


class GoSyntaxError(ValueError):
    """A value Go's parser refuses; the message never contains the value."""


def parse_bool(text: str) -> bool:
    """strconv.ParseBool: exactly 1 t T TRUE true True 0 f F FALSE false False, no whitespace."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise GoSyntaxError("strconv.ParseBool: invalid syntax")


def _underscores_ok(s: str) -> bool:
    """Go's rule for base-0 literals: each underscore sits between digits (or after a base prefix)."""
    if s[:1] in ("+", "-"):
        s = s[1:]
    saw, i, hexa = "^", 0, False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    for c in s[i:]:
        if "0" <= c <= "9" or (hexa and "a" <= c.lower() <= "f"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def parse_int(text: str, base: int = 10) -> int:
    """strconv.ParseInt(text, base, 64) for base 10 or 0 (0: 0x/0o/0b prefixes, leading-0 octal, underscores)."""
    if text == "":
        raise GoSyntaxError("strconv.ParseInt: invalid syntax")
    s, neg = text, False
    if s[0] in "+-":
        neg, s = s[0] == "-", s[1:]
    if s == "":
        raise GoSyntaxError("strconv.ParseInt: invalid syntax")
    base0 = base == 0
    if base0:
        base = 10
        if s[0] == "0":
            prefix = s[1:2].lower()
            if len(s) >= 3 and prefix in ("b", "o", "x"):
                base, s = {"b": 2, "o": 8, "x": 16}[prefix], s[2:]
            else:
                base, s = 8, s[1:]
    limit = (1 << 63) if neg else INT64_MAX
    n, underscores = 0, False
    for c in s:
        if c == "_" and base0:
            underscores = True
            continue
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif "a" <= c.lower() <= "z" and c.isascii():
            d = ord(c.lower()) - 87
        else:
            raise GoSyntaxError("strconv.ParseInt: invalid syntax")
        if d >= base:
            raise GoSyntaxError("strconv.ParseInt: invalid syntax")
        n = n * base + d
        if n > limit:
            raise GoSyntaxError("strconv.ParseInt: value out of range")
    if underscores and not _underscores_ok(text):
        raise GoSyntaxError("strconv.ParseInt: invalid syntax")
    return -n if neg else n


def _leading_int(s: str) -> tuple[int, str]:
    i, x = 0, 0
    while i < len(s) and "0" <= s[i] <= "9":
        x = x * 10 + ord(s[i]) - 48
        if x > 1 << 63:
            raise GoSyntaxError("time: invalid duration")
        i += 1
    return x, s[i:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    """Digits after the point; past int64 precision they are skipped, as in Go (never an error)."""
    i, x, scale, overflow = 0, 0, 1.0, False
    while i < len(s) and "0" <= s[i] <= "9":
        if not overflow:
            y = x * 10 + ord(s[i]) - 48
            if x > INT64_MAX // 10 or y > 1 << 63:
                overflow = True
            else:
                x, scale = y, scale * 10
        i += 1
    return x, scale, s[i:]


def parse_go_duration(text: str) -> int:
    """time.ParseDuration: nanoseconds, within int64."""
    s, neg = text, False
    if s and s[0] in "+-":
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if s == "":
        raise GoSyntaxError("time: invalid duration")
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise GoSyntaxError("time: invalid duration")
        before = len(s)
        v, s = _leading_int(s)
        pre = before != len(s)
        f, scale, post = 0, 1.0, False
        if s and s[0] == ".":
            s = s[1:]
            before = len(s)
            f, scale, s = _leading_fraction(s)
            post = before != len(s)
        if not pre and not post:
            raise GoSyntaxError("time: invalid duration")
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise GoSyntaxError("time: missing unit in duration")
        unit = _UNIT_NANOS.get(s[:i])
        if unit is None:
            raise GoSyntaxError("time: unknown unit in duration")
        s = s[i:]
        if v > (1 << 63) // unit:
            raise GoSyntaxError("time: invalid duration")
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                raise GoSyntaxError("time: invalid duration")
        total += v
        if total > 1 << 63:
            raise GoSyntaxError("time: invalid duration")
    if neg:
        return -total
    if total > INT64_MAX:
        raise GoSyntaxError("time: invalid duration")
    return total


def _checked_nanos(count: int, unit_nanos: int) -> int:
    nanos = count * unit_nanos
    if not INT64_MIN <= nanos <= INT64_MAX:
        raise GoSyntaxError("multiplication of durations resulted in overflow, one operand may be too large")
    return nanos


def parse_duration_nanos(text: str) -> int:
    """parseutil.ParseDurationSecond on a string: bare seconds, whole days ("30d"), or a Go duration."""
    if text == "":
        return 0
    try:
        seconds = parse_int(text)
    except GoSyntaxError:
        pass   # out of int64 range or not an integer: Go tries the other forms
    else:
        return _checked_nanos(seconds, NANOS_PER_SECOND)
    if text.endswith("d"):
        return _checked_nanos(parse_int(text[:-1]), _DAY_NANOS)
    return parse_go_duration(text)


def whole_seconds(nanos: int) -> int:
    """int(time.Duration.Seconds()): Go's float seconds, truncated toward zero."""
    sec = abs(nanos) // NANOS_PER_SECOND * (-1 if nanos < 0 else 1)
    nsec = nanos - sec * NANOS_PER_SECOND
    return int(float(sec) + float(nsec) / 1e9)
