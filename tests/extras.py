"""Optional test dependencies: skipped where the ``[test]`` extra is missing, but a failure where
it must be there (``.ci/run`` and tox set ``KEISEI_PERF_TEST_EXTRAS=required``), so CI can never
go green by skipping the integration tests."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

REQUIRED_ENV = "KEISEI_PERF_TEST_EXTRAS"


def need(module: str) -> ModuleType:
    """Import ``module``; skip the test if it is missing, unless extras are required here."""
    if os.environ.get(REQUIRED_ENV) == "required":
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            pytest.fail(f"{module} is missing but {REQUIRED_ENV}=required: install '.[test]' ({exc})")
    return pytest.importorskip(module)


#: Set to ``required`` where a missing browser must fail the browser test (``.ci/run``).
BROWSER_ENV = "KEISEI_PERF_BROWSER"


def need_program(*names: str) -> str:
    """The path of the first of ``names`` on PATH; skip when none is, unless required here."""
    import shutil

    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = f"none of {', '.join(names)} is installed"
    if os.environ.get(BROWSER_ENV) == "required":
        pytest.fail(f"{message} but {BROWSER_ENV}=required (apt-get install chromium)")
    pytest.skip(message)


def need_tool(name: str) -> str:
    """A command-line tool of the ``[test]`` extra (actionlint, shellcheck): found on PATH or
    beside this interpreter; skipped when missing, unless extras are required here."""
    import shutil
    import sys
    from pathlib import Path

    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    if os.environ.get(REQUIRED_ENV) == "required":
        pytest.fail(f"{name} is missing but {REQUIRED_ENV}=required: install '.[test]'")
    pytest.skip(f"{name} is not installed (pip install '.[test]')")
