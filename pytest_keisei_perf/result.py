"""What a benchmark produced: raw per-round samples, compile facts, output check, verdicts.

Results keep the raw samples so that the gate, the JSON report and a later re-analysis can all
recompute statistics from the data rather than from summaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final, Literal

from .breakdown import Breakdown

__all__ = [
    "NOT_COMPARED",
    "VERDICT_STATUSES",
    "AccuracyResult",
    "CacheState",
    "ModeResult",
    "PerfResult",
    "Verdict",
    "VerdictStatus",
    "benchmark_id",
]

#: What inductor's caches did for a compile: served all of it, none of it, or part.
CacheState = Literal["warm", "cold", "partly warm"]
VerdictStatus = Literal["pass", "regression", "improvement", "no-baseline", "inconclusive"]
VERDICT_STATUSES: Final = ("pass", "regression", "improvement", "no-baseline", "inconclusive")
#: Reasons a benchmark was not compared with a baseline, and how the session's end names them.
NOT_COMPARED: Final = {
    "no-entry": "no baseline entry for this id",
    "machine": "no baseline under this machine key",
    "incomparable": "baseline recorded with another device, compile settings, threads or reference",
    "too-few-runs": "too few baseline runs",
    "host-differs": "this host differs from the baseline's",
    "mode": "mode not in the baseline",
    "new": "new benchmark: not at the compared git ref",
    "compile-state": "compiled in another compile-cache state than the baseline",
}


def benchmark_id(nodeid: str, name: str) -> str:
    """``nodeid`` plus ``::name`` when the test names its benchmark: the key of baselines and reports."""
    return f"{nodeid}::{name}" if name else nodeid


@dataclass(frozen=True)
class ModeResult:
    """One mode's timings: per-call seconds of each round, and what compiling it did.

    There are three models of a mode, one per stage, on purpose: this one is everything a
    measurement produced (warm-up, memory, compile economics: the JSON report's); a
    :class:`~.record.ModeRun` is the part of it a stored baseline run keeps and the gate reads;
    a :class:`~.history.ModeSummary` is one line of history, several runs reduced to a level.
    Each reads from the one before (``RunRecord.from_result``, ``history.summary``).
    """

    mode: str
    median_s: float
    iqr_s: float
    samples_s: tuple[float, ...]
    calls_per_round: int
    warmup_calls: int
    warmup_stable: bool
    compile_time_s: float | None = None
    #: ``warm`` when inductor's FX-graph cache served the whole compile, ``cold`` when none of it.
    compile_cache: CacheState | None = None
    fallback: bool = False
    fallback_error: str | None = None
    graph_count: int | None = None
    graph_breaks: int | None = None
    recompiles: int | None = None
    peak_memory_bytes: int | None = None
    #: 95th percentile of single calls (None for calls too short to time one by one).
    p95_s: float | None = None
    #: Inductor's cache counters of the compile (FX graph, AOT autograd, async compile, Triton
    #: bundler, autotune), as :func:`._compat.compile_cache_counters` names them.
    compile_counters: Mapping[str, int] | None = None
    #: Compile time from an empty cache and from a warm one: this run's, and the other state's
    #: last measurement on this machine (:mod:`.compile_state`); None where never measured.
    cold_compile_time_s: float | None = None
    warm_compile_time_s: float | None = None
    #: Calls before compiling pays, per cache state: compile time / (eager - compiled per call),
    #: or ``"never"`` when compiled is not faster than eager.
    break_even_calls: Mapping[str, float | str] | None = None

    @property
    def rounds(self) -> int:
        return len(self.samples_s)


@dataclass(frozen=True)
class AccuracyResult:
    """Compiled outputs against eager (and, where possible, a float64 reference).

    A check that could not run (``skipped_reason``) has ``passed`` False and ``checked`` False:
    it is reported as NOT CHECKED, never as a pass.
    """

    passed: bool
    max_abs_err: float
    max_rel_err: float
    rtol: float
    atol: float
    message: str = ""
    worst_leaf: str = ""
    used_fp64_reference: bool = False
    skipped_reason: str | None = None

    @property
    def checked(self) -> bool:
        """Whether the outputs were compared at all."""
        return self.skipped_reason is None

    @property
    def mismatched(self) -> bool:
        """Compared, and they differ beyond the tolerance."""
        return self.checked and not self.passed


@dataclass(frozen=True)
class Verdict:
    """The gate's decision for one mode (or the speedup), with the numbers behind it."""

    mode: str
    status: VerdictStatus
    message: str = ""
    change: float | None = None
    change_ci: tuple[float, float] | None = None
    p_value: float | None = None
    detectable_effect: float | None = None
    baseline_runs: int = 0
    current_runs: int = 0
    #: Why nothing was compared (a key of :data:`NOT_COMPARED`), or None when it was.
    not_compared: str | None = None
    #: Change of the raw median time, beside the machine-normalised ``change``.
    raw_change: float | None = None


@dataclass(frozen=True)
class PerfResult:
    """Everything one ``perf.benchmark`` call measured and decided."""

    nodeid: str
    name: str
    device: str
    threads: int
    compile_kwargs: Mapping[str, Any]
    modes: Mapping[str, ModeResult]
    reference_samples_s: tuple[float, ...] = ()
    #: Which reference workload the samples above timed (runs of other versions do not compare).
    reference_version: int | None = None
    speedup: float | None = None
    speedup_ci: tuple[float, float] | None = None
    accuracy: AccuracyResult | None = None
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)
    failures: tuple[str, ...] = ()
    disabled: bool = False
    #: The test's id relative to its project root (:mod:`.ids`); ``nodeid`` stays what pytest
    #: needs to select the test again.
    test_id: str = ""
    #: Samples each call processes (a batch's leading dimension), for throughput; None if unknown.
    items: int | None = None
    #: ``perf.compare``: each candidate's speedup over the first variant, with its 95% interval.
    speedups: Mapping[str, tuple[float, tuple[float, float] | None]] = field(default_factory=dict)
    #: ``--perf-profile``: where each mode's time went (:mod:`.profiling`), by mode.
    breakdowns: Mapping[str, Breakdown] = field(default_factory=dict)
    #: Marker ``focus``: the named part's share and what replacing it could save at most.
    bound: str | None = None

    @property
    def benchmark_id(self) -> str:
        """The key of baselines and reports: independent of the rootdir and invocation dir."""
        return benchmark_id(self.test_id or self.nodeid, self.name)

    def throughput(self, mode: str) -> float | None:
        """Items per second in ``mode`` at the median (None when the batch size is unknown)."""
        median = self.modes[mode].median_s
        return self.items / median if self.items and median > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: raw samples, compile facts, accuracy and verdicts."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["accuracy"] = asdict(self.accuracy) if self.accuracy is not None else None
        data["benchmark_id"] = self.benchmark_id
        data["compile_kwargs"] = {k: _jsonable(v) for k, v in self.compile_kwargs.items()}
        data["modes"] = {
            name: asdict(mode) | {"rounds": mode.rounds, "throughput_items_s": self.throughput(name)}
            for name, mode in self.modes.items()
        }
        data["verdicts"] = {name: asdict(v) for name, v in self.verdicts.items()}
        data["speedups"] = {
            name: {"ratio": ratio, "ci": list(ci) if ci else None}
            for name, (ratio, ci) in self.speedups.items()
        }
        data["breakdowns"] = {name: b.to_dict() for name, b in self.breakdowns.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PerfResult:
        """Rebuild a result from :meth:`to_dict` output (an xdist worker's, or a ``--perf-json``
        report's); unknown keys from newer versions are ignored."""
        modes = {
            name: _build(ModeResult, m, samples_s=tuple(m["samples_s"])) for name, m in data["modes"].items()
        }
        verdicts = {
            name: _build(Verdict, v, change_ci=_pair(v.get("change_ci")))
            for name, v in data["verdicts"].items()
        }
        accuracy = _build(AccuracyResult, data["accuracy"]) if data.get("accuracy") else None
        result: PerfResult = _build(
            cls,
            data,
            modes=modes,
            verdicts=verdicts,
            accuracy=accuracy,
            reference_samples_s=tuple(data.get("reference_samples_s", ())),
            speedup_ci=_pair(data.get("speedup_ci")),
            failures=tuple(data.get("failures", ())),
            speedups={
                name: (float(s["ratio"]), _pair(s.get("ci")))
                for name, s in (data.get("speedups") or {}).items()
            },
            breakdowns={name: Breakdown.from_dict(b) for name, b in (data.get("breakdowns") or {}).items()},
        )
        return result


def _pair(value: Any) -> tuple[float, float] | None:
    return (float(value[0]), float(value[1])) if value is not None else None


def _build(kind: Any, data: Mapping[str, Any], **overrides: Any) -> Any:
    known = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in known} | overrides)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return getattr(value, "__qualname__", None) or repr(value)
