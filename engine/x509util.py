"""X.509 building blocks shared by CA generation and issuance: serials, PEM, subjects, SANs, usages, key ids."""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import secrets
from typing import Any, Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, ed448, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plugin.framework import UserError

# ---------------------------------------------------------------------------------------------------------------
# Serial numbers

SERIAL_BITS = 159   # Vault draws uniformly below 2^159 so the DER INTEGER stays within 20 octets


def new_serial() -> int:
    """A fresh certificate serial; zero is not a valid serial (RFC 5280 4.1.2.2) so it is redrawn."""
    while True:
        value = secrets.randbits(SERIAL_BITS)
        if value > 0:
            return value


def serial_to_colon_hex(serial: int) -> str:
    """Vault's rendering: lowercase, two digits per byte of the minimal big-endian magnitude, colon separated."""
    if serial < 0:
        raise ValueError("negative serial")
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return raw.hex(":")


_SERIAL_INPUT = re.compile(r"^[0-9A-Fa-f]{1,2}([:-][0-9A-Fa-f]{1,2})*$")


def normalize_serial(text: str) -> str:
    """Colon-form serial from user input in colon or hyphen form, any case (bare hex is not accepted, as in Vault)."""
    return text.strip().lower().replace("-", ":")


def serial_storage_form(serial: str | int) -> str:
    """The hyphenated form used in storage keys (`certs/<this>`)."""
    text = serial_to_colon_hex(serial) if isinstance(serial, int) else normalize_serial(serial)
    return text.replace(":", "-")


def serial_from_text(text: str) -> int:
    """Integer value of a colon/hyphen serial; UserError when it is not one."""
    norm = text.strip()
    if not _SERIAL_INPUT.match(norm):
        raise UserError(f"invalid serial number: {text}")
    return int(norm.replace(":", "").replace("-", ""), 16)


def cert_serial_colon(cert: x509.Certificate) -> str:
    return serial_to_colon_hex(cert.serial_number)


# ---------------------------------------------------------------------------------------------------------------
# PEM helpers

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


def cert_to_pem(cert: x509.Certificate) -> str:
    """PEM with exactly one trailing newline (the stored form)."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def strip_pem(pem: str) -> str:
    """PEM without the trailing newline, as issue/sign responses and `ca/pem` render it."""
    return pem.rstrip("\n")


def with_newline(pem: str) -> str:
    return pem.rstrip("\n") + "\n"


def pem_blocks(data: str | bytes) -> list[tuple[str, bytes]]:
    """(label, whole PEM block bytes) for every block in order; text between blocks is ignored."""
    raw = data.encode() if isinstance(data, str) else data
    return [(m.group(1).decode(), m.group(0) + b"\n") for m in _PEM_BLOCK.finditer(raw)]


def load_pem_certificates(data: str | bytes) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(block) for label, block in pem_blocks(data) if label == "CERTIFICATE"]


def private_key_to_pem(key: PrivateKeyTypes, pkcs8: bool = False) -> str:
    """Native encodings as Vault writes them: PKCS#1 for RSA, SEC1 for EC, PKCS#8 for Ed25519 (or PKCS#8 on request)."""
    return key.private_bytes(serialization.Encoding.PEM, _private_format(key, pkcs8),
                             serialization.NoEncryption()).decode()


def private_key_to_der(key: PrivateKeyTypes, pkcs8: bool = False) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, _private_format(key, pkcs8), serialization.NoEncryption())


def _private_format(key: PrivateKeyTypes, pkcs8: bool) -> serialization.PrivateFormat:
    if pkcs8:
        return serialization.PrivateFormat.PKCS8
    # EC and RSA first: the issue path's keys, answered without the negative ABC checks below.
    if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        return serialization.PrivateFormat.TraditionalOpenSSL
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) or _mldsa_level(key):
        return serialization.PrivateFormat.PKCS8
    return serialization.PrivateFormat.TraditionalOpenSSL


def key_type_name(key: PrivateKeyTypes | CertificatePublicKeyTypes) -> str:
    """Vault's key type names: rsa, ec, ed25519, mldsa (anything else is 'unknown')."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ec"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if _mldsa_level(key):
        return "mldsa"
    return "unknown"


_MLDSA_LEVELS = ((44, mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
                 (65, mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
                 (87, mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey))


def _mldsa_level(key: object) -> int:
    """44, 65 or 87 for an ML-DSA key (the built-in's key_bits for it), else 0."""
    return next((level for level, priv, pub in _MLDSA_LEVELS if isinstance(key, (priv, pub))), 0)


def key_bits_of(key: PrivateKeyTypes | CertificatePublicKeyTypes) -> int:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return key.key_size
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return key.curve.key_size
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return 256
    if isinstance(key, (dsa.DSAPrivateKey, dsa.DSAPublicKey)):
        return key.key_size
    return _mldsa_level(key)


def public_key_der(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    return public_key_der(a) == public_key_der(b)


# ---------------------------------------------------------------------------------------------------------------
# Key identifiers

def subject_key_id(public_key: CertificatePublicKeyTypes) -> bytes:
    """RFC 5280 method 1: SHA-1 over the subjectPublicKey BIT STRING contents."""
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


def colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def parse_hex_id(text: str) -> bytes:
    """A user-supplied key id in hex with optional ':', '-' or space separators."""
    cleaned = re.sub(r"[:\- ]", "", text.strip())
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise UserError(f"unable to parse subject key id: {text}") from None


def cert_skid(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return subject_key_id(cert.public_key())


def aki_from_issuer(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI carrying only the key identifier (what Vault writes; issuer+serial form is not used)."""
    return x509.AuthorityKeyIdentifier(cert_skid(issuer_cert), None, None)


# ---------------------------------------------------------------------------------------------------------------
# Subjects

# Request field -> OID, in the order Go's pkix.Name marshals them (measured on the built-in engine's output).
SUBJECT_LIST_FIELDS: tuple[tuple[str, x509.ObjectIdentifier], ...] = (
    ("country", NameOID.COUNTRY_NAME),
    ("province", NameOID.STATE_OR_PROVINCE_NAME),
    ("locality", NameOID.LOCALITY_NAME),
    ("street_address", NameOID.STREET_ADDRESS),
    ("postal_code", NameOID.POSTAL_CODE),
    ("organization", NameOID.ORGANIZATION_NAME),
    ("ou", NameOID.ORGANIZATIONAL_UNIT_NAME),
)


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def build_subject(common_name: str = "", *, country: Sequence[str] = (), organization: Sequence[str] = (),
                  ou: Sequence[str] = (), locality: Sequence[str] = (), province: Sequence[str] = (),
                  street_address: Sequence[str] = (), postal_code: Sequence[str] = (), serial_number: str = "",
                  user_ids: Sequence[str] = ()) -> x509.Name:
    """A subject DN in the attribute order Go's pkix.Name marshals: C, ST, L, street, postalCode, O, OU, CN,
    serialNumber, then UIDs (0.9.2342.19200300.100.1.1).

    Go puts all values of one field into one multi-valued RDN, which RFC 5280 linters reject (an RDN may not
    repeat an attribute type); each value here is its own RDN, in the given order (documented difference).
    """
    rdns: list[x509.RelativeDistinguishedName] = []
    values = {"country": country, "organization": organization, "ou": ou, "locality": locality,
              "province": province, "street_address": street_address, "postal_code": postal_code}
    entries: list[tuple[x509.ObjectIdentifier, str]] = []
    for name, oid in SUBJECT_LIST_FIELDS:
        entries += [(oid, v) for v in values[name] if v]
        if name == "country":
            for v in values[name]:
                if v and len(v) != 2:
                    # X.520 countryName is two letters (ISO 3166); the built-in writes any length.
                    raise UserError(f'invalid subject: country "{v}" is not a two-letter ISO 3166 code')
    if common_name:
        entries.append((NameOID.COMMON_NAME, common_name))
    if serial_number:
        entries.append((NameOID.SERIAL_NUMBER, serial_number))
    entries += [(NameOID.USER_ID, uid) for uid in user_ids if uid]
    for _, value in entries:
        if _CONTROL_CHARS.search(value):
            raise UserError("invalid subject: a value contains control characters")
    try:
        for oid, value in entries:
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]))
        return x509.Name(rdns)
    except ValueError as exc:
        raise UserError(f"invalid subject: {exc}") from None


def subject_from_fields(d: object, common_name: str | None = None) -> x509.Name:
    """build_subject from a FieldData that has the common subject fields (missing fields are treated as empty)."""
    def get(name: str, default: object) -> object:
        try:
            return d.get(name)  # type: ignore[attr-defined]
        except KeyError:
            return default
    cn = common_name if common_name is not None else str(get("common_name", "") or "")
    return build_subject(
        cn,
        country=list(get("country", []) or []), organization=list(get("organization", []) or []),
        ou=list(get("ou", []) or []), locality=list(get("locality", []) or []),
        province=list(get("province", []) or []), street_address=list(get("street_address", []) or []),
        postal_code=list(get("postal_code", []) or []), serial_number=str(get("serial_number", "") or ""),
    )


def common_name_of(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


# ---------------------------------------------------------------------------------------------------------------
# Subject alternative names

_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
UTF8_OTHERNAME_PREFIX = "UTF8:"


def is_hostname(name: str, allow_wildcard: bool = True) -> bool:
    """RFC 1123 host name (optionally with a single leftmost '*' label); used to decide if a CN may be a DNS SAN."""
    if not name or len(name) > 253 or "\x00" in name:
        return False
    labels = name.rstrip(".").split(".") if name != "." else []
    if not labels:
        return False
    if allow_wildcard and labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return False
    return all(_HOSTNAME_LABEL.match(label) for label in labels)


def is_email(name: str) -> bool:
    local, sep, domain = name.partition("@")
    return bool(sep and local and domain and "@" not in domain and is_hostname(domain, allow_wildcard=False))


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise UserError(f'the value "{text}" is not a valid IP address') from None


def parse_other_san(entry: str) -> tuple[x509.ObjectIdentifier, str]:
    """`<oid>;UTF8:<value>` (the only type Vault supports); UserError otherwise."""
    oid_text, sep, rest = entry.partition(";")
    if not sep:
        raise UserError(f"other_sans entry {entry!r} is not in the form <oid>;UTF8:<value>")
    type_name, colon, value = rest.partition(":")
    if not colon or type_name.strip().upper() not in ("UTF8", "UTF-8"):
        raise UserError(f"other_sans entry {entry!r}: only UTF8 values are supported")
    try:
        oid = x509.ObjectIdentifier(oid_text.strip())
    except ValueError:
        raise UserError(f"other_sans entry {entry!r} has an invalid OID") from None
    return oid, value


def other_name(oid: x509.ObjectIdentifier, value: str) -> x509.OtherName:
    """otherName with an explicitly tagged UTF8String value ([0] EXPLICIT UTF8String), as OpenSSL encodes it."""
    encoded = value.encode("utf-8")
    utf8 = b"\x0c" + _der_len(len(encoded)) + encoded
    return x509.OtherName(oid, utf8)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def build_sans(dns: Iterable[str] = (), emails: Iterable[str] = (), ips: Iterable[str] = (),
               uris: Iterable[str] = (), other_sans: Iterable[str] = ()) -> list[x509.GeneralName]:
    """General names in Go's SAN order (DNS, email, IP, URI), then otherNames; duplicates removed."""
    names: list[x509.GeneralName] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, key: str, gn: x509.GeneralName) -> None:
        if (kind, key) not in seen:
            seen.add((kind, key))
            names.append(gn)

    for n in dns:
        add("dns", n, x509.DNSName(n))
    for e in emails:
        add("email", e, x509.RFC822Name(e))
    for ip in ips:
        addr = parse_ip(ip)
        add("ip", str(addr), x509.IPAddress(addr))
    for u in uris:
        add("uri", u, x509.UniformResourceIdentifier(u))
    for entry in other_sans:
        oid, value = parse_other_san(entry)
        add("other", f"{oid.dotted_string};{value}", other_name(oid, value))
    return names


def split_cn_into_sans(common_name: str) -> tuple[list[str], list[str]]:
    """Where a CN goes when copied into the SAN: email-looking -> email, host-name-looking -> DNS, else nowhere.

    Vault copies any CN that is not an email into the DNS SANs; a non-hostname there is invalid syntax (pkilint
    error), so we only copy host names. Documented difference.
    """
    if not common_name:
        return [], []
    if is_email(common_name):
        return [], [common_name]
    if is_hostname(common_name):
        return [common_name], []
    return [], []


# ---------------------------------------------------------------------------------------------------------------
# Key usage and extended key usage names

KEY_USAGE_NAMES: tuple[str, ...] = (
    "DigitalSignature", "ContentCommitment", "KeyEncipherment", "DataEncipherment", "KeyAgreement",
    "CertSign", "CRLSign", "EncipherOnly", "DecipherOnly",
)
_KU_ALIASES = {"nonrepudiation": "ContentCommitment"}

EXT_KEY_USAGE_OIDS: dict[str, x509.ObjectIdentifier] = {
    "Any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "ServerAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "ClientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "CodeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "EmailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "IPSECEndSystem": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "IPSECTunnel": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "IPSECUser": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "TimeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    "MicrosoftServerGatedCrypto": x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "NetscapeServerGatedCrypto": x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
    "MicrosoftCommercialCodeSigning": x509.ObjectIdentifier("1.3.6.1.4.1.311.2.1.22"),
    "MicrosoftKernelCodeSigning": x509.ObjectIdentifier("1.3.6.1.4.1.311.61.1.1"),
}


def canonical_key_usage(name: str) -> str | None:
    """Vault matches key usage names case-insensitively, with or without spaces; unknown names are ignored."""
    flat = name.replace(" ", "").replace("_", "").lower()
    if flat in _KU_ALIASES:
        return _KU_ALIASES[flat]
    for known in KEY_USAGE_NAMES:
        if known.lower() == flat:
            return known
    return None


def canonical_ext_key_usage(name: str) -> str | None:
    flat = name.replace(" ", "").replace("_", "").lower()
    for known in EXT_KEY_USAGE_OIDS:
        if known.lower() == flat:
            return known
    return None


def key_usage_extension(names: Iterable[str]) -> x509.KeyUsage | None:
    """A KeyUsage from Vault names (unknown names skipped as Vault does); None when nothing is set."""
    flags = {n: False for n in KEY_USAGE_NAMES}
    for raw in names:
        known = canonical_key_usage(raw)
        if known:
            flags[known] = True
    if not any(flags.values()):
        return None
    return x509.KeyUsage(
        digital_signature=flags["DigitalSignature"], content_commitment=flags["ContentCommitment"],
        key_encipherment=flags["KeyEncipherment"], data_encipherment=flags["DataEncipherment"],
        key_agreement=flags["KeyAgreement"], key_cert_sign=flags["CertSign"], crl_sign=flags["CRLSign"],
        encipher_only=flags["EncipherOnly"] and flags["KeyAgreement"],
        decipher_only=flags["DecipherOnly"] and flags["KeyAgreement"],
    )


def ext_key_usage_oids(names: Iterable[str], oids: Iterable[str] = ()) -> list[x509.ObjectIdentifier]:
    """EKU OIDs from Vault names plus dotted OIDs, in the order given, de-duplicated; bad OIDs -> UserError."""
    out: list[x509.ObjectIdentifier] = []
    for raw in names:
        known = canonical_ext_key_usage(raw)
        if known and EXT_KEY_USAGE_OIDS[known] not in out:
            out.append(EXT_KEY_USAGE_OIDS[known])
    for text in oids:
        try:
            oid = x509.ObjectIdentifier(text.strip())
        except ValueError:
            raise UserError(f"{text} is not a valid OID") from None
        if oid not in out:
            out.append(oid)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Time

def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def unix(t: dt.datetime) -> int:
    return int(t.timestamp())


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hash_of(data: bytes) -> str:
    """Short stable fingerprint used for de-duplication (not a security boundary)."""
    return hashlib.sha256(data).hexdigest()



# ---------------------------------------------------------------------------------------------------------------
# Names as Vault's CA paths treat them

_VAULT_HOSTNAME = re.compile(
    r"^(\*\.)?(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])$")
_TLD = re.compile(r"^([a-z]{2,63}|xn--[a-z0-9-]{1,59})$", re.I)


def matches_vault_hostname(name: str) -> bool:
    """Vault's own host-name test (single labels and a leading '*.' pass)."""
    return bool(_VAULT_HOSTNAME.match(name))


def is_preferred_dns_name(name: str) -> bool:
    """RFC 5280 preferred name syntax as linters check it: at least two LDH labels and an alphabetic TLD.

    Vault copies any host-name-looking CN into the DNS SANs, including single labels such as `root`, which RFC 5280
    linters reject; we only copy names that pass this test (documented difference).
    """
    if not name or len(name) > 253 or name.startswith("*."):
        return False
    labels = name.split(".")
    if len(labels) < 2 or not _TLD.match(labels[-1]):
        return False
    return all(_HOSTNAME_LABEL.match(label) for label in labels)


def idna_to_ascii(name: str) -> str:
    """The A-label form of a DNS name; UserError for names that cannot be a DNS name (empty or over-long labels)."""
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UserError(f"idna: invalid label {name!r}: {exc}") from None
    labels = name.split(".")
    for i, label in enumerate(labels):
        if len(label) > 63 or (not label and i != len(labels) - 1):
            raise UserError(f'idna: invalid label "{label}"')
    if len(name) > 253:
        raise UserError("idna: domain name too long")
    return name


def split_alt_names(alt_names: str) -> list[str]:
    """alt_names: comma separated, trimmed, de-duplicated in order."""
    out: list[str] = []
    for part in alt_names.split(","):
        part = part.strip()
        if part and part not in out:
            out.append(part)
    return out


def go_duration(seconds: float) -> str:
    """Go's time.Duration String() for whole seconds (e.g. 2h0m0s, 1m30s, 45s), used in Vault's messages."""
    total = int(seconds)
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{sign}{h}h{m}m{s}s"
    if m:
        return f"{sign}{m}m{s}s"
    return f"{sign}{s}s"


def rfc3339_nano(t: dt.datetime) -> str:
    """Go's RFC3339Nano rendering in UTC (fraction trimmed of trailing zeros)."""
    t = t.astimezone(dt.timezone.utc)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        base += "." + f"{t.microsecond:06d}".rstrip("0")
    return base + "Z"


def parse_rfc3339(text: str) -> dt.datetime:
    """Go's time.Parse(time.RFC3339, ...) equivalent; UserError with Go's style of message."""
    value = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UserError(f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse') from None
    if parsed.tzinfo is None or "T" not in value.upper():
        raise UserError(f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse')
    return parsed.astimezone(dt.timezone.utc)


def csr_extensions(csr: x509.CertificateSigningRequest) -> x509.Extensions:
    """The CSR's extensions; an extension list the library refuses (a duplicate, a malformed value) is a 400."""
    try:
        return csr.extensions
    except x509.UnsupportedGeneralNameType:
        raise UserError("certificate request could not be parsed: a SAN holds an x400Address or ediPartyName, "
                        "which this plugin does not accept") from None
    except x509.DuplicateExtension as exc:
        raise UserError(f"certificate request could not be parsed: it contains the extension {exc.oid.dotted_string} "
                        "more than once") from None
    except ValueError as exc:
        raise UserError(f"certificate request could not be parsed: {(str(exc).splitlines() or ['bad extension'])[0]}"
                        ) from None


def certificate_builder(subject: x509.Name, issuer: x509.Name, public_key: Any, serial: int,
                        not_before: dt.datetime, not_after: dt.datetime,
                        extensions: Iterable[tuple[x509.ExtensionType, bool]]) -> x509.CertificateBuilder:
    """A builder holding every extension at once, in order.

    `CertificateBuilder.add_extension` copies the list and re-checks it for duplicates on every call, which is
    quadratic in the number of extensions; a CSR's extensions copied one by one made that a denial of service.
    """
    for when in (not_before, not_after):
        if when.year < 1950:
            # pyca/cryptography cannot write a date before 1950 (it panics); Go would use a GeneralizedTime.
            raise UserError(f"the certificate's validity would start or end in {when.year}, before 1950, which "
                            "this plugin cannot encode")
    seen: set[x509.ObjectIdentifier] = set()
    exts: list[x509.Extension[x509.ExtensionType]] = []
    for value, critical in extensions:
        if value.oid in seen:
            raise ValueError(f"duplicate extension {value.oid.dotted_string}")
        seen.add(value.oid)
        exts.append(x509.Extension(value.oid, critical, value))
    return x509.CertificateBuilder(issuer_name=issuer, subject_name=subject, public_key=public_key,
                                   serial_number=serial, not_valid_before=not_before, not_valid_after=not_after,
                                   extensions=exts)
