"""certs/ (list), cert/:serial (+ /raw, /raw/pem), cert-metadata/ (list) and cert-metadata/:serial.

`cert/ca`, `cert/ca_chain` and the CRL forms are routed earlier by the CA-reading module.
"""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine import certstore, metadata
from plugin.framework import paginate
from engine.context import PkiContext
from plugin.framework import Field, FieldData, FieldType, Operation, Path, Request, Response, list_response, \
    raw_response

SERIAL_RE = r"(?P<serial>[0-9A-Fa-f-:]+)"
PEM_CHAIN = "application/pem-certificate-chain"
DER_CERT = "application/pkix-cert"


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode().rstrip("\n")


def paths(ctx: PkiContext) -> list[Path]:
    async def list_certs(req: Request, d: FieldData) -> Response | None:
        keys = paginate(await certstore.list_serials(req.storage), d.get("after"), d.get("limit"))
        return list_response(keys) if keys else None

    async def read_cert(req: Request, d: FieldData) -> Response | None:
        serial = d.get("serial")
        der = await certstore.load_certificate_der(req.storage, serial)
        if der is None:
            return None
        data: dict[str, object] = {"certificate": _pem(der), "revocation_time": 0, "revocation_time_rfc3339": ""}
        info = await certstore.revocation_info(req.storage, serial)
        if info is not None:
            data["revocation_time"] = info.revocation_time
            data["revocation_time_rfc3339"] = info.revocation_time_rfc3339
            if info.issuer_id:
                data["issuer_id"] = info.issuer_id
        return Response(data=data)

    async def read_raw(req: Request, d: FieldData) -> Response | None:
        serial = d.get("serial")
        if serial == "ca":
            # `ca` matches the serial pattern; it means the default issuer's certificate.
            issuer = await ctx.issuers(req.storage).find("default")
            der = issuer.certificate.public_bytes(Encoding.DER) if issuer is not None else None
        else:
            der = await certstore.load_certificate_der(req.storage, serial)
        as_pem = req.path.endswith("/pem")
        content_type = PEM_CHAIN if as_pem else DER_CERT
        if der is None:
            # The built-in answers an unknown serial on the raw paths with 204 and an empty body.
            return raw_response(b"", content_type, 204)
        return raw_response(_pem(der).encode() if as_pem else der, content_type, 200)

    async def list_metadata(req: Request, d: FieldData) -> Response | None:
        keys = paginate(await metadata.list_serials(req.storage), d.get("after"), d.get("limit"))
        return list_response(keys) if keys else None

    async def read_metadata(req: Request, d: FieldData) -> Response | None:
        record = await metadata.load(req.storage, d.get("serial"))
        return Response(data=record.to_response()) if record is not None else None

    serial_field = {"serial": Field(FieldType.STRING, description="Certificate serial, colon or hyphen separated.")}
    paging = {"after": Field(FieldType.STRING, query=True), "limit": Field(FieldType.INT, query=True)}
    return [
        Path("certs/?$", paging, {Operation.LIST: list_certs}, synopsis="List the stored certificates' serials."),
        Path(f"cert/{SERIAL_RE}/raw(/pem)?", serial_field, {Operation.READ: read_raw},
             synopsis="Fetch a stored certificate as DER or PEM."),
        Path(f"cert/{SERIAL_RE}", serial_field, {Operation.READ: read_cert},
             synopsis="Fetch a stored certificate and its revocation state."),
        Path("cert-metadata/?$", paging, {Operation.LIST: list_metadata},
             synopsis="List the serials that have certificate metadata."),
        Path(f"cert-metadata/{SERIAL_RE}", serial_field, {Operation.READ: read_metadata},
             synopsis="Read the metadata stored with a certificate."),
    ]
