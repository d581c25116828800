"""Field schemas of the CA paths (generation, signing, import), with the built-in engine's names and defaults."""
from __future__ import annotations

from engine.api.openapi_hints import CA_SUBJECT_LABELS, REQUEST_LABELS, label
from plugin.framework import Field, FieldType, with_display

S, I, B, D, CSV = (FieldType.STRING, FieldType.INT, FieldType.BOOL, FieldType.DURATION,
                   FieldType.COMMA_STRING_SLICE)


def common_ca_fields() -> dict[str, Field]:
    """Subject, SAN, validity and output fields shared by root generation, CSR generation and sign-intermediate."""
    return with_display({
        "common_name": Field(S, "The requested common name."),
        "alt_names": Field(S, "Requested DNS/email subject alternative names, comma separated."),
        "ip_sans": Field(CSV, "Requested IP subject alternative names."),
        "uri_sans": Field(CSV, "Requested URI subject alternative names."),
        "other_sans": Field(CSV, "Requested other SANs, as <oid>;UTF8:<value>."),
        "exclude_cn_from_sans": Field(B, "Do not copy the common name into the subject alternative names.",
                                      default=False),
        "ou": Field(CSV, "OU (OrganizationalUnit) values in the subject."),
        "organization": Field(CSV, "O (Organization) values in the subject."),
        "country": Field(CSV, "C (Country) values in the subject."),
        "locality": Field(CSV, "L (Locality) values in the subject."),
        "province": Field(CSV, "ST (Province) values in the subject."),
        "street_address": Field(CSV, "Street address values in the subject."),
        "postal_code": Field(CSV, "Postal code values in the subject."),
        "serial_number": Field(S, "The subject's serialNumber attribute (not the certificate serial)."),
        "ttl": Field(D, "Requested time to live; capped by the mount's max TTL."),
        "not_after": Field(S, "Explicit NotAfter (RFC 3339, UTC)."),
        "not_before": Field(S, "Explicit NotBefore (RFC 3339, UTC)."),
        "not_before_duration": Field(D, "How far NotBefore is back-dated.", default=30),
        "format": Field(S, 'Output format: "pem", "der" or "pem_bundle".', default="pem",
                        allowed_values=("pem", "der", "pem_bundle")),
        "private_key_format": Field(S, 'Private key format: "der" (native) or "pkcs8".', default="der",
                                    allowed_values=("", "der", "pem", "pkcs8")),
    }, **REQUEST_LABELS, **CA_SUBJECT_LABELS)


def key_generation_fields() -> dict[str, Field]:
    return with_display({
        "exported": Field(S, "internal, exported, existing or kms (from the path).",
                          allowed_values=("internal", "external", "kms")),
        "key_type": Field(S, 'Key type: "rsa", "ec", "ed25519" or "mldsa".', default="rsa",
                          allowed_values=("rsa", "ec", "ed25519", "mldsa")),
        "key_bits": Field(I, "Key size (0 = default for the type).", default=0),
        "signature_bits": Field(I, "Hash size for RSA signatures (0 = automatic).", default=0),
        "use_pss": Field(B, "Sign with RSA-PSS.", default=False),
        "key_name": Field(S, "Name for the new key."),
        "key_ref": Field(S, "Existing key to use (existing type).", default="default"),
        "external_key_ref": Field(S, "Reference of an external (KMS/HSM) key, for the kms type."),
        "managed_key_name": Field(S, "Managed key name (Vault Enterprise spelling of the kms reference)."),
        "managed_key_id": Field(S, "Managed key id (Vault Enterprise spelling of the kms reference)."),
    }, key_type=label(value="rsa"), key_bits=label(value=0), signature_bits=label(value=0))


def key_usage_fields() -> dict[str, Field]:
    return with_display({
        "key_usage": Field(CSV, "Key usages; on CA certificates only DigitalSignature is added to CertSign and "
                                "CRLSign.", default=["DigitalSignature", "KeyAgreement", "KeyEncipherment"]),
        "ext_key_usage": Field(CSV, "Extended key usages.", default=[]),
        "ext_key_usage_oids": Field(CSV, "Extended key usage OIDs."),
        "signature_bits": Field(I, "Hash size for RSA signatures (0 = automatic).", default=0),
        "use_pss": Field(B, "Sign with RSA-PSS.", default=False),
        "skid": Field(S, "Subject key identifier to use (hex), for cross-signing.", default=""),
    }, signature_bits=label(value=0), skid=label(value=""))


def ca_issue_fields() -> dict[str, Field]:
    return with_display({
        "max_path_length": Field(I, "Path length constraint (-1 = none).", default=-1),
        "permitted_dns_domains": Field(CSV, "Permitted DNS domains (name constraints)."),
        "issuer_name": Field(S, "Name for the new issuer."),
    }, **CA_SUBJECT_LABELS)


def root_fields() -> dict[str, Field]:
    fields = common_ca_fields()
    fields.update(key_usage_fields())
    fields.pop("skid")
    fields.update(key_generation_fields())
    fields.update(ca_issue_fields())
    return fields


def intermediate_fields() -> dict[str, Field]:
    fields = common_ca_fields()
    fields.update(key_generation_fields())
    fields["add_basic_constraints"] = Field(B, "Add a critical CA:TRUE basic constraints extension to the CSR.")
    # Vault (not OpenBao) accepts key_usage here; it does not change the CSR.
    fields["key_usage"] = Field(CSV, "Accepted for Vault compatibility; CSRs carry no key usage.")
    return fields


def sign_intermediate_fields() -> dict[str, Field]:
    fields = common_ca_fields()
    fields.update(key_usage_fields())
    fields.update(ca_issue_fields())
    fields["csr"] = Field(S, "PEM-encoded CSR to sign.", default="")
    fields["use_csr_values"] = Field(B, "Take subject, SANs and extensions from the CSR.", default=False)
    fields["issuer_ref"] = Field(S, "Issuer to sign with.", default="default")
    fields["enforce_leaf_not_after_behavior"] = Field(B, "Vault: apply the issuer's leaf_not_after_behavior.",
                                                      default=False)
    return fields
