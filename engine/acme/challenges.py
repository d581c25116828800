"""Checking one challenge (RFC 8555 section 8, RFC 8737, RFC 8738) against the network.

Each check runs in a worker thread (blocking sockets and TLS), so the event loop that serves every mount never
waits on a remote host. When config/acme dns_resolver is set, every name is resolved through it (dnspython), for
http-01 and tls-alpn-01 too, as the built-in does.
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
import ssl
import warnings
from urllib.parse import urljoin, urlsplit

import dns.exception
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from engine.acme.errors import AcmeProblem, problem
from engine.acme.jws import b64e
from engine.acme.records import Identifier
from engine.lazy_import import lazy_module

# requests (with urllib3) and dnspython's resolver cost about a second of a cold plugin start on a loaded machine,
# paid again by every node on every role change, before a new mount answers; only a validation needs them.
dns.resolver = lazy_module("dns.resolver")  # type: ignore[attr-defined]
requests = lazy_module("requests")
# Not urllib3.exceptions on its own: a lazily registered submodule ahead of its package gives urllib3 two copies of
# its exception classes, and requests then misses the MaxRetryError it translates (validation crashed on a refused
# connection). urllib3 is reached through requests, once requests is loaded.

# Test-only overrides (README): the ports challenge validation connects to instead of 80 and 443.
HTTP_PORT_ENV = "PYTHON_PKI_ACME_HTTP_PORT"
TLS_PORT_ENV = "PYTHON_PKI_ACME_TLS_PORT"
MAX_REDIRECTS = 10
MAX_URL_LENGTH = 2000
MAX_BODY = 512
HTTP_TIMEOUT = 10.0
DNS_TIMEOUT = 30.0
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
ALPN = "acme-tls/1"


def key_authorization(token: str, thumbprint: str) -> str:
    return f"{token}.{thumbprint}"


def _port(env: str, default: int) -> int:
    try:
        return int(os.environ.get(env, "") or default)
    except ValueError:
        return default


def _resolver(dns_resolver: str) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=not dns_resolver)
    if dns_resolver:
        host, _, port = dns_resolver.rpartition(":")
        res.nameservers = [host.strip("[]")]
        res.port = int(port)
    res.lifetime = DNS_TIMEOUT
    return res


def _addresses(host: str, dns_resolver: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    if not dns_resolver:
        try:
            return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, None)))
        except OSError as exc:
            raise problem("dns", prefix=f"failed to resolve {host}: {exc}") from None
    res = _resolver(dns_resolver)
    out: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            out += [r.to_text() for r in res.resolve(host, rdtype)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            raise problem("dns", prefix=f"failed to resolve {host}: {exc}") from None
    if not out:
        raise problem("dns", prefix=f"no addresses found for {host}")
    return out


def _get_any(session: requests.Session, parts, addresses: list[str], url: str) -> requests.Response:  # noqa: ANN001
    """GET the URL from the first of the host's addresses that answers (localhost is ::1 and 127.0.0.1)."""
    failure: Exception | None = None
    for address in addresses:
        target = f"[{address}]" if ":" in address else address
        netloc = target + (f":{parts.port}" if parts.port else "")
        try:
            with warnings.catch_warnings():
                # Redirect targets' TLS is not verified (as the built-in): no warning per validation in the log.
                warnings.simplefilter("ignore", requests.packages.urllib3.exceptions.InsecureRequestWarning)
                return session.get(parts._replace(netloc=netloc).geturl(), headers={"Host": parts.netloc},
                                   allow_redirects=False, stream=True, verify=False, timeout=HTTP_TIMEOUT)
        except (requests.ConnectionError, ConnectionError) as exc:
            failure = exc
        except (requests.RequestException, OSError) as exc:
            raise problem("connection", prefix=f"http-01 request to {url} failed: {exc}") from None
    raise problem("connection", prefix=f"http-01 request to {url} failed: {failure}")


def _http01(ident: Identifier, token: str, expected: str, dns_resolver: str) -> None:
    port = _port(HTTP_PORT_ENV, 80)
    host = ident.value if ident.type == "dns" else (f"[{ident.value}]" if ":" in ident.value else ident.value)
    url = f"http://{host}:{port}/.well-known/acme-challenge/{token}" if port != 80 else \
        f"http://{host}/.well-known/acme-challenge/{token}"
    with requests.Session() as session:
        for _ in range(MAX_REDIRECTS + 1):
            if len(url) > MAX_URL_LENGTH:
                raise problem("connection", prefix="redirect URL too long")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise problem("connection", prefix=f"refusing to follow redirect to {url}")
            resp = _get_any(session, parts, _addresses(parts.hostname, dns_resolver), url)
            with resp:
                if resp.is_redirect:
                    url = urljoin(url, resp.headers.get("Location", ""))
                    continue
                if resp.status_code != 200:
                    raise problem("incorrectResponse", prefix=f"http-01 answered {resp.status_code} at {url}")
                body = resp.raw.read(MAX_BODY + 1, decode_content=True)
            if len(body) > MAX_BODY:
                raise problem("incorrectResponse", prefix="http-01 response body too large")
            if body.decode("utf-8", "replace").strip() != expected:
                raise problem("incorrectResponse", prefix="http-01 response did not match the key authorization")
            return
    raise problem("connection", prefix="too many redirects")


def _dns01(ident: Identifier, expected: str, dns_resolver: str) -> None:
    digest = b64e(hashlib.sha256(expected.encode()).digest())
    name = f"_acme-challenge.{ident.value}"
    try:
        answer = _resolver(dns_resolver).resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        raise problem("dns", prefix=f"no TXT record at {name}") from None
    except dns.exception.DNSException as exc:
        raise problem("dns", prefix=f"TXT lookup of {name} failed: {exc}") from None
    values = {b"".join(r.strings).decode("utf-8", "replace") for r in answer}
    if digest not in values:
        raise problem("incorrectResponse", prefix=f"no TXT record at {name} matched the key authorization")


def _tls_alpn01(ident: Identifier, expected: str, dns_resolver: str) -> None:
    port = _port(TLS_PORT_ENV, 443)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ALPN])
    server_name = ident.value if ident.type == "dns" else None
    der: bytes | None = None
    failure: Exception | None = None
    for address in _addresses(ident.value, dns_resolver):
        try:
            raw = socket.create_connection((address, port), timeout=HTTP_TIMEOUT)
        except OSError as exc:
            failure = exc
            continue
        try:
            with raw, context.wrap_socket(raw, server_hostname=server_name) as tls:
                if tls.selected_alpn_protocol() != ALPN:
                    raise problem("tls", prefix=f"server did not negotiate {ALPN}")
                der = tls.getpeercert(binary_form=True)
                break
        except (OSError, ssl.SSLError) as exc:
            raise problem("tls", prefix=f"tls-alpn-01 handshake with {address}:{port} failed: {exc}") from None
    if der is None and failure is not None:
        raise problem("connection", prefix=f"tls-alpn-01 connection to {ident.value}:{port} failed: {failure}")
    if not der:
        raise problem("tls", prefix="no certificate presented")
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        raise problem("incorrectResponse", prefix="certificate lacks the SAN or acmeIdentifier extension") from None
    names = list(sans.get_values_for_type(x509.DNSName))
    ips = [str(i) for i in sans.get_values_for_type(x509.IPAddress)]
    wanted_ok = names == [ident.value] if ident.type == "dns" else (ips == [ident.value] and not names)
    if not wanted_ok or len(list(sans)) != 1:
        raise problem("incorrectResponse", prefix="certificate must name exactly the identifier")
    digest = hashlib.sha256(expected.encode()).digest()
    raw_value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if not ext.critical or raw_value != b"\x04\x20" + digest:
        raise problem("incorrectResponse", prefix="acmeIdentifier extension does not match the key authorization")


async def check(challenge_type: str, ident: Identifier, token: str, thumbprint: str, dns_resolver: str) -> None:
    """Returns when the challenge is met; raises an AcmeProblem saying why not."""
    expected = key_authorization(token, thumbprint)
    if challenge_type == "http-01":
        await asyncio.to_thread(_http01, ident, token, expected, dns_resolver)
    elif challenge_type == "dns-01":
        await asyncio.to_thread(_dns01, ident, expected, dns_resolver)
    elif challenge_type == "tls-alpn-01":
        await asyncio.to_thread(_tls_alpn01, ident, expected, dns_resolver)
    else:
        raise problem("malformed", prefix=f"unknown challenge type {challenge_type}")
