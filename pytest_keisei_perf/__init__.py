"""pytest-keisei-perf: performance-regression testing of PyTorch models in eager and compiled modes."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:  # one version source: the package metadata (pyproject.toml)
    __version__ = version("pytest-keisei-perf")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
