"""`ocsp` (POST, DER body) and `ocsp/<base64>` (GET): the unauthenticated OCSP responder."""
from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from engine import crl as crlmod
from engine import ocsp
from engine.api.openapi_hints import pki
from plugin.framework import Field, FieldData, FieldType, Operation, Path, Request, Response, raw_response

if TYPE_CHECKING:
    from engine.context import PkiContext

log = logging.getLogger("python-pki.ocsp")
CONTENT_TYPE = "application/ocsp-response"
MAX_GET_LENGTH = 2048   # what the built-in engine accepts on the GET form


def _cache(ctx: "PkiContext") -> ocsp.ResponseCache:
    rt = crlmod.runtime(ctx)
    if rt.ocsp_cache is None:
        rt.ocsp_cache = ocsp.ResponseCache()
    return rt.ocsp_cache


# A real OCSP request is a few hundred bytes; this keeps a request body from being decoded and parsed unbounded.
MAX_OCSP_REQUEST_BYTES = 64 * 1024


def body_bytes(data: dict[str, Any]) -> bytes:
    """The DER request from a POST. The server hands a plugin no raw body for `application/ocsp-request`, so the
    only bodies that can arrive are ones the server decoded as JSON/form fields; accept a base64 `request` field
    (or the single value of a one-key body) so clients that can set the content type to JSON still work."""
    raw = data.get("http_raw_body") or data.get("request")
    if raw is None and len(data) == 1:
        raw = next(iter(data.values()))
    if isinstance(raw, (str, bytes, bytearray)) and len(raw) > MAX_OCSP_REQUEST_BYTES:
        return b""    # answered as malformedRequest, like any request we cannot parse
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    if isinstance(raw, str):
        try:
            return base64.b64decode(raw, validate=False)
        except (binascii.Error, ValueError):
            return b""
    return b""


def decode_get(text: str) -> bytes:
    text = unquote(text).strip()
    if len(text) > MAX_GET_LENGTH:
        return b""
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def paths(ctx: "PkiContext") -> list[Path]:
    async def answer(req: Request, der: bytes) -> Response:
        cfg = await crlmod.runtime(ctx).crl_config(req.storage)
        settings = ocsp.OcspSettings(disabled=cfg.ocsp_disable, expiry_seconds=cfg.seconds("ocsp_expiry"))
        try:
            body, status = await ocsp.respond(req.storage, ctx.issuers(req.storage), der, settings, _cache(ctx))
        except Exception:  # noqa: BLE001 - OCSP clients expect an OCSP internalError, not a JSON 500
            log.exception("OCSP response failed")
            body, status = ocsp.INTERNAL_ERROR, 500
        return raw_response(body, CONTENT_TYPE, status)

    async def post(req: Request, d: FieldData) -> Response | None:
        return await answer(req, body_bytes(dict(req.data or {})))

    async def get(req: Request, d: FieldData) -> Response | None:
        return await answer(req, decode_get(req.match.get("req", "")))

    return [
        Path("ocsp", {}, {Operation.UPDATE: post}, takes_raw_body=True, display=pki("query", "ocsp"),
             synopsis="Query a certificate's revocation status through OCSP (DER request body)."),
        Path("ocsp/(?P<req>.+)", {"req": Field(FieldType.STRING, "base-64 encoded OCSP request")},
             {Operation.READ: get}, display=pki("query", "ocsp-with-get-req"), synopsis="Query a certificate's revocation status through OCSP (GET form)."),
    ]
