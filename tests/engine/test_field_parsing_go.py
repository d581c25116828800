"""Typed fields accept exactly what Vault's Go framework accepts, and what is accepted can be stored and used.

The expectations are Go's (strconv.ParseInt/ParseBool, time.ParseDuration, go-secure-stdlib's
ParseDurationSecond through mapstructure); integration/test_field_parsing_differential.py checks the same
edge values against the built-in engine.
"""
from __future__ import annotations

import json

import pytest

from engine.backend import build_backend as build_pki_backend
from engine.external_ca.backend import build_backend as build_external_ca_backend
from plugin.framework import Operation
from plugin.framework.fields import FieldData, FieldError, FieldType, JsonFloat, convert
from plugin.host.translate import _json_int
from tests.engine.ca_helpers import Mount

GO_DURATION_MAX_SECONDS = 9223372036   # (2^63 - 1) ns, truncated to whole seconds


def from_json(text: str):
    """A request value as the plugin decodes it from the server's JSON."""
    return json.loads(text, parse_float=JsonFloat, parse_int=_json_int)


DURATIONS_OK = [
    ("72h", 259200), ("1h30m", 5400), ("90", 90), ("2d", 172800), ("", 0), ("0", 0), ("-0", 0), ("+1h", 3600),
    (".5h", 1800), ("5.h", 18000), ("1.9s", 1), ("-0.5s", 0), ("1\u00b5s", 0), ("1\u03bcs", 0),
    ("0." + "1" * 400 + "s", 0),                       # Go drops fraction digits past int64 precision
    ("106000d", 9158400000), ("2562047h", 9223369200),
    (str(GO_DURATION_MAX_SECONDS), GO_DURATION_MAX_SECONDS), (GO_DURATION_MAX_SECONDS, GO_DURATION_MAX_SECONDS),
    (from_json("10"), 10),
]
DURATIONS_BAD = [
    "3000000d", "106752d", str(GO_DURATION_MAX_SECONDS + 1), GO_DURATION_MAX_SECONDS + 1, "2562048h",
    "1" * 400, from_json("1" * 400), from_json("1" * 5000), "1" * 20 + "ns",
    "1e300", from_json("1e300"), from_json("1.5"), from_json("10.0"), from_json("1E400"),
    "1.5d", "1h2d", "d", " 1h", "1h ", "1H", "1hm", "1_0", "abc", "5x", "-1h", "-1s", True, [], {},
    "\u0661\u0662",                                    # Arabic-Indic digits: Python's int() takes them, Go does not
]

INTS_OK = [
    ("2048", 2048), ("+2048", 2048), ("0x800", 2048), ("0o4000", 2048), ("04000", 2048), ("2_048", 2048),
    ("0x_8_00", 2048), ("", 0), ("0", 0), (None, 0), (True, 1), (from_json("2048"), 2048),
    ("9223372036854775807", 2**63 - 1), ("-9223372036854775808", -(2**63)),
]
INTS_BAD = [
    "9223372036854775808", "-9223372036854775809", "1" * 400, from_json("1" * 400), from_json("1" * 5000),
    " 2048", "2048 ", "2048.0", from_json("2048.0"), from_json("1e3"), "1e3", "abc", "0x", "0b", "_1", "1__0",
    "0_x1", "09", "\u0661\u0662", [], {},
]

BOOLS_OK = [
    ("1", True), ("t", True), ("T", True), ("TRUE", True), ("true", True), ("True", True),
    ("0", False), ("f", False), ("F", False), ("FALSE", False), ("false", False), ("False", False),
    ("", False), (None, False), (True, True), (False, False), (from_json("1"), True), (from_json("0"), False),
]
BOOLS_BAD = ["2", "-1", from_json("2"), from_json("-1"), from_json("1.0"), " true", "true ", "yes", "on", "tRUE",
             [], {}]


@pytest.mark.parametrize("raw,secs", DURATIONS_OK, ids=lambda v: repr(v)[:40])
def test_duration_accepts_go_forms(raw, secs):
    assert convert(FieldType.DURATION, raw, "ttl") == secs


@pytest.mark.parametrize("raw", DURATIONS_BAD, ids=lambda v: repr(v)[:40])
def test_duration_refuses_what_go_refuses(raw):
    with pytest.raises(FieldError):
        convert(FieldType.DURATION, raw, "ttl")


def test_signed_duration_takes_negatives_within_range():
    assert convert(FieldType.SIGNED_DURATION, "-1h", "x") == -3600
    assert convert(FieldType.SIGNED_DURATION, f"-{GO_DURATION_MAX_SECONDS}", "x") == -GO_DURATION_MAX_SECONDS
    with pytest.raises(FieldError):
        convert(FieldType.SIGNED_DURATION, f"-{GO_DURATION_MAX_SECONDS + 1}", "x")


@pytest.mark.parametrize("raw,value", INTS_OK, ids=lambda v: repr(v)[:40])
def test_int_accepts_go_forms(raw, value):
    assert convert(FieldType.INT, raw, "key_bits") == value
    assert convert(FieldType.INT64, raw, "key_bits") == value


@pytest.mark.parametrize("raw", INTS_BAD, ids=lambda v: repr(v)[:40])
def test_int_refuses_what_go_refuses(raw):
    with pytest.raises(FieldError):
        convert(FieldType.INT, raw, "key_bits")


@pytest.mark.parametrize("raw,value", BOOLS_OK, ids=lambda v: repr(v)[:40])
def test_bool_accepts_strconv_forms(raw, value):
    assert convert(FieldType.BOOL, raw, "flag") is value


@pytest.mark.parametrize("raw", BOOLS_BAD, ids=lambda v: repr(v)[:40])
def test_bool_refuses_the_rest(raw):
    with pytest.raises(FieldError):
        convert(FieldType.BOOL, raw, "flag")


def test_comma_int_slice_elements_follow_int_rules():
    assert convert(FieldType.COMMA_INT_SLICE, "1,0x10", "x") == [1, 16]
    for bad in ("1,9223372036854775808", [from_json("1.5")], "1, 2x"):
        with pytest.raises(FieldError):
            convert(FieldType.COMMA_INT_SLICE, bad, "x")


def test_null_duration_is_not_supplied_as_in_vault():
    d = FieldData(raw={"ttl": None, "flag": None, "bits": None},
                  schema={"ttl": _field(FieldType.DURATION, default=30), "flag": _field(FieldType.BOOL),
                          "bits": _field(FieldType.INT)})
    d.validate()
    assert d.get_ok("ttl") == (30, False)
    assert d.get_ok("flag") == (False, True)
    assert d.get_ok("bits") == (0, True)


def _field(ftype, default=None):
    from plugin.framework.fields import Field
    return Field(type=ftype, default=default)


# -- every duration, int and bool field of every path ------------------------------------------------------------

TYPED_BAD = {
    FieldType.DURATION: ["3000000d", "1" * 400, from_json("1e300"), "-1s", "2562048h"],
    FieldType.SIGNED_DURATION: ["3000000d", "1" * 400, from_json("1e300"), "-3000000d"],
    FieldType.INT: ["1" * 400, "9223372036854775808", from_json("1.5"), "1e3"],
    FieldType.INT64: ["1" * 400, "9223372036854775808", from_json("1.5")],
    FieldType.BOOL: ["2", "-1", from_json("2"), " true", from_json("1.0")],
    FieldType.COMMA_INT_SLICE: ["1" * 400, [from_json("1.5")]],
}


def _typed_fields():
    for label, backend in (("pki", build_pki_backend()), ("external-ca", build_external_ca_backend())):
        for path in backend.paths:
            for name, spec in path.fields.items():
                if spec.type in TYPED_BAD:
                    yield pytest.param(path, name, spec, id=f"{label}:{path.pattern}:{name}")


TYPED_FIELDS = list(_typed_fields())


def test_the_schema_table_is_not_empty():
    kinds = {p.values[2].type for p in TYPED_FIELDS}
    assert {FieldType.DURATION, FieldType.INT, FieldType.BOOL} <= kinds
    assert len(TYPED_FIELDS) > 50


@pytest.mark.parametrize("path,name,spec", TYPED_FIELDS)
def test_every_typed_field_refuses_out_of_range_values(path, name, spec):
    for bad in TYPED_BAD[spec.type]:
        with pytest.raises(FieldError, match=f'for field "{name}"'):
            FieldData(raw={name: bad}, schema=dict(path.fields)).validate()


# -- stored values stay usable -------------------------------------------------------------------------------------

def test_crl_expiry_beyond_go_range_is_refused_and_revocation_keeps_working():
    m = Mount()
    m.root()
    refused = m.write("config/crl", expiry="3000000d")
    assert refused.status == 400, refused
    assert m.read("config/crl").data["expiry"] == "72h"
    assert m.write("config/crl", expiry="106000d").status == 200     # 290 years: Go accepts it
    assert m.read("crl/rotate").status == 200
    m.ok("write", "roles/web", allow_any_name=True, ttl="1h")
    serial = m.ok("write", "issue/web", common_name="a.example.com")["serial_number"]
    assert m.write("revoke", serial_number=serial).status == 200


def test_role_ttl_of_400_digits_is_refused_and_the_largest_go_ttl_reads_back():
    m = Mount()
    assert m.write("roles/web", ttl="1" * 400).status == 400
    assert m.read("roles/web").status == 404
    m.ok("write", "roles/web", ttl=str(GO_DURATION_MAX_SECONDS), max_ttl=str(GO_DURATION_MAX_SECONDS))
    assert m.ok("read", "roles/web")["ttl"] == GO_DURATION_MAX_SECONDS


# -- no submitted value in an error ---------------------------------------------------------------------------------

SECRET = "-----BEGIN PRIVATE KEY-----MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC7SECRETSECRET"


@pytest.mark.parametrize("ftype", list(FieldType), ids=lambda t: t.value)
def test_type_errors_never_echo_the_value(ftype):
    for shape in ([SECRET, {"k": SECRET}], {"k": [SECRET]}, SECRET, [[SECRET]], {SECRET: 1}):
        try:
            convert(ftype, shape, "pem_bundle")
        except FieldError as exc:
            assert "SECRET" not in str(exc), (ftype, str(exc))


def test_keys_import_with_a_list_bundle_does_not_echo_the_key():
    m = Mount()
    reply = m.write("keys/import", pem_bundle=[SECRET, SECRET])
    assert reply.status == 400
    assert "SECRET" not in json.dumps(reply.data)


def test_external_ca_import_with_a_bad_account_key_does_not_echo_it():
    import asyncio

    from engine.storage import InMemoryStorage
    from plugin.framework import Request

    backend = build_external_ca_backend()
    path = "config/acme-account/a1/import"
    assert backend.route(path) is not None
    for body in ({"account_key": [SECRET], "directory_url": "https://ca.invalid/dir"},
                 {"account_key": {"pem": SECRET}, "directory_url": "https://ca.invalid/dir"},
                 {"account_key": SECRET, "directory_url": "https://ca.invalid/dir"}):
        req = Request(operation=Operation.UPDATE, path=path, storage=InMemoryStorage(), data=body)
        out = asyncio.run(backend.handle(req))
        text = json.dumps(out.response.data if out.response else {"error": out.error.message})
        assert "SECRET" not in text, text


def test_a_crl_expiry_stored_before_the_range_check_does_not_break_revocation():
    import asyncio

    from engine.crl import CONFIG_KEY
    from engine.storage import put_json

    m = Mount()
    m.root()
    m.ok("write", "roles/web", allow_any_name=True, ttl="1h")
    asyncio.run(put_json(m.storage, CONFIG_KEY, {"expiry": "3000000d"}))
    serial = m.ok("write", "issue/web", common_name="a.example.com")["serial_number"]
    assert m.write("revoke", serial_number=serial).status == 200
    assert m.read("crl/rotate").status == 200


SECRET_FIELDS = {"pem_bundle", "private_key", "account_key", "eab_key", "pin"}
MARK = "SeCrEtMaRk"
SECRET_SHAPES = [
    f"-----BEGIN PRIVATE KEY-----\nMIIB{MARK}AAAA\n-----END PRIVATE KEY-----\n",
    f"-----BEGIN EC PRIVATE KEY-----\n{MARK}\n-----END EC PRIVATE KEY-----",
    f"{MARK}", f"not base64 {MARK} !!", [f"{MARK}-a", f"{MARK}-b"], {"pem": MARK}, [[MARK]],
]


def _secret_paths():
    for label, backend in (("pki", build_pki_backend), ("external-ca", build_external_ca_backend)):
        for path in backend().paths:
            for name in SECRET_FIELDS & set(path.fields):
                yield pytest.param(label, path, name, id=f"{label}:{path.pattern}:{name}")


def _concrete(pattern: str) -> str:
    import re

    text = re.sub(r"\(\?P<\w+>[^()]*(\([^()]*(\([^()]*\))?[^()]*\))?[^()]*\)\??", "n1", pattern)
    return re.sub(r"[()?^$]|\|\w+", "", text).replace("n1", "n1")


@pytest.mark.parametrize("label,path,name", list(_secret_paths()))
def test_no_error_body_contains_a_submitted_secret(label, path, name):
    import asyncio

    from engine.storage import InMemoryStorage
    from plugin.framework import Request, StaticSystemView

    backend = build_pki_backend() if label == "pki" else build_external_ca_backend()
    concrete = _concrete(path.pattern).rstrip("/")
    assert backend.route(concrete) is not None, concrete
    for shape in SECRET_SHAPES:
        body = {name: shape, "directory_url": "https://ca.invalid/dir", "library": "none"}
        req = Request(operation=Operation.UPDATE, path=concrete, storage=InMemoryStorage(),
                      system=StaticSystemView(), data=body)
        out = asyncio.run(backend.handle(req))
        reply = out.response.data if out.response is not None else {"error": out.error.message if out.error else ""}
        assert MARK not in json.dumps(reply, default=str), (concrete, shape, reply)
