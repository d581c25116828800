"""pb.Request/pb.Response <-> framework Request/Response."""
from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from engine.storage import Storage
from plugin.framework import Operation, Request, Response, Secret, SystemView, VaultError
from plugin.framework.errors import ErrType
from plugin.framework.fields import JsonBigInt, JsonFloat
from proto import backend_pb2

_OPS = {op.value: op for op in Operation}


def _json_default(value: Any) -> Any:
    # Go encodes []byte as base64, which is also what the server expects for http_raw_body.
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _json_int(text: str) -> int | JsonBigInt:
    # Python refuses to make an int of more than 4300 digits; Go's framework sees such a number as its text.
    return int(text) if len(text) <= 4000 else JsonBigInt(text)


def operation(name: str) -> Operation | None:
    return _OPS.get(name)


def request_from_pb(pb: backend_pb2.Request, storage: Storage, system: SystemView) -> Request | None:
    op = operation(pb.operation)
    if op is None:
        return None
    data: dict[str, Any] = {}
    if pb.data and pb.data != "null":
        parsed = json.loads(pb.data, parse_float=JsonFloat, parse_int=_json_int)
        if isinstance(parsed, dict):
            data = parsed
    secret = None
    if pb.HasField("secret"):
        internal = json.loads(pb.secret.internal_data) if pb.secret.internal_data else {}
        secret = Secret(internal_data=internal or {}, lease_id=pb.secret.lease_id,
                        ttl=pb.secret.lease_options.TTL // 1_000_000_000,
                        renewable=pb.secret.lease_options.renewable)
    return Request(
        operation=op,
        path=pb.path,
        storage=storage,
        system=system,
        data=data,
        mount_point=pb.mount_point,
        mount_type=pb.mount_type,
        id=pb.id,
        entity_id=pb.entity_id,
        client_token_present=bool(pb.client_token),
        unauthenticated=pb.unauthenticated,
        headers={k: list(v.header) for k, v in pb.headers.items()},
        remote_addr=pb.connection.remote_addr if pb.HasField("connection") else "",
        secret=secret,
    )


def _secret_to_pb(secret: Secret) -> backend_pb2.Secret:
    out = backend_pb2.Secret(internal_data=encode_json(secret.internal_data), lease_id=secret.lease_id)
    out.lease_options.TTL = secret.ttl * 1_000_000_000
    out.lease_options.MaxTTL = secret.max_ttl * 1_000_000_000
    out.lease_options.renewable = secret.renewable
    # The server refuses a secret without an issue time.
    out.lease_options.issue_time.FromDatetime(secret.issue_time or dt.datetime.now(dt.timezone.utc))
    return out


def response_to_pb(resp: Response) -> backend_pb2.Response:
    out = backend_pb2.Response(redirect=resp.redirect, warnings=list(resp.warnings))
    # Go marshals a nil map as "null"; an empty string would fail the server's JSON decode.
    out.data = encode_json(resp.data) if resp.data is not None else "null"
    if resp.secret is not None:
        out.secret.CopyFrom(_secret_to_pb(resp.secret))
    for name, values in resp.headers.items():
        out.headers[name].header.extend(values)
    return out


def error_to_pb(err: VaultError) -> backend_pb2.ProtoError:
    code = err.status if err.err_type is ErrType.CODED else 0
    return backend_pb2.ProtoError(err_type=int(err.err_type), err_msg=err.message, err_code=code)
