"""Turning a measurement and its baseline runs into verdicts and failure messages.

Stage 1 compares this process with the baseline; a suspect is re-measured in fresh processes
and only those fresh runs decide (so picking the suspect does not bias the test). Regressions
must also survive Benjamini-Hochberg across the session's benchmarks. Deterministic compile
facts (graphs, graph breaks, recompiles) are compared exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import stats
from .report import format_duration
from .result import Verdict

__all__ = ["GateContext", "decide", "rebaseline_hint", "speedup_drop"]


def rebaseline_hint(nodeid: str) -> str:
    return f"if the change is intended, re-baseline: pytest -m perf --perf-update-baseline '{nodeid}'"


@dataclass
class GateContext:
    """Session-wide inputs of the gate: thresholds, how to confirm, and earlier p-values for BH."""

    threshold: float
    alpha: float
    total_benchmarks: int
    confirm: Callable[[], Sequence[Mapping[str, Any]]] | None
    other_machines: Sequence[str] = ()
    decided_p_values: list[float] = field(default_factory=list)


def _statistic(record: Mapping[str, Any], mode: str) -> float | None:
    facts = record["modes"].get(mode)
    if facts is None:
        return None
    return stats.run_statistic(facts["samples_s"], record["reference_samples_s"])


def _describe(decision: stats.GateDecision, mode: str, label: str, now_s: float, base_s: float) -> str:
    if decision.change is None:
        return f"{label} [{mode}]: inconclusive: {decision.reason}"
    assert decision.change_ci is not None
    assert decision.detectable_effect is not None
    lo, hi = decision.change_ci
    p = decision.p_slower if decision.change >= 0 else decision.p_faster
    return (
        f"{label} [{mode}]: median {format_duration(now_s)} vs baseline {format_duration(base_s)}; "
        f"change {decision.change:+.1%} (95% CI {lo:+.1%} to {hi:+.1%}, machine-normalised), "
        f"p={p:.3g}, {decision.baseline_runs} baseline runs vs {decision.current_runs} current; "
        f"detectable {decision.detectable_effect:.1%}"
    )


def _compile_facts(label: str, current: Mapping[str, Any], last: Mapping[str, Any]) -> list[str]:
    now, before = current["modes"].get("compiled"), last["modes"].get("compiled")
    if not now or not before or now["fallback"] or before["fallback"]:
        return []
    problems = []
    for key, what in (
        ("graph_count", "graphs"),
        ("graph_breaks", "graph breaks"),
        ("recompiles", "recompiles"),
    ):
        if now[key] is not None and before[key] is not None and now[key] > before[key]:
            problems.append(f"{label} [compiled]: {what} went from {before[key]} to {now[key]}")
    return problems


def decide(
    current: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]] | None,
    context: GateContext,
    *,
    label: str,
    nodeid: str,
) -> tuple[dict[str, Verdict], list[str]]:
    """Verdict per mode and failure messages for one benchmark (``current`` is a result dict)."""
    modes = list(current["modes"])
    if not runs:
        others = (
            f" (baselines exist for other machines: {', '.join(context.other_machines)}; not used)"
            if context.other_machines
            else ""
        )
        note = f"no baseline for this machine{others}; create one with pytest -m perf --perf-update-baseline"
        return {m: Verdict(mode=m, status="no-baseline", message=note) for m in modes}, []
    last = runs[-1]
    mismatch = _not_comparable(last, current)
    if mismatch:
        return {m: Verdict(mode=m, status="no-baseline", message=mismatch) for m in modes}, []
    failures = _compile_facts(label, current, last)
    base_values = {m: [v for v in (_statistic(r, m) for r in runs) if v is not None] for m in modes}
    first = {m: _stage(current, base_values[m], m, context) for m in modes}
    confirmed: Sequence[Mapping[str, Any]] = ()
    if context.confirm is not None and any(
        d and stats.is_suspect(d, context.threshold) for d in first.values()
    ):
        confirmed = context.confirm()
    verdicts: dict[str, Verdict] = {}
    for mode in modes:
        decision = first[mode]
        if decision is None:
            verdicts[mode] = Verdict(mode=mode, status="no-baseline", message="mode not in the baseline")
            continue
        if stats.is_suspect(decision, context.threshold) and confirmed:
            fresh = [v for v in (_statistic(r, mode) for r in confirmed) if v is not None]
            decision = stats.compare_runs(
                base_values[mode], fresh, threshold=context.threshold, alpha=context.alpha
            )
        status: str = decision.status
        note = ""
        if status == "regression":
            assert decision.p_slower is not None
            if not stats.online_bh_rejects(
                decision.p_slower, context.decided_p_values, context.total_benchmarks, context.alpha
            ):
                status, note = (
                    "pass",
                    f"; not significant after Benjamini-Hochberg over {context.total_benchmarks} benchmarks",
                )
        if decision.p_slower is not None:
            context.decided_p_values.append(decision.p_slower)
        now_s = current["modes"][mode]["median_s"]
        base_s = _median([r["modes"][mode]["samples_s"] for r in runs if mode in r["modes"]])
        message = _describe(decision, mode, label, now_s, base_s) + note
        if decision.detectable_effect is not None and decision.detectable_effect > context.threshold:
            message += f" (threshold {context.threshold:.0%} is below what this benchmark can detect here)"
        if status == "regression":
            message = f"performance regression: {message}\n  {rebaseline_hint(nodeid)}"
            failures.append(message)
        verdicts[mode] = Verdict(
            mode=mode,
            status=status,  # type: ignore[arg-type]
            message=message,
            change=decision.change,
            change_ci=decision.change_ci,
            p_value=decision.p_slower,
            detectable_effect=decision.detectable_effect,
            baseline_runs=decision.baseline_runs,
            current_runs=decision.current_runs,
        )
    return verdicts, failures


def _not_comparable(last: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """Why the baseline's runs cannot be compared with this one (other device, compile settings
    or reference workload), or None."""
    if last.get("compile_kwargs") != current["compile_kwargs"] or last.get("device") != current["device"]:
        return (
            f"baseline was recorded with device {last.get('device')} and compile settings "
            f"{last.get('compile_kwargs')}, "
            f"now {current['device']} and {current['compile_kwargs']}; re-baseline to compare"
        )
    if last.get("reference_version", 1) != current.get("reference_version"):
        return (
            f"baseline was timed against reference workload v{last.get('reference_version', 1)}, "
            f"this run against v{current.get('reference_version')}; re-baseline to compare"
        )
    return None


def _stage(
    current: Mapping[str, Any], base_values: Sequence[float], mode: str, context: GateContext
) -> stats.GateDecision | None:
    """Stage 1: this process's run against the baseline runs (None when either lacks the mode)."""
    now = _statistic(current, mode)
    if now is None or not base_values:
        return None
    return stats.compare_runs(base_values, [now], threshold=context.threshold, alpha=context.alpha)


def _median(sample_lists: Sequence[Sequence[float]]) -> float:
    per_run = sorted(sorted(s)[len(s) // 2] for s in sample_lists)
    return per_run[len(per_run) // 2] if per_run else float("nan")


def speedup_drop(
    current: Mapping[str, Any], runs: Sequence[Mapping[str, Any]] | None, *, threshold: float, alpha: float
) -> str | None:
    """A message when compiled/eager speedup fell significantly (beyond ``threshold``) below the
    baseline runs' speedups: the same t-test as the gate, on log speedups."""
    now = current.get("speedup")
    before = [r["speedup"] for r in runs or () if r.get("speedup")]
    if not now or len(before) < stats.MIN_BASELINE_RUNS:
        return None
    decision = stats.compare_runs(
        [-math.log(s) for s in before], [-math.log(now)], threshold=threshold, alpha=alpha
    )
    if decision.status != "regression" or decision.p_slower is None:
        return None
    typical = sorted(before)[len(before) // 2]
    return (
        f"compiled/eager speedup dropped from {typical:.2f}x (baseline median of {len(before)} runs) to "
        f"{now:.2f}x, p={decision.p_slower:.3g}: torch.compile pays less than it did"
    )
