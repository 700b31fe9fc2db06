"""pytest-keisei-perf: performance-regression testing of PyTorch models in eager and compiled modes."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
