"""A CEL program's ValidationOutput turned into a certificate profile, with the built-in's meaning of each field.

The template is Go's x509.Certificate as the built-in's cert_template.proto carries it: `KeyUsage` is Go's bit
mask (DigitalSignature=1, ContentCommitment=2, KeyEncipherment=4, ... DecipherOnly=256; the proto's enum numbers
are used as that mask, as the built-in casts them), `ExtKeyUsage` Go's ExtKeyUsage numbers, IPs as bytes, URIs as
url.URL parts, OIDs as arcs. The serial, public key, key identifiers and AIA URLs are the engine's, not the
template's, as in the built-in.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from engine.cel_eval import Message
from engine.x509util import build_subject
from plugin.framework import UserError

# Go's x509.ExtKeyUsage numbering.
GO_EXT_KEY_USAGES: tuple[x509.ObjectIdentifier, ...] = (
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE, ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH,
    ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION,
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"), x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"), ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.OCSP_SIGNING,
    x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"), x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
    x509.ObjectIdentifier("1.3.6.1.4.1.311.2.1.22"), x509.ObjectIdentifier("1.3.6.1.4.1.311.61.1.1"),
)
# Go's x509.KeyUsage bits, lowest first, as Vault names them.
GO_KEY_USAGE_BITS = ("DigitalSignature", "ContentCommitment", "KeyEncipherment", "DataEncipherment",
                     "KeyAgreement", "CertSign", "CRLSign", "EncipherOnly", "DecipherOnly")
# Template fields this engine does not turn into extensions; a program setting them is refused, not ignored.
UNSUPPORTED = ("PermittedIPRanges", "ExcludedIPRanges", "PermittedEmailAddresses", "ExcludedEmailAddresses",
               "PermittedURIDomains", "ExcludedURIDomains", "InhibitAnyPolicy", "InhibitAnyPolicyZero",
               "InhibitPolicyMapping", "InhibitPolicyMappingZero", "RequireExplicitPolicy",
               "RequireExplicitPolicyZero", "PolicyMappings")


@dataclass
class Output:
    """ValidationOutput, decoded."""
    template: dict[str, Any]
    issuer_ref: str = ""
    use_pss: bool = False
    signature_bits: int = 0
    generate_lease: bool = False
    no_store: bool = False
    warnings: list[str] = field(default_factory=list)
    key_type: str = ""
    key_bits: int = 0


def decode_output(result: Message) -> Output:
    f = result.fields
    template = f.get("template")
    if not isinstance(template, Message) or template.type_name != "CertTemplate":
        raise UserError("template is nil")
    return Output(template=template.fields, issuer_ref=str(f.get("issuer_ref") or ""),
                  use_pss=bool(f.get("use_pss")), signature_bits=int(f.get("signature_bits") or 0),
                  generate_lease=bool(f.get("generate_lease")), no_store=bool(f.get("no_store")),
                  warnings=[str(w) for w in f.get("warnings") or []], key_type=str(f.get("key_type") or ""),
                  key_bits=int(f.get("key_bits") or 0))


def _fields(value: Any, type_name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Message) or value.type_name != type_name:
        raise UserError(f"expected a {type_name} message in the CEL template")
    return value.fields


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value or []]


def _arcs(value: Any, type_name: str) -> x509.ObjectIdentifier:
    arcs = _fields(value, type_name).get("arc") or []
    try:
        return x509.ObjectIdentifier(".".join(str(int(a)) for a in arcs))
    except ValueError:
        raise UserError(f"invalid object identifier {arcs}") from None


def subject(template: dict[str, Any]) -> x509.Name:
    name = _fields(template.get("Subject"), "PKIX.Name")
    return build_subject(
        str(name.get("CommonName") or ""), country=_strings(name.get("Country")),
        organization=_strings(name.get("Organization")), ou=_strings(name.get("OrganizationUnit")),
        locality=_strings(name.get("Locality")), province=_strings(name.get("Province")),
        street_address=_strings(name.get("StreetAddress")), postal_code=_strings(name.get("PostalCode")),
        serial_number=str(name.get("SerialNumber") or ""))


def validity(template: dict[str, Any], default_not_before: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    not_after = template.get("NotAfter")
    if not isinstance(not_after, dt.datetime):
        raise UserError("the CEL template must set NotAfter")
    not_before = template.get("NotBefore")
    if not isinstance(not_before, dt.datetime):
        not_before = default_not_before
    if not_after <= not_before:
        raise UserError("the CEL template's NotAfter must be after its NotBefore")
    return not_before.replace(microsecond=0), not_after.replace(microsecond=0)


def key_usage_names(mask: int) -> list[str]:
    return [name for bit, name in enumerate(GO_KEY_USAGE_BITS) if mask & (1 << bit)]


def ext_key_usages(template: dict[str, Any]) -> list[x509.ObjectIdentifier]:
    out = []
    for number in template.get("ExtKeyUsage") or []:
        if not 0 <= int(number) < len(GO_EXT_KEY_USAGES):
            raise UserError(f"unknown ExtKeyUsage {number} in the CEL template")
        out.append(GO_EXT_KEY_USAGES[int(number)])
    out += [_arcs(o, "ObjectIdentifier") for o in template.get("UnknownExtKeyUsage") or []]
    return out


def _url(value: Any) -> str:
    f = _fields(value, "url.URL")
    scheme = str(f.get("Scheme") or "")
    if f.get("Opaque"):
        return f"{scheme}:{f['Opaque']}"
    text = f"{scheme}://{f.get('Host') or ''}{f.get('Path') or ''}" if scheme else str(f.get("Path") or "")
    if f.get("RawQuery") or f.get("ForceQuery"):
        text += "?" + str(f.get("RawQuery") or "")
    if f.get("Fragment"):
        text += "#" + str(f["Fragment"])
    return text


def sans(template: dict[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in _strings(template.get("DNSNames"))]
    names += [x509.RFC822Name(n) for n in _strings(template.get("EmailAddresses"))]
    for ip in template.get("IPAddresses") or []:
        raw = _fields(ip, "net.IP").get("IP") or b""
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(bytes(raw))))
        except ValueError:
            raise UserError("bad IP address: an IP must be 4 or 16 bytes") from None
    names += [x509.UniformResourceIdentifier(_url(u)) for u in template.get("URIs") or []]
    return names


def extensions(template: dict[str, Any], key_usage_verbatim: bool) -> list[x509.Extension[x509.ExtensionType]]:
    """Basic constraints, name constraints, policies, a CA's key usage and ExtraExtensions, as Go writes them."""
    for name in UNSUPPORTED:
        if template.get(name):
            raise UserError(f"the CEL template field {name} is not supported by this engine")
    out: list[x509.Extension[x509.ExtensionType]] = []

    def add(ext: x509.ExtensionType, critical: bool) -> None:
        out.append(x509.Extension(ext.oid, critical, ext))

    mask = int(template.get("KeyUsage") or 0)
    if key_usage_verbatim and mask:
        names = set(key_usage_names(mask))
        add(x509.KeyUsage(
            digital_signature="DigitalSignature" in names, content_commitment="ContentCommitment" in names,
            key_encipherment="KeyEncipherment" in names, data_encipherment="DataEncipherment" in names,
            key_agreement="KeyAgreement" in names, key_cert_sign="CertSign" in names, crl_sign="CRLSign" in names,
            encipher_only="EncipherOnly" in names, decipher_only="DecipherOnly" in names), True)
    if template.get("BasicConstraintsValid"):
        is_ca = bool(template.get("IsCA"))
        max_len = int(template.get("MaxPathLen") or 0)
        path_len = max_len if is_ca and (max_len > 0 or (max_len == 0 and template.get("MaxPathLenZero"))) else None
        add(x509.BasicConstraints(ca=is_ca, path_length=path_len), True)
    permitted = [x509.DNSName(d) for d in _strings(template.get("PermittedDNSDomains"))]
    excluded = [x509.DNSName(d) for d in _strings(template.get("ExcludedDNSDomains"))]
    if permitted or excluded:
        add(x509.NameConstraints(permitted or None, excluded or None),
            bool(template.get("PermittedDNSDomainsCritical")))
    policies = [_arcs(p, "ObjectIdentifier") for p in template.get("PolicyIdentifiers") or []]
    policies += [o for o in (_arcs(p, "OID") for p in template.get("Policies") or []) if o not in policies]
    if policies:
        add(x509.CertificatePolicies([x509.PolicyInformation(o, None) for o in policies]), False)
    for raw in template.get("ExtraExtensions") or []:
        f = _fields(raw, "PKIX.Extension")
        try:
            oid = x509.ObjectIdentifier(".".join(str(int(a)) for a in f.get("Id") or []))
        except ValueError:
            raise UserError("invalid extension id in the CEL template") from None
        ext = x509.UnrecognizedExtension(oid, bytes(f.get("Value") or b""))
        out = [e for e in out if e.oid != oid]     # an extra extension replaces a generated one, as in Go
        out.append(x509.Extension(oid, bool(f.get("Critical")), ext))
    return out
