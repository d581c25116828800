"""order/:id/finalize (CSR checks, then issuance through the engine's sign path) and order/:id/cert."""
from __future__ import annotations

import binascii
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID, NameOID

from engine import issuance
from engine.acme.directory import resolve
from engine.acme.errors import problem
from engine.acme.jws import b64d, public_key_of
from engine.acme.orders import current_status, load_order, order_answer
from engine.acme.protocol import Answer, Call
from engine.acme.records import Order, now, parse_time, rfc3339
from engine.api.issue import sign_fields
from engine.certstore import load_certificate_der
from engine.x509util import serial_storage_form
from plugin.framework import FieldData, UserError

PEM_CHAIN = "application/pem-certificate-chain"


def parse_csr(payload: dict) -> x509.CertificateSigningRequest:
    if "csr" not in payload:
        raise problem("malformed", suffix="missing csr in payload")
    raw = payload["csr"]
    if not isinstance(raw, str):
        raise problem("malformed", suffix=f"csr in payload not the expected type: {type(raw).__name__}")
    try:
        der = b64d(raw)
    except (ValueError, binascii.Error) as exc:
        raise problem("malformed", suffix=f"failed base64 decoding csr: {exc}") from None
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise problem("malformed", suffix=f"failed to parse csr: {exc}") from None
    try:
        bc = csr.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        bc = None
    except ValueError as exc:
        raise problem("badCSR", suffix=f"refusing to accept CSR with Basic Constraints extension: {exc}") from None
    if bc is not None and bc.ca:
        raise problem("badCSR", suffix="refusing to accept CSR with Basic Constraints extension with CA set to true")
    return csr


def _csr_identifiers(csr: x509.CertificateSigningRequest) -> tuple[list[str], list[str]]:
    dns: list[str] = []
    ips: list[str] = []
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    if sans is not None:
        for name in sans:
            if isinstance(name, x509.DNSName):
                dns.append(name.value)
            elif isinstance(name, x509.IPAddress):
                ips.append(str(name.value))
            else:
                raise problem("badCSR", suffix="CSR included unsupported SAN types")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        cn = str(cns[0].value)
        try:
            ips.append(str(ipaddress.ip_address(cn)))
        except ValueError:
            dns.append(cn)
    return sorted(set(dns)), sorted(set(ips))


def check_csr_matches(csr: x509.CertificateSigningRequest, order: Order) -> None:
    dns, ips = _csr_identifiers(csr)
    want_dns = sorted({i["original"] for i in order.identifiers if i["type"] == "dns"})
    want_ips = sorted({str(ipaddress.ip_address(i["value"])) for i in order.identifiers if i["type"] == "ip"})
    if len(want_dns) != len(dns):
        raise problem("badCSR", suffix=f"Order ({len(want_dns)}) and CSR ({len(dns)}) mismatch on number of DNS "
                                       "identifiers")
    if len(want_ips) != len(ips):
        raise problem("badCSR", suffix=f"Order ({len(want_ips)}) and CSR ({len(ips)}) mismatch on number of IP "
                                       "identifiers")
    for want, got in zip(want_dns, dns):
        if want != got:
            raise problem("badCSR", suffix=f"CSR is missing order DNS identifier {want}")
    for want, got in zip(want_ips, ips):
        if want != got:
            raise problem("badCSR", suffix=f"CSR is missing order IP identifier {want}")


def _same_key(csr: x509.CertificateSigningRequest, jwk: dict) -> bool:
    spki = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return spki == public_key_of(jwk).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _suitable_cn(csr: x509.CertificateSigningRequest) -> str:
    """The built-in's fill-in for require_cn roles when the CSR has no CN: a wildcard, else a DNS name, else an IP."""
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    dns = sans.get_values_for_type(x509.DNSName)
    for name in dns:
        if "*" in name:
            return name
    if dns:
        return dns[0]
    ips = sans.get_values_for_type(x509.IPAddress)
    return str(ips[0]) if ips else ""


async def _issue(call: Call, csr: x509.CertificateSigningRequest, order: Order) -> tuple[x509.Certificate, str]:
    directory = call.directory
    if order.profile:
        # The order's profile chose its role at new-order; the same role signs (if the profile still exists).
        role_name = directory.cfg.profiles.get(order.profile)
        if not role_name:
            raise problem("badCSR", suffix=f"profile {order.profile} is no longer configured")
        assert call.ctx is not None
        directory = await resolve(call.ctx, call.req, directory.cfg, role_override=role_name)
    role = directory.role
    issuer = directory.issuer
    raw: dict = {"csr": csr.public_bytes(Encoding.PEM).decode(), "format": "pem"}
    if role.require_cn and not csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        cn = _suitable_cn(csr)
        if cn:
            raw["common_name"] = cn
    default_ttl, mount_max = await issuance.mount_ttls(call.req.system, True, True)
    normal = role.ttl if role.ttl > 0 else default_ttl
    normal = min(normal, role.max_ttl if role.max_ttl > 0 else mount_max)
    if normal > call.directory.cfg.max_ttl:
        raw["ttl"] = call.directory.cfg.max_ttl
    d = FieldData(raw=raw, schema=sign_fields())
    d.validate()
    behavior = "truncate" if issuer.leaf_not_after_behavior == "err" else None
    assert call.ctx is not None
    try:
        resp = await issuance.run(call.ctx, call.req, d, role, issuer.id, "sign", not_after_behavior=behavior)
    except UserError as exc:
        raise problem("badCSR", suffix=f"refusing to sign CSR: {exc.message}") from None
    pem = resp.data["certificate"] if resp.data else ""
    return x509.load_pem_x509_certificate(pem.encode()), issuer.id


async def finalize(call: Call) -> Answer:
    csr = parse_csr(call.payload or {})
    order = await load_order(call, call.d.get("order_id"))
    status = await current_status(call, order)
    assert call.state is not None
    if status != "ready" or order.id in call.state.busy_orders:
        shown = "processing" if order.id in call.state.busy_orders else status
        raise problem("orderNotReady", suffix=f"order is status {shown}, needs to be in ready state")
    if now() > parse_time(order.expires):
        raise problem("malformed", suffix=f"order {order.id} is expired")
    check_csr_matches(csr, order)
    if _same_key(csr, call.jwk):
        raise problem("badCSR", suffix="certificate public key must not match account key")
    call.state.busy_orders.add(order.id)
    try:
        # "processing" is written first, so a second finalize (or a crash) never signs twice for one order; a
        # processing order whose finalize died is ready again after a while (orders.current_status).
        order.status, order.finalizing_since = "processing", rfc3339(now())
        await call.store.put_order(order)
        try:
            cert, issuer_id = await _issue(call, csr, order)
        except BaseException:
            order.status, order.finalizing_since = "ready", ""
            await call.store.put_order(order)
            raise
        serial = serial_storage_form(cert.serial_number)
        await call.store.track_cert(order.account, serial, order.id)
        order.status, order.finalizing_since = "valid", ""
        order.cert_serial, order.issuer_id = serial, issuer_id
        order.cert_expiry = rfc3339(cert.not_valid_after_utc)
        await call.store.put_order(order)
    finally:
        call.state.busy_orders.discard(order.id)
    return order_answer(call, order)


async def fetch_cert(call: Call) -> Answer:
    order = await load_order(call, call.d.get("order_id"))
    if order.status != "valid":
        raise problem("orderNotReady", suffix=f"order is status {order.status}, needs to be in valid state")
    if not order.issuer_id or not order.cert_serial:
        raise problem("serverInternal", prefix="order is missing required fields to load certificate")
    der = await load_certificate_der(call.req.storage, order.cert_serial)
    if not der:
        raise problem("serverInternal", prefix=f"missing certificate {order.cert_serial} from storage")
    assert call.ctx is not None
    store = call.ctx.issuers(call.req.storage)
    issuer = await store.get(order.issuer_id)
    if issuer is None:
        raise problem("serverInternal", prefix=f"failed loading certificate issuer {order.issuer_id} from storage")
    leaf = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
    chain = [p if p.endswith("\n") else p + "\n" for p in await store.chain_pems(issuer)]
    return Answer(body=(leaf + "".join(chain)).encode(), content_type=PEM_CHAIN)
