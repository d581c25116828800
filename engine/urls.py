"""AIA URLs (global `urls` entry and per-issuer blocks), cluster paths, and `{{...}}` templating."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from engine.storage import Storage, get_json, put_json
from plugin.framework import UserError

URLS_KEY = "urls"              # the built-in engine stores config/urls under this key
CLUSTER_KEY = "config/cluster"

TEMPLATE_VARS = ("{{issuer_id}}", "{{cluster_path}}", "{{cluster_aia_path}}")


@dataclass
class AiaUrls:
    issuing_certificates: list[str] = field(default_factory=list)
    crl_distribution_points: list[str] = field(default_factory=list)
    delta_crl_distribution_points: list[str] = field(default_factory=list)
    ocsp_servers: list[str] = field(default_factory=list)
    enable_templating: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> "AiaUrls":
        raw = raw or {}
        return cls(
            issuing_certificates=list(raw.get("issuing_certificates") or []),
            crl_distribution_points=list(raw.get("crl_distribution_points") or []),
            delta_crl_distribution_points=list(raw.get("delta_crl_distribution_points") or []),
            ocsp_servers=list(raw.get("ocsp_servers") or []),
            enable_templating=bool(raw.get("enable_templating", False)),
        )

    def is_empty(self) -> bool:
        """Whether the block has nothing that would override the global URLs (delta DPs alone do not count)."""
        return not (self.issuing_certificates or self.crl_distribution_points or self.ocsp_servers)

    def has_any(self) -> bool:
        return not self.is_empty() or bool(self.delta_crl_distribution_points)

    def uses_issuer_id(self) -> bool:
        return self.enable_templating and any("{{issuer_id}}" in u for u in self._all())

    def _all(self) -> list[str]:
        return (self.issuing_certificates + self.crl_distribution_points + self.delta_crl_distribution_points
                + self.ocsp_servers)


@dataclass
class ClusterConfig:
    path: str = ""
    aia_path: str = ""


def validate_url_list(urls: list[str], templated: bool) -> None:
    """Each entry must be a URL; with templating, the template variables may stand in for parts of it."""
    for url in urls:
        probe = url
        if templated:
            for var in TEMPLATE_VARS:
                probe = probe.replace(var, "x")
            if "{{" in probe or "}}" in probe:
                raise UserError(f"invalid template in URL: {url}")
        if not is_url(probe):
            raise UserError(f"invalid URL found: {url}")


def is_url(text: str) -> bool:
    try:
        parsed = urlparse(text)
    except ValueError:
        return False
    return bool(parsed.scheme) and bool(parsed.netloc or parsed.path)


async def read_global(storage: Storage) -> AiaUrls:
    return AiaUrls.from_json(await get_json(storage, URLS_KEY))


async def write_global(storage: Storage, urls: AiaUrls) -> None:
    await put_json(storage, URLS_KEY, urls.to_json())


async def read_cluster(storage: Storage) -> ClusterConfig:
    raw = await get_json(storage, CLUSTER_KEY) or {}
    return ClusterConfig(path=raw.get("path", ""), aia_path=raw.get("aia_path", ""))


async def write_cluster(storage: Storage, cfg: ClusterConfig) -> None:
    await put_json(storage, CLUSTER_KEY, asdict(cfg))


def render(urls: AiaUrls, issuer_id: str, cluster: ClusterConfig) -> AiaUrls:
    """Substitute the template variables; a variable whose cluster value is unset is an error (Vault fails too)."""
    if not urls.enable_templating:
        return urls

    def one(url: str) -> str:
        if "{{cluster_path}}" in url:
            if not cluster.path:
                raise UserError("unable to template AIA URLs as cluster path is not set "
                                "(configure it via config/cluster)")
            url = url.replace("{{cluster_path}}", cluster.path)
        if "{{cluster_aia_path}}" in url:
            if not cluster.aia_path:
                raise UserError("unable to template AIA URLs as cluster aia_path is not set "
                                "(configure it via config/cluster)")
            url = url.replace("{{cluster_aia_path}}", cluster.aia_path)
        if "{{issuer_id}}" in url:
            if not issuer_id:
                raise UserError("unable to template AIA URLs: issuer id is not known yet")
            url = url.replace("{{issuer_id}}", issuer_id)
        return url

    return AiaUrls(
        issuing_certificates=[one(u) for u in urls.issuing_certificates],
        crl_distribution_points=[one(u) for u in urls.crl_distribution_points],
        delta_crl_distribution_points=[one(u) for u in urls.delta_crl_distribution_points],
        ocsp_servers=[one(u) for u in urls.ocsp_servers],
        enable_templating=False,
    )


def aia_extensions(urls: AiaUrls) -> list[tuple[x509.ExtensionType, bool]]:
    """(extension, critical) for the AIA, CRL DP and Freshest CRL extensions the URLs call for."""
    out: list[tuple[x509.ExtensionType, bool]] = []
    descs = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u))
             for u in urls.ocsp_servers]
    descs += [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u))
              for u in urls.issuing_certificates]
    if descs:
        out.append((x509.AuthorityInformationAccess(descs), False))
    if urls.crl_distribution_points:
        out.append((x509.CRLDistributionPoints([
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in urls.crl_distribution_points]), False))
    if urls.delta_crl_distribution_points:
        out.append((x509.FreshestCRL([
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in urls.delta_crl_distribution_points]), False))
    return out
