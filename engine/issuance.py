"""issue / sign / sign-verbatim: request + role -> validated leaf profile -> signed certificate -> response.

Everything the request or role can get wrong is checked before a key is generated or anything is written;
the certificate (unless no_store) and its metadata are the only writes, made after signing.
"""
from __future__ import annotations

import asyncio

import base64
import binascii
import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from engine import certstore, input_limits, metadata
from engine.csr_checks import check_csr
from engine.uri_names import normalize_uri, refuse_control_chars
from engine.context import PkiContext
from engine.issuers import ISSUING, IssuerRecord, require_usage
from engine.leaf import LeafProfile, build_leaf, leaf_hash
from engine.leaf_names import RoleConstraints, load_identity
from engine.names import dedup, has_control_chars, is_hostname, is_mailbox, is_preferred_dns_name, \
    is_wildcard_dns_name, to_ascii
from engine.roles import Role, parse_other_san_rules, parse_policy_entries, validate_key_params
from engine.signing import generate_private_key
from engine.validity import Limits, ValidityRequest, compute_validity
from engine.x509util import (csr_extensions, 
    EXT_KEY_USAGE_OIDS, build_subject, canonical_ext_key_usage, canonical_key_usage, other_name,
    key_bits_of, key_type_name, private_key_to_der, private_key_to_pem, serial_to_colon_hex, strip_pem,
)
from plugin.framework import FieldData, Request, Response, Secret, UserError

Mode = Literal["issue", "sign", "verbatim"]
FORMATS = ("pem", "der", "pem_bundle")
SECRET_TYPE = "pki"
UTF8_TAG = 0x0C


@dataclass
class Names:
    """The subject and SAN values of one request after the role's checks."""

    common_name: str = ""
    serial_number: str = ""
    user_ids: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    other_sans: dict[str, list[str]] = field(default_factory=dict)

    def general_names(self) -> list[x509.GeneralName]:
        out: list[x509.GeneralName] = [x509.DNSName(n) for n in self.dns]
        out += [_email_name(e) for e in self.emails]
        out += [x509.IPAddress(ip) for ip in self.ips]
        out += [x509.UniformResourceIdentifier(u) for u in self.uris]
        for oid, values in self.other_sans.items():
            out += [other_name(x509.ObjectIdentifier(oid), v) for v in values]
        return out


def _email_name(value: str) -> x509.RFC822Name:
    """An email SAN as Go encodes it: any printable-ASCII IA5String (cryptography also wants it parseaddr-able,
    so a CSR's `"` SAN, which the built-in signs, would otherwise end as a 500)."""
    try:
        return x509.RFC822Name(value)
    except ValueError:
        if value and all(0x20 <= ord(c) < 0x7F for c in value):
            return x509.RFC822Name._init_without_validation(value)
        raise UserError("an email address in the subject alternative names is not an IA5String") from None


# --- CSRs -------------------------------------------------------------------------------------------


def parse_csr(text: str) -> x509.CertificateSigningRequest:
    if text == "":
        raise UserError('"csr" is empty')
    if "-----BEGIN" not in text:
        raise UserError("csr contains no data")
    input_limits.check_text_size(text, "the CSR")
    try:
        csr = x509.load_pem_x509_csr(text.strip().encode())
    except x509.InvalidVersion as exc:
        raise UserError(f"certificate request could not be parsed: unsupported version {exc.parsed_version}"
                        ) from None
    except ValueError as exc:
        raise UserError(f"certificate request could not be parsed: {_reason(exc)}") from None
    input_limits.check_extension_count(csr_extensions(csr), "the CSR")
    try:
        csr.public_key()
    except (UnsupportedAlgorithm, ValueError):
        raise UserError("Refusing to sign CSR with empty PublicKey. This usually means the SubjectPublicKeyInfo "
                        "field has an OID not recognized by Go, such as 1.2.840.113549.1.1.10 for rsaPSS.") from None
    try:
        valid = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError):
        valid = False
    if not valid:
        raise UserError("request signature invalid")
    check_csr(csr)
    return csr


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _key_kind(key: CertificatePublicKeyTypes) -> tuple[str, int]:
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 0
    if key_type_name(key) == "mldsa":
        return "mldsa", key_bits_of(key)
    return type(key).__name__, 0


def check_csr_key(role: Role, key: CertificatePublicKeyTypes) -> None:
    kind, bits = _key_kind(key)
    if role.key_type == "any":
        if kind not in ("rsa", "ec", "ed25519", "mldsa"):
            raise UserError(f"Unknown key type in CSR: {kind}")
        if kind == "rsa" and bits < 2048:
            raise UserError("RSA keys < 2048 bits are unsafe and not supported")
        minimum = {"rsa": 2048, "ec": 224}.get(kind, 0)
    else:
        if kind != role.key_type:
            raise UserError(f"role requires keys of type {role.key_type}")
        minimum = role.key_bits
    if kind == "mldsa" and role.key_type == "mldsa" and bits != role.key_bits:
        raise UserError(f"role requires ML-DSA-{role.key_bits} keys, but CSR's key is ML-DSA-{bits}")
    if kind in ("rsa", "ec") and bits < minimum:
        raise UserError(f"role requires a minimum of a {minimum}-bit key, but CSR's key is {bits} bits")
    if kind == "rsa" and bits < 2048:
        raise UserError(f"OpenBao requires a minimum of a 2048-bit key, but CSR's key is {bits} bits")


def _csr_sans(csr: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        raise UserError("could not parse requested SANs in the CSR") from None


def _utf8_other_name(value: bytes) -> str:
    if len(value) >= 2 and value[0] == UTF8_TAG:
        length, offset = value[1], 2
        if length & 0x80:
            n = length & 0x7F
            length, offset = int.from_bytes(value[2:2 + n], "big"), 2 + n
        return value[offset:offset + length].decode("utf-8", errors="replace")
    raise UserError("could not parse requested other SAN: other SAN value is not a UTF8String")


# --- names ------------------------------------------------------------------------------------------


def _idna_dns(values: list[str]) -> list[str]:
    """alt_names entries that are DNS names, in A-label form; non-hostnames are dropped as Vault does."""
    out: list[str] = []
    for value in values:
        converted = to_ascii(value)
        if is_hostname(converted):
            out.append(converted)
    return out


def _cn_san(cn: str) -> tuple[list[str], list[str]]:
    """Where the CN goes in the SAN. Vault adds any hostname-shaped CN to the DNS names; we add only names in
    RFC 5280's preferred syntax (and `*.` wildcards of them), and only mailbox-shaped CNs as emails, so a CN
    such as `root` or `localhost` stays in the subject alone (documented difference: lint clean)."""
    if "@" in cn:
        return [], [cn] if is_mailbox(cn) else []
    converted = to_ascii(cn)
    if is_preferred_dns_name(converted) or is_wildcard_dns_name(converted):
        return [converted], []
    return [], []


def collect_names(role: Role, d: FieldData, csr: x509.CertificateSigningRequest | None,
                  rules: RoleConstraints, take_user_ids: bool = True) -> Names:
    names = Names()
    cn = ""
    if csr is not None and role.use_csr_common_name:
        attrs = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = str(attrs[0].value) if attrs else ""
    if cn == "":
        cn = d.get("common_name")
        if cn == "" and role.require_cn:
            raise UserError('the common_name field is required, or must be provided in a CSR with '
                            '"use_csr_common_name" set to true, unless "require_cn" is set to false')
    if has_control_chars(cn):
        raise UserError(f"common name {cn!r} contains control characters and is not allowed")
    names.common_name = cn

    serial_number = d.get("serial_number")
    if serial_number == "" and csr is not None:
        attrs = csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        serial_number = str(attrs[0].value) if attrs else ""
    names.serial_number = serial_number

    sans = _csr_sans(csr) if csr is not None and role.use_csr_sans else None
    input_limits.check_name_count(
        (len(sans) if sans is not None else 0) + len(d.get("other_sans"))
        + (0 if csr is not None and role.use_csr_sans else
           len(d.get("alt_names").split(",")) + len(d.get("ip_sans")) + len(d.get("uri_sans"))))
    dns: list[str] = list(sans.get_values_for_type(x509.DNSName)) if sans else []
    emails: list[str] = list(sans.get_values_for_type(x509.RFC822Name)) if sans else []
    if cn and not d.get("exclude_cn_from_sans"):
        cn_dns, cn_email = _cn_san(cn)
        dns += cn_dns
        emails += cn_email
    if csr is None or not role.use_csr_sans:
        alt, supplied = d.get_ok("alt_names")
        if supplied:
            raw_alt = dedup([p.strip() for p in alt.strip().split(",")]) if alt.strip() else []
            emails += [v for v in raw_alt if "@" in v]
            dns += _idna_dns([v for v in raw_alt if "@" not in v])

    if cn:
        if not rules.common_name_allowed(cn):
            raise UserError(f"common name {cn} not allowed by this role")
    if serial_number and not rules.serial_number_allowed(serial_number):
        raise UserError(f"serial_number {serial_number} not allowed by this role")
    bad = rules.first_bad_name(dns)
    if bad is not None:
        raise UserError(f"subject alternate name {bad} not allowed by this role")
    bad = rules.first_bad_name(emails)
    if bad is not None:
        raise UserError(f"email address {bad} not allowed by this role")
    refuse_control_chars(emails, "email address")
    names.dns = dedup(dns)
    names.emails = dedup(emails)

    others = list(d.get("other_sans"))
    refuse_control_chars(others, "other SAN")
    if sans is not None:
        for on in sans.get_values_for_type(x509.OtherName):
            others.append(f"{on.type_id.dotted_string};UTF8:{_utf8_other_name(on.value)}")
    if others:
        try:
            requested = parse_other_san_rules(others)
        except ValueError as exc:
            raise UserError(f"could not parse requested other SAN: {exc}") from None
        for oid in requested:
            try:
                x509.ObjectIdentifier(oid)
            except ValueError:
                raise UserError(f"could not parse requested other SAN: invalid OID {oid}") from None
        bad_other = rules.first_bad_other_san(requested)
        if bad_other is not None:
            oid, value = bad_other
            if value:
                raise UserError(f"other SAN {value} not allowed for OID {oid} by this role")
            raise UserError(f"other SAN OID {oid} not allowed by this role")
        names.other_sans = requested

    if csr is not None and role.use_csr_sans:
        ips = list(sans.get_values_for_type(x509.IPAddress)) if sans else []
        source = "CSR"
    else:
        ips = []
        for value in d.get("ip_sans"):
            try:
                ips.append(ipaddress.ip_address(value.strip()))
            except ValueError:
                raise UserError(f'the value "{value}" is not a valid IP address') from None
        source = "the API"
    if ips:
        if not role.allow_ip_sans:
            raise UserError(f"IP Subject Alternative Names are not allowed in this role, but was provided via {source}")
        for ip in ips:
            if not rules.ip_allowed(ip):
                raise UserError(f'the IP address "{ip}" is not allowed in this role')
    names.ips = ips

    if csr is not None and role.use_csr_sans:
        uris = list(sans.get_values_for_type(x509.UniformResourceIdentifier)) if sans else []
        source = "CSR"
    else:
        uris = list(d.get("uri_sans"))
        normalized = [normalize_uri(u) for u in uris]
        source = "the API"
    if uris:
        if not role.allowed_uri_sans:
            raise UserError(f"URI Subject Alternative Names are not allowed in this role, but were provided via "
                            f"{source}")
        for uri in uris:
            if not rules.uri_allowed(uri):
                raise UserError(f"URI Subject Alternative Names were provided via {source} which are not valid for "
                                "this role")
    names.uris = normalized if source == "the API" else uris

    if take_user_ids:
        user_ids = list(d.get("user_ids"))
        if not user_ids and csr is not None:
            user_ids = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.USER_ID)]
        for uid in user_ids:
            if not rules.user_id_allowed(uid):
                raise UserError(f"user_id {uid} is not allowed by this role")
        names.user_ids = user_ids
    return names


# --- usages -----------------------------------------------------------------------------------------


def role_key_usages(role: Role) -> list[str]:
    out: list[str] = []
    for raw in role.key_usage:
        known = canonical_key_usage(raw.strip())
        if known and known not in out:
            out.append(known)
    return out


def role_ext_key_usages(role: Role) -> list[x509.ObjectIdentifier]:
    """Go's fixed EKU order (the flags and names as a set), then the extra OIDs in the order given."""
    wanted: set[str] = set()
    for flag, name in ((role.server_flag, "ServerAuth"), (role.client_flag, "ClientAuth"),
                       (role.code_signing_flag, "CodeSigning"), (role.email_protection_flag, "EmailProtection")):
        if flag:
            wanted.add(name)
    for raw in role.ext_key_usage:
        known = canonical_ext_key_usage(raw.strip())
        if known:
            wanted.add(known)
    out = [oid for name, oid in EXT_KEY_USAGE_OIDS.items() if name in wanted]
    for text in role.ext_key_usage_oids:
        oid = x509.ObjectIdentifier(text.strip())
        if oid not in out:
            out.append(oid)
    return out


# --- the operation ----------------------------------------------------------------------------------


@dataclass
class IssueResult:
    certificate: x509.Certificate
    private_key: PrivateKeyTypes | None
    chain: list[str]              # PEM, issuing CA first
    issuer: IssuerRecord
    warnings: list[str]


async def resolve_issuer(ctx: PkiContext, req: Request, ref: str) -> IssuerRecord:
    store = ctx.issuers(req.storage)
    try:
        issuer = await store.resolve(ref or "default")
    except UserError as exc:
        detail = exc.message
        if (ref or "default").lower() == "default":
            detail = "no default issuer currently configured"
        raise UserError(f"could not fetch the CA certificate (was one set?): {detail}") from None
    require_usage(issuer, ISSUING)
    return issuer


def verbatim_role(d: FieldData, role: Role | None) -> Role:
    """The permissive implicit role of sign-verbatim; a named role only lends its lifetime and storage settings."""
    entry = Role(
        name="", allow_localhost=True, allow_any_name=True, allow_ip_sans=True, allow_wildcard_certificates=True,
        enforce_hostnames=False, key_type="any", key_bits=0, use_csr_common_name=True, use_csr_sans=True,
        allowed_other_sans=["*"], allowed_serial_numbers=["*"], allowed_uri_sans=["*"], allowed_user_ids=["*"],
        cn_validations=["disabled"], generate_lease=False, server_flag=False, client_flag=False,
        key_usage=list(d.get("key_usage")), ext_key_usage=list(d.get("ext_key_usage")),
        ext_key_usage_oids=list(d.get("ext_key_usage_oids")), signature_bits=d.get("signature_bits"),
        use_pss=d.get("use_pss"), basic_constraints_valid_for_non_ca=d.get("basic_constraints_valid_for_non_ca"),
        not_before_duration=0, require_cn=True, issuer_ref="default",
    )
    if role is not None:
        if role.ttl > 0:
            entry.ttl = role.ttl
        if role.max_ttl > 0:
            entry.max_ttl = role.max_ttl
        entry.generate_lease = role.generate_lease
        if role.not_before_duration > 0:
            entry.not_before_duration = role.not_before_duration
        entry.no_store = role.no_store
        entry.no_store_metadata = role.no_store_metadata
        entry.issuer_ref = role.issuer_ref or "default"
        entry.name = role.name
        if not d.has("basic_constraints_valid_for_non_ca"):
            entry.basic_constraints_valid_for_non_ca = role.basic_constraints_valid_for_non_ca
    for oid in entry.ext_key_usage_oids:
        try:
            x509.ObjectIdentifier(oid)
        except ValueError:
            raise UserError(f'"{oid}" could not be parsed as a valid oid for an extended key usage') from None
    return entry


def _decode_metadata(d: FieldData) -> bytes | None:
    if "cert_metadata" not in d.schema:
        return None
    value = d.get("cert_metadata")
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UserError("cert_metadata must be base64 encoded") from None


def _issue_role(role: Role, d: FieldData, warnings: list[str]) -> Role:
    """Issue with a key_type=any role takes key_type/key_bits from the request; otherwise they are ignored."""
    key_type, type_given = d.get_ok("key_type")
    key_bits, bits_given = d.get_ok("key_bits")
    if role.key_type == "any":
        if not type_given:
            raise UserError('role key type "any" not allowed for issuing certificates without providing key_type '
                            'and/or key_bits request parameters')
        bits = validate_key_params(key_type, key_bits if bits_given else 0)
        if key_type == "any":
            raise UserError("unknown key type any")
        return role.replace(key_type=key_type, key_bits=bits)
    if type_given or bits_given:
        warnings.append("parameters key_type and key_bits ignored as role had specific values")
    return role


async def mount_ttls(system: Any, need_default: bool, need_max: bool) -> tuple[int, int]:
    """(default, max) lease TTL of the mount; 0 for the one not needed."""
    if need_default and need_max:
        default_ttl, max_ttl = await asyncio.gather(system.default_lease_ttl(), system.max_lease_ttl())
        return default_ttl, max_ttl
    return (await system.default_lease_ttl() if need_default else 0,
            await system.max_lease_ttl() if need_max else 0)


async def run(ctx: PkiContext, req: Request, d: FieldData, role: Role, issuer_ref: str, mode: Mode, *,
              not_after_behavior: str | None = None) -> Response:
    """`not_after_behavior` overrides the issuer's leaf_not_after_behavior (ACME truncates, whatever it says)."""
    warnings: list[str] = []
    if mode == "issue":
        role = _issue_role(role, d, warnings)
    issuer = await resolve_issuer(ctx, req, issuer_ref)
    fmt = d.get("format") or "pem"
    if fmt not in FORMATS:
        raise UserError('the "format" path parameter must be "pem", "der", or "pem_bundle"')
    cert_metadata = _decode_metadata(d)

    csr = parse_csr(d.get("csr")) if mode != "issue" else None
    if csr is not None:
        check_csr_key(role, csr.public_key())

    identity = None
    if req.entity_id and (role.allowed_domains_template or role.allowed_uri_sans_template):
        identity = await load_identity(req.system, req.entity_id)
    names = collect_names(role, d, csr, RoleConstraints(role, identity))
    try:
        policies = parse_policy_entries(role.policy_identifiers)
    except ValueError as exc:
        raise UserError(str(exc)) from None

    # The mount's TTLs come from the server on every request (a tune applies at once), but only those the
    # role leaves open are asked for, as the built-in engine does: each is a round trip to the server.
    default_ttl, max_ttl = await mount_ttls(req.system, need_default=d.get("ttl") == 0 and role.ttl <= 0,
                                            need_max=role.max_ttl <= 0)
    limits = Limits(default_ttl=default_ttl, max_ttl=max_ttl,
                    issuer_not_after=issuer.certificate.not_valid_after_utc,
                    leaf_not_after_behavior=not_after_behavior or issuer.leaf_not_after_behavior)
    not_before, nb_given = d.get_ok("not_before") if "not_before" in d.schema else ("", False)
    not_after, na_given = d.get_ok("not_after")
    validity = compute_validity(role, ValidityRequest(
        ttl=d.get("ttl"), not_after=not_after, not_after_supplied=na_given, not_before=not_before,
        not_before_supplied=nb_given, honour_not_before=(mode == "issue")), limits)
    warnings += validity.warnings

    store = ctx.issuers(req.storage)
    signer = await store.signing_key(issuer)
    urls = await store.aia_for(issuer)

    private_key: PrivateKeyTypes | None = None
    verbatim_exts: list[x509.Extension[x509.ExtensionType]] = []
    if csr is None:
        private_key = await generate_private_key(role.key_type, role.key_bits)
        public_key = private_key.public_key()
    else:
        public_key = csr.public_key()
        if any(ext.oid == ExtensionOID.BASIC_CONSTRAINTS for ext in csr.extensions) and \
                not role.basic_constraints_valid_for_non_ca:
            warnings.append("specified CSR contained a Basic Constraints extension that was ignored during issuance")
        if mode == "verbatim":
            verbatim_exts = [e for e in csr.extensions if e.oid != ExtensionOID.BASIC_CONSTRAINTS]

    if mode == "verbatim":
        assert csr is not None
        subject = csr.subject
    else:
        subject = build_subject(
            names.common_name, country=dedup(role.country), organization=dedup(role.organization),
            ou=dedup(role.ou), locality=dedup(role.locality), province=dedup(role.province),
            street_address=dedup(role.street_address), postal_code=dedup(role.postal_code),
            serial_number=names.serial_number, user_ids=names.user_ids)
    profile = LeafProfile(
        subject=subject, public_key=public_key, not_before=validity.not_before, not_after=validity.not_after,
        # sign-verbatim: the CSR's own SAN extension (copied with the others) is the only SAN; the built-in does
        # not copy the CSR's CN into a SAN there.
        sans=[] if mode == "verbatim" else names.general_names(), key_usages=role_key_usages(role), ext_key_usages=role_ext_key_usages(role),
        policies=policies, basic_constraints=role.basic_constraints_valid_for_non_ca,
        verbatim_extensions=verbatim_exts)
    cert = await build_leaf(profile, issuer.certificate, signer,
                            leaf_hash(signer, role.signature_bits, csr is not None), role.use_pss, urls)

    if not role.no_store:
        await certstore.store_certificate(req.storage, cert)
    if cert_metadata is not None and not role.no_store_metadata:
        await metadata.store(req.storage, cert, cert_metadata, issuer.id, role.name)

    chain = await store.chain_pems(issuer)
    resp = Response(data=render(cert, private_key, issuer, chain, fmt, d.get("private_key_format"),
                                d.get("remove_roots_from_chain")))
    if role.generate_lease:
        serial = serial_to_colon_hex(cert.serial_number)
        ttl = max(0, int((cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()))
        resp.secret = Secret(internal_data={"secret_type": SECRET_TYPE, "serial_number": serial}, ttl=ttl,
                             renewable=False)
    if csr is not None and mode == "sign":
        if role.use_csr_common_name and d.get("common_name"):
            warnings.append('the common_name field was provided but the role is set with "use_csr_common_name" '
                            "set to true")
        if role.use_csr_sans and d.get("alt_names"):
            warnings.append('the alt_names field was provided but the role is set with "use_csr_sans" set to true')
    resp.warnings.extend(warnings)
    return resp


# --- response rendering -----------------------------------------------------------------------------


def _is_self_signed(pem: str) -> bool:
    cert = x509.load_pem_x509_certificate(pem.encode())
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - any failure means "not self-signed"
        return False
    return True


def _b64_der_of_pem(pem: str) -> str:
    return base64.b64encode(x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)).decode()


def render(cert: x509.Certificate, private_key: PrivateKeyTypes | None, issuer: IssuerRecord, chain: list[str],
           fmt: str, key_format: str, remove_roots: bool) -> dict[str, Any]:
    chain = [strip_pem(p) for p in chain]
    full_chain = list(chain)
    if remove_roots:
        chain = [p for p in chain if not _is_self_signed(p)]
    leaf_pem = strip_pem(cert.public_bytes(Encoding.PEM).decode())
    issuing_pem = strip_pem(issuer.certificate_pem)
    data: dict[str, Any] = {
        "serial_number": serial_to_colon_hex(cert.serial_number),
        "expiration": int(cert.not_valid_after_utc.timestamp()),
        "not_before": int(cert.not_valid_before_utc.timestamp()),
    }
    pkcs8 = key_format == "pkcs8"
    if fmt == "der":
        data["certificate"] = base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
        data["issuing_ca"] = _b64_der_of_pem(issuing_pem)
        if chain:
            data["ca_chain"] = [_b64_der_of_pem(p) for p in chain]
        if private_key is not None:
            data["private_key"] = base64.b64encode(private_key_to_der(private_key, pkcs8)).decode()
    else:
        key_pem = strip_pem(private_key_to_pem(private_key, pkcs8)) if private_key is not None else None
        data["issuing_ca"] = issuing_pem
        data["certificate"] = leaf_pem
        if fmt == "pem_bundle":
            # The full chain (not the root-filtered one) follows the leaf, as the built-in renders it.
            parts = ([key_pem] if key_pem else []) + [leaf_pem]
            data["certificate"] = "\n".join(parts + full_chain)
        if chain:
            data["ca_chain"] = chain
        if key_pem is not None:
            data["private_key"] = key_pem
    if private_key is not None:
        data["private_key_type"] = key_type_name(private_key)   # keys we generate are one of its four types
    return data
