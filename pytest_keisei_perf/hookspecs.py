"""Hooks pytest-keisei-perf offers other plugins (added through ``pytest_addhooks``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .result import PerfResult

__all__ = ["pytest_keisei_perf_machine_info", "pytest_keisei_perf_result"]


@pytest.hookspec
def pytest_keisei_perf_machine_info(config: pytest.Config, info: dict[str, Any]) -> None:
    """Add facts to the machine/environment record (the JSON report's ``machine``); mutate ``info``."""


@pytest.hookspec
def pytest_keisei_perf_result(item: pytest.Item, result: PerfResult) -> None:
    """Observe each finished benchmark, after its verdicts are decided and before the test fails."""
