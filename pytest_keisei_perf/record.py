"""One run of one benchmark (one process), typed, and the one rule for when two runs compare.

The gate, the baseline store, ``keisei-perf compare`` and the plots all read runs: stored
baseline runs, ``--perf-json`` results and fresh worker results. They read them through
:class:`RunRecord`, so they agree on what a run holds and on :func:`comparability_problem`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .result import CacheState, PerfResult

__all__ = ["P95_SUFFIX", "ModeRun", "RunRecord", "comparability_problem", "median_of_runs", "utc_now"]

#: The gate's name for a mode's tail latency: ``"eager p95"``.
P95_SUFFIX: Final = " p95"


def utc_now() -> str:
    """The time stamp runs, history entries and compile times carry: ``2026-11-26T23:01:32Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class ModeRun:
    """One mode's rounds in one run, and its compile facts."""

    samples_s: tuple[float, ...]
    fallback: bool = False
    fallback_error: str | None = None
    compile_time_s: float | None = None
    compile_cache: CacheState | None = None
    graph_count: int | None = None
    graph_breaks: int | None = None
    recompiles: int | None = None
    #: The 95th percentile of single calls (None where calls were too short to time alone).
    p95_s: float | None = None

    @property
    def median_s(self) -> float:
        """The median the table, the messages and the plots show (:func:`statistics.median`)."""
        return statistics.median(self.samples_s)


@dataclass(frozen=True)
class RunRecord:
    """What the gate needs of one run: samples per mode, the reference samples, the conditions."""

    modes: Mapping[str, ModeRun]
    reference_samples_s: tuple[float, ...]
    device: str | None = None
    compile_kwargs: Mapping[str, Any] | None = None
    threads: int | None = None
    reference_version: int | None = None
    speedup: float | None = None
    git_commit: str | None = None
    timestamp: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RunRecord:
        """A stored baseline run or a ``PerfResult.to_dict()`` (a report's or a worker's result).

        Runs stored before ``reference_version`` existed timed the first reference (v1).
        """
        modes = {
            name: ModeRun(
                samples_s=tuple(float(s) for s in facts["samples_s"]),
                fallback=bool(facts.get("fallback", False)),
                fallback_error=facts.get("fallback_error"),
                compile_time_s=facts.get("compile_time_s"),
                compile_cache=facts.get("compile_cache"),
                graph_count=facts.get("graph_count"),
                graph_breaks=facts.get("graph_breaks"),
                recompiles=facts.get("recompiles"),
                p95_s=facts.get("p95_s"),
            )
            for name, facts in data["modes"].items()
        }
        return cls(
            modes=modes,
            reference_samples_s=tuple(float(s) for s in data.get("reference_samples_s", ())),
            device=data.get("device"),
            compile_kwargs=data.get("compile_kwargs"),
            threads=data.get("threads"),
            reference_version=data.get("reference_version", 1),
            speedup=data.get("speedup"),
            git_commit=data.get("git_commit"),
            timestamp=data.get("timestamp"),
        )

    def with_p95_modes(self) -> RunRecord:
        """This run with a mode ``"<mode> p95"`` beside each mode that has a p95: its one sample
        the p95, so the gate compares tail latency with the same run-level statistics (marker
        ``gate_p95``)."""
        extra = {
            f"{name}{P95_SUFFIX}": ModeRun(samples_s=(m.p95_s,))
            for name, m in self.modes.items()
            if m.p95_s is not None and m.p95_s > 0 and not name.endswith(P95_SUFFIX)
        }
        return dataclasses.replace(self, modes={**self.modes, **extra})

    @classmethod
    def from_result(cls, result: PerfResult) -> RunRecord:
        """A result of this process or a fresh worker's, as the gate reads runs."""
        return cls.from_mapping(result.to_dict())

    def statistic(self, mode: str) -> float | None:
        """This run's machine-normalised statistic for ``mode`` (None if it lacks the mode)."""
        from . import stats

        facts = self.modes.get(mode)
        if facts is None:
            return None
        return stats.run_statistic(facts.samples_s, self.reference_samples_s)

    def raw_statistic(self, mode: str) -> float | None:
        """This run's median log round time for ``mode``, not normalised (None if it lacks the mode)."""
        facts = self.modes.get(mode)
        if facts is None or not facts.samples_s:
            return None
        return statistics.median(math.log(s) for s in facts.samples_s)

    @property
    def compile_state(self) -> CacheState | None:
        """``warm``/``cold``/``partly warm``: the compile cache's state when the compiled mode
        compiled, as inductor's counters told (None without an inductor-compiled mode)."""
        compiled = self.modes.get("compiled")
        return compiled.compile_cache if compiled is not None else None

    @property
    def reference_level(self) -> float:
        """Median log time of the reference workload: how fast the machine ran."""
        return statistics.median(math.log(s) for s in self.reference_samples_s)


def comparability_problem(baseline: RunRecord, current: RunRecord) -> str | None:
    """Why ``current`` cannot be compared with ``baseline`` at all, or None.

    Another device, other compile settings, another thread count or another reference
    workload make another measurement, whatever the numbers say.
    """
    problems = []
    if baseline.device != current.device:
        problems.append(f"device {baseline.device} -> {current.device}")
    if dict(baseline.compile_kwargs or {}) != dict(current.compile_kwargs or {}):
        problems.append(
            f"compile settings {dict(baseline.compile_kwargs or {})} -> {dict(current.compile_kwargs or {})}"
        )
    if baseline.threads is not None and current.threads is not None and baseline.threads != current.threads:
        problems.append(f"threads {baseline.threads} -> {current.threads}")
    if baseline.reference_version != current.reference_version:
        problems.append(f"reference workload v{baseline.reference_version} -> v{current.reference_version}")
    return "; ".join(problems) or None


def median_of_runs(runs: Sequence[RunRecord], mode: str) -> float:
    """Median over runs of each run's median time in ``mode`` (NaN when no run has it)."""
    medians = [r.modes[mode].median_s for r in runs if mode in r.modes]
    return statistics.median(medians) if medians else float("nan")
