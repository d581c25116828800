"""issuer/:ref/resign-crls and issuer/:ref/sign-revocation-list: CRLs signed by an issuer on request.

resign-crls merges CRLs the issuer signed (typically one per cluster) into one; sign-revocation-list signs a CRL
from a list of entries. Neither touches storage: the mount's own CRLs stay as they are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine import crl_sign
from engine.api.openapi_hints import pki
from plugin.framework import Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, \
    name_regex

if TYPE_CHECKING:
    from engine.context import PkiContext


def _common_fields() -> dict[str, Field]:
    return {
        "issuer_ref": Field(FieldType.STRING, "Issuer reference: `default`, an issuer ID or an issuer name.",
                            default="default"),
        "crl_number": Field(FieldType.INT, "Number written into the CRL Number extension."),
        "delta_crl_base_number": Field(FieldType.INT, "Base CRL number for a Delta CRL Indicator extension; -1 "
                                                      "(the default) writes no indicator.", default=-1),
        "next_update": Field(FieldType.STRING, "How long the CRL is valid (NextUpdate - ThisUpdate); 72 hours by "
                                               "default.", default="72h"),
        "format": Field(FieldType.STRING, "Output format: `pem`, or `der` (returned base64-encoded).",
                        default="pem"),
    }


RESIGN_FIELDS = {
    **_common_fields(),
    "crls": Field(FieldType.STRING_SLICE, "PEM CRLs signed by this issuer whose entries are merged."),
}
SIGN_FIELDS = {
    **_common_fields(),
    "revoked_certs": Field(FieldType.SLICE, "Entries: maps with serial_number (hex), revocation_time (RFC 3339 or "
                                            "Unix seconds) and optional extensions (a list of maps with id, "
                                            "critical and base64 value)."),
    "extensions": Field(FieldType.SLICE, "CRL extensions: maps with id (dotted OID), critical (bool) and value "
                                         "(base64 DER)."),
}


def _request(d: FieldData, *, format_first: bool) -> crl_sign.CrlRequest:
    return crl_sign.crl_request(d.get("crl_number"), d.get("delta_crl_base_number"), d.get("next_update"),
                                d.get("format"), format_first=format_first)


def paths(ctx: "PkiContext") -> list[Path]:
    async def resign(req: Request, d: FieldData) -> Response | None:
        params = _request(d, format_first=True)
        crls = crl_sign.decode_pem_crls(d.get("crls"))
        issuers = ctx.issuers(req.storage)
        issuer = await crl_sign.crl_signer(issuers, d.get("issuer_ref"))
        crl_sign.check_signed_by(issuer, crls)
        entries, warnings = crl_sign.merged_entries(crls)
        crl = await crl_sign.sign(issuers, issuer, params, entries, [])
        return Response(data={"crl": crl}, warnings=warnings)

    async def sign_list(req: Request, d: FieldData) -> Response | None:
        params = _request(d, format_first=False)
        entries = crl_sign.parse_revoked_certs(d.get("revoked_certs"))
        try:
            extensions = crl_sign.parse_extensions(d.get("extensions"))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        issuers = ctx.issuers(req.storage)
        issuer = await crl_sign.crl_signer(issuers, d.get("issuer_ref"))
        crl = await crl_sign.sign(issuers, issuer, params, entries, extensions)
        return Response(data={"crl": crl})

    ref = name_regex("issuer_ref")
    return [
        Path(f"issuer/{ref}/resign-crls", RESIGN_FIELDS, {Operation.UPDATE: resign}, display=pki("issuer", "resign-crls"),
             synopsis="Merge CRLs this issuer signed into one CRL and sign it.",
             description="The entries of every given CRL (each must verify under this issuer's key) are merged, "
                         "each serial at its oldest revocation time and without entry extensions, and signed "
                         "with the given CRL number, lifetime and optional delta indicator. Nothing is stored."),
        Path(f"issuer/{ref}/sign-revocation-list", SIGN_FIELDS, {Operation.UPDATE: sign_list},
             display=pki("issuer", "sign-revocation-list"),
             synopsis="Sign a CRL built from the given entries and extensions.",
             description="Builds a CRL from revoked_certs and extensions with the given CRL number, lifetime and "
                         "optional delta indicator, signed by this issuer. Nothing is stored."),
    ]
