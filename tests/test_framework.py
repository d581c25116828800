"""The path framework: routing, coercion, warnings, error mapping, help and OpenAPI."""
from __future__ import annotations

import asyncio

import pytest

from engine.storage import InMemoryStorage
from plugin.framework import (
    Backend, DisplayAttrs, Field, FieldType, Operation, Path, Request, Response, SpecialPaths, UnsupportedOperationError,
    UnsupportedPathError, UserError, name_regex,
)
from plugin.framework.fields import FieldError, convert, parse_duration
from plugin.framework.openapi import expand_pattern, operation_id


def run(coro):
    return asyncio.run(coro)


async def _echo(req, d):
    return Response(data={"name": d["name"], "ttl": d["ttl"], "list": d["list"], "flag": d["flag"]})


async def _fail(req, d):
    raise UserError("role is bad")


async def _boom(req, d):
    raise RuntimeError("secret detail")


def make_backend() -> Backend:
    fields = {
        "name": Field(FieldType.STRING),
        "ttl": Field(FieldType.DURATION, default="1h"),
        "list": Field(FieldType.COMMA_STRING_SLICE),
        "flag": Field(FieldType.BOOL, default=True),
    }
    return Backend([
        Path("roles/" + name_regex("name"), fields, {Operation.UPDATE: _echo, Operation.READ: _echo}),
        Path("fail", {}, {Operation.UPDATE: _fail}),
        Path("boom", {}, {Operation.READ: _boom}),
        Path("issue/(?P<kind>internal|exported)", {"kind": Field()}, {Operation.UPDATE: _echo}),
    ], help="test backend", special_paths=SpecialPaths(unauthenticated=["roles/+"]))


def req(op, path, data=None):
    return Request(operation=op, path=path, storage=InMemoryStorage(), data=data or {})


@pytest.mark.parametrize("raw,secs", [("72h", 259200), ("30m", 1800), ("90", 90), (90, 90), ("1h30m", 5400),
                                      ("2d", 172800), ("", 0)])
def test_durations(raw, secs):
    assert parse_duration(raw) == secs


@pytest.mark.parametrize("raw", ["abc", "5x", "-1h", True])
def test_bad_durations(raw):
    with pytest.raises(FieldError):
        parse_duration(raw)


def test_coercions_match_vault_shapes():
    assert convert(FieldType.COMMA_STRING_SLICE, "a, b,,c", "x") == ["a", "b", "c"]
    assert convert(FieldType.COMMA_STRING_SLICE, ["a,b", "c"], "x") == ["a", "b", "c"]
    assert convert(FieldType.BOOL, "true", "x") is True
    assert convert(FieldType.INT, "2048", "x") == 2048
    assert convert(FieldType.KV_PAIRS, ["a=1", "b=2"], "x") == {"a": "1", "b": "2"}
    assert convert(FieldType.STRING_SLICE, '["a","b"]', "x") == ["a", "b"]
    with pytest.raises(FieldError, match='for field "x"'):
        convert(FieldType.INT, "x", "x")


def test_route_captures_override_body_and_defaults_apply():
    out = run(make_backend().handle(req(Operation.UPDATE, "roles/web", {"name": "other", "list": "a,b"})))
    assert out.response.data == {"name": "web", "ttl": 3600, "list": ["a", "b"], "flag": True}


def test_unknown_fields_warned_sorted():
    out = run(make_backend().handle(req(Operation.UPDATE, "roles/web", {"zz": 1, "aa": 2})))
    assert out.response.warnings == ["Endpoint ignored these unrecognized parameters: [aa zz]"]


def test_body_value_replaced_by_path_capture_is_warned():
    out = run(make_backend().handle(req(Operation.UPDATE, "roles/web", {"name": "other", "zz": 1})))
    assert out.response.data["name"] == "web"
    assert out.response.warnings == [
        "Endpoint ignored these unrecognized parameters: [zz]",
        "Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [name]",
    ]


def test_no_response_gets_no_warnings():
    async def nothing(req, d):
        return None

    backend = Backend([Path("quiet", {}, {Operation.UPDATE: nothing})], help="t")
    out = run(backend.handle(req(Operation.UPDATE, "quiet", {"zz": 1})))
    assert out.response is None and out.error is None


def test_field_validation_is_a_user_error():
    out = run(make_backend().handle(req(Operation.UPDATE, "roles/web", {"ttl": "abc"})))
    error = out.response.data["error"]
    assert error.startswith('Field validation failed: error converting input for field "ttl"')
    assert "abc" not in error


def test_error_mapping():
    b = make_backend()
    assert run(b.handle(req(Operation.UPDATE, "fail"))).response.data == {"error": "role is bad"}
    assert isinstance(run(b.handle(req(Operation.READ, "nope"))).error, UnsupportedPathError)
    assert isinstance(run(b.handle(req(Operation.DELETE, "roles/x"))).error, UnsupportedOperationError)
    boom = run(b.handle(req(Operation.READ, "boom"))).error
    assert boom.status == 500 and "secret detail" not in boom.message


def test_help_and_openapi():
    b = make_backend()
    out = run(b.handle(req(Operation.HELP, "roles/web")))
    assert "## PARAMETERS" in out.response.data["help"] and "ttl (duration_second)" in out.response.data["help"]
    doc = run(b.handle(req(Operation.HELP, "", {"requestResponsePrefix": "python-pki"}))).response.data["openapi"]
    assert set(doc["paths"]) == {"/roles/{name}", "/fail", "/boom", "/issue/{kind}"}
    assert doc["paths"]["/roles/{name}"]["x-vault-unauthenticated"] is True
    assert doc["paths"]["/roles/{name}"]["post"]["operationId"] == "python-pki-write-roles-name"


def test_expand_pattern():
    # Vault's order: a variant without an optional part precedes the one with it; alternatives in order.
    assert expand_pattern("roles/?$") == ["/roles"]
    assert expand_pattern(r"cert/(?P<serial>[0-9A-Fa-f-:]+)(/raw(/pem)?)?") == [
        "/cert/{serial}", "/cert/{serial}/raw", "/cert/{serial}/raw/pem"]
    assert expand_pattern(r"issuer/(?P<ref>\w+)/crl(/pem|/der|/delta(/pem|/der)?)?") == [
        "/issuer/{ref}/crl", "/issuer/{ref}/crl/pem", "/issuer/{ref}/crl/der", "/issuer/{ref}/crl/delta",
        "/issuer/{ref}/crl/delta/pem", "/issuer/{ref}/crl/delta/der"]
    assert expand_pattern("keys/generate/(internal|exported|kms)") == [
        "/keys/generate/internal", "/keys/generate/exported", "/keys/generate/kms"]
    assert expand_pattern("(cert/)?ca_chain") == ["/ca_chain", "/cert/ca_chain"]
    assert expand_pattern("ocsp/(?P<req>.+)") == ["/ocsp/{req}"]
    assert expand_pattern("anything/.*") is None


def test_operation_ids_follow_the_display_hints():
    hint = DisplayAttrs(operation_prefix="pki", operation_verb="generate", operation_suffix="internal-key|kms-key")
    assert operation_id("keys/generate/internal", 0, hint, Operation.UPDATE, None, "x") == "pki-generate-internal-key"
    assert operation_id("keys/generate/kms", 1, hint, Operation.UPDATE, None, "x") == "pki-generate-kms-key"
    # Past the listed suffixes the path's words are used.
    assert operation_id("keys/generate/other", 2, hint, Operation.UPDATE, None, "x") == (
        "pki-generate-keys-generate-other")
    role = DisplayAttrs(operation_prefix="pki", operation_suffix="role")
    assert operation_id("roles/{name}", 0, role, Operation.UPDATE, None, "x") == "pki-write-role"
    assert operation_id("roles/{name}", 0, role, Operation.READ, DisplayAttrs(operation_verb="fetch"), "x") == (
        "pki-fetch-role")
    assert operation_id("roles/{name}", 0, None, Operation.DELETE, None, "my-mount") == "my-mount-delete-roles-name"


def test_openapi_shape_the_ui_and_generators_read():
    fields = {"name": Field(FieldType.STRING), "flag": Field(FieldType.BOOL, default=True,
                                                             display=DisplayAttrs(name="Flag", value=True))}
    b = Backend([
        Path("roles/?$", {}, {Operation.LIST: _echo}),
        Path("roles/" + name_regex("name"), fields, {Operation.UPDATE: _echo, Operation.PATCH: _echo},
             display=DisplayAttrs(operation_prefix="pki", operation_suffix="role")),
        Path("tidy", {}, {Operation.UPDATE: _echo}, responses={Operation.UPDATE: {202: "Accepted"}}),
    ])
    doc = run(b.handle(req(Operation.HELP, "", {"requestResponsePrefix": "t"}))).response.data["openapi"]
    assert "parameters" not in doc["paths"]["/roles"] and "parameters" not in doc["paths"]["/tidy"]
    role = doc["paths"]["/roles/{name}"]
    for method, op_id in (("post", "pki-write-role"), ("patch", "pki-patch-role")):
        assert role[method]["operationId"] == op_id
        ref = role[method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert body["properties"]["flag"] == {"type": "boolean", "default": True,
                                              "x-vault-displayAttrs": {"name": "Flag", "value": True}}
    assert doc["paths"]["/tidy"]["post"]["responses"] == {"202": {"description": "Accepted"}}
    assert "requestBody" not in doc["paths"]["/tidy"]["post"]
    assert DisplayAttrs(value=0).openapi() == {"value": 0} and DisplayAttrs().openapi() is None
