"""Write the executable that OpenBao/Vault launches for this plugin.

The server runs the file named by ``-command`` from its ``plugin_directory``
directly (fork/exec), with its own working directory and environment. The file
must be a regular file inside that directory (a symlink pointing outside it is
refused) and ``#!/usr/bin/env python3`` would pick whatever python the server
finds on its PATH, which lacks our packages. So the launcher names the
interpreter of *this* installation by absolute path and imports
``plugin.main`` from it.

Usage::

    python -m plugin.launcher PLUGIN_DIR [--name python-pki]

prints the sha256 to give to ``bao plugin register -sha256=...``.

The sha256 covers only this small launcher, not the Python packages it
imports (see the README's security notes).

This module must not import grpc or anything heavy: it runs in install
scripts and test harnesses.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["install_launcher", "launcher_text", "main"]

# Linux reads at most this many bytes of a "#!" line (BINPRM_BUF_SIZE is 256
# since 5.1, 128 before); stay under the old limit to be safe.
_SHEBANG_MAX = 127


def _source_root() -> str:
    """The directory that holds the ``plugin`` package we are part of."""
    return str(Path(__file__).resolve().parent.parent)


def _shebang(python: str) -> str:
    """A first line (or lines) that runs the rest of the file with `python`.

    A plain ``#!python`` works when the path is short and has no whitespace;
    otherwise use the sh/python polyglot that pip itself uses for long paths.
    """
    if len(python) + 2 <= _SHEBANG_MAX and not any(c.isspace() for c in python):
        return f"#!{python}\n"
    quoted = python.replace("'", "'\"'\"'")
    return f"#!/bin/sh\n'''exec' '{quoted}' \"$0\" \"$@\"\n' '''\n"


def launcher_text(python: str, args: tuple[str, ...] | list[str] = ()) -> str:
    """The launcher's content for interpreter `python` and extra argv `args`."""
    root = _source_root()
    return (
        _shebang(python)
        + "# Launcher for the python-pki plugin, written by plugin.launcher.\n"
        "# Do not edit: its sha256 is registered in the server's plugin catalog.\n"
        "import sys\n"
        f"_ARGS = {list(args)!r}\n"
        f"_SOURCE_ROOT = {root!r}\n"
        "try:\n"
        "    from plugin.main import main\n"
        "except ModuleNotFoundError as exc:\n"
        "    # Not installed into this interpreter (e.g. a plain checkout):\n"
        "    # fall back to the source tree the launcher was written from.\n"
        "    if exc.name not in ('plugin', 'plugin.main'):\n"
        "        raise\n"
        "    sys.path.append(_SOURCE_ROOT)\n"
        "    from plugin.main import main\n"
        "# Worker processes (multiprocessing forkserver/spawn) re-import this file as __mp_main__;\n"
        "# only the process the server started may serve the plugin.\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[1:1] = _ARGS\n"
        "    sys.exit(main())\n"
    )


def install_launcher(
    plugin_dir: Path | str,
    name: str = "python-pki",
    python: str = sys.executable,
    args: tuple[str, ...] | list[str] = (),
) -> tuple[Path, str]:
    """Write the launcher `name` into `plugin_dir`; return (path, sha256 hex).

    The file is replaced atomically, so a server reading the directory never
    sees a half-written launcher.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid plugin command name: {name!r}")
    if not python:
        raise ValueError("no python interpreter given (sys.executable is empty)")
    python = os.path.abspath(python)
    plugin_dir = Path(plugin_dir)
    plugin_dir.mkdir(parents=True, exist_ok=True)
    data = launcher_text(python, args).encode()
    target = plugin_dir / name
    fd, tmp = tempfile.mkstemp(dir=plugin_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target, hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m plugin.launcher",
        description="Install the python-pki launcher into a plugin directory "
        "and print its sha256.",
    )
    p.add_argument("plugin_dir", type=Path, help="the server's plugin_directory")
    p.add_argument("--name", default="python-pki", help="file name (the -command)")
    p.add_argument("--python", default=sys.executable, help="interpreter to run")
    ns = p.parse_args(argv)
    _, sha = install_launcher(ns.plugin_dir, ns.name, ns.python)
    print(sha)
    return 0


if __name__ == "__main__":
    sys.exit(main())
