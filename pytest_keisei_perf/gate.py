"""Turning a measurement and its baseline runs into verdicts and failure messages.

Stage 1 compares this process with the baseline; a suspect is re-measured in fresh processes
and only those fresh runs decide (so picking the suspect does not bias the test). Regressions
must also survive Benjamini-Hochberg across the session's benchmarks. Deterministic compile
facts (graphs, graph breaks, recompiles) are compared exactly. Compiled runs compare only with
runs of the same compile-cache state (:mod:`.compile_state`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import stats
from .record import RunRecord, comparability_problem, median_of_runs
from .report import format_duration
from .result import Verdict

__all__ = ["GateContext", "decide", "decision_verdict", "rebaseline_hint", "speedup_drop"]


def rebaseline_hint(nodeid: str) -> str:
    return f"if the change is intended, re-baseline: pytest -m perf --perf-update-baseline '{nodeid}'"


@dataclass
class GateContext:
    """Session-wide inputs of the gate: thresholds, how to confirm, and earlier p-values for BH.

    ``total_comparisons`` is what Benjamini-Hochberg corrects over: one p-value per benchmark
    and mode in the session (a lower bound while tests are still running).
    """

    threshold: float
    alpha: float
    total_comparisons: int
    confirm: Callable[[], Sequence[RunRecord]] | None
    decided_p_values: list[float] = field(default_factory=list)


def _describe(decision: stats.GateDecision, mode: str, label: str, now_s: float, base_s: float) -> str:
    assert decision.change is not None
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


def _compile_facts(label: str, current: RunRecord, last: RunRecord) -> list[str]:
    """Deterministic compile facts, gated exactly; a compile that now fails is a regression."""
    now, before = current.modes.get("compiled"), last.modes.get("compiled")
    if now is None or before is None or before.fallback:
        return []
    if now.fallback:
        return [
            f"{label} [compiled]: torch.compile failed and fell back to eager, but the baseline "
            f"compiled: {now.fallback_error or 'unknown error'}"
        ]
    problems = []
    for key, what in (
        ("graph_count", "graphs"),
        ("graph_breaks", "graph breaks"),
        ("recompiles", "recompiles"),
    ):
        n, b = getattr(now, key), getattr(before, key)
        if n is not None and b is not None and n > b:
            problems.append(f"{label} [compiled]: {what} went from {b} to {n}")
    return problems


def _state_message(label: str, current: RunRecord, runs: Sequence[RunRecord]) -> str:
    from .compile_state import describe_state

    stored = sorted({describe_state(r.compile_state) for r in runs})
    return (
        f"{label}: not compared: this run's compiled code was {describe_state(current.compile_state)}, "
        f"the baseline's {len(runs)} run(s) {' or '.join(stored)}; runs compare only within one "
        "compile-cache state (--perf-compile-state; re-baseline in the state CI runs in)"
    )


def _not_compared(modes: Sequence[str], reason: str, message: str) -> dict[str, Verdict]:
    return {m: Verdict(mode=m, status="no-baseline", message=message, not_compared=reason) for m in modes}


def decide(
    current: RunRecord,
    runs: Sequence[RunRecord] | None,
    context: GateContext,
    *,
    label: str,
    nodeid: str,
    missing: tuple[str, str] = ("no-entry", "no baseline for this benchmark"),
) -> tuple[dict[str, Verdict], list[str]]:
    """Verdict per mode and failure messages for one benchmark.

    ``missing`` is the (reason, message) to give when ``runs`` is empty. Nothing is compared
    when the runs were recorded under other conditions, are too few, or when this host's
    reference workload runs unlike the baseline's host (see :func:`stats.host_shift`).
    """
    modes = list(current.modes)
    if not runs:
        return _not_compared(modes, *missing), []
    if "compiled" in current.modes:
        state = current.compile_state
        same_state = [r for r in runs if "compiled" not in r.modes or r.compile_state == state]
        if not same_state:
            return _not_compared(modes, "compile-state", _state_message(label, current, runs)), []
        runs = same_state
    last = runs[-1]
    problem = comparability_problem(last, current)
    if problem:
        return _not_compared(
            modes,
            "incomparable",
            f"{label}: not compared: the baseline was recorded with {problem}; re-baseline",
        ), []
    failures = _compile_facts(label, current, last)
    base_runs = {m: [r for r in runs if m in r.modes] for m in modes}
    base_values = {m: [v for v in (r.statistic(m) for r in base_runs[m]) if v is not None] for m in modes}
    first = {
        m: stats.compare_runs(base_values[m], [now], threshold=context.threshold, alpha=context.alpha)
        if len(base_values[m]) >= stats.MIN_BASELINE_RUNS and (now := current.statistic(m)) is not None
        else None
        for m in modes
    }
    confirmed: Sequence[RunRecord] = ()
    if context.confirm is not None and any(
        d is not None and stats.is_suspect(d, context.threshold) for d in first.values()
    ):
        confirmed = context.confirm()
    # The host check compares fresh processes with fresh processes: inside a long-lived session
    # the reference reads 4-21% off its fresh-process level on the same host (measured on the
    # main job), so the in-process run is judged only when there are no confirmations at all.
    judged = list(confirmed) if confirmed else ([current] if context.confirm is None else [])
    shift = stats.host_shift([r.reference_level for r in runs], [r.reference_level for r in judged])
    if shift is not None:
        raw = "; ".join(
            f"raw {m} median {_raw_change(judged, runs, m):+.1%}"
            for m in modes
            if any(m in r.modes for r in runs)
        )
        where = f"{len(judged)} fresh process(es)" if confirmed else "this run"
        message = (
            f"{label}: not compared: this host differs from the baseline's (reference workload "
            f"{abs(shift):.0%} {'faster' if shift < 0 else 'slower'} in {where} than in the baseline "
            f"runs; {raw}); re-baseline on this host"
        )
        return _not_compared(modes, "host-differs", message), failures
    verdicts: dict[str, Verdict] = {}
    for mode in modes:
        decision = first[mode]
        if decision is None:
            k = len(base_values[mode])
            verdicts[mode] = (
                Verdict(
                    mode=mode,
                    status="no-baseline",
                    message=f"{label} [{mode}]: not compared: mode not in the baseline",
                    not_compared="mode",
                )
                if k == 0
                else Verdict(
                    mode=mode,
                    status="no-baseline",
                    message=f"{label} [{mode}]: not compared: only {k} baseline run(s); at least "
                    f"{stats.MIN_BASELINE_RUNS} are needed to estimate noise",
                    not_compared="too-few-runs",
                    baseline_runs=k,
                )
            )
            continue
        now_runs: Sequence[RunRecord] = [current]
        if stats.is_suspect(decision, context.threshold) and confirmed:
            fresh_runs = [r for r in confirmed if mode in r.modes]
            fresh = [v for v in (r.statistic(mode) for r in fresh_runs) if v is not None]
            if fresh:
                now_runs = fresh_runs
                decision = stats.compare_runs(
                    base_values[mode], fresh, threshold=context.threshold, alpha=context.alpha
                )
        raw_change = _raw_change(now_runs, base_runs[mode], mode)
        status: str = decision.status
        note = ""
        if status == "regression" and raw_change <= 0:
            status = "inconclusive"
            note = (
                f"; NOT failed: raw time is {raw_change:+.1%}, so the slowdown exists only relative to the "
                "reference workload, which ran unlike this benchmark here (another host, or the "
                "reference was disturbed); re-measure or re-baseline"
            )
        elif status == "improvement" and raw_change >= 0:
            status, note = "pass", f"; not an improvement: raw time is {raw_change:+.1%}"
        elif status == "regression":
            assert decision.p_slower is not None
            if not stats.online_bh_rejects(
                decision.p_slower, context.decided_p_values, context.total_comparisons, context.alpha
            ):
                status = "pass"
                note = (
                    f"; not significant after Benjamini-Hochberg over {context.total_comparisons} comparisons"
                )
        if decision.p_slower is not None:
            context.decided_p_values.append(decision.p_slower)
        now_s = median_of_runs(now_runs, mode)
        base_s = median_of_runs(base_runs[mode], mode)
        message = _describe(decision, mode, label, now_s, base_s) + f"; raw {raw_change:+.1%}" + note
        if decision.detectable_effect is not None and decision.detectable_effect > context.threshold:
            message += f" (threshold {context.threshold:.0%} is below what this benchmark can detect here)"
        if status == "regression":
            message = f"performance regression: {message}\n  {rebaseline_hint(nodeid)}"
            failures.append(message)
        verdicts[mode] = decision_verdict(mode, status, message, decision, raw_change)
    return verdicts, failures


def decision_verdict(
    mode: str, status: str, message: str, decision: stats.GateDecision, raw_change: float
) -> Verdict:
    """A verdict carrying a decision's numbers (the stored-baseline gate's and the A/B's)."""
    return Verdict(
        mode=mode,
        status=status,  # type: ignore[arg-type]
        message=message,
        change=decision.change,
        change_ci=decision.change_ci,
        p_value=decision.p_slower,
        detectable_effect=decision.detectable_effect,
        baseline_runs=decision.baseline_runs,
        current_runs=decision.current_runs,
        raw_change=raw_change,
    )


def _raw_change(now: Sequence[RunRecord], base: Sequence[RunRecord], mode: str) -> float:
    """Change of the median raw time (fraction; NaN when a side lacks the mode)."""
    return median_of_runs(now, mode) / median_of_runs(base, mode) - 1


def speedup_drop(
    current: RunRecord, runs: Sequence[RunRecord] | None, *, threshold: float, alpha: float
) -> str | None:
    """A message when compiled/eager speedup fell significantly (beyond ``threshold``) below the
    baseline runs' speedups: the same t-test as the gate, on log speedups."""
    now = current.speedup
    before = [r.speedup for r in runs or () if r.speedup]
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
