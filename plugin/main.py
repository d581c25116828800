"""The `python-pki` executable: a Vault/OpenBao backend plugin, or a short explanation when run by hand."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Callable

BACKENDS = {
    "pki": "engine.backend:build_backend",
    "external-ca": "engine.external_ca.backend:build_backend",
}

USAGE = """\
python-pki: a PKI secrets engine plugin for HashiCorp Vault and OpenBao.

It is started by the server, not by hand. To use it:
  1. put a launcher into the server's plugin_directory:  python -m plugin.launcher <plugin_directory>
  2. register it:   bao plugin register -sha256=<sha256 printed above> -command=python-pki secret python-pki
  3. mount it:      bao secrets enable -path=pki python-pki
For the external-CA (ACME orders) backend register the same launcher with -args=--backend=external-ca
as secret plugin python-pki-external-ca. See README.md.
"""


def _factory(spec: str) -> Callable[[], object]:
    module_name, _, attr = spec.partition(":")

    def build() -> object:
        import importlib
        return getattr(importlib.import_module(module_name), attr)()
    return build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python-pki", add_help=True)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="pki")
    parser.add_argument("--log-level", default=os.environ.get("PYTHON_PKI_LOG_LEVEL", "info"))
    args, _unknown = parser.parse_known_args(argv)

    from plugin.host.serve import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, NegotiationError, serve
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(USAGE)
        return 1
    from plugin.host import logs
    logs.setup(args.log_level)
    try:
        asyncio.run(serve(_factory(BACKENDS[args.backend]), dict(os.environ)))
    except NegotiationError as exc:
        sys.stderr.write(f"python-pki: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
