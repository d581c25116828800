"""The web UI embedded in `bao`, driven by Debian's headless chromium, on our mount (registered as plugin `pki`)
and on the built-in beside it in one server.

Every PKI page must render with no error text and no console exception that the built-in's page does not show
too; a role created, a certificate issued and revoked and the URL/cluster configuration saved through the UI must
read back through the API as on the built-in. Screenshots go to $PKI_UI_ARTIFACTS (default: the test's tmp dir).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from integration.harness import PKI_TYPE, BaoServer, dropin_server

pytestmark = pytest.mark.webui

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30  # seconds an element may take to appear (two cores shared with other tests)

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - selenium is in the test extra
    webdriver = None

# Text the UI shows when a page failed: Page::Error's titles, Ember's and the browser's exception names.
# Case-sensitive: help texts say "error" in passing; Page::Error's title is a line of its own.
ERROR_TEXT = re.compile(r"Not Found|\b404\b|^Error$|\w*Error:|TypeError|Cannot destructure|Cannot read prop|"
                        r"is not a function|Not authorized|not authorized|Something went wrong", re.MULTILINE)
# Danger banners and inline alerts (AlertBanner, Hds::Alert critical, MessageError).
ALERTS = ".message.is-danger, .hds-alert--color-critical, .has-text-danger"


@dataclass(frozen=True)
class Page:
    name: str
    path: str    # under /ui/vault/secrets/<mount>/pki/, with {issuer}, {key}, {role}, {serial}
    title: str   # the page's h1 ({mount} for the mount's tabbed pages)
    text: str    # content the page shows once its data loaded


# The embedded UI is a production build: its data-test-* attributes are stripped, so pages are recognized by
# their titles and content, and forms by their inputs' ids (FormField uses the attribute's name).
PAGES = [
    Page("overview", "overview", "{mount}", "View issuers"),
    Page("issuers-list", "issuers", "{mount}", "default issuer"),
    Page("issuer-details", "issuers/{issuer}/details", "View issuer certificate", "Issuer URLs"),
    Page("issuer-edit", "issuers/{issuer}/edit", "Update issuer", "Revocation signature algorithm"),
    Page("issuer-sign-intermediate", "issuers/{issuer}/sign", "Sign intermediate", "Use CSR values"),
    Page("issuer-cross-sign", "issuers/{issuer}/cross-sign", "Cross-sign issuers", "New issuer name"),
    Page("issuer-rotate-root", "issuers/{issuer}/rotate-root", "Generate new root", "Use old root settings"),
    Page("issuers-generate-root", "issuers/generate-root", "Generate root", "Root parameters"),
    Page("issuers-generate-intermediate", "issuers/generate-intermediate", "Generate intermediate CSR",
         "CSR parameters"),
    Page("issuers-import", "issuers/import", "Import a CA", "PEM Bundle"),
    Page("keys-list", "keys", "{mount}", "root-key"),
    Page("key-details", "keys/{key}/details", "View key", "root-key"),
    Page("key-edit", "keys/{key}/edit", "Edit key", "Key name"),
    Page("roles-list", "roles", "{mount}", "api-role"),
    Page("role-details", "roles/{role}/details", "PKI Role api-role", "Issued certificates expire after"),
    Page("role-create", "roles/create", "Create a PKI role", "Issuer ref"),
    Page("role-edit", "roles/{role}/edit", "Edit role", "Issuer ref"),
    Page("role-issue", "roles/{role}/generate", "Generate certificate", "Common name"),
    Page("role-sign", "roles/{role}/sign", "Sign certificate", "CSR"),
    Page("certificates-list", "certificates", "{mount}", "{serial}"),
    Page("certificate-details", "certificates/{serial}/details", "View certificate", "api.example.com"),
    Page("tidy", "tidy", "{mount}", "Auto-tidy configuration"),
    Page("tidy-manual", "tidy/manual", "Manual tidy", "Universal operations"),
    Page("tidy-auto", "tidy/auto", "Automatic tidy configuration", "12h"),
    Page("tidy-auto-configure", "tidy/auto/configure", "Configure automatic tidy", "Universal operations"),
    Page("configuration", "configuration", "{mount}", "ACME Config"),
    Page("configuration-edit", "configuration/edit", "Edit PKI configuration", "ACME enabled"),
    Page("configuration-create", "configuration/create", "Configure PKI", "Generate intermediate CSR"),
]


@dataclass
class Visit:
    """What one page showed: error text on the page, console errors and failed API calls (normalized)."""
    rendered: bool = True
    error_text: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    screenshot: str = ""


def _chromium_missing() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not (os.access(binary, os.X_OK) or shutil.which(os.path.basename(binary))):
            return f"{binary} is missing (Debian packages chromium and chromium-driver)"
    return None


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(os.environ.get("PKI_UI_ARTIFACTS") or tmp_path_factory.mktemp("webui-artifacts"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nweb UI screenshots and logs: {where}")
    return where


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    reason = _chromium_missing()
    if reason:
        pytest.skip(reason)
    with dropin_server(tmp_path_factory.mktemp("bao-webui")) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(server: BaoServer) -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"{server.addr}/ui/vault/auth?with=token")
        _wait_css(driver, 'input[name="token"]').send_keys(server.token)
        _wait_css(driver, "#auth-submit").click()
        WebDriverWait(driver, WAIT).until(lambda d: "/vault/auth" not in d.current_url)
        # The token lives in the running app: pages are reached by the app's router (no reload), and the
        # "discard unsaved changes?" prompt of a form left behind is answered yes.
        driver.execute_script("window.confirm = () => true")
        _drain_logs(driver)
        yield driver
    finally:
        driver.quit()


def _wait_css(driver: Any, css: str, timeout: float = WAIT) -> Any:
    return WebDriverWait(driver, timeout).until(lambda d: d.find_element(By.CSS_SELECTOR, css))


def _wait_for(driver: Any, check: Callable[[Any], Any], timeout: float = WAIT) -> Any:
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(check)


def _drain_logs(driver: Any) -> None:
    driver.get_log("browser")
    driver.get_log("performance")


def _normalize(text: str, mount: str, ids: dict[str, str]) -> str:
    text = text.replace(f"/{mount}/", "/MOUNT/").replace(f"{mount}/", "MOUNT/")
    for name, value in ids.items():
        if value:
            text = text.replace(value, name.upper())
    return re.sub(r"\d+:\d+", "L:C", re.sub(r"\?.*?(?=\s|$|\")", "", text))


def _network_failures(entries: list[dict], mount: str, ids: dict[str, str]) -> list[str]:
    failed = []
    for entry in entries:
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") != "Network.responseReceived":
            continue
        resp = msg["params"]["response"]
        if "/v1/" in resp["url"] and resp["status"] >= 400:
            failed.append(f"{resp['status']} {_normalize(resp['url'].split('/v1/', 1)[1], mount, ids)}")
    return failed


def _network_quiet(driver: Any, entries: list[dict], polls: int = 40) -> None:
    """Collect performance entries until two polls in a row bring no new network events (the page has stopped
    loading data), at most `polls` polls."""
    quiet = 0
    for _ in range(polls):
        new = driver.get_log("performance")
        entries.extend(new)
        if any('"Network.' in e["message"] for e in new):
            quiet = 0
        else:
            quiet += 1
            if quiet >= 2:
                return
        driver.execute_async_script("setTimeout(arguments[arguments.length - 1], 250)")


def go(driver: Any, path: str) -> None:
    """Navigate inside the running app (history + popstate: Ember's router follows, the session stays)."""
    driver.execute_script("history.pushState({}, '', arguments[0]);"
                          "window.dispatchEvent(new PopStateEvent('popstate', {state: {}}))", path)


def settle(driver: Any, mount: str, path: str, title: str, text: str) -> None:
    go(driver, f"/ui/vault/secrets/{mount}/pki/{path}")
    _wait_for(driver, lambda d: title in _titles(d) and text in _body(d))
    _network_quiet(driver, [])


def _titles(driver: Any) -> list[str]:
    # Read in one script: Ember replaces nodes while it renders, so element handles go stale.
    return driver.execute_script("return Array.from(document.querySelectorAll('h1'), h => h.innerText.trim())")


def visit(driver: Any, mount: str, page: Page, ids: dict[str, str], shots: Path, label: str) -> Visit:
    result = Visit()
    title, text = page.title.format(mount=mount, **ids), page.text.format(**ids)
    entries: list[dict] = []
    go(driver, f"/ui/vault/secrets/{mount}/pki/{page.path.format(**ids)}")
    try:
        _wait_for(driver, lambda d: (title in _titles(d) and text in _body(d))
                  or ERROR_TEXT.search(_body(d)))
    except TimeoutException:
        pass
    _network_quiet(driver, entries)
    body = _body(driver)
    result.rendered = title in _titles(driver) and text in body
    alerts = [a for a in driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), a => a.innerText.trim())", ALERTS) if a]
    # Each hit with its line, normalized, so a help text that names a status code can be told apart.
    hits = {_normalize(body[body.rfind("\n", 0, m.start()) + 1:body.find("\n", m.end()) % (len(body) + 1)][:160],
                       mount, ids) for m in ERROR_TEXT.finditer(body)}
    result.error_text = sorted(hits | set(alerts))
    result.console = [_normalize(e["message"], mount, ids) for e in driver.get_log("browser")
                      if e["level"] == "SEVERE"]
    result.failed_requests = _network_failures(entries, mount, ids)
    result.screenshot = f"{label}-{page.name}.png"
    driver.save_screenshot(str(shots / result.screenshot))
    return result


def _setup_mount(srv: BaoServer, mount: str) -> dict[str, str]:
    """A root issuer with its key, a role, an issued certificate and auto-tidy on: every page has content."""
    def ok(method: str, path: str, body: Any = None) -> dict:
        resp = srv.http(method, f"{mount}/{path}", json=body)
        assert resp.status_code in (200, 204), f"{mount}/{path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.status_code == 200 else {}

    srv.tune_max_ttl(mount, "87600h")   # the root outlives the 32-day leaves the UI asks for by default
    root = ok("POST", "root/generate/internal", {"common_name": "UI Root", "key_type": "ec",
                                                 "issuer_name": "root", "key_name": "root-key", "ttl": "87600h"})
    ok("POST", "roles/api-role", {"allowed_domains": "example.com", "allow_subdomains": True})
    cert = ok("POST", "issue/api-role", {"common_name": "api.example.com", "ttl": "24h"})
    ok("POST", "config/auto-tidy", {"enabled": True, "tidy_cert_store": True, "interval_duration": "12h"})
    return {"issuer": root["data"]["issuer_id"], "key": root["data"]["key_id"], "role": "api-role",
            "serial": cert["data"]["serial_number"]}


@pytest.fixture(scope="module")
def mounts(server: BaoServer) -> dict[str, tuple[str, dict[str, str]]]:
    ours = server.enable_plugin_mount("ui-ours", plugin=PKI_TYPE)
    ref = server.enable_builtin_mount("ui-builtin")
    info = server.http("GET", "sys/mounts").json()["data"]
    assert info[f"{ours}/"]["running_plugin_version"] != info[f"{ref}/"]["running_plugin_version"]
    assert info[f"{ours}/"]["type"] == info[f"{ref}/"]["type"] == "pki"
    return {"builtin": (ref, _setup_mount(server, ref)), "ours": (ours, _setup_mount(server, ours))}


def test_every_pki_page_renders_as_on_the_builtin(server: BaoServer, browser: Any, mounts: dict,
                                                  artifacts: Path) -> None:
    results: dict[str, dict[str, Visit]] = {"builtin": {}, "ours": {}}
    for label in ("builtin", "ours"):
        mount, ids = mounts[label]
        _drain_logs(browser)
        for page in PAGES:
            results[label][page.name] = visit(browser, mount, page, ids, artifacts, label)

    report, problems, shared = [], [], set()
    for page in PAGES:
        ref, ours = results["builtin"][page.name], results["ours"][page.name]
        shared |= set(ref.console) & set(ours.console)
        new_console = [c for c in ours.console if c not in ref.console]
        new_failures = [f for f in ours.failed_requests if f not in ref.failed_requests]
        new_text = [t for t in ours.error_text if t not in ref.error_text]
        verdict = "ok" if ours.rendered and not (new_console or new_failures or new_text) else "FAIL"
        shared |= {f"text: {t}" for t in set(ref.error_text) & set(ours.error_text)}
        report.append(f"{page.name:32} builtin={'ok' if ref.rendered else 'FAIL'} ours={verdict}  "
                      f"{ours.screenshot}")
        if verdict != "ok":
            problems.append(f"{page.name}: rendered={ours.rendered} text={new_text} console={new_console} "
                            f"requests={new_failures}")
        # The built-in's own page must render, or the comparison proves nothing.
        assert ref.rendered, f"built-in {page.name}: {ref}"
    summary = "\n".join(report + ["error text and console errors both mounts show:"] + sorted(shared))
    (artifacts / "pages.txt").write_text(summary + "\n" + json.dumps(
        {k: {p: v.__dict__ for p, v in r.items()} for k, r in results.items()}, indent=1))
    print("\n" + summary)
    assert not problems, "\n".join(problems)


# -- writes through the UI, read back through the API --------------------------------------------------------

def _shown(driver: Any, xpath: str) -> Any:
    return _wait_for(driver, lambda d: next((e for e in d.find_elements(By.XPATH, xpath)
                                             if e.is_displayed() and e.is_enabled()), None))


def _click(driver: Any, xpath: str) -> None:
    element = _shown(driver, xpath)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _type(driver: Any, xpath: str, text: str) -> None:
    element = _shown(driver, xpath)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.clear()
    element.send_keys(text)


def _check(driver: Any, element_id: str) -> None:
    """Tick a checkbox (styled: the input itself is hidden behind its label)."""
    box = _wait_for(driver, lambda d: d.find_element(By.ID, element_id))
    if not box.is_selected():
        driver.execute_script("arguments[0].click()", box)
    _wait_for(driver, lambda d: d.find_element(By.ID, element_id).is_selected())


def _button(label: str) -> str:
    return f"//button[normalize-space()='{label}']"


def _string_list(label: str) -> str:
    """The first row (a textarea) of the StringList labelled `label`."""
    return (f"(//div[contains(@class,'string-list')][.//label[starts-with(normalize-space(), '{label}')]]"
            f"//textarea)[1]")


def _body(driver: Any) -> str:
    return driver.execute_script("return document.body.innerText")


def _ui_writes(driver: Any, srv: BaoServer, mount: str, shots: Path, label: str) -> str:
    """Create role ui-role, issue ui.example.com from it, revoke that certificate and save URLs and cluster
    config, all through the UI's forms; returns the issued serial as the UI shows it."""
    base = f"/ui/vault/secrets/{mount}/pki"
    # Start from a settled page of this mount: a route change while the previous save's transition still loads
    # data leaves the app on an error page (the UI's race, on either engine).
    settle(driver, mount, "overview", mount, "View issuers")
    go(driver, f"{base}/roles/create")
    _type(driver, "//input[@id='name']", "ui-role")
    _click(driver, _button("Domain handling"))
    _type(driver, _string_list("Allowed domains"), "example.com")
    _check(driver, "allowSubdomains")
    _click(driver, "//button[@type='submit' and normalize-space()='Create']")
    _wait_for(driver, lambda d: "PKI Role ui-role" in _titles(d))
    _network_quiet(driver, [])
    driver.save_screenshot(str(shots / f"{label}-ui-role-created.png"))

    go(driver, f"{base}/roles/ui-role/generate")
    _type(driver, "//input[@id='commonName']", "ui.example.com")
    _click(driver, "//button[@type='submit' and normalize-space()='Generate']")
    serial = _wait_for(driver, lambda d: re.search(r"Serial number\n([0-9a-f:]{20,})", _body(d))).group(1)
    _network_quiet(driver, [])
    driver.save_screenshot(str(shots / f"{label}-ui-cert-issued.png"))
    _click(driver, _button("Revoke certificate"))
    _click(driver, _button("Revoke"))
    _wait_for(driver, lambda d: srv.http("GET", f"{mount}/cert/{serial}").json()["data"].get("revocation_time"))

    go(driver, f"{base}/configuration/edit")
    _wait_for(driver, lambda d: "Edit PKI configuration" in _titles(d))
    _type(driver, _string_list("Issuing certificates"), "http://ui.example.com/ca")
    _type(driver, _string_list("CRL distribution points"), "http://ui.example.com/crl")
    _type(driver, "//input[@id='path']", f"http://ui.example.com/v1/{mount}")
    driver.save_screenshot(str(shots / f"{label}-ui-config-filled.png"))
    _click(driver, "//button[@type='submit' and normalize-space()='Save']")
    _wait_for(driver, lambda d: "/configuration/edit" not in d.current_url and "ACME Config" in _body(d))
    _network_quiet(driver, [])
    driver.save_screenshot(str(shots / f"{label}-ui-config-saved.png"))
    return serial


def _cert_summary(srv: BaoServer, mount: str, serial: str) -> dict:
    from cryptography import x509

    data = srv.http("GET", f"{mount}/cert/{serial}").json()["data"]
    cert = x509.load_pem_x509_certificate(data["certificate"].encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "dns": sans.get_values_for_type(x509.DNSName), "key": type(cert.public_key()).__name__,
            "revoked": bool(data.get("revocation_time"))}


def test_role_certificate_and_config_saved_through_the_ui_read_back_as_on_the_builtin(
        server: BaoServer, browser: Any, mounts: dict, artifacts: Path) -> None:
    seen = {}
    for label in ("builtin", "ours"):
        mount, _ = mounts[label]
        try:
            serial = _ui_writes(browser, server, mount, artifacts, label)
        except TimeoutException:
            browser.save_screenshot(str(artifacts / f"{label}-ui-failure.png"))
            pytest.fail(f"{label}: a UI step timed out at {browser.current_url}; page text:\n{_body(browser)}")
        role = server.http("GET", f"{mount}/roles/ui-role").json()["data"]
        configs = {p: server.http("GET", f"{mount}/config/{p}").json()["data"]
                   for p in ("urls", "cluster", "crl", "acme")}
        configs["cluster"]["path"] = configs["cluster"]["path"].replace(mount, "MOUNT")
        seen[label] = {"role": role, "cert": _cert_summary(server, mount, serial), "config": configs}
    ref, ours = seen["builtin"], seen["ours"]
    assert ref["cert"]["revoked"] and ref["role"]["allowed_domains"] == ["example.com"]
    assert ref["config"]["urls"]["issuing_certificates"] == ["http://ui.example.com/ca"]
    assert ours["cert"] == ref["cert"]
    # Our ACME server's extensions (README, "Differences"): a save through the UI leaves them at their defaults.
    extensions = {k: ours["config"]["acme"].pop(k, None) for k in ("enable_ari", "max_ttl", "profiles")}
    assert extensions == {"enable_ari": False, "max_ttl": 90 * 24 * 3600, "profiles": {}}
    for path in ref["config"]:
        assert _field_diff(ours["config"][path], ref["config"][path]) == {}, f"config/{path}"
    assert _field_diff(ours["role"], ref["role"]) == {}, "roles/ui-role"


def _field_diff(ours: dict, ref: dict) -> dict:
    """Fields whose values differ, as {field: (ours, built-in)} (a field only one side has shows as None)."""
    return {k: (ours.get(k), ref.get(k)) for k in sorted(set(ours) | set(ref)) if ours.get(k) != ref.get(k)}
