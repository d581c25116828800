"""A SoftHSM2 of our own per test run: its own SOFTHSM2_CONF and token directory in a temp dir.

SoftHSM reads SOFTHSM2_CONF when the module is initialised, so the variable is set for the whole session
(and, for integration tests, before the server that starts our plugin). Each test gets tokens with fresh
labels; helpers wipe, re-initialise and restore a token behind the running code's back.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

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
        assert len(created) == 1, created
        self.token_dirs[label] = created.pop()
        return label

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
    assert library is not None
    tokendir = root / "tokens"
    tokendir.mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
                    "slots.removable = false\n")
    return SoftHsm(root=root, library=library, conf=conf, tokendir=tokendir)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    hsm = make_softhsm(tmp_path_factory.mktemp("softhsm"))
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    yield hsm
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous
