"""Turning a measurement and its baseline runs into verdicts and failure messages.

Stage 1 compares this process with the baseline; a suspect is re-measured in fresh processes
and only those fresh runs decide (so picking the suspect does not bias the test). Regressions
must also survive Benjamini-Hochberg across the session's benchmarks. Deterministic compile
facts (graphs, graph breaks, recompiles) are compared exactly. Compiled runs compare only with
runs of the same compile-cache state (:mod:`.compile_state`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import stats
from .ledger import FalseDiscoveryLedger
from .record import RunRecord, comparability_problem, median_of_runs
from .report import format_duration
from .result import Verdict

if TYPE_CHECKING:
    from .result import PerfResult
    from .settings import PerfSettings

__all__ = [
    "Evidence",
    "GateContext",
    "decide",
    "decision_verdict",
    "evidence",
    "policy_failures",
    "rebaseline_hint",
    "settle",
    "settle_evidence",
    "speedup_drop",
]


def rebaseline_hint(nodeid: str) -> str:
    return f"if the change is intended, re-baseline: pytest -m perf --perf-update-baseline '{nodeid}'"


@dataclass
class GateContext:
    """Session-wide inputs of the gate: thresholds, how to confirm, and the false-discovery ledger.

    Without a ``ledger``, one is made that expects ``total_comparisons`` comparisons.
    """

    threshold: float
    alpha: float
    total_comparisons: int = 1
    confirm: Callable[[], Sequence[RunRecord]] | None = None
    ledger: FalseDiscoveryLedger = field(default_factory=FalseDiscoveryLedger)
    #: Whether the current run was measured in a fresh process, like the baseline's runs (the
    #: host check may then judge it alone).
    current_is_fresh: bool = False

    def __post_init__(self) -> None:
        self.ledger.expected = max(self.ledger.expected, self.total_comparisons)

    def bh(self, p_value: float) -> tuple[bool, int]:
        """The ledger's decision on ``p_value`` at this gate's alpha."""
        return self.ledger.decide(p_value, self.alpha)


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
    """Deterministic compile facts of every compiled mode (named settings and sweep shapes
    included), gated exactly; a compile that now fails is a regression."""
    problems = []
    for mode, now in current.modes.items():
        before = last.modes.get(mode)
        if not mode.startswith("compiled") or before is None or before.fallback:
            continue
        if now.fallback:
            problems.append(
                f"{label} [{mode}]: torch.compile failed and fell back to eager, but the baseline "
                f"compiled: {now.fallback_error or 'unknown error'}"
            )
            continue
        for key, what in (
            ("graph_count", "graphs"),
            ("graph_breaks", "graph breaks"),
            ("recompiles", "recompiles"),
        ):
            n, b = getattr(now, key), getattr(before, key)
            if n is not None and b is not None and n > b:
                problems.append(f"{label} [{mode}]: {what} went from {b} to {n}")
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


@dataclass(frozen=True)
class Evidence:
    """What one mode's verdict is made of: the runs on each side and the host check's finding."""

    base_runs: Sequence[RunRecord]
    now_runs: Sequence[RunRecord]
    decision: stats.GateDecision
    host_shift: float | None
    where: str


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
    when the runs were recorded under other conditions or are too few. When this host's
    reference workload runs unlike the baseline's (:func:`stats.host_shift`), the normalisation
    is not trusted alone: a slowdown must show in raw time too (:func:`_host_rule`).
    """
    modes = list(current.modes)
    comparable, not_compared = _comparable_runs(current, runs, label, missing)
    if not_compared is not None:
        return not_compared, []
    failures = _compile_facts(label, current, comparable[-1])
    base_runs = {m: [r for r in comparable if m in r.modes] for m in modes}
    first = {m: _compare(base_runs[m], [current], m, context) for m in modes}
    levels = [r.reference_level for r in comparable]
    suspect = any(d is not None and stats.is_suspect(d, context.threshold) for d in first.values())
    # one fresh process whose reference moved is re-measured too: one busy moment must not
    # decide that the host differs
    moved = context.current_is_fresh and stats.host_shift(levels, [current.reference_level]) is not None
    confirmed: Sequence[RunRecord] = ()
    if context.confirm is not None and (suspect or moved):
        confirmed = context.confirm()
    # The host check compares fresh processes with fresh processes: inside a long-lived session
    # the reference reads off its fresh-process level on the same host (docs, "The host
    # check"), so an in-session run is judged only when there are no confirmations at all.
    alone = context.confirm is None or context.current_is_fresh
    judged = list(confirmed) if confirmed else ([current] if alone else [])
    shift = stats.host_shift(levels, [r.reference_level for r in judged])
    where = f"{len(judged)} fresh process(es)" if confirmed else "this run"
    verdicts: dict[str, Verdict] = {}
    for mode in modes:
        decision = first[mode]
        if decision is None:
            verdicts[mode] = _unmeasured(mode, label, len(base_runs[mode]))
            continue
        now_runs: Sequence[RunRecord] = [current]
        fresh = [r for r in confirmed if mode in r.modes]
        if stats.is_suspect(decision, context.threshold) and fresh:
            now_runs = fresh
            decision = _compare(base_runs[mode], fresh, mode, context) or decision
        evidence = Evidence(base_runs[mode], now_runs, decision, shift, where)
        verdicts[mode] = _verdict(mode, evidence, context, label=label, nodeid=nodeid)
        if verdicts[mode].status == "regression":
            failures.append(verdicts[mode].message)
    return verdicts, failures


def _comparable_runs(
    current: RunRecord, runs: Sequence[RunRecord] | None, label: str, missing: tuple[str, str]
) -> tuple[Sequence[RunRecord], dict[str, Verdict] | None]:
    """The baseline runs this run compares with, or the not-compared verdicts saying why none."""
    modes = list(current.modes)
    if not runs:
        return (), _not_compared(modes, *missing)
    if "compiled" in current.modes:
        state = current.compile_state
        same_state = [r for r in runs if "compiled" not in r.modes or r.compile_state == state]
        if not same_state:
            return (), _not_compared(modes, "compile-state", _state_message(label, current, runs))
        runs = same_state
    problem = comparability_problem(runs[-1], current)
    if problem:
        message = f"{label}: not compared: the baseline was recorded with {problem}; re-baseline"
        return (), _not_compared(modes, "incomparable", message)
    return runs, None


def _compare(
    base: Sequence[RunRecord], now: Sequence[RunRecord], mode: str, context: GateContext, *, raw: bool = False
) -> stats.GateDecision | None:
    """The t-test of ``now`` against ``base`` on the normalised (or ``raw``) statistic; None
    when the baseline has too few runs of ``mode`` or no current run has it."""
    statistic = RunRecord.raw_statistic if raw else RunRecord.statistic
    values = {
        side: [v for v in (statistic(r, mode) for r in runs) if v is not None]
        for side, runs in (("base", base), ("now", now))
    }
    if len(values["base"]) < stats.MIN_BASELINE_RUNS or not values["now"]:
        return None
    return stats.compare_runs(values["base"], values["now"], threshold=context.threshold, alpha=context.alpha)


def _unmeasured(mode: str, label: str, baseline_runs: int) -> Verdict:
    """Not compared: the mode is not in the baseline, or it has too few runs to estimate noise."""
    if baseline_runs == 0:
        return Verdict(
            mode=mode,
            status="no-baseline",
            message=f"{label} [{mode}]: not compared: mode not in the baseline",
            not_compared="mode",
        )
    return Verdict(
        mode=mode,
        status="no-baseline",
        message=f"{label} [{mode}]: not compared: only {baseline_runs} baseline run(s); at least "
        f"{stats.MIN_BASELINE_RUNS} are needed to estimate noise",
        not_compared="too-few-runs",
        baseline_runs=baseline_runs,
    )


def _host_rule(
    mode: str, evidence: Evidence, context: GateContext, label: str, raw_change: float
) -> Verdict | str | None:
    """When the reference ran unlike on the baseline's host, the normalisation is not trusted
    alone: raw and normalised time must agree on whether this is a regression. They agree: the
    usual verdict stands, with a note (returned). They disagree: this mode is not compared
    (a verdict). No host shift: None."""
    shift = evidence.host_shift
    if shift is None:
        return None
    raw = _compare(evidence.base_runs, evidence.now_runs, mode, context, raw=True)
    moved = (
        f"reference workload {abs(shift):.0%} {'faster' if shift < 0 else 'slower'} in "
        f"{evidence.where} than in the baseline runs"
    )
    raw_text = f"raw {mode} median {raw_change:+.1%}"
    if raw is not None and raw.p_slower is not None:
        raw_text += f" (p={raw.p_slower:.3g})"
    raw_slower = raw is not None and raw.status == "regression"
    if raw_slower == (evidence.decision.status == "regression"):
        return f"; {moved}, {raw_text}: raw and normalised time agree (host check)"
    normalised = evidence.decision.change or 0.0
    message = (
        f"{label} [{mode}]: not compared: this host differs from the baseline's ({moved}; {raw_text}, "
        f"machine-normalised {normalised:+.1%}: they disagree on whether this is a regression); "
        "re-measure, or re-baseline on this host if the host changed"
    )
    return Verdict(mode=mode, status="no-baseline", message=message, not_compared="host-differs")


def evidence(
    base_runs: Sequence[RunRecord], now_runs: Sequence[RunRecord], decision: stats.GateDecision, where: str
) -> Evidence:
    """Evidence of ``now_runs`` against ``base_runs``, with the host check made on them alone."""
    shift = stats.host_shift([r.reference_level for r in base_runs], [r.reference_level for r in now_runs])
    return Evidence(base_runs, now_runs, decision, shift, where)


def settle_evidence(
    mode: str, evidence: Evidence, context: GateContext, *, label: str
) -> Verdict | tuple[str, str, float]:
    """The host rule, the raw-time rule and Benjamini-Hochberg on one mode's evidence: a
    not-compared verdict, or (status, note, raw change)."""
    raw_change = _raw_change(evidence.now_runs, evidence.base_runs, mode)
    host = _host_rule(mode, evidence, context, label, raw_change)
    if isinstance(host, Verdict):
        return host
    status, note = settle(evidence.decision, raw_change, context.bh)
    return status, (host or "") + note, raw_change


def _verdict(mode: str, evidence: Evidence, context: GateContext, *, label: str, nodeid: str) -> Verdict:
    """The verdict tail shared by every stored-baseline comparison: the host rule, the raw-time
    rule, Benjamini-Hochberg, and the message."""
    settled = settle_evidence(mode, evidence, context, label=label)
    if isinstance(settled, Verdict):
        return settled
    status, note, raw_change = settled
    decision = evidence.decision
    now_s = median_of_runs(evidence.now_runs, mode)
    base_s = median_of_runs(evidence.base_runs, mode)
    message = _describe(decision, mode, label, now_s, base_s) + f"; raw {raw_change:+.1%}" + note
    if decision.detectable_effect is not None and decision.detectable_effect > context.threshold:
        message += f" (threshold {context.threshold:.0%} is below what this benchmark can detect here)"
    if status == "regression":
        message = f"performance regression: {message}\n  {rebaseline_hint(nodeid)}"
    return decision_verdict(mode, status, message, decision, raw_change)


def settle(
    decision: stats.GateDecision, raw_change: float, bh: Callable[[float], tuple[bool, int]]
) -> tuple[str, str]:
    """The verdict tail every gate shares (stored baselines, A/B, ``keisei-perf compare``):
    (status, note) after the raw-time rule and Benjamini-Hochberg. ``bh(p)`` -> (rejected,
    comparisons) hears every p-value, so passing comparisons count in the correction too."""
    rejected, total = bh(decision.p_slower) if decision.p_slower is not None else (True, 0)
    if decision.status == "regression" and raw_change <= 0:
        return "inconclusive", (
            f"; NOT failed: raw time is {raw_change:+.1%}, so the slowdown exists only relative to the "
            "reference workload, which ran unlike this benchmark here (another host, or the "
            "reference was disturbed); re-measure or re-baseline"
        )
    if decision.status == "improvement" and raw_change >= 0:
        return "pass", f"; not an improvement: raw time is {raw_change:+.1%}"
    if decision.status == "regression" and not rejected:
        return "pass", f"; not significant after Benjamini-Hochberg over {total} comparisons"
    return decision.status, ""


def concluded(
    result: PerfResult, verdicts: dict[str, Verdict], failures: Sequence[str], settings: PerfSettings
) -> PerfResult:
    """``result`` with its verdicts, and its failures with those the session's options add."""
    added = policy_failures(
        result.benchmark_id,
        verdicts,
        require_baseline=settings.require_baseline,
        fail_inconclusive=settings.fail_inconclusive,
    )
    return dataclasses.replace(result, verdicts=verdicts, failures=(*failures, *added))


def policy_failures(
    label: str, verdicts: dict[str, Verdict], *, require_baseline: bool, fail_inconclusive: bool
) -> list[str]:
    """Failures the session's options add to a benchmark's verdicts: a benchmark that was not
    compared (``--perf-require-baseline``; a benchmark new in A/B excepted) or is inconclusive
    (``--perf-fail-inconclusive``)."""
    failures = []
    for mode, verdict in verdicts.items():
        if verdict.status == "no-baseline" and require_baseline and verdict.not_compared != "new":
            failures.append(f"{_with_mode(label, mode, verdict.message)} (--perf-require-baseline)")
        if verdict.status == "inconclusive" and fail_inconclusive:
            failures.append(f"{verdict.message} (--perf-fail-inconclusive)")
    return failures


def _with_mode(label: str, mode: str, message: str) -> str:
    """``message`` naming ``label [mode]`` once: a message about the whole benchmark gains the mode."""
    named = f"{label} [{mode}]"
    if message.startswith(named):
        return message
    return f"{named}: {message.removeprefix(f'{label}: ')}"


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
    typical = statistics.median(before)
    return (
        f"compiled/eager speedup dropped from {typical:.2f}x (baseline median of {len(before)} runs) to "
        f"{now:.2f}x, p={decision.p_slower:.3g}: torch.compile pays less than it did"
    )
