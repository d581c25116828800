"""Roles: Vault's issuance policy records (`role/<name>`), their schema, validation and cache.

A role is written whole (POST: every omitted field takes its schema default) or merged (PATCH); either
way the complete new record is validated before the single storage write.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from engine.storage import Storage, get_json, put_json
from plugin.framework import DisplayAttrs, Field, FieldData, FieldType, UserError, with_display

ROLE_PREFIX = "role/"

DEFAULT_KEY_USAGE = ["DigitalSignature", "KeyAgreement", "KeyEncipherment"]
RSA_SIZES = (2048, 3072, 4096, 8192)
EC_SIZES = (224, 256, 384, 521)
DEFAULT_KEY_BITS = {"rsa": 2048, "ec": 256, "mldsa": 44}
MLDSA_SIZES = (44, 65, 87)
KEY_TYPES = ("rsa", "ec", "ed25519", "mldsa", "any")

GENERATE_LEASE_WARNING = (
    "it is encouraged to disable generate_lease and rely on PKI's native capabilities when possible; this "
    "option can cause instance-wide issues with large numbers of issued certificates"
)
NO_STORE_LEASE_WARNING = (
    "mutually exclusive values no_store=true and generate_lease=true were both specified; no_store=true "
    "takes priority"
)


def _f(ftype: FieldType, description: str, default: Any = None) -> Field:
    return Field(ftype, description=description, default=default)


B, S, I, L, D = FieldType.BOOL, FieldType.STRING, FieldType.INT, FieldType.COMMA_STRING_SLICE, FieldType.DURATION

# The 51 writable role fields of OpenBao 2.7.2 plus Vault Enterprise's no_store_metadata (ours in the open).
ROLE_FIELDS: dict[str, Field] = {
    "ttl": _f(D, "Default TTL of issued certificates; 0 means the mount's default lease TTL."),
    "max_ttl": _f(D, "Maximum TTL of issued certificates; 0 means the mount's maximum lease TTL."),
    "allow_localhost": _f(B, "Allow localhost and localdomain names regardless of allowed_domains.", True),
    "allowed_domains": _f(L, "Base domains the role may issue for."),
    "allowed_domains_template": _f(B, "Expand identity templates in allowed_domains.", False),
    "allow_globs_in_identity_templates": _f(B, "Let identity template values contain '*'.", False),
    "allow_bare_domains": _f(B, "Allow the base domains themselves."),
    "allow_subdomains": _f(B, "Allow subdomains of the base domains, including wildcards."),
    "allow_glob_domains": _f(B, "Treat allowed_domains entries containing '*' as globs."),
    "allow_wildcard_certificates": _f(B, "Allow wildcard names (RFC 6125 left-most label).", True),
    "allow_any_name": _f(B, "Skip allowed_domains checks."),
    "enforce_hostnames": _f(B, "Require DNS names to be valid hostnames.", True),
    "allow_ip_sans": _f(B, "Allow IP subject alternative names.", True),
    "allowed_ip_sans_cidr": _f(L, "CIDR blocks IP SANs must fall into (empty: any)."),
    "allowed_uri_sans": _f(L, "Globs URI SANs must match (empty: none allowed)."),
    "allowed_uri_sans_template": _f(B, "Expand identity templates in allowed_uri_sans.", False),
    "allowed_other_sans": _f(L, "Allowed other SANs as <oid>;UTF8:<glob>, or '*'."),
    "allowed_serial_numbers": _f(L, "Allowed subject serialNumber values (globs)."),
    "allowed_user_ids": _f(L, "Allowed subject UID values (globs, '*' for any)."),
    "server_flag": _f(B, "Add the serverAuth extended key usage.", True),
    "client_flag": _f(B, "Add the clientAuth extended key usage.", True),
    "code_signing_flag": _f(B, "Add the codeSigning extended key usage."),
    "email_protection_flag": _f(B, "Add the emailProtection extended key usage."),
    "key_type": Field(S, "Key type: rsa, ec, ed25519, mldsa, or any (sign only).", "rsa",
                      allowed_values=("rsa", "ec", "ed25519", "mldsa", "any")),
    "key_bits": _f(I, "Key size: rsa 2048/3072/4096/8192, ec 224/256/384/521; 0 for the default.", 0),
    "signature_bits": _f(I, "Hash size for RSA issuers: 256, 384 or 512; 0 for the default.", 0),
    "use_pss": _f(B, "Use RSASSA-PSS signatures with RSA issuers.", False),
    "key_usage": _f(L, "Key usages of issued certificates.", DEFAULT_KEY_USAGE),
    "ext_key_usage": _f(L, "Extra extended key usages by name.", []),
    "ext_key_usage_oids": _f(L, "Extra extended key usages by OID."),
    "use_csr_common_name": _f(B, "On sign, take the common name from the CSR.", True),
    "use_csr_sans": _f(B, "On sign, take the SANs from the CSR.", True),
    "ou": _f(L, "Subject OU values."),
    "organization": _f(L, "Subject O values."),
    "country": _f(L, "Subject C values."),
    "locality": _f(L, "Subject L values."),
    "province": _f(L, "Subject ST values."),
    "street_address": _f(L, "Subject street values."),
    "postal_code": _f(L, "Subject postalCode values."),
    "generate_lease": _f(B, "Attach a lease to each certificate."),
    "no_store": _f(B, "Do not store issued certificates."),
    "no_store_metadata": _f(B, "Do not store cert_metadata sent with issue/sign requests."),
    "require_cn": _f(B, "Require a common name.", True),
    "cn_validations": _f(L, "Common name checks: email, hostname, or disabled.", ["email", "hostname"]),
    "policy_identifiers": _f(L, "Certificate policy OIDs, or a JSON list of {oid, cps, notice} objects."),
    "basic_constraints_valid_for_non_ca": _f(B, "Add BasicConstraints CA:FALSE to issued certificates."),
    "not_before_duration": _f(D, "How far NotBefore is back-dated.", 30),
    "not_before": _f(S, "Fixed NotBefore (RFC 3339) for every certificate of the role."),
    "not_before_bound": Field(S, "How a requested not_before is treated: permit, duration or forbid.", "permit",
                              allowed_values=("permit", "duration", "forbid")),
    "not_after": _f(S, "Fixed NotAfter (RFC 3339) for every certificate of the role."),
    "not_after_bound": Field(S, "Bound on a requested not_after: permit, ttl-limited, forbid or a timestamp.",
                             "permit", allowed_values=("permit", "ttl-limited", "forbid", "an explicit timestamp")),
    "issuer_ref": _f(S, "Issuer used by issue/sign on this role.", "default"),
}

_ROLE_LABELS: dict[str, DisplayAttrs] = {
    "ttl": DisplayAttrs(name="TTL"),
    "max_ttl": DisplayAttrs(name="Max TTL"),
    "allow_localhost": DisplayAttrs(value=True),
    "enforce_hostnames": DisplayAttrs(value=True),
    "allow_ip_sans": DisplayAttrs(name="Allow IP Subject Alternative Names", value=True),
    "allowed_uri_sans": DisplayAttrs(name="Allowed URI Subject Alternative Names"),
    "allowed_other_sans": DisplayAttrs(name="Allowed Other Subject Alternative Names"),
    "server_flag": DisplayAttrs(value=True),
    "client_flag": DisplayAttrs(value=True),
    "key_usage": DisplayAttrs(value="DigitalSignature,KeyAgreement,KeyEncipherment"),
    "ext_key_usage": DisplayAttrs(name="Extended Key Usage"),
    "ext_key_usage_oids": DisplayAttrs(name="Extended Key Usage OIDs"),
    "use_csr_common_name": DisplayAttrs(name="Use CSR Common Name", value=True),
    "use_csr_sans": DisplayAttrs(name="Use CSR Subject Alternative Names", value=True),
    "ou": DisplayAttrs(name="Organizational Unit"),
    "locality": DisplayAttrs(name="Locality/City"),
    "province": DisplayAttrs(name="Province/State"),
    "require_cn": DisplayAttrs(name="Require Common Name"),
    "cn_validations": DisplayAttrs(name="Common Name Validations"),
    "basic_constraints_valid_for_non_ca": DisplayAttrs(name="Basic Constraints Valid for Non-CA"),
    "not_before_duration": DisplayAttrs(value=30),
}
# The web UI labels these fields and pre-fills its role form from `value` (as on the built-in engine).
ROLE_FIELDS = with_display(ROLE_FIELDS, **_ROLE_LABELS)


@dataclass
class Role:
    name: str = ""
    ttl: int = 0
    max_ttl: int = 0
    allow_localhost: bool = True
    allowed_domains: list[str] = field(default_factory=list)
    allowed_domains_template: bool = False
    allow_globs_in_identity_templates: bool = False
    allow_bare_domains: bool = False
    allow_subdomains: bool = False
    allow_glob_domains: bool = False
    allow_wildcard_certificates: bool = True
    allow_any_name: bool = False
    enforce_hostnames: bool = True
    allow_ip_sans: bool = True
    allowed_ip_sans_cidr: list[str] = field(default_factory=list)
    allowed_uri_sans: list[str] = field(default_factory=list)
    allowed_uri_sans_template: bool = False
    allowed_other_sans: list[str] = field(default_factory=list)
    allowed_serial_numbers: list[str] = field(default_factory=list)
    allowed_user_ids: list[str] = field(default_factory=list)
    server_flag: bool = True
    client_flag: bool = True
    code_signing_flag: bool = False
    email_protection_flag: bool = False
    key_type: str = "rsa"
    key_bits: int = 2048
    signature_bits: int = 0
    use_pss: bool = False
    key_usage: list[str] = field(default_factory=lambda: list(DEFAULT_KEY_USAGE))
    ext_key_usage: list[str] = field(default_factory=list)
    ext_key_usage_oids: list[str] = field(default_factory=list)
    use_csr_common_name: bool = True
    use_csr_sans: bool = True
    ou: list[str] = field(default_factory=list)
    organization: list[str] = field(default_factory=list)
    country: list[str] = field(default_factory=list)
    locality: list[str] = field(default_factory=list)
    province: list[str] = field(default_factory=list)
    street_address: list[str] = field(default_factory=list)
    postal_code: list[str] = field(default_factory=list)
    generate_lease: bool = False
    no_store: bool = False
    no_store_metadata: bool = False
    require_cn: bool = True
    cn_validations: list[str] = field(default_factory=lambda: ["email", "hostname"])
    policy_identifiers: list[str] = field(default_factory=list)
    basic_constraints_valid_for_non_ca: bool = False
    not_before_duration: int = 30
    not_before: str = ""
    not_before_bound: str = "permit"
    not_after: str = ""
    not_after_bound: str = "permit"
    issuer_ref: str = "default"
    # Set only for the implicit roles of CA paths; never written by roles/:name.
    max_path_length: int | None = None

    def to_response(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in ROLE_FIELDS if name != "no_store_metadata"}
        data = {k: (list(v) if isinstance(v, list) else v) for k, v in data.items()}
        data["allow_token_displayname"] = False
        if self.no_store_metadata:
            # Vault Enterprise's field: shown only when set, so default roles read exactly as the built-in's.
            data["no_store_metadata"] = True
        if self.max_path_length is not None:
            data["max_path_length"] = self.max_path_length
        return data

    def to_storage(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("name")
        return data

    @classmethod
    def from_storage(cls, name: str, data: dict[str, Any]) -> "Role":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(name=name, **{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> "Role":
        return dataclasses.replace(self, **changes)


# --- validation -------------------------------------------------------------------------------------


def validate_key_params(key_type: str, key_bits: int) -> int:
    """Vault's key type/size rules; returns the normalised key_bits (0 -> the type's default)."""
    if key_type not in KEY_TYPES:
        raise UserError(f"unknown key type {key_type}")
    if key_bits == 0:
        key_bits = DEFAULT_KEY_BITS.get(key_type, 0)
    if key_type == "rsa":
        if key_bits < 2048:
            raise UserError(f"RSA keys < 2048 bits are unsafe and not supported: got {key_bits}")
        if key_bits not in RSA_SIZES:
            raise UserError(f"unsupported bit length for RSA key: {key_bits}")
    elif key_type == "ec" and key_bits not in EC_SIZES:
        raise UserError(f"unsupported bit length for EC key: {key_bits}")
    elif key_type == "mldsa" and key_bits not in MLDSA_SIZES:
        raise UserError(f"unsupported bit length for ML-DSA key: {key_bits}")
    return key_bits


def parse_other_san_rules(entries: list[str]) -> dict[str, list[str]]:
    """`<oid>;UTF8:<value>` entries to {oid: [values]}; the same shape requests use for other_sans."""
    out: dict[str, list[str]] = {}
    for entry in entries:
        oid, sep, rest = entry.partition(";")
        if not sep:
            raise ValueError(f'expected a semicolon in other SAN "{entry}"')
        kind, sep, value = rest.partition(":")
        if not sep:
            raise ValueError(f'expected a colon in other SAN "{entry}"')
        if kind.lower() not in ("utf8", "utf-8"):
            raise ValueError(f'only utf8 other SANs are supported; found non-supported type in other SAN "{entry}"')
        out.setdefault(oid, []).append(value)
    return out


def parse_oid(text: str) -> x509.ObjectIdentifier:
    parts = text.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid OID {text!r}")
    try:
        return x509.ObjectIdentifier(text)
    except ValueError:
        raise ValueError(f"invalid OID {text!r}") from None


@dataclass(frozen=True)
class PolicyEntry:
    oid: str
    cps: str = ""
    notice: str = ""


def parse_policy_entries(values: list[str]) -> list[PolicyEntry]:
    """Stored policy identifiers (bare OIDs or JSON objects) as entries; ValueError when malformed."""
    out: list[PolicyEntry] = []
    for value in values:
        if value == "":
            continue
        try:
            parse_oid(value)
            out.append(PolicyEntry(value))
            continue
        except ValueError:
            pass
        try:
            obj = json.loads(value)
        except ValueError:
            raise ValueError(f'policy identifier "{value}" is neither a valid OID nor a JSON policy identifier') \
                from None
        if not isinstance(obj, dict):
            raise ValueError(f'policy identifier "{value}" is neither a valid OID nor a JSON policy identifier')
        entry = PolicyEntry(str(obj.get("oid", "")), str(obj.get("cps", "") or ""), str(obj.get("notice", "") or ""))
        parse_oid(entry.oid)
        out.append(entry)
    return out


def policy_identifiers_from_request(d: FieldData, current: list[str]) -> list[str]:
    """A JSON string of policy objects becomes one stored JSON string per policy; else a list of OIDs."""
    value, supplied = d.get_ok("policy_identifiers")
    if not supplied:
        return current
    raw = d.raw.get("policy_identifiers")
    if isinstance(raw, str) and raw.strip().startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(p, dict) for p in parsed):
            return [json.dumps({k: p[k] for k in ("oid", "cps", "notice") if p.get(k)}, separators=(",", ":"))
                    for p in parsed]
    if isinstance(raw, list) and raw and all(isinstance(p, dict) for p in raw):
        return [json.dumps({k: p[k] for k in ("oid", "cps", "notice") if p.get(k)}, separators=(",", ":"))
                for p in raw]
    return list(value)


def check_cn_validations(values: list[str]) -> list[str]:
    if not values:
        return ["email", "hostname"]
    seen: list[str] = []
    for value in values:
        low = value.lower()
        if low not in ("disabled", "email", "hostname"):
            raise UserError(f"cn_validations value incorrect: unknown type: `{value}`")
        if low in seen:
            raise UserError(f"cn_validations value incorrect: `{low}` specified multiple times")
        seen.append(low)
    if "disabled" in seen and len(seen) > 1:
        raise UserError("cn_validations value incorrect: cannot specify `disabled` along with `email` or `hostname`")
    return seen


def canonical_cidrs(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise UserError(f"error parsing allowed_ip_sans_cidr: invalid CIDR address: {value}") from None
    return out


def parse_rfc3339(value: str) -> dt.datetime:
    """RFC 3339 with a zone, as Go's time.Parse(time.RFC3339) accepts; UserError otherwise."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
        raise UserError(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse "{value}"')
    return parsed


def validate_not_after_bound(value: str) -> None:
    if value in ("permit", "forbid", "ttl-limited"):
        return
    try:
        parse_rfc3339(value)
    except UserError:
        raise UserError("Unknown value for field `not_after_bound`. Possible values are `permit`, `ttl-limited`, "
                        "`forbid`, or an explicit timestamp.") from None


def validate_not_before_bound(value: str) -> None:
    if value not in ("permit", "duration", "forbid"):
        raise UserError("Unknown value for field `not_before_bound`. Possible values are `permit` `duration` or "
                        "`forbid`")


_SCALAR_FIELDS = [n for n in ROLE_FIELDS if n not in ("policy_identifiers", "allow_wildcard_certificates",
                                                       "generate_lease", "allowed_ip_sans_cidr")]


def build_role(name: str, d: FieldData, old: Role | None) -> tuple[Role, list[str]]:
    """The role a write (old=None: full overwrite) or patch (old: merge) produces, and its warnings.

    Raises UserError on bad input; nothing is written here.
    """
    base = old if old is not None else Role(name=name)
    values: dict[str, Any] = {}
    for fname in _SCALAR_FIELDS:
        value, supplied = d.get_ok(fname)
        if old is not None and (not supplied or d.raw.get(fname) is None):
            value = getattr(old, fname)
        values[fname] = list(value) if isinstance(value, list) else value
    wildcard, supplied = d.get_ok("allow_wildcard_certificates")
    values["allow_wildcard_certificates"] = wildcard if supplied or old is None else old.allow_wildcard_certificates
    values["policy_identifiers"] = policy_identifiers_from_request(d, list(base.policy_identifiers)
                                                                   if old is not None else [])
    cidrs, supplied = d.get_ok("allowed_ip_sans_cidr")
    values["allowed_ip_sans_cidr"] = canonical_cidrs(cidrs if supplied or old is None else old.allowed_ip_sans_cidr)

    other = values["allowed_other_sans"]
    if other and other != ["*"]:
        try:
            parse_other_san_rules(other)
        except ValueError as exc:
            raise UserError(f"error parsing allowed_other_sans: {exc}") from None

    warnings: list[str] = []
    lease, lease_supplied = d.get_ok("generate_lease")
    if old is not None and not lease_supplied:
        lease = old.generate_lease
    if values["no_store"]:
        if lease:
            warnings.append(NO_STORE_LEASE_WARNING)
        lease = False
    elif lease:
        warnings.append(GENERATE_LEASE_WARNING)
    values["generate_lease"] = lease

    if d.has("not_after_bound"):
        validate_not_after_bound(values["not_after_bound"])
    if d.has("not_before_bound"):
        validate_not_before_bound(values["not_before_bound"])

    if values["max_ttl"] > 0 and values["ttl"] > values["max_ttl"]:
        raise UserError('"ttl" value must be less than "max_ttl" value')
    values["key_bits"] = validate_key_params(values["key_type"], values["key_bits"])
    for oid in values["ext_key_usage_oids"]:
        try:
            parse_oid(oid)
        except ValueError:
            raise UserError(f'"{oid}" could not be parsed as a valid oid for an extended key usage') from None
    try:
        parse_policy_entries(values["policy_identifiers"])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not values["issuer_ref"]:
        values["issuer_ref"] = "default"
    values["cn_validations"] = check_cn_validations(values["cn_validations"])
    return Role(name=name, max_path_length=base.max_path_length if old is not None else None, **values), warnings


# --- storage and cache ------------------------------------------------------------------------------


class RoleCache:
    """Roles by name, read through from storage; the hot issue path does no role read once warm.

    Entries are dropped on write/delete through this object and on the server's invalidate for `role/*`.
    """

    def __init__(self) -> None:
        self._roles: dict[str, Role] = {}
        # Counts drops: a read that an invalidation overtook (a standby reading while raft applies a write) must
        # not put the old role back.
        self._epoch = 0

    async def get(self, storage: Storage, name: str) -> Role | None:
        cached = self._roles.get(name)
        if cached is not None:
            return cached
        epoch = self._epoch
        data = await get_json(storage, ROLE_PREFIX + name)
        if data is None:
            return None
        role = Role.from_storage(name, data)
        if epoch == self._epoch:
            self._roles[name] = role
        return role

    async def put(self, storage: Storage, role: Role) -> None:
        self._drop(role.name)
        await put_json(storage, ROLE_PREFIX + role.name, role.to_storage())
        self._roles[role.name] = role

    async def delete(self, storage: Storage, name: str) -> None:
        self._drop(name)
        await storage.delete(ROLE_PREFIX + name)

    def _drop(self, name: str) -> None:
        self._roles.pop(name, None)
        self._epoch += 1

    async def list(self, storage: Storage) -> list[str]:
        return [k for k in await storage.list(ROLE_PREFIX) if not k.endswith("/")]

    def invalidate(self, key: str) -> None:
        if key.startswith(ROLE_PREFIX):
            self._drop(key[len(ROLE_PREFIX):])

    def clear(self) -> None:
        self._roles.clear()
