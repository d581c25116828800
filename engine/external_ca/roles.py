"""`role/:name`: which account orders go through, which identifiers and challenge types clients may use."""
from __future__ import annotations

import ipaddress
from typing import Any

from engine.external_ca import keys, matching, order_index
from engine.external_ca.common import ROLE_PREFIX, rfc3339
from engine.external_ca.records import (
    OrderStatus, RoleRecord, load_account, load_role, save_order, save_role,
)
from engine.external_ca.runtime import Runtime
from plugin.framework import (
    Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, list_response, name_regex,
)

CHALLENGE_TYPES = ("http-01", "dns-01", "tls-alpn-01")
POPULATIONS = ("cn_first", "sans_only")


def role_data(rec: RoleRecord) -> dict[str, Any]:
    return {
        "name": rec.name,
        "acme_account_name": rec.acme_account_name,
        "allowed_domains": list(rec.allowed_domains),
        "allowed_domain_options": list(rec.allowed_domain_options),
        "allowed_challenge_types": list(rec.allowed_challenge_types),
        "allowed_ip_ranges": list(rec.allowed_ip_ranges),
        "csr_generate_key_type": rec.csr_generate_key_type,
        "csr_identifier_population": rec.csr_identifier_population,
        "ari_renewal": rec.ari_renewal,
        "creation_date": rec.creation_date,
        "last_updated_date": rec.last_updated_date,
    }


def _check_choice(name: str, values: list[str], allowed: tuple[str, ...]) -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UserError(f"invalid {name} {', '.join(bad)}: allowed values are {', '.join(allowed)}")


def normalize_allowed_domains(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        if matching.has_template(value):
            try:
                matching.validate_template(value)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            out.append(value)
            continue
        try:
            out.append(matching.to_alabel(value))
        except matching.IdentifierError as exc:
            raise UserError(f"invalid allowed_domains entry: {exc}") from None
    return out


class Roles:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def paths(self) -> list[Path]:
        fields = {
            "name": Field(FieldType.STRING, "Role name."),
            "acme_account_name": Field(FieldType.STRING, "ACME account the role orders through (immutable)."),
            "allowed_domains": Field(FieldType.COMMA_STRING_SLICE,
                                     "Domains clients may order; identity templates allowed."),
            "allowed_domain_options": Field(FieldType.COMMA_STRING_SLICE, "How allowed_domains match: "
                                            "bare_domains, subdomains, wildcards, globs."),
            "allowed_challenge_types": Field(FieldType.COMMA_STRING_SLICE, "Challenge types clients may use.",
                                             default=list(CHALLENGE_TYPES)),
            "allowed_ip_ranges": Field(FieldType.COMMA_STRING_SLICE,
                                       "CIDR ranges of IP identifiers clients may order (RFC 8738)."),
            "csr_generate_key_type": Field(FieldType.STRING, "Key type generated in the identifier workflow.",
                                           default="ec-256", allowed_values=keys.CERT_KEY_TYPES),
            "csr_identifier_population": Field(FieldType.STRING, "cn_first or sans_only.", default="cn_first",
                                               allowed_values=POPULATIONS),
            "ari_renewal": Field(FieldType.BOOL, "Start a renewal order when the CA's ACME Renewal "
                                                 "Information window opens (identifier workflow)."),
            "force": Field(FieldType.BOOL, "Delete even when the role has active orders.", query=True),
        }
        return [
            Path("role/?$", {}, {Operation.LIST: self.list}, synopsis="List roles."),
            Path("role/" + name_regex("name"), fields,
                 {Operation.UPDATE: self.write, Operation.CREATE: self.write, Operation.READ: self.read,
                  Operation.DELETE: self.delete},
                 exists=self.exists, synopsis="Manage a role for ordering certificates from an external CA."),
        ]

    async def exists(self, req: Request, d: FieldData) -> bool:
        return await load_role(req.storage, d.get("name")) is not None

    async def list(self, req: Request, d: FieldData) -> Response | None:
        names = [k for k in await req.storage.list(ROLE_PREFIX) if not k.endswith("/")]
        return list_response(names) if names else None

    async def read(self, req: Request, d: FieldData) -> Response | None:
        rec = await load_role(req.storage, d.get("name"))
        return None if rec is None else Response(data=role_data(rec))

    async def write(self, req: Request, d: FieldData) -> Response:
        name = d.get("name")
        async with self.rt.role_locks[name]:
            existing = await load_role(req.storage, name)
            account, has_account = d.get_ok("acme_account_name")
            if existing is None:
                if not account:
                    raise UserError("missing acme_account_name")
            elif has_account and account != existing.acme_account_name:
                raise UserError("acme_account_name cannot be changed after the role is created")
            account = account if existing is None else existing.acme_account_name
            if existing is None and await load_account(req.storage, account) is None:
                raise UserError(f"unknown ACME account {account!r}")

            def pick(field: str, current: Any) -> Any:
                value, supplied = d.get_ok(field)
                return value if supplied or existing is None else current

            domains = normalize_allowed_domains(pick("allowed_domains", existing and existing.allowed_domains))
            options = pick("allowed_domain_options", existing and existing.allowed_domain_options)
            _check_choice("allowed_domain_options", options, matching.DOMAIN_OPTIONS)
            challenges = pick("allowed_challenge_types", existing and existing.allowed_challenge_types)
            if not challenges:
                raise UserError("allowed_challenge_types must name at least one challenge type")
            _check_choice("allowed_challenge_types", challenges, CHALLENGE_TYPES)
            ranges = pick("allowed_ip_ranges", existing and existing.allowed_ip_ranges)
            for cidr in ranges:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    raise UserError(f"invalid allowed_ip_ranges entry {cidr!r}") from None
            key_type = pick("csr_generate_key_type", existing and existing.csr_generate_key_type)
            _check_choice("csr_generate_key_type", [key_type], keys.CERT_KEY_TYPES)
            population = pick("csr_identifier_population", existing and existing.csr_identifier_population)
            _check_choice("csr_identifier_population", [population], POPULATIONS)
            ari = pick("ari_renewal", existing and existing.ari_renewal)

            warnings: list[str] = []
            if "wildcards" in options and "dns-01" not in challenges:
                warnings.append("wildcard identifiers can only be validated with dns-01, which this role forbids")
            now = rfc3339(self.rt.now())
            rec = RoleRecord(
                name=name, acme_account_name=account, allowed_domains=domains,
                allowed_domain_options=list(dict.fromkeys(options)),
                allowed_challenge_types=list(dict.fromkeys(challenges)), csr_generate_key_type=key_type,
                csr_identifier_population=population, creation_date=existing.creation_date if existing else now,
                last_updated_date=now, allowed_ip_ranges=ranges, ari_renewal=bool(ari))
            await save_role(req.storage, rec)
            return Response(data=role_data(rec), warnings=warnings)

    async def delete(self, req: Request, d: FieldData) -> Response | None:
        name = d.get("name")
        async with self.rt.role_locks[name]:
            rec = await load_role(req.storage, name)
            if rec is None:
                return None
            await self.rt.index.ensure(req.storage)
            active = await order_index.active_of_role(req.storage, name)
            if active and not d.get("force"):
                raise UserError(f"role {name!r} has {len(active)} active order(s); delete with force=true")
            for order in active:
                async with self.rt.order_locks[order.order_id]:
                    order.status = OrderStatus.ERROR
                    order.last_error = "the role was deleted"
                    order.next_work_date = "0001-01-01T00:00:00Z"
                    order.last_update = rfc3339(self.rt.now())
                    await save_order(req.storage, order)
            await req.storage.delete(ROLE_PREFIX + name)
            return None
