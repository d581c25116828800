"""URI subject alternative names checked and written as the built-in engine's Go code does.

Vault parses each URI with Go's `net/url` and writes `url.String()` into the certificate. So a control character
or a bad `%` escape is refused, and characters a path or fragment may not hold (a space, non-ASCII) come out
percent-encoded. We do the same for the URI's path and fragment, by Go's rules: a part that is valid as written
is kept byte for byte, any other is unescaped and escaped again. Where Go would go on to write something the
certificate cannot hold (a non-ASCII host or opaque part, which the built-in answers with a 500), we refuse.
Written by hand because Python's urllib neither refuses what Go refuses nor escapes what Go escapes.
"""
from __future__ import annotations

from plugin.framework import UserError

_UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_SUB_DELIMS = set(b"$&+,/:;=@")
# What Go's validEncoded lets through unescaped in a path or fragment as written.
_VALID_AS_WRITTEN = set(b"!$&'()*+,;=:@[]%")
_HEX = set(b"0123456789abcdefABCDEF")


def invalid_uri(uri: str) -> UserError:
    return UserError(f'the provided URI Subject Alternative Name "{go_quote(uri)}" is not a valid URI')


def go_quote(text: str) -> str:
    """The inside of Go's %q for a string: control characters as escapes, so a message never carries them."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                        "\v": "\\v"}[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


def refuse_control_chars(values: list[str], what: str) -> None:
    """No name with a control character goes into a certificate (the built-in writes some of them)."""
    for value in values:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise UserError(f'{what} "{go_quote(value)}" contains control characters and is not allowed')


def has_uri_problem(uri: str) -> bool:
    """What Go's url.Parse refuses: control characters or a `%` not followed by two hex digits."""
    try:
        normalize_uri(uri)
    except UserError:
        return True
    return False


def normalize_uri(uri: str) -> str:
    """The URI as the built-in engine writes it into a certificate; a 400 for what it refuses."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        raise invalid_uri(uri)
    raw = uri.encode("utf-8")
    _check_escapes(raw, uri)
    rest, sep, fragment = raw.partition(b"#")
    rest, qsep, query = rest.partition(b"?")
    scheme, colon, after = _split_scheme(rest)
    if colon and not after.startswith(b"/"):
        # An opaque URI (urn:..., mailto:...): Go writes it as given.
        if not after.isascii() or b" " in after:
            raise invalid_uri(uri)
        path_part, authority = after, None
    elif after.startswith(b"//"):
        authority, slash, path = after[2:].partition(b"/")
        if not authority.isascii() or b" " in authority:
            raise invalid_uri(uri)   # Go escapes the host, then cannot write it as a domain
        path_part = (slash + path)
        path_part = _escaped(path_part, path_mode=True)
    else:
        authority = None
        path_part = _escaped(after, path_mode=True)
    if not query.isascii() or b" " in query:
        raise invalid_uri(uri)
    out = scheme + colon + (b"//" + authority if authority is not None else b"") + path_part
    out += qsep + query
    if sep:
        out += sep + _escaped(fragment, path_mode=False)
    return out.decode("ascii")


def _split_scheme(rest: bytes) -> tuple[bytes, bytes, bytes]:
    for i, c in enumerate(rest):
        if chr(c).isalpha() and c < 0x80:
            continue
        if i > 0 and (chr(c).isdigit() or c in b"+-."):
            continue
        if c == ord(":") and i > 0:
            return rest[:i], b":", rest[i + 1:]
        break
    return b"", b"", rest


def _check_escapes(raw: bytes, uri: str) -> None:
    i = raw.find(b"%")
    while i != -1:
        if i + 2 >= len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
            raise invalid_uri(uri)
        i = raw.find(b"%", i + 3)


def _should_escape(c: int, path_mode: bool) -> bool:
    if c in _UNRESERVED:
        return False
    if c in _SUB_DELIMS or c == ord("?"):
        return c == ord("?") if path_mode else False
    if not path_mode and c in b"!()*":
        return False
    return True


def _escaped(part: bytes, path_mode: bool) -> bytes:
    if all(c in _VALID_AS_WRITTEN or not _should_escape(c, path_mode) for c in part):
        return part
    unescaped = bytearray()
    i = 0
    while i < len(part):
        if part[i] == ord("%"):
            unescaped.append(int(part[i + 1:i + 3], 16))
            i += 3
        else:
            unescaped.append(part[i])
            i += 1
    return b"".join(b"%%%02X" % c if _should_escape(c, path_mode) else bytes([c]) for c in unescaped)
