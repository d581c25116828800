"""engine.lazy_import: loaded on first use, and never a second copy of a module its package already imported."""
from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_module_runs_on_first_attribute_access() -> None:
    out = _run("import sys; from engine.lazy_import import lazy_module; m = lazy_module('requests'); "
               "print('requests.adapters' in sys.modules); m.Session; print('requests.adapters' in sys.modules)")
    assert out.split() == ["False", "True"]


def test_a_submodule_its_package_imports_is_not_loaded_twice() -> None:
    # urllib3's package imports urllib3.exceptions itself: the lazy handle must be that same module.
    out = _run("import sys; from engine.lazy_import import lazy_module; m = lazy_module('urllib3.exceptions'); "
               "import urllib3; import requests; "
               "import urllib3.util.retry as retry; "
               "print(m.MaxRetryError is retry.MaxRetryError, "
               "requests.adapters.MaxRetryError is retry.MaxRetryError)")
    assert out.split() == ["True", "True"]
