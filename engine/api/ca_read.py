"""Reading the default issuer's CA material: `ca`, `ca/pem`, `ca_chain`, `cert/ca`, `cert/ca_chain`.

These are unauthenticated and consumed by tools that treat an empty 204 as "no CA configured yet", so the raw
forms never error. `cert/ca/raw[/pem]` are served by the certificate store module (its serial pattern).
"""
from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from engine.context import PkiContext
from engine.issuers import IssuerRecord
from engine.x509util import strip_pem
from engine.api.openapi_hints import pki
from plugin.framework import FieldData, Operation, Path, Request, Response, UserError, raw_response

DER_CERT = "application/pkix-cert"
PEM_CHAIN = "application/pem-certificate-chain"


async def default_issuer(ctx: PkiContext, req: Request) -> IssuerRecord | None:
    return await ctx.issuers(req.storage).find("default")


async def chain_text(ctx: PkiContext, req: Request, issuer: IssuerRecord) -> str:
    """The issuer's chain as PEM blocks joined by newlines, no trailing newline."""
    pems = await ctx.issuers(req.storage).chain_pems(issuer)
    return "\n".join(strip_pem(p) for p in pems)


async def read_ca_cert_response(ctx: PkiContext, req: Request) -> Response:
    """JSON `cert/ca`: the default issuer's certificate, as `cert/:serial` renders a stored certificate."""
    issuer = await default_issuer(ctx, req)
    if issuer is None:
        raise UserError("no default issuer currently configured")
    return Response(data={"certificate": strip_pem(issuer.certificate_pem), "revocation_time": 0,
                          "revocation_time_rfc3339": ""})


def paths(ctx: PkiContext) -> list[Path]:

    async def read_ca(req: Request, d: FieldData) -> Response:
        issuer = await default_issuer(ctx, req)
        pem = req.path.endswith("/pem")
        content_type = PEM_CHAIN if pem else DER_CERT
        if issuer is None:
            return raw_response(b"", content_type, 204)
        body = (strip_pem(issuer.certificate_pem).encode() if pem
                else issuer.certificate.public_bytes(Encoding.DER))
        return raw_response(body, content_type, 200)

    async def read_chain(req: Request, d: FieldData) -> Response:
        issuer = await default_issuer(ctx, req)
        text = await chain_text(ctx, req, issuer) if issuer is not None else ""
        if req.path == "ca_chain":
            # The built-in labels this PEM body with the DER certificate content type; clients rely on it.
            return raw_response(text.encode(), DER_CERT, 200 if text else 204)
        if issuer is None:
            raise UserError("no default issuer currently configured")
        return Response(data={"certificate": text, "ca_chain": text, "revocation_time": 0,
                              "revocation_time_rfc3339": ""})

    async def read_cert_ca(req: Request, d: FieldData) -> Response:
        return await read_ca_cert_response(ctx, req)

    return [
        Path("ca(/pem)?", {}, {Operation.READ: read_ca}, display=pki("read", "ca-der|ca-pem"), synopsis="The default issuer's certificate (DER or PEM)."),
        Path("(cert/)?ca_chain", {}, {Operation.READ: read_chain}, display=pki("read", "ca-chain-pem|cert-ca-chain"), synopsis="The default issuer's CA chain."),
        Path("cert/ca", {}, {Operation.READ: read_cert_ca}, display=pki("read", "cert-ca"), synopsis="The default issuer's certificate (JSON)."),
    ]
