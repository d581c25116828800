"""Order paths: new-order, status, challenge, fulfilled-challenge, fetch-cert, revoke, renewal-info, listings."""
from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from engine.external_ca import acme_client, keys, matching, order_index
from engine.external_ca.acme_client import AcmeFailed, RetryLater
from engine.external_ca.common import ZERO_TIME, colon_hex, normalize_serial, parse_rfc3339, rfc3339
from engine.external_ca.records import (
    OrderRecord, OrderStatus, RoleRecord, list_order_ids, load_account, load_order, load_role, order_key_path,
    save_order, serial_path,
)
from engine.external_ca.runtime import Runtime
from engine.external_ca.worker import Worker, all_fulfilled, authority_key_id
from engine.storage import get_json
from plugin.framework import (
    CodedError, Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, list_response,
    name_regex,
)

ORDER_ID = r"(?P<order_id>[0-9a-fA-F-]{1,64})"
REVOCATION_REASONS = {
    "unspecified": 0, "key_compromise": 1, "ca_compromise": 2, "affiliation_changed": 3, "superseded": 4,
    "cessation_of_operation": 5, "certificate_hold": 6, "remove_from_crl": 8, "privilege_withdrawn": 9,
    "aa_compromise": 10,
}
FORMATS = ("pem", "der", "pem_bundle")


def status_data(rec: OrderRecord, role: RoleRecord | None) -> dict[str, Any]:
    allowed = set(role.allowed_challenge_types) if role else {"http-01", "dns-01", "tls-alpn-01"}
    challenges: dict[str, list[dict[str, str]]] = {}
    for a in rec.authorizations:
        challenges[a.identifier] = [
            {"challenge_type": c.type, "challenge_status": c.status, "expires": a.expires or ZERO_TIME,
             "requires_manual_fulfillment": "true", "fulfilled": "true" if c.fulfilled else "false"}
            for c in a.challenges if c.type in allowed
        ]
    return {
        "order_id": rec.order_id,
        "order_status": rec.status.value,
        "role_name": rec.role_name,
        "identifiers": list(rec.identifiers),
        "csr": rec.csr,
        "creation_date": rec.creation_date,
        "last_update": rec.last_update,
        "next_work_date": rec.next_work_date,
        "expires": rec.expires or ZERO_TIME,
        "last_error": rec.last_error,
        "serial_number": rec.serial_number,
        "challenges": challenges,
    }


def parse_csr(pem: str) -> tuple[x509.CertificateSigningRequest, list[matching.Identifier]]:
    try:
        csr = x509.load_pem_x509_csr(pem.strip().encode() + b"\n")
    except ValueError:
        raise UserError("csr is not a PEM-encoded certificate request") from None
    if not csr.is_signature_valid:
        raise UserError("csr signature is not valid")
    names: list[str] = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                        if isinstance(a.value, str)]
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for gn in san:
            if isinstance(gn, x509.DNSName):
                names.append(gn.value)
            elif isinstance(gn, x509.IPAddress):
                names.append(str(gn.value))
            else:
                raise UserError("csr may only name DNS names and IP addresses (ACME cannot validate others)")
    try:
        idents = dedupe([matching.parse_identifier(n) for n in names])
    except matching.IdentifierError as exc:
        raise UserError(f"csr names an invalid identifier: {exc}") from None
    if not idents:
        raise UserError("csr names no identifiers")
    return csr, idents


def dedupe(idents: list[matching.Identifier]) -> list[matching.Identifier]:
    return list(dict.fromkeys(idents))


class Orders:
    def __init__(self, rt: Runtime, worker: Worker) -> None:
        self.rt = rt
        self.worker = worker

    def paths(self) -> list[Path]:
        role = "role/" + name_regex("name")
        order = f"{role}/order/{ORDER_ID}"
        base = {"name": Field(FieldType.STRING, "Role name."), "order_id": Field(FieldType.STRING, "Order id.")}
        challenge_fields = {
            **base,
            "identifier": Field(FieldType.STRING, "Identifier whose challenge is meant.", query=True),
            "challenge_type": Field(FieldType.STRING, "http-01, dns-01 or tls-alpn-01.", query=True),
        }
        return [
            Path(f"{role}/new-order", {
                "name": Field(FieldType.STRING, "Role name."),
                "identifiers": Field(FieldType.COMMA_STRING_SLICE, "DNS names / IP addresses (identifier workflow)."),
                "csr": Field(FieldType.STRING, "PEM certificate request (CSR workflow)."),
            }, {Operation.UPDATE: self.new_order}, forward_performance_standby=True, synopsis="Start an ACME order."),
            Path(f"{order}/status", base, {Operation.READ: self.status},
                 forward_performance_standby=True, synopsis="Order state."),
            Path(f"{order}/challenge", challenge_fields, {Operation.READ: self.challenge},
                 forward_performance_standby=True, synopsis="Material for one challenge of an order."),
            # Seed 003 spelled it in the plural; the published API and Terraform use the singular.
            Path(f"{order}/challenges", challenge_fields, {Operation.READ: self.challenge},
                 forward_performance_standby=True, synopsis="Alias of order/:id/challenge."),
            Path(f"{order}/fulfilled-challenge", {
                **base,
                "identifier": Field(FieldType.STRING, "Identifier whose challenge is in place."),
                "challenge_type": Field(FieldType.STRING, "The challenge type that was put in place."),
            }, {Operation.UPDATE: self.fulfilled},
            forward_performance_standby=True, synopsis="Tell the plugin a challenge is ready."),
            Path(f"{order}/fetch-cert", {
                **base, "certificate_format": Field(FieldType.STRING, "pem, der or pem_bundle.", default="pem",
                                                    query=True, allowed_values=FORMATS),
            }, {Operation.READ: self.fetch_cert}, synopsis="The issued certificate (and generated key)."),
            Path(f"{order}/revoke", {
                **base, "reason": Field(FieldType.STRING, "Revocation reason.", default="unspecified",
                                        allowed_values=tuple(REVOCATION_REASONS)),
            }, {Operation.UPDATE: self.revoke},
            forward_performance_standby=True, synopsis="Revoke the order's certificate at the CA."),
            Path(f"{order}/renewal-info", base, {Operation.READ: self.renewal_info},
                 forward_performance_standby=True,
                 synopsis="ACME Renewal Information (RFC 9773) for the order's certificate."),
            Path(f"{role}/active-orders/?", {"name": Field(FieldType.STRING)}, {Operation.LIST: self.active},
                 synopsis="Non-terminal orders of a role."),
            Path(r"lookup/cert/(?P<serial>[0-9a-fA-F:-]+)", {"serial": Field(FieldType.STRING)},
                 {Operation.READ: self.lookup_cert}, synopsis="Find an order by certificate serial."),
            Path(f"lookup/order/{ORDER_ID}", {"order_id": Field(FieldType.STRING)},
                 {Operation.READ: self.lookup_order}, synopsis="Order state by id."),
            Path("lookup/orders/recent/?", {
                "within": Field(FieldType.DURATION, "How far back to look (orders created or updated since).",
                                default="1h", query=True),
            }, {Operation.LIST: self.lookup_recent}, synopsis="Orders created or updated recently."),
            Path("lookup/orders/?", {}, {Operation.LIST: self.lookup_orders}, synopsis="All order ids."),
            Path(f"{role}/cached", {
                "name": Field(FieldType.STRING, "Role name."),
                "identifiers": Field(FieldType.COMMA_STRING_SLICE, "The exact identifier set of the certificate.",
                                     query=True),
                "min_validity_duration": Field(FieldType.DURATION, "Least remaining validity.", query=True),
                "min_validity_percentage": Field(FieldType.INT, "Least remaining share of the validity period "
                                                                "(0-100).", query=True),
                "certificate_format": Field(FieldType.STRING, "pem, der or pem_bundle.", default="pem",
                                            query=True, allowed_values=FORMATS),
            }, {Operation.READ: self.cached},
                 synopsis="The newest still-valid certificate and key this role issued for an identifier set."),
        ]

    # --- helpers -----------------------------------------------------------------------------------

    async def _role(self, req: Request, d: FieldData) -> RoleRecord:
        role = await load_role(req.storage, d.get("name"))
        if role is None:
            raise UserError(f"unknown role: {d.get('name')}")
        return role

    async def _order(self, req: Request, d: FieldData) -> OrderRecord | None:
        rec = await load_order(req.storage, d.get("order_id").lower())
        # An order is only reachable through the role it was created under.
        if rec is None or rec.role_name != d.get("name"):
            return None
        return rec

    async def _order_or_404(self, req: Request, d: FieldData) -> OrderRecord:
        rec = await self._order(req, d)
        if rec is None:
            raise CodedError(404, f"order {d.get('order_id')} not found for role {d.get('name')}")
        return rec

    async def _require_allowed(self, req: Request, role: RoleRecord, idents: list[matching.Identifier]) -> None:
        """Refuse identifiers outside the role's policy as it stands for this caller (templates resolved)."""
        policy = await self._policy(req, role)
        refused = [i.value for i in idents
                   if not matching.identifier_allowed(i, policy, role.allowed_domain_options, role.allowed_ip_ranges)]
        if refused:
            raise UserError(f"identifiers not allowed by role {role.name}: {', '.join(refused)}")

    async def _policy(self, req: Request, role: RoleRecord) -> list[str]:
        if not any(matching.has_template(a) for a in role.allowed_domains):
            return role.allowed_domains
        entity = await req.system.entity_info(req.entity_id) if req.entity_id else None
        groups = await req.system.groups_for_entity(req.entity_id) if req.entity_id else []
        out = []
        for entry in role.allowed_domains:
            rendered = matching.render_template(entry, entity, groups) if matching.has_template(entry) else entry
            if rendered:
                try:
                    out.append(matching.to_alabel(rendered))
                except matching.IdentifierError:
                    continue
        return out

    # --- handlers ----------------------------------------------------------------------------------

    async def new_order(self, req: Request, d: FieldData) -> Response:
        role = await self._role(req, d)
        raw_idents = d.get("identifiers")
        csr_pem = d.get("csr").strip()
        if raw_idents and csr_pem:
            raise UserError("identifiers and csr are mutually exclusive")
        if not raw_idents and not csr_pem:
            raise UserError("one of identifiers or csr is required")
        if csr_pem:
            _, idents = parse_csr(csr_pem)
        else:
            try:
                idents = dedupe([matching.parse_identifier(i) for i in raw_idents])
            except matching.IdentifierError as exc:
                raise UserError(str(exc)) from None
        account = await load_account(req.storage, role.acme_account_name)
        if account is None:
            raise UserError(f"unknown ACME account {role.acme_account_name!r} (referenced by role {role.name})")
        await self._require_allowed(req, role, idents)
        if any(i.is_wildcard for i in idents) and "dns-01" not in role.allowed_challenge_types:
            raise UserError("wildcard identifiers need dns-01, which the role does not allow")
        if any(i.type == "ip" for i in idents) and not {"http-01", "tls-alpn-01"} & set(role.allowed_challenge_types):
            raise UserError("IP identifiers need http-01 or tls-alpn-01, which the role does not allow")

        async with self.rt.role_locks["orders:" + role.name]:
            if not csr_pem:
                shared = await self._shared_order(req, role, idents)
                if shared is not None:
                    return Response(data={"order_id": shared.order_id}, warnings=[
                        "an active order for the same identifiers exists under this role; returning it"])
            return Response(data={"order_id": await self._create(req, role, idents, csr_pem)})

    async def _shared_order(self, req: Request, role: RoleRecord, idents: list[matching.Identifier]
                            ) -> OrderRecord | None:
        await self.rt.index.ensure(req.storage)
        for rec in await order_index.with_identifiers(req.storage, role.name, [i.value for i in idents]):
            if rec.identifier_workflow and not rec.status.terminal:
                return rec
        return None

    async def _create(self, req: Request, role: RoleRecord, idents: list[matching.Identifier], csr_pem: str,
                      replaces: str = "") -> str:
        order_id = self.rt.new_order_id()
        generated = ""
        if not csr_pem:
            key = await self.rt.blocking(keys.generate, role.csr_generate_key_type)
            dns = [i.value for i in idents if i.type == "dns"]
            ips = [i.value for i in idents if i.type == "ip"]
            cn = idents[0].value if role.csr_identifier_population == "cn_first" else None
            generated = keys.build_csr(key, dns, ips, cn)
            await req.storage.put(order_key_path(order_id), keys.to_pem(key).encode(), seal_wrap=True)
        now = rfc3339(self.rt.now())
        rec = OrderRecord(
            order_id=order_id, role_name=role.name, account_name=role.acme_account_name, status=OrderStatus.NEW,
            identifiers=[i.value for i in idents], identifier_types=[i.type for i in idents],
            csr=csr_pem + "\n" if csr_pem else "", generated_csr=generated, creation_date=now, last_update=now,
            next_work_date=now, replaces=replaces)
        await order_index.add(req.storage, rec)
        await save_order(req.storage, rec)
        return order_id

    async def status(self, req: Request, d: FieldData) -> Response | None:
        rec = await self._order(req, d)
        if rec is None:
            return None
        rec = await self.worker.advance(req.storage, rec.order_id) or rec
        return Response(data=status_data(rec, await load_role(req.storage, rec.role_name)))

    async def challenge(self, req: Request, d: FieldData) -> Response:
        role = await self._role(req, d)
        rec = await self._order_or_404(req, d)
        identifier, ctype = self._challenge_params(role, d)
        if rec.status is OrderStatus.NEW:
            rec = await self.worker.advance(req.storage, rec.order_id) or rec
        authz, chall = self._find_challenge(rec, identifier, ctype)
        account = await load_account(req.storage, rec.account_name)
        if account is None:
            raise UserError(f"unknown ACME account {rec.account_name!r}")
        key = await self.rt.load_account_key(req.storage, account.name, account.active_key_version)
        jwk = keys.jwk_of(key).public_key()
        data: dict[str, Any] = {
            "identifier": authz.identifier, "challenge_type": ctype, "challenge_token": chall.token,
            "challenge_auth": acme_client.key_authorization(chall.token, jwk), "challenge_status": chall.status,
            "expires": authz.expires or ZERO_TIME,
        }
        if ctype == "http-01":
            data["http_path"] = f"/.well-known/acme-challenge/{chall.token}"
        elif ctype == "dns-01":
            data["dns_record_name"] = f"_acme-challenge.{authz.identifier.removeprefix('*.')}"
            data["dns_record_value"] = acme_client.dns01_txt_value(chall.token, jwk)
        return Response(data=data)

    @staticmethod
    def _challenge_params(role: RoleRecord, d: FieldData) -> tuple[str, str]:
        """(identifier, challenge type) named by the request, both required and the type one the role allows."""
        identifier, ctype = d.get("identifier").strip(), d.get("challenge_type").strip()
        if not identifier or not ctype:
            raise UserError("identifier and challenge_type are required")
        if ctype not in role.allowed_challenge_types:
            raise UserError(f"challenge type {ctype} is not allowed by role {role.name}")
        return identifier, ctype

    def _find_challenge(self, rec: OrderRecord, identifier: str, ctype: str) -> tuple[Any, Any]:
        if not rec.authorizations:
            raise UserError(f"order is {rec.status.value}: it has no challenges yet; poll its status")
        try:
            wanted = matching.parse_identifier(identifier).value
        except matching.IdentifierError as exc:
            raise UserError(str(exc)) from None
        authz = next((a for a in rec.authorizations if a.identifier == wanted), None)
        if authz is None:
            raise UserError(f"identifier {identifier} is not part of order {rec.order_id}")
        chall = next((c for c in authz.challenges if c.type == ctype), None)
        if chall is None:
            offered = ", ".join(c.type for c in authz.challenges) or "none"
            raise UserError(f"the ACME server offers no {ctype} challenge for {identifier} (offered: {offered})")
        return authz, chall

    async def fulfilled(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(req, d)
        identifier, ctype = self._challenge_params(role, d)
        rec = await self._order_or_404(req, d)
        async with self.rt.order_locks[rec.order_id]:
            rec = await self._order_or_404(req, d)
            authz, chall = self._find_challenge(rec, identifier, ctype)
            if chall.fulfilled or authz.status != "pending":
                return None   # repeating the call is harmless
            if rec.status not in (OrderStatus.SUBMITTED, OrderStatus.AWAITING):
                raise UserError(f"order is {rec.status.value}: it is not waiting for challenges")
            for c in authz.challenges:
                c.fulfilled = c is chall
            if rec.status is OrderStatus.AWAITING and all_fulfilled(rec):
                rec.status = OrderStatus.NOTIFY
                rec.next_work_date = rfc3339(self.rt.now())
            rec.last_update = rfc3339(self.rt.now())
            await save_order(req.storage, rec)
        return None

    async def fetch_cert(self, req: Request, d: FieldData) -> Response:
        rec = await self._order_or_404(req, d)
        fmt = d.get("certificate_format")
        if fmt not in FORMATS:
            raise UserError(f"invalid certificate_format {fmt!r}: use pem, der or pem_bundle")
        if rec.status is not OrderStatus.COMPLETED:
            raise UserError(f"order is {rec.status.value}, not completed: no certificate to fetch")
        if rec.identifier_workflow:
            # The answer holds the generated private key: as for role/:name/cached, the caller must be allowed to
            # order these identifiers right now (identity-templated roles differ per entity).
            role = await self._role(req, d)
            await self._require_allowed(req, role, [matching.parse_identifier(i) for i in rec.identifiers])
        return Response(data=await self._cert_data(req, rec, fmt))

    async def _cert_data(self, req: Request, rec: OrderRecord, fmt: str) -> dict[str, Any]:
        def der(pem: str) -> str:
            cert = x509.load_pem_x509_certificate(pem.encode())
            return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

        key_pem = ""
        key_type = ""
        if rec.identifier_workflow:
            raw = await req.storage.get(order_key_path(rec.order_id))
            if raw is not None:
                key = keys.from_pem(raw.decode())
                key_pem, key_type = keys.to_pem(key), keys.private_key_type(key)
        cert, chain = rec.certificate.strip(), [c.strip() for c in rec.ca_chain]
        if fmt == "der":
            certificate, ca_chain = der(cert), [der(c) for c in chain]
        elif fmt == "pem_bundle":
            certificate, ca_chain = "\n".join(([key_pem.strip()] if key_pem else []) + [cert] + chain), chain
        else:
            certificate, ca_chain = cert, chain
        data: dict[str, Any] = {
            "certificate": certificate, "ca_chain": ca_chain, "certificate_format": fmt,
            "serial_number": rec.serial_number, "authority_key_id": colon_hex(authority_key_id(rec.certificate)),
            "not_before": rec.not_before, "not_after": rec.not_after,
        }
        if key_pem:
            data["private_key"] = key_pem
            data["private_key_type"] = key_type
        return data

    async def revoke(self, req: Request, d: FieldData) -> Response | None:
        reason = d.get("reason")
        if reason not in REVOCATION_REASONS:
            raise UserError(f"invalid reason {reason!r}: one of {', '.join(REVOCATION_REASONS)}")
        rec = await self._order_or_404(req, d)
        async with self.rt.order_locks[rec.order_id]:
            rec = await self._order_or_404(req, d)
            if rec.status is OrderStatus.REVOKED:
                return None
            if rec.status is not OrderStatus.COMPLETED:
                raise UserError(f"order is {rec.status.value}: only a completed order's certificate can be revoked")
            account = await load_account(req.storage, rec.account_name)
            if account is None:
                raise UserError(f"unknown ACME account {rec.account_name!r}")
            conn = await self.rt.conn(req.storage, account)
            try:
                await self.rt.blocking(acme_client.revoke, conn, rec.certificate, REVOCATION_REASONS[reason])
            except (AcmeFailed, RetryLater) as exc:
                if "alreadyRevoked" not in exc.message:
                    raise UserError(f"the ACME server refused the revocation: {exc.message}") from None
            rec.status = OrderStatus.REVOKED
            rec.last_update = rfc3339(self.rt.now())
            await save_order(req.storage, rec)
        return None

    async def renewal_info(self, req: Request, d: FieldData) -> Response:
        rec = await self._order_or_404(req, d)
        if not rec.certificate:
            raise UserError(f"order is {rec.status.value}: it has no certificate yet")
        account = await load_account(req.storage, rec.account_name)
        if account is None:
            raise UserError(f"unknown ACME account {rec.account_name!r}")
        conn = await self.rt.conn(req.storage, account)
        try:
            info = await self.rt.blocking(acme_client.renewal_info, conn, rec.certificate)
        except (AcmeFailed, RetryLater) as exc:
            raise CodedError(502, f"could not fetch renewal information: {exc.message}") from None
        cert = x509.load_pem_x509_certificate(rec.certificate.encode())
        data: dict[str, Any] = {
            "ari_supported": info.supported, "ari_cert_id": acme_client.ari_cert_id(cert),
            "serial_number": rec.serial_number, "not_after": rec.not_after, "replaced_by": rec.replaced_by,
        }
        if info.supported:
            data.update({"suggested_window_start": rfc3339(info.start), "suggested_window_end": rfc3339(info.end),
                         "explanation_url": info.explanation_url, "retry_after_seconds": info.retry_after})
        return Response(data=data)

    async def active(self, req: Request, d: FieldData) -> Response | None:
        await self.rt.index.ensure(req.storage)
        ids = sorted(r.order_id for r in await order_index.active_of_role(req.storage, d.get("name")))
        return list_response(ids) if ids else None

    async def lookup_cert(self, req: Request, d: FieldData) -> Response | None:
        serial = normalize_serial(d.get("serial"))
        if not serial:
            return None
        entry = await get_json(req.storage, serial_path(serial))
        rec = await load_order(req.storage, entry["order_id"]) if entry else None
        if rec is None:
            return None
        return Response(data={
            "order_status": rec.status.value, "role_name": rec.role_name, "order_id": rec.order_id,
            "identifiers": list(rec.identifiers), "serial_number": rec.serial_number,
            "not_before": rec.not_before, "not_after": rec.not_after,
        })

    async def lookup_order(self, req: Request, d: FieldData) -> Response | None:
        rec = await load_order(req.storage, d.get("order_id").lower())
        if rec is None:
            return None
        return Response(data=status_data(rec, await load_role(req.storage, rec.role_name)))

    async def lookup_orders(self, req: Request, d: FieldData) -> Response | None:
        ids = await list_order_ids(req.storage)
        return list_response(ids) if ids else None

    async def lookup_recent(self, req: Request, d: FieldData) -> Response | None:
        within = d.get("within")
        if within <= 0:
            raise UserError("within must be a positive duration, e.g. 1h")
        cutoff = rfc3339(self.rt.now() - dt.timedelta(seconds=within))
        found: list[OrderRecord] = []
        for oid in await list_order_ids(req.storage):
            rec = await load_order(req.storage, oid)
            # RFC 3339 UTC strings of one fixed width compare in time order.
            if rec is not None and max(rec.last_update, rec.creation_date) >= cutoff:
                found.append(rec)
        if not found:
            return None
        found.sort(key=lambda r: (r.creation_date, r.order_id), reverse=True)
        return list_response([r.order_id for r in found], {r.order_id: {
            "creation_date": r.creation_date, "identifiers": list(r.identifiers), "last_update": r.last_update,
            "order_status": r.status.value, "role_name": r.role_name,
        } for r in found})

    async def cached(self, req: Request, d: FieldData) -> Response | None:
        role = await self._role(req, d)
        raw = d.get("identifiers")
        if not raw:
            raise UserError("identifiers is required")
        try:
            idents = dedupe([matching.parse_identifier(i) for i in raw])
        except matching.IdentifierError as exc:
            raise UserError(str(exc)) from None
        min_duration, has_duration = d.get_ok("min_validity_duration")
        min_pct, has_pct = d.get_ok("min_validity_percentage")
        if has_duration == has_pct:
            raise UserError("exactly one of min_validity_duration or min_validity_percentage is required")
        if has_duration and min_duration < 0:
            raise UserError("min_validity_duration must not be negative")
        if has_pct and not 0 <= min_pct <= 100:
            raise UserError("min_validity_percentage must be between 0 and 100")
        fmt = d.get("certificate_format")
        if fmt not in FORMATS:
            raise UserError(f"invalid certificate_format {fmt!r}: use pem, der or pem_bundle")
        # The answer holds a private key: the caller must be allowed to order these names right now
        # (identity-templated roles differ per entity).
        await self._require_allowed(req, role, idents)
        now = self.rt.now()
        best: OrderRecord | None = None
        await self.rt.index.ensure(req.storage)
        for rec in await order_index.with_identifiers(req.storage, role.name, [i.value for i in idents]):
            if rec.status is not OrderStatus.COMPLETED or not rec.identifier_workflow:
                continue
            if not _valid_enough(rec, now, min_duration if has_duration else None, min_pct if has_pct else None):
                continue
            if best is None or (rec.not_after, rec.creation_date) > (best.not_after, best.creation_date):
                best = rec
        if best is None:
            return None
        data = await self._cert_data(req, best, fmt)
        if "private_key" not in data:
            return None   # the generated key is gone: the certificate alone is no use to the caller
        data["order_id"] = best.order_id
        return Response(data=data)

    # --- ARI-guided renewal (periodic) -------------------------------------------------------------

    async def ari_check(self, req: Request, rec: OrderRecord, role_orders: list[OrderRecord]) -> None:
        """When the CA's suggested window has opened, start one renewal order that `replaces` this one."""
        now = self.rt.now()
        if rec.replaced_by or not rec.identifier_workflow or rec.status is not OrderStatus.COMPLETED:
            return
        due = rec.ari_next_check and rec.ari_next_check > rfc3339(now)
        if due:
            return
        role = await load_role(req.storage, rec.role_name)
        account = await load_account(req.storage, rec.account_name)
        if role is None or not role.ari_renewal or account is None:
            return
        conn = await self.rt.conn(req.storage, account)
        try:
            info = await self.rt.blocking(acme_client.renewal_info, conn, rec.certificate)
        except (AcmeFailed, RetryLater):
            return
        cert_id = acme_client.ari_cert_id(x509.load_pem_x509_certificate(rec.certificate.encode()))
        async with self.rt.order_locks[rec.order_id]:
            rec = await load_order(req.storage, rec.order_id) or rec
            rec.ari_next_check = rfc3339(now + dt.timedelta(seconds=info.retry_after))
            if info.supported:
                rec.ari_window_start, rec.ari_window_end = rfc3339(info.start), rfc3339(info.end)
                rec.ari_explanation_url = info.explanation_url
                if info.start is not None and info.start <= now:
                    existing = next((o for o in role_orders if o.replaces == cert_id), None)
                    if existing is None:
                        idents = [matching.Identifier(t, v) for t, v in zip(rec.identifier_types, rec.identifiers)]
                        async with self.rt.role_locks["orders:" + role.name]:
                            rec.replaced_by = await self._create(req, role, idents, "", replaces=cert_id)
                    else:
                        rec.replaced_by = existing.order_id
            await save_order(req.storage, rec)


def _valid_enough(rec: OrderRecord, now: dt.datetime, min_seconds: int | None, min_pct: int | None) -> bool:
    start, end = parse_rfc3339(rec.not_before), parse_rfc3339(rec.not_after)
    if start is None or end is None or end <= now:
        return False
    left = (end - now).total_seconds()
    if min_seconds is not None:
        return left >= min_seconds
    total = (end - start).total_seconds()
    return total > 0 and left * 100 >= (min_pct or 0) * total
