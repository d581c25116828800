"""certs/ (list), certs/detailed (list with details), cert/:serial (+ /raw, /raw/pem), cert-metadata/ (list) and cert-metadata/:serial.

`cert/ca`, `cert/ca_chain` and the CRL forms are routed earlier by the CA-reading module.
"""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine import certstore, go_x509, metadata
from engine.api.openapi_hints import pki
from engine.revocation_index import gather_limited
from engine.x509util import rfc3339_nano
from plugin.framework import paginate
from engine.context import PkiContext
from plugin.framework import Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, \
    list_response, raw_response

SERIAL_RE = r"(?P<serial>[0-9A-Fa-f-:]+)"
PEM_CHAIN = "application/pem-certificate-chain"
DETAILED_DNS_NAMES = 5      # the built-in lists at most this many DNS names per certificate
DETAILED_BATCH = 256        # certificates read and parsed per step, so a large store never holds the loop long
DER_CERT = "application/pkix-cert"


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode().rstrip("\n")


def certificate_details(der: bytes) -> dict[str, object]:
    """One certificate's `certs/detailed` entry, with the built-in's renderings (Go's names and key sizes)."""
    cert = x509.load_der_x509_certificate(der)
    key_type, key_bits = go_x509.key_type_and_bits(cert.public_key())
    return {
        "common_name": go_x509.common_name(cert.subject),
        "issuer": go_x509.name_string(cert.issuer),
        "key_type": key_type,
        "key_bits": key_bits,
        "not_after": rfc3339_nano(cert.not_valid_after_utc),
        "not_before": rfc3339_nano(cert.not_valid_before_utc),
        "dns_names": go_x509.dns_names(cert)[:DETAILED_DNS_NAMES] or None,
    }


async def list_certs_detailed(req: Request, d: FieldData) -> Response | None:
    serials = paginate(await certstore.list_serials(req.storage), d.get("after"), d.get("limit"))
    key_info: dict[str, object] = {}
    for start in range(0, len(serials), DETAILED_BATCH):
        batch = serials[start:start + DETAILED_BATCH]
        ders = await gather_limited([certstore.load_certificate_der(req.storage, s) for s in batch])
        for serial, der in zip(batch, ders):
            if der is None:
                raise UserError(f"failed to retrieve entry for {certstore.storage_serial(serial)}")
            try:
                key_info[serial] = certificate_details(der)
            except ValueError as exc:
                raise UserError(f"failed to parse certificate for {serial}: {exc}") from None
    return list_response(serials, key_info) if serials else None


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
    detailed_paging = {
        "after": Field(FieldType.STRING, "List only serials sorting after this one (it need not exist).", query=True),
        "limit": Field(FieldType.INT, "Return at most this many certificates; zero or less returns all.", query=True),
    }
    return [
        Path("certs/?$", paging, {Operation.LIST: list_certs}, display=pki("list", "certs"),
             synopsis="List the stored certificates' serials."),
        Path("certs/detailed/?$", detailed_paging, {Operation.LIST: list_certs_detailed},
             display=pki("list", "certs"),
             synopsis="List the stored certificates with their subject, issuer, key and validity.",
             description="Like certs/, with key_info holding each certificate's common_name, issuer, key_type, "
                         "key_bits, not_before, not_after and its first five DNS names."),
        Path(f"cert/{SERIAL_RE}/raw(/pem)?", serial_field, {Operation.READ: read_raw},
             display=pki("read", "cert-raw-der|cert-raw-pem"),
             synopsis="Fetch a stored certificate as DER or PEM."),
        Path(f"cert/{SERIAL_RE}", serial_field, {Operation.READ: read_cert}, display=pki("read", "cert"),
             synopsis="Fetch a stored certificate and its revocation state."),
        Path("cert-metadata/?$", paging, {Operation.LIST: list_metadata}, display=pki("list", "cert-metadata"),
             synopsis="List the serials that have certificate metadata."),
        Path(f"cert-metadata/{SERIAL_RE}", serial_field, {Operation.READ: read_metadata},
             display=pki("read", "cert-metadata"),
             synopsis="Read the metadata stored with a certificate."),
    ]
