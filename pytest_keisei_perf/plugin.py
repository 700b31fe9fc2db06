"""pytest hooks of pytest-keisei-perf: options, the ``perf`` marker, the ``perf`` fixture, reporting."""

from __future__ import annotations

import pytest

PERF_MARKER_HELP = (
    "perf(modes, threshold, alpha, rtol, atol, min_speedup, compile, strict_compile): "
    "a performance benchmark timed in eager and torch.compile modes and gated against its baseline"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", PERF_MARKER_HELP)
