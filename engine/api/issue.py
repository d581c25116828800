"""issue/:role, sign/:role, sign-verbatim(/:role) and their issuer/:ref/... forms."""
from __future__ import annotations

from engine import issuance
from engine.api.roles import role_cache
from engine.context import PkiContext
from engine.roles import DEFAULT_KEY_USAGE, Role
from engine.api.openapi_hints import REQUEST_LABELS, label, pki
from plugin.framework import (
    Field, FieldData, FieldType, Operation, Path, Request, Response, SecretType, UnsupportedOperationError,
    UserError, name_regex, with_display,
)

S, B, L, D, I = FieldType.STRING, FieldType.BOOL, FieldType.COMMA_STRING_SLICE, FieldType.DURATION, FieldType.INT


def _common_fields() -> dict[str, Field]:
    return with_display({
        "role": Field(S, description="The role to issue against."),
        "issuer_ref": Field(S, description="Issuer to sign with (only the path value counts).", default="default"),
        "common_name": Field(S, description="The requested common name."),
        "alt_names": Field(S, description="Comma-separated DNS names and email addresses for the SAN."),
        "ip_sans": Field(L, description="IP subject alternative names."),
        "uri_sans": Field(L, description="URI subject alternative names."),
        "other_sans": Field(L, description="Other SANs as <oid>;UTF8:<value>."),
        "serial_number": Field(S, description="Subject serialNumber attribute (not the certificate serial)."),
        "user_ids": Field(L, description="Subject UID values."),
        "ttl": Field(D, description="Requested lifetime."),
        "not_before": Field(S, description="Requested NotBefore (RFC 3339)."),
        "not_after": Field(S, description="Requested NotAfter (RFC 3339); excludes ttl."),
        "format": Field(S, description="pem, der or pem_bundle.", default="pem", allowed_values=("pem", "der",
                                                                                              "pem_bundle")),
        "private_key_format": Field(S, description="der (native encoding) or pkcs8.", default="der",
                                    allowed_values=("", "der", "pem", "pkcs8")),
        "exclude_cn_from_sans": Field(B, description="Keep the common name out of the SANs.", default=False),
        "remove_roots_from_chain": Field(B, description="Drop self-signed certificates from ca_chain.", default=False),
        "cert_metadata": Field(S, description="Base64 metadata stored with the certificate's serial."),
    }, **REQUEST_LABELS)


def issue_fields() -> dict[str, Field]:
    fields = _common_fields()
    fields["key_type"] = Field(S, description="Key type when the role's key_type is any.", default="",
                               allowed_values=("", "rsa", "ec", "ed25519", "mldsa"), display=label(value=""))
    fields["key_bits"] = Field(I, description="Key size when the role's key_type is any.", default=0,
                               display=label(value=0))
    return fields


def sign_fields() -> dict[str, Field]:
    fields = _common_fields()
    fields["csr"] = Field(S, description="PEM certificate signing request.", default="")
    return fields


def verbatim_fields() -> dict[str, Field]:
    fields = sign_fields()
    fields.update({
        "key_usage": Field(L, description="Key usages when the CSR has none.", default=DEFAULT_KEY_USAGE),
        "ext_key_usage": Field(L, description="Extended key usages when the CSR has none.", default=[]),
        "ext_key_usage_oids": Field(L, description="Extra extended key usage OIDs."),
        "signature_bits": Field(I, description="Hash size for RSA issuers.", default=0, display=label(value=0)),
        "use_pss": Field(B, description="RSASSA-PSS with RSA issuers.", default=False),
        "basic_constraints_valid_for_non_ca": Field(B, description="Add BasicConstraints CA:FALSE.", default=False),
    })
    return fields


async def _lease_revoke(req: Request) -> Response | None:
    # The revocation module replaces this SecretType with one that revokes the certificate.
    raise UnsupportedOperationError("revoking certificates through their lease is not available yet")


LEASE_SECRET = SecretType(issuance.SECRET_TYPE, _lease_revoke)


def paths(ctx: PkiContext) -> list[Path]:
    cache = role_cache(ctx)
    ctx.extra.setdefault("secret_types", {}).setdefault(issuance.SECRET_TYPE, LEASE_SECRET)

    async def load_role(req: Request, name: str) -> Role:
        role = await cache.get(req.storage, name)
        if role is None:
            raise UserError(f"unknown role: {name}")
        return role

    def handler(mode: issuance.Mode, issuer_in_path: bool):
        async def handle(req: Request, d: FieldData) -> Response | None:
            name = req.match.get("role", "")
            if mode == "verbatim":
                named = await load_role(req, name) if name else None
                role = issuance.verbatim_role(d, named)
            else:
                role = await load_role(req, name)
            ref = req.match.get("issuer_ref", "") if issuer_in_path else role.issuer_ref
            return await issuance.run(ctx, req, d, role, ref, mode)
        return handle

    role_re = name_regex("role")
    issuer_re = name_regex("issuer_ref")
    out: list[Path] = []
    for prefix, in_path, verb in (("", False, ""), (f"issuer/{issuer_re}/", True, "issuer-")):
        out += [
            Path(f"{prefix}issue/{role_re}", issue_fields(), {Operation.UPDATE: handler("issue", in_path)},
                 display=pki(verb + "issue", "with-role"),
                 synopsis="Request a certificate and private key using the given role."),
            Path(f"{prefix}sign/{role_re}", sign_fields(), {Operation.UPDATE: handler("sign", in_path)},
                 display=pki(verb + "sign", "with-role"),
                 synopsis="Sign a CSR under the given role."),
            Path(f"{prefix}sign-verbatim(/{role_re})?", verbatim_fields(),
                 {Operation.UPDATE: handler("verbatim", in_path)}, display=pki(verb + "sign", "verbatim|verbatim-with-role"),
                 synopsis="Sign a CSR as it is, without role name checks."),
        ]
    return out
