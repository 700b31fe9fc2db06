"""The warnings the plugin raises (filterable with pytest's ``-W`` and ``filterwarnings``)."""

from __future__ import annotations

import pytest

__all__ = [
    "PerfDeprecationWarning",
    "PerfDriftWarning",
    "PerfHistoryWarning",
    "PerfSpeedupWarning",
    "PerfXdistWarning",
]


class PerfSpeedupWarning(pytest.PytestWarning):
    """The compiled/eager speedup fell significantly below the baseline's."""


class PerfXdistWarning(pytest.PytestWarning):
    """Perf benchmarks ran under pytest-xdist beside other tests, which disturb their timings."""


class PerfDriftWarning(pytest.PytestWarning):
    """A benchmark drifted beyond the threshold along its history, step by small step."""


class PerfHistoryWarning(pytest.PytestWarning):
    """A history line could not be read; it was skipped (and is left as it is)."""


class PerfDeprecationWarning(pytest.PytestWarning, DeprecationWarning):
    """A keyword or option whose meaning changed, or that will go."""
