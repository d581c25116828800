"""The differential harness: the same requests to our mount and to the built-in `pki` in one OpenBao server.

A `Pair` is one (ours, built-in) mount pair with identical CAs: issuers `ec-root` (default), `rsa-root`,
`ed-root`, `p384-root`, three 2-hour roots `short-err`/`short-trunc`/`short-permit` (one per
`leaf_not_after_behavior`) and `no-issuing` (usage without issuing-certificates). `Case` is one row of a table:
role fields, request fields, the path, an optional CSR, and whether the request should succeed. `run_case` sends
it to both mounts and asserts the same outcome, the same response keys and value types, and the same certificate
profile up to the deliberate differences below, each written as a named expectation.

Deliberate differences (README, "Differences from the built-in engine"):
- `expected_key_usage`: leaf key usages filtered by the subject key type (RFC 5280 4.2.1.3, RFC 8813, RFC 8410).
- `expected_sans`: a CN is copied into the DNS SANs only when it is a multi-label DNS name.
- `expected_eku_critical`: an EKU with timeStamping is critical (RFC 3161 2.3).
- `expected_san_critical`: the SAN extension is critical when the subject is empty (RFC 5280 4.2.1.6).
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from integration.harness import BaoServer, unique_name
from integration.lint import SPIFFE_URI, WILDCARD_DNS, Exemption, lint_findings, openssl_verify

LEAF_MAX_TTL = "8760h"      # the mounts' max lease TTL once the roots exist (leaf capping is tested against it)
ROOT_TTL = "87600h"
URL_BASE = "http://127.0.0.1:8200/v1"

ISSUERS: dict[str, dict[str, Any]] = {
    "ec-root": {"key_type": "ec", "key_bits": 256},
    "rsa-root": {"key_type": "rsa", "key_bits": 2048},
    "ed-root": {"key_type": "ed25519"},
    "p384-root": {"key_type": "ec", "key_bits": 384},
    "short-err": {"key_type": "ec", "ttl": "2h"},
    "short-trunc": {"key_type": "ec", "ttl": "2h"},
    "short-permit": {"key_type": "ec", "ttl": "2h"},
    "no-issuing": {"key_type": "ec"},
}


# --------------------------------------------------------------------------------------------------------------
# Server calls

@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    took: float            # seconds the request took
    sent_at: float         # wall clock when it was sent

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def data(self) -> dict[str, Any]:
        return self.body.get("data") or {}

    def describe(self) -> str:
        return f"HTTP {self.status} {self.body.get('errors') or sorted(self.data)}"


def call(bao: BaoServer, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
    sent = time.time()
    t0 = time.monotonic()
    resp = bao.http(method, path, json=body)
    took = time.monotonic() - t0
    try:
        parsed = resp.json() if resp.content else {}
    except ValueError:
        parsed = {"raw": resp.text}
    return Reply(resp.status_code, parsed, took, sent)


def patch(bao: BaoServer, path: str, body: dict[str, Any]) -> Reply:
    sent = time.time()
    resp = bao.http("PATCH", path, json=body, headers={"Content-Type": "application/merge-patch+json"})
    return Reply(resp.status_code, resp.json() if resp.content else {}, 0.0, sent)


def must(reply: Reply, what: str) -> dict[str, Any]:
    assert reply.ok, f"{what}: {reply.describe()}"
    return reply.data


# --------------------------------------------------------------------------------------------------------------
# The mount pair

@dataclass
class Pair:
    bao: BaoServer
    ours: str
    ref: str
    workdir: Path
    roots: dict[str, dict[str, x509.Certificate]] = field(default_factory=dict)   # mount -> issuer name -> cert
    issued: list[str] = field(default_factory=list)                                # case names ours issued for

    @property
    def mounts(self) -> tuple[str, str]:
        return self.ours, self.ref


def setup_pair(bao: BaoServer, workdir: Path) -> Pair:
    pair = Pair(bao, bao.enable_plugin_mount(unique_name("dpki")), bao.enable_builtin_mount(unique_name("dref")),
                workdir)
    for mount in pair.mounts:
        bao.tune_max_ttl(mount, ROOT_TTL)
        certs: dict[str, x509.Certificate] = {}
        for name, params in ISSUERS.items():
            body = {"common_name": f"Differential {name} CA", "issuer_name": name, "ttl": ROOT_TTL, **params}
            data = must(call(bao, "POST", f"{mount}/root/generate/internal", body), f"{mount} root {name}")
            certs[name] = x509.load_pem_x509_certificate(data["certificate"].encode())
        # PATCH: an update (POST) of issuer/:ref resets the fields it is not given, the name included.
        for name, behavior in (("short-trunc", "truncate"), ("short-permit", "permit")):
            must(patch(bao, f"{mount}/issuer/{name}", {"leaf_not_after_behavior": behavior}), name)
        must(patch(bao, f"{mount}/issuer/no-issuing", {"usage": "read-only,crl-signing,ocsp-signing"}),
             "no-issuing usage")
        must(call(bao, "POST", f"{mount}/config/issuers", {"default": "ec-root"}), "default issuer")
        must(call(bao, "POST", f"{mount}/config/urls", {
            "issuing_certificates": f"{URL_BASE}/{mount}/ca",
            "crl_distribution_points": f"{URL_BASE}/{mount}/crl",
            "ocsp_servers": f"{URL_BASE}/{mount}/ocsp",
        }), "config/urls")
        bao.tune_max_ttl(mount, LEAF_MAX_TTL)
        pair.roots[mount] = certs
    return pair


def teardown_pair(pair: Pair) -> None:
    for mount in pair.mounts:
        pair.bao.disable_mount(mount)


# --------------------------------------------------------------------------------------------------------------
# CAs made outside the server, for tests that import the same CA into both mounts


def self_signed_ca(key: Any, subject: x509.Name) -> x509.Certificate:
    """A 30-day self-signed CA certificate for `key`: CA basic constraints, certificate and CRL signing, an SKID."""
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


def pem_bundle(cert: x509.Certificate, key: Any) -> str:
    """The certificate and its unencrypted PKCS#8 key in PEM, as issuers/import/bundle takes them."""
    return (cert.public_bytes(serialization.Encoding.PEM).decode()
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode())


# --------------------------------------------------------------------------------------------------------------
# CSRs: one key per kind for the whole session (key generation is the slow part)

_KEYS: dict[str, Any] = {}


def key_for(kind: str) -> Any:
    if kind not in _KEYS:
        algo, _, size = kind.partition("-")
        if algo == "rsa":
            _KEYS[kind] = rsa.generate_private_key(65537, int(size))
        elif algo == "ec":
            curve = {"224": ec.SECP224R1, "256": ec.SECP256R1, "384": ec.SECP384R1, "521": ec.SECP521R1}[size]
            _KEYS[kind] = ec.generate_private_key(curve())
        else:
            _KEYS[kind] = ed25519.Ed25519PrivateKey.generate()
    return _KEYS[kind]


@dataclass(frozen=True)
class Csr:
    key: str = "ec-256"
    cn: str = ""
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    organization: str = ""
    key_usage: tuple[str, ...] = ()          # cryptography KeyUsage argument names set to True
    eku: tuple[x509.ObjectIdentifier, ...] = ()
    tamper: bool = False                     # flip a bit of the signature

    def pem(self) -> str:
        attrs = []
        if self.organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        if self.cn:
            attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.cn))
        builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in self.dns]
        sans += [x509.RFC822Name(e) for e in self.emails]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in self.ips]
        sans += [x509.UniformResourceIdentifier(u) for u in self.uris]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if self.key_usage:
            flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                                   "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                                   "encipher_only", "decipher_only"), False)
            flags.update(dict.fromkeys(self.key_usage, True))
            builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
        if self.eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(self.eku)), critical=False)
        key = key_for(self.key)
        algo = None if self.key == "ed25519" else hashes.SHA256()
        der = builder.sign(key, algo).public_bytes(serialization.Encoding.DER)
        if self.tamper:
            der = der[:-3] + bytes([der[-3] ^ 0x01]) + der[-2:]
        b64 = base64.encodebytes(der).decode().replace("\n", "")
        lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
        return "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE REQUEST-----\n"


# --------------------------------------------------------------------------------------------------------------
# Cases

@dataclass(frozen=True)
class Case:
    name: str
    role: dict[str, Any] | None              # role fields (None: no role, e.g. sign-verbatim)
    request: dict[str, Any] | None           # None: the case is the role write itself
    ok: bool = True                          # the final step's expected outcome
    path: str = "issue/{role}"               # relative to the mount; {role} is the case's role name
    csr: Csr | None = None
    lint_exempt: tuple[Exemption, ...] = ()  # pkilint limitations this case runs into (see integration.lint)

    @property
    def role_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9-]", "-", self.name)


def case_id(case: Case) -> str:
    return case.name


# --------------------------------------------------------------------------------------------------------------
# Certificate profiles and the named expectations for our deliberate differences

KU_NAMES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
            "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")

# RFC 5280 4.2.1.3 with RFC 8813 (EC) and RFC 8410 (Ed25519): what a subject key of each type may assert.
PERMITTED_LEAF_KU = {
    "rsa": {"digital_signature", "content_commitment", "key_encipherment", "data_encipherment"},
    "ec": {"digital_signature", "content_commitment", "key_agreement", "encipher_only", "decipher_only"},
    "ed25519": {"digital_signature", "content_commitment"},
}


def expected_key_usage(builtin_ku: frozenset[str] | None, key_type: str) -> frozenset[str] | None:
    """Our leaf's key usages: the built-in's, less those the key type may not assert and never CA usages;
    encipherOnly/decipherOnly only with keyAgreement. No usage left => no extension."""
    if builtin_ku is None:
        return None
    kept = set(builtin_ku) & PERMITTED_LEAF_KU[key_type]
    if "key_agreement" not in kept:
        kept -= {"encipher_only", "decipher_only"}
    return frozenset(kept) or None


_LDH = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def is_linter_dns_name(name: str) -> bool:
    """Two or more LDH labels with an alphabetic (or A-label) TLD, optionally behind one leading `*.`."""
    if name.startswith("*."):
        name = name[2:]
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253:
        return False
    if not (labels[-1].isalpha() or labels[-1].lower().startswith("xn--")):
        return False
    return all(_LDH.match(label) for label in labels)


def expected_sans(builtin_sans: frozenset[tuple[str, str]], common_name: str,
                  explicit_dns: frozenset[str]) -> frozenset[tuple[str, str]]:
    """The built-in copies any host-name-looking CN into the DNS SANs; we only a linter-valid DNS name."""
    if common_name and not is_linter_dns_name(common_name) and common_name.lower() not in explicit_dns:
        return builtin_sans - {("dns", common_name)}
    return builtin_sans


def expected_eku_critical(builtin_critical: bool, ekus: frozenset[str]) -> bool:
    """RFC 3161 2.3: a time-stamping EKU is critical (the built-in never marks it)."""
    return builtin_critical or ExtendedKeyUsageOID.TIME_STAMPING.dotted_string in ekus


def expected_san_critical(builtin_critical: bool, subject_empty: bool) -> bool:
    """RFC 5280 4.2.1.6: with an empty subject the SAN extension is critical."""
    return builtin_critical or subject_empty


def key_type_of(cert: x509.Certificate) -> str:
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return "ec"
    return "ed25519"


_KU_ASN1 = {"non_repudiation": "content_commitment"}
_SAN_KIND = {"dns_name": "dns", "rfc822_name": "email", "uniform_resource_identifier": "uri"}


def _extensions(cert: x509.Certificate) -> dict[str, tuple[bool, Any]]:
    """oid -> (critical, parsed value) through asn1crypto: cryptography refuses a certificate's whole extension
    list when one KeyUsage has decipherOnly without keyAgreement, which the built-in engine writes."""
    tbs = asn1x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))["tbs_certificate"]
    return {e["extn_id"].dotted: (bool(e["critical"].native), e["extn_value"].parsed) for e in tbs["extensions"]}


def _san_set(value: Any) -> frozenset[tuple[str, str]]:
    out = set()
    for gn in value or []:
        kind = gn.name
        if kind == "ip_address":
            out.add(("ip", str(ipaddress.ip_address(gn.chosen.contents))))
        elif kind == "other_name":
            out.add(("other", f"{gn.chosen['type_id'].dotted};{gn.chosen['value'].dump().hex()}"))
        else:
            out.add((_SAN_KIND.get(kind, kind), str(gn.native)))
    return frozenset(out)


def profile(cert: x509.Certificate, mount: str) -> dict[str, Any]:
    """What the comparison looks at, with the mount's name (in AIA/CDP URLs) replaced by MOUNT."""
    exts = _extensions(cert)

    def get(oid: x509.ObjectIdentifier) -> tuple[bool, Any] | tuple[None, None]:
        return exts.get(oid.dotted_string, (None, None))

    def unmount(url: str) -> str:
        return url.replace(f"/{mount}/", "/MOUNT/")

    ku_crit, ku = get(ExtensionOID.KEY_USAGE)
    eku_crit, eku = get(ExtensionOID.EXTENDED_KEY_USAGE)
    san_crit, san = get(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    bc_crit, bc = get(ExtensionOID.BASIC_CONSTRAINTS)
    _, pol = get(ExtensionOID.CERTIFICATE_POLICIES)
    _, aia = get(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    _, cdp = get(ExtensionOID.CRL_DISTRIBUTION_POINTS)
    pub = cert.public_key()
    return {
        "subject": subject_runs(cert.subject),
        "single_valued_rdns": all(len(rdn) == 1 for rdn in cert.subject.rdns),
        "sans": _san_set(san),
        "san_critical": san_crit,
        "key_usage": frozenset(_KU_ASN1.get(n, n) for n in ku.native) if ku is not None else None,
        "key_usage_critical": ku_crit,
        "eku": frozenset(o.dotted for o in eku) if eku is not None else None,
        "eku_critical": eku_crit,
        "basic_constraints": (bc["ca"].native, bc["path_len_constraint"].native, bc_crit) if bc is not None else None,
        "policies": pol.dump() if pol is not None else None,
        "aia": sorted((d["access_method"].dotted, unmount(str(d["access_location"].native))) for d in aia)
        if aia is not None else None,
        "cdp": sorted(unmount(str(n.native)) for dp in cdp for n in dp["distribution_point"].chosen)
        if cdp is not None else None,
        "extensions": frozenset(exts),
        "signature_algorithm": cert.signature_algorithm_oid.dotted_string,
        "key": (key_type_of(cert), getattr(pub, "key_size", 0)),
        "lifetime": (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds(),
        "not_after": cert.not_valid_after_utc,
    }


def subject_runs(name: x509.Name) -> tuple[tuple[str, frozenset[str]], ...]:
    """The subject as runs of one attribute type with their set of values (RDN boundaries left out)."""
    runs: list[tuple[str, set[str]]] = []
    for rdn in name.rdns:
        for attr in rdn:
            oid = attr.oid.dotted_string
            if runs and runs[-1][0] == oid:
                runs[-1][1].add(str(attr.value))
            else:
                runs.append((oid, {str(attr.value)}))
    return tuple((oid, frozenset(values)) for oid, values in runs)


def expected_profile(builtin: dict[str, Any], cn: str, explicit_dns: frozenset[str],
                     leaf: bool = True) -> dict[str, Any]:
    """The built-in's profile turned into ours by the deliberate differences (key usages: leaves only)."""
    exp = dict(builtin)
    # Go writes all values of one subject field into one multi-valued RDN (pkilint: duplicate attribute types in
    # an RDN); we write one RDN per value, same order of fields.
    exp["single_valued_rdns"] = True
    key_type = builtin["key"][0]
    exp["key_usage"] = expected_key_usage(builtin["key_usage"], key_type) if leaf else builtin["key_usage"]
    exp["key_usage_critical"] = builtin["key_usage_critical"] if exp["key_usage"] is not None else None
    exp["sans"] = expected_sans(builtin["sans"], cn, explicit_dns)
    if builtin["eku"] is not None:
        exp["eku_critical"] = expected_eku_critical(builtin["eku_critical"], builtin["eku"])
    ext = set(builtin["extensions"])
    if exp["key_usage"] is None:
        ext.discard(ExtensionOID.KEY_USAGE.dotted_string)
    if not exp["sans"]:
        ext.discard(ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string)
        exp["san_critical"] = None
    else:
        exp["san_critical"] = expected_san_critical(bool(builtin["san_critical"]), builtin["subject"] == ())
    exp["extensions"] = frozenset(ext)
    return exp


# --------------------------------------------------------------------------------------------------------------
# Responses

def shape(value: Any) -> Any:
    """Keys and value types of a response's data (lists: the element types)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["list", sorted({type(v).__name__ for v in value})]
    return type(value).__name__


def envelope(reply: Reply) -> dict[str, Any]:
    """The lease part of a response: whether there is one and its renewability."""
    return {"lease": bool(reply.body.get("lease_id")), "renewable": reply.body.get("renewable")}


def leaf_and_chain(data: dict[str, Any], fmt: str) -> tuple[x509.Certificate, list[x509.Certificate]]:
    def load(text: str) -> list[x509.Certificate]:
        if fmt == "der":
            return [x509.load_der_x509_certificate(base64.b64decode(text))]
        blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
        return [x509.load_pem_x509_certificate(b.encode()) for b in blocks]

    certs = load(data["certificate"])
    chain: list[x509.Certificate] = []
    for item in [data.get("issuing_ca", "")] + list(data.get("ca_chain") or []):
        if item:
            chain += load(item)
    return certs[0], chain


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _explicit_dns(case: Case) -> frozenset[str]:
    names = set()
    if case.request:
        names |= {n.strip().lower() for n in str(case.request.get("alt_names", "")).split(",") if n.strip()}
    if case.csr:
        names |= {n.lower() for n in case.csr.dns}
    return frozenset(names)


def empty_entries_dropped(ours: Any, builtin: Any) -> bool:
    """Comma-list role fields: the built-in stores empty entries ("a,," reads back ["a", "", ""]); our
    framework drops them while parsing (they match nothing either way)."""
    return isinstance(builtin, list) and ours == [v for v in builtin if v != ""]


# Role-read values where we knowingly differ from the built-in.
ROLE_READ_DIFFERENCES: dict[str, Callable[[Any, Any], bool]] = {
    name: empty_entries_dropped for name in ("allowed_domains", "allowed_uri_sans", "allowed_other_sans",
                                             "allowed_serial_numbers", "allowed_user_ids", "ou", "organization",
                                             "country", "locality", "province", "street_address", "postal_code",
                                             "key_usage", "ext_key_usage", "ext_key_usage_oids", "cn_validations")
}


def compare_role_reads(ours: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    problems = []
    if shape(ours) != shape(ref):
        problems.append(f"role read shape: ours {shape(ours)} != built-in {shape(ref)}")
    for key in sorted(set(ours) & set(ref)):
        a, b = ours[key], ref[key]
        if a == b or (key in ROLE_READ_DIFFERENCES and ROLE_READ_DIFFERENCES[key](a, b)):
            continue
        if isinstance(a, list) and isinstance(b, list) and sorted(map(str, a)) == sorted(map(str, b)):
            continue
        problems.append(f"role field {key}: ours {a!r} != built-in {b!r}")
    return problems


def run_case(pair: Pair, case: Case) -> None:
    bao = pair.bao
    role = case.role_name
    if case.role is not None:
        writes = {m: call(bao, "POST", f"{m}/roles/{role}", case.role) for m in pair.mounts}
        w_ours, w_ref = writes[pair.ours], writes[pair.ref]
        assert w_ours.ok == w_ref.ok, f"role write: ours {w_ours.describe()} / built-in {w_ref.describe()}"
        if case.request is None:
            assert w_ours.ok == case.ok, f"role write expected {'success' if case.ok else 'rejection'}: " \
                                         f"{w_ours.describe()}"
            if not w_ours.ok:
                assert w_ours.body.get("errors"), w_ours.body
        if not w_ours.ok:
            assert case.request is None, f"role write rejected: {w_ours.describe()}"
            return
        reads = {m: must(call(bao, "GET", f"{m}/roles/{role}"), f"{m} role read") for m in pair.mounts}
        problems = compare_role_reads(reads[pair.ours], reads[pair.ref])
        assert problems == [], "\n".join(problems)
        if case.request is None:
            return

    body = dict(case.request or {})
    if case.csr is not None:
        body["csr"] = case.csr.pem()
    path = case.path.format(role=role)
    replies = {m: call(bao, "POST", f"{m}/{path}", body) for m in pair.mounts}
    ours, ref = replies[pair.ours], replies[pair.ref]
    assert ours.ok == ref.ok, f"outcome: ours {ours.describe()} / built-in {ref.describe()}"
    assert ours.ok == case.ok, f"expected {'success' if case.ok else 'rejection'}: {ours.describe()}"
    if not ours.ok:
        errors = ours.body.get("errors")
        assert ours.status < 500, f"ours answered {ours.status}: {errors}"
        assert errors and all(isinstance(e, str) and e for e in errors), ours.body
        return

    assert shape(ours.data) == shape(ref.data), f"response keys/types: ours {shape(ours.data)} / " \
                                                f"built-in {shape(ref.data)}"
    assert envelope(ours) == envelope(ref)
    fmt = body.get("format", "pem")
    leaf, chain = leaf_and_chain(ours.data, fmt)
    ref_leaf, _ = leaf_and_chain(ref.data, fmt)
    mine = profile(leaf, pair.ours)
    theirs = profile(ref_leaf, pair.ref)
    expected = expected_profile(theirs, _cn(ref_leaf), _explicit_dns(case))
    # Validity: same lifetime within 2 s, and the same NotAfter up to the time between the two requests.
    # The built-in reads the clock for NotAfter before generating the key and for NotBefore after it, so a slow
    # key generation (RSA-8192 in Go: tens of seconds) shortens its lifetime by that time; ours reads it once.
    lifetimes = mine.pop("lifetime"), expected.pop("lifetime")
    assert abs(lifetimes[0] - lifetimes[1]) <= 2 + ref.took, \
        f"lifetime ours {lifetimes[0]}s, expected {lifetimes[1]}s"
    skew = abs(ours.sent_at - ref.sent_at) + ours.took + ref.took + 2
    gap = abs((mine.pop("not_after") - expected.pop("not_after")).total_seconds())
    assert gap <= skew, f"NotAfter differs by {gap:.1f}s"
    assert mine == expected, "\n".join(f"{k}: ours {mine[k]!r} != expected {expected[k]!r}"
                                        for k in expected if mine.get(k) != expected[k])

    findings = lint_findings(leaf, case.lint_exempt)
    assert findings == [], "pkilint: " + "\n".join(findings)
    verify = openssl_verify(leaf, chain, pair.workdir)
    assert verify == "", f"openssl verify: {verify}"
    pair.issued.append(case.name)


__all__ = ["Case", "Csr", "Pair", "SPIFFE_URI", "WILDCARD_DNS", "run_case", "setup_pair", "teardown_pair",
           "case_id", "dt"]
