"""A private SoftHSM2 token store (own SOFTHSM2_CONF and token directory) for tests, benchmarks and demos.

SoftHSM reads SOFTHSM2_CONF when the module is initialised, so whoever loads the module (this process, or the
server that starts our plugin) must have `env()` in its environment. Helpers wipe, re-initialise and restore
tokens behind a running engine's back, which is how the robustness tests simulate operator accidents.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

SOFTHSM_LIB_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
USER_PIN = "1234"
SO_PIN = "5678"


def find_softhsm() -> str | None:
    for path in SOFTHSM_LIB_CANDIDATES:
        if os.path.isfile(path):
            return path
    return None


def skip_reason() -> str | None:
    if find_softhsm() is None:
        return "libsofthsm2.so not found (Debian package softhsm2)"
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util not found (Debian package softhsm2)"
    return None


@dataclass
class SoftHsm:
    """One token directory; `new_token` returns the label of a fresh, initialised token."""

    root: Path
    library: str
    conf: Path
    tokendir: Path
    token_dirs: dict[str, str] = field(default_factory=dict)   # label -> directory name under tokendir

    def env(self) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def _util(self, *args: str) -> None:
        subprocess.run(["softhsm2-util", *args], env=self.env(), check=True, capture_output=True)

    def new_token(self, label: str | None = None, pin: str = USER_PIN) -> str:
        label = label or f"t-{uuid.uuid4().hex[:10]}"
        before = set(os.listdir(self.tokendir))
        self._util("--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", SO_PIN)
        created = set(os.listdir(self.tokendir)) - before
        if len(created) != 1:
            raise RuntimeError(f"softhsm2-util created {sorted(created)} for one token")
        self.token_dirs[label] = created.pop()
        return label

    def slot_of(self, label: str) -> int:
        """The slot id SoftHSM gives the token with this label (a second way to name the same token)."""
        out = subprocess.run(["softhsm2-util", "--show-slots"], env=self.env(), check=True, capture_output=True,
                             text=True).stdout
        for block in re.split(r"(?m)^Slot ", out)[1:]:
            slot_id = int(block.split(None, 1)[0])
            if re.search(rf"(?m)^\s*Label:\s*{re.escape(label)}\s*$", block):
                return slot_id
        raise LookupError(f"no token labelled {label!r}")

    def delete_token(self, label: str) -> None:
        self._util("--delete-token", "--token", label)
        self.token_dirs.pop(label, None)

    def reinit_token(self, label: str, pin: str = USER_PIN) -> None:
        """Wipe the token and initialise an empty one with the same label (what an operator's mistake looks like)."""
        self.delete_token(label)
        self.new_token(label, pin)

    def backup(self, label: str) -> Path:
        src = self.tokendir / self.token_dirs[label]
        dst = self.root / f"backup-{label}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(src, dst)
        return dst

    def restore(self, label: str, backup: Path) -> None:
        """Put a backed-up token back in place of whatever now carries its label."""
        if label in self.token_dirs:
            self.delete_token(label)
        shutil.copytree(backup, self.tokendir / backup.name)
        self.token_dirs[label] = backup.name


def make_softhsm(root: Path) -> SoftHsm:
    library = find_softhsm()
    if library is None:
        raise RuntimeError(skip_reason() or "SoftHSM2 is not installed")
    tokendir = root / "tokens"
    tokendir.mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
                    "slots.removable = false\n")
    return SoftHsm(root=root, library=library, conf=conf, tokendir=tokendir)




def make_hsm_issuer(http: Callable[..., Any], mount: str, hsm: SoftHsm, token_label: str, pin: str = USER_PIN,
                    key_type: str = "ec", key_bits: int = 256, name: str = "hsm") -> dict[str, Any]:
    """A root issuer on `mount` whose key is generated in the token, through the HTTP API.

    `http(method, path, json=...)` is a client such as `integration.harness.Client.http`; the server it talks
    to must have been started with `hsm.env()`. Returns the root generation's response data.
    """
    body: dict[str, Any] = {"library": hsm.library, "token_label": token_label, "pin": pin,
                            "key_label": f"{name}-{uuid.uuid4().hex[:8]}", "allow_generate_key": True}
    if key_type == "ec":
        body.update(mechanism="0x1041", curve=f"P{key_bits}")
    elif key_type == "rsa":
        body.update(mechanism="0x0001", key_bits=key_bits)
    else:
        body.update(mechanism="0x1057")
    for path, payload in ((f"{mount}/managed-keys/{name}", body),
                          (f"{mount}/root/generate/kms", {"common_name": f"{name} root", "managed_key_name": name,
                                                          "ttl": "87600h", "issuer_name": name})):
        resp = http("POST", path, json=payload)
        if resp.status_code >= 400:
            raise RuntimeError(f"{path}: HTTP {resp.status_code}: {resp.text.strip()}")
    return resp.json()["data"]
