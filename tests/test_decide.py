"""gate.decide itself: confirmations, Benjamini-Hochberg, the raw-time and host rules, compile
facts. Synthetic runs, no processes and no timing: these are what the mutation check runs."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pytest_keisei_perf.gate import GateContext, decide, speedup_drop
from pytest_keisei_perf.record import RunRecord
from pytest_keisei_perf.simulate import make_run


def _run(level: float, ref: float = 1.0, **compiled: object) -> RunRecord:
    """A run at normalised log ``level`` in eager (and compiled, with ``compiled`` facts) whose
    reference workload took ``ref`` seconds."""
    run = make_run(
        {"eager": level + math.log(ref)} | ({"compiled": level + math.log(ref)} if compiled else {})
    )
    modes = dict(run.modes)
    if compiled:
        modes["compiled"] = dataclasses.replace(modes["compiled"], **compiled)  # type: ignore[arg-type]
    return dataclasses.replace(run, modes=modes, reference_samples_s=(ref,) * 5)


BASE = [_run(v) for v in (0.0, 0.01, -0.01, 0.005, -0.005)]


def _context(total: int = 1, confirm: object = None) -> GateContext:
    return GateContext(threshold=0.05, alpha=0.05, total_comparisons=total, confirm=confirm)  # type: ignore[arg-type]


def test_a_suspect_is_decided_by_the_fresh_runs_only() -> None:
    calls: list[int] = []

    def confirm() -> list[RunRecord]:
        calls.append(1)
        return [_run(v) for v in (0.002, -0.004, 0.001, 0.0)]

    verdicts, failures = decide(_run(0.3), BASE, _context(confirm=confirm), label="b", nodeid="t::b")
    assert calls == [1]
    assert verdicts["eager"].status == "pass"
    assert verdicts["eager"].current_runs == 4
    assert failures == []
    quiet: list[int] = []
    decide(_run(0.001), BASE, _context(confirm=lambda: quiet.append(1) or []), label="b", nodeid="t::b")
    assert quiet == []  # nothing suspect: no fresh processes


def test_confirmed_regression_fails_and_bh_counts_every_comparison() -> None:
    slow = [_run(v) for v in (0.04, 0.16, 0.06, 0.14)]  # +10% on average, noisy: p ~ 0.005
    verdicts, failures = decide(_run(0.1), BASE, _context(1, lambda: slow), label="b", nodeid="t::b")
    assert verdicts["eager"].status == "regression"
    p = verdicts["eager"].p_value
    assert p is not None
    assert 0.0025 < p < 0.05
    assert failures
    assert failures[0].startswith("performance regression: b [eager]")
    verdicts, failures = decide(_run(0.1), BASE, _context(20, lambda: slow), label="b", nodeid="t::b")
    assert verdicts["eager"].status == "pass"
    assert "not significant after Benjamini-Hochberg over 20 comparisons" in verdicts["eager"].message
    assert failures == []


def test_slower_only_after_normalisation_is_inconclusive_with_both_numbers() -> None:
    """Raw time 6% faster, but the reference ran 12% faster still: not a regression."""
    base = [
        _run(v, ref=r)
        for v, r in zip((0, 0.01, -0.01, 0.005, -0.005), (0.9, 1.0, 1.1, 0.95, 1.05), strict=False)
    ]
    now = [_run(math.log(0.95 / 0.88), ref=0.88) for _ in range(4)]  # 12%: not another host here
    verdicts, failures = decide(now[0], base, _context(confirm=lambda: now), label="b", nodeid="t::b")
    verdict = verdicts["eager"]
    assert verdict.status == "inconclusive"
    assert verdict.raw_change == pytest.approx(0.95 / 1.01 - 1, abs=0.001)  # 1.01: the base median
    assert verdict.change is not None
    assert verdict.change > 0.07
    assert "NOT failed: raw time is -5.9%" in verdict.message
    assert failures == []


def test_a_host_whose_reference_runs_unlike_the_baseline_is_not_compared() -> None:
    verdicts, failures = decide(_run(0.3, ref=0.75), BASE, _context(), label="b", nodeid="t::b")
    verdict = verdicts["eager"]
    assert (verdict.status, verdict.not_compared) == ("no-baseline", "host-differs")
    assert (
        "this host differs from the baseline's (reference workload 25% faster in this run" in verdict.message
    )
    assert failures == []
    busy, _ = decide(_run(0.0, ref=1.06), BASE, _context(), label="b", nodeid="t::b")
    assert busy["eager"].not_compared is None  # 6%: within what one host does


def test_the_host_check_judges_fresh_processes_when_there_are_any() -> None:
    """In a long-lived session the reference reads up to ~20% off its fresh-process level on
    the same host; fresh confirmations decide whether the host differs."""
    same_host = [_run(v) for v in (0.001, -0.002, 0.0, 0.002)]
    verdicts, _ = decide(_run(0.3, ref=0.8), BASE, _context(confirm=lambda: same_host), label="b", nodeid="t")
    assert verdicts["eager"].not_compared is None
    assert verdicts["eager"].status == "pass"
    other_host = [_run(0.2, ref=0.8) for _ in range(4)]
    verdicts, _ = decide(
        _run(0.3, ref=0.8), BASE, _context(confirm=lambda: other_host), label="b", nodeid="t"
    )
    assert verdicts["eager"].not_compared == "host-differs"
    assert "20% faster in 4 fresh process(es)" in verdicts["eager"].message


def test_compile_facts_are_gated_exactly_and_a_lost_compile_fails() -> None:
    facts = {"graph_count": 1, "graph_breaks": 0, "recompiles": 0}
    base = [_run(v, **facts) for v in (0.0, 0.01, -0.01)]
    _, failures = decide(
        _run(0.0, graph_count=2, graph_breaks=0, recompiles=3), base, _context(2), label="b", nodeid="t"
    )
    assert failures == ["b [compiled]: graphs went from 1 to 2", "b [compiled]: recompiles went from 0 to 3"]
    lost = _run(0.0, fallback=True, fallback_error="BackendCompilerFailed: boom")
    _, failures = decide(lost, base, _context(2), label="b", nodeid="t")
    assert failures == [
        "b [compiled]: torch.compile failed and fell back to eager, but the baseline compiled: "
        "BackendCompilerFailed: boom"
    ]


def test_too_few_runs_and_other_conditions_are_not_compared() -> None:
    verdicts, _ = decide(_run(0.0), BASE[:2], _context(), label="b", nodeid="t")
    assert verdicts["eager"].not_compared == "too-few-runs"
    cuda = [dataclasses.replace(r, device="cuda:0") for r in BASE]
    verdicts, _ = decide(_run(0.0), cuda, _context(), label="b", nodeid="t")
    assert verdicts["eager"].not_compared == "incomparable"
    assert "device cuda:0 -> cpu" in verdicts["eager"].message
    verdicts, _ = decide(_run(0.0), [], _context(), label="b", nodeid="t", missing=("machine", "m"))
    assert (verdicts["eager"].not_compared, verdicts["eager"].message) == ("machine", "m")


def test_speedup_drop_is_flagged_only_when_significant() -> None:
    def run(speedup: float | None) -> RunRecord:
        return dataclasses.replace(make_run({"eager": 0.0}), speedup=speedup)

    runs = [run(s) for s in (1.50, 1.53, 1.47, 1.51, 1.49)]
    message = speedup_drop(run(1.05), runs, threshold=0.05, alpha=0.05)
    assert message is not None
    assert "dropped from 1.50x (baseline median of 5 runs) to 1.05x" in message
    assert speedup_drop(run(1.48), runs, threshold=0.05, alpha=0.05) is None
    assert speedup_drop(run(1.05), runs[:2], threshold=0.05, alpha=0.05) is None
    assert speedup_drop(run(None), runs, threshold=0.05, alpha=0.05) is None


def test_a_verdict_carries_every_number_of_its_decision() -> None:
    slow = [_run(v) for v in (0.04, 0.16, 0.06, 0.14)]
    verdicts, _ = decide(_run(0.1), BASE, _context(1, lambda: slow), label="b", nodeid="t::b")
    v = verdicts["eager"]
    assert v.mode == "eager"
    assert v.change == pytest.approx(math.expm1(0.1))
    assert v.change_ci is not None
    assert v.change_ci[0] < v.change < v.change_ci[1]
    assert v.change_ci[1] - v.change_ci[0] > 0.05  # a real interval from 5 + 4 runs, not a point
    assert v.detectable_effect is not None
    assert 0 < v.detectable_effect < 0.2
    assert (v.baseline_runs, v.current_runs) == (5, 4)
    assert v.raw_change == pytest.approx(math.expm1(0.1), rel=0.01)
    assert f"p={v.p_value:.3g}" in v.message  # a slower run reports its one-sided p for "slower"
    faster, _ = decide(_run(-0.3), BASE, _context(), label="b", nodeid="t::b")
    f = faster["eager"]
    assert f.status == "improvement"
    assert f.p_value is not None
    assert f.p_value > 0.99  # p_value is always p(slower); the message quotes p(faster)
    assert f"p={1 - f.p_value:.3g}," in f.message
    stored, _ = decide(_run(0.0), [], _context(), label="b", nodeid="t", missing=("machine", "m"))
    assert stored["eager"].mode == "eager"


def test_compile_facts_need_a_compiled_baseline() -> None:
    eager_only = [_run(v) for v in (0.0, 0.01, -0.01)]
    lost = _run(0.0, fallback=True, fallback_error="boom")
    verdicts, failures = decide(lost, eager_only, _context(2), label="b", nodeid="t")
    assert failures == []  # nothing compiled before: nothing lost
    assert verdicts["compiled"].not_compared == "mode"
    never = [_run(v, fallback=True, graph_count=None) for v in (0.0, 0.01, -0.01)]
    _, failures = decide(lost, never, _context(2), label="b", nodeid="t")
    assert failures == []  # the baseline never compiled either


def test_speedup_drop_needs_three_baseline_runs() -> None:
    def run(speedup: float) -> RunRecord:
        return dataclasses.replace(make_run({"eager": 0.0}), speedup=speedup)

    three = [run(s) for s in (1.50, 1.52, 1.48)]
    assert speedup_drop(run(1.0), three, threshold=0.05, alpha=0.05) is not None


def test_conditions_are_read_off_the_last_stored_run() -> None:
    moved = [dataclasses.replace(r, device="cuda:0") for r in BASE[:4]] + [BASE[4]]
    verdicts, _ = decide(_run(0.0), moved, _context(), label="b", nodeid="t")
    assert verdicts["eager"].not_compared is None  # the newest run was on this device
    verdicts, _ = decide(_run(0.0), [*BASE[:4], moved[0]], _context(), label="b", nodeid="t")
    assert verdicts["eager"].not_compared == "incomparable"


def test_three_runs_are_enough_and_fewer_say_how_many() -> None:
    verdicts, _ = decide(_run(0.0), BASE[:3], _context(), label="b", nodeid="t")
    assert verdicts["eager"].status == "pass"
    assert verdicts["eager"].baseline_runs == 3
    few, _ = decide(_run(0.0), BASE[:2], _context(), label="b", nodeid="t")
    v = few["eager"]
    assert (v.mode, v.status, v.baseline_runs) == ("eager", "no-baseline", 2)
    assert (
        v.message
        == "b [eager]: not compared: only 2 baseline run(s); at least 3 are needed to estimate noise"
    )


def test_each_mode_is_decided_on_its_own() -> None:
    """A mode missing from the baseline does not stop the next; a suspect mode's confirmations
    do not decide a mode that was not suspect."""
    base = [_run(v, graph_count=1, graph_breaks=0, recompiles=0) for v in (0.0, 0.01, -0.01, 0.005)]
    compiled_only = [dataclasses.replace(r, modes={"compiled": r.modes["compiled"]}) for r in base]
    verdicts, _ = decide(_run(0.0, graph_count=1), compiled_only, _context(2), label="b", nodeid="t")
    assert verdicts["eager"].not_compared == "mode"
    assert verdicts["eager"].mode == "eager"
    assert verdicts["eager"].message == "b [eager]: not compared: mode not in the baseline"
    assert verdicts["compiled"].status == "pass"
    current = dataclasses.replace(_run(0.0, graph_count=1, graph_breaks=0, recompiles=0))
    slow_eager = dict(current.modes)
    slow_eager["eager"] = make_run({"eager": 0.3}).modes["eager"]
    current = dataclasses.replace(current, modes=slow_eager)
    fresh = [_run(0.0, graph_count=1, graph_breaks=0, recompiles=0) for _ in range(4)]
    verdicts, _ = decide(current, base, _context(2, lambda: fresh), label="b", nodeid="t")
    assert verdicts["eager"].current_runs == 4  # suspect: the fresh runs decided
    assert verdicts["compiled"].current_runs == 1  # not suspect: this run decided


def test_the_host_check_waits_for_fresh_runs_and_says_slower_too() -> None:
    # in-session reference 25% off, nothing suspect, confirmations available: not judged here
    quiet, _ = decide(_run(0.0, ref=1.25), BASE, _context(confirm=lambda: []), label="b", nodeid="t")
    assert quiet["eager"].not_compared is None
    slower, _ = decide(_run(0.0, ref=1.3), BASE, _context(), label="b", nodeid="t")
    assert "reference workload 30% slower in this run than in the baseline runs; raw eager median +30.0%" in (
        slower["eager"].message
    )


def test_raw_time_unchanged_is_not_a_regression() -> None:
    refs = (0.9, 1.0, 1.1, 0.95, 1.05)
    base = [_run(-math.log(r), ref=r) for r in refs]  # raw time 1.0 in every run
    now = [_run(-math.log(0.88), ref=0.88) for _ in range(4)]  # raw 1.0 again, reference faster
    verdicts, failures = decide(now[0], base, _context(confirm=lambda: now), label="b", nodeid="t")
    assert verdicts["eager"].raw_change == pytest.approx(0.0, abs=1e-12)
    assert verdicts["eager"].status == "inconclusive"
    assert failures == []


def test_tail_latency_is_gated_as_its_own_mode_when_asked() -> None:
    """Same median, a p95 half again as long: only the ``eager p95`` mode is a regression, and
    only runs with p95 modes (marker ``gate_p95``) have it."""

    def with_p95(run: RunRecord, p95: float) -> RunRecord:
        return dataclasses.replace(run, modes={"eager": dataclasses.replace(run.modes["eager"], p95_s=p95)})

    base = [with_p95(_run(v), 1.2 * math.exp(v)) for v in (0.0, 0.01, -0.01, 0.005, -0.005)]
    slow_tail = [with_p95(_run(v), 1.8 * math.exp(v)) for v in (0.002, -0.003, 0.001, 0.0, 0.004)]
    plain, _ = decide(slow_tail[0], base, _context(confirm=lambda: slow_tail[1:]), label="b", nodeid="t")
    assert set(plain) == {"eager"}
    assert plain["eager"].status == "pass"
    gated, failures = decide(
        slow_tail[0].with_p95_modes(), [r.with_p95_modes() for r in base],
        _context(total=2, confirm=lambda: [r.with_p95_modes() for r in slow_tail[1:]]), label="b", nodeid="t",
    )  # fmt: skip
    assert gated["eager"].status == "pass"
    assert gated["eager p95"].status == "regression"
    assert any("b [eager p95]: median 1.8" in f for f in failures)


def test_compile_fact_messages_name_the_fact() -> None:
    base = [_run(v, graph_count=1, graph_breaks=0, recompiles=0) for v in (0.0, 0.01, -0.01)]
    _, failures = decide(
        _run(0.0, graph_count=1, graph_breaks=2, recompiles=0), base, _context(2), label="b", nodeid="t"
    )
    assert failures == ["b [compiled]: graph breaks went from 0 to 2"]
    _, failures = decide(_run(0.0, fallback=True), base, _context(2), label="b", nodeid="t")
    assert failures == [
        "b [compiled]: torch.compile failed and fell back to eager, but the baseline compiled: unknown error"
    ]


def test_compile_facts_are_gated_for_every_compiled_mode() -> None:
    """Named compile settings and sweep shapes are modes like ``compiled[max-autotune]``: a graph
    break that appears in one of them fails like one in ``compiled``."""

    def variant(run: RunRecord, **facts: object) -> RunRecord:
        modes = dict(run.modes)
        modes["compiled[fast]"] = dataclasses.replace(modes.pop("compiled"), **facts)  # type: ignore[arg-type]
        return dataclasses.replace(run, modes=modes)

    base = [variant(_run(v, graph_breaks=0), graph_breaks=0) for v in (0.0, 0.01, -0.01)]
    _, failures = decide(
        variant(_run(0.0, graph_breaks=0), graph_breaks=1), base, _context(2), label="b", nodeid="t"
    )
    assert failures == ["b [compiled[fast]]: graph breaks went from 0 to 1"]


def test_slower_in_raw_and_normalised_time_is_a_regression_whatever_the_reference_did() -> None:
    """Issue 23's miss: the same host under load (reference +15%) and 25% more work (raw +44%)
    read as "this host differs" and passed; raw and normalised time agree, so it fails."""
    slower_host = [_run(math.log(1.25) + d, ref=1.15) for d in (0.01, -0.01, 0.0, 0.005)]
    verdicts, failures = decide(
        slower_host[0], BASE, _context(confirm=lambda: slower_host), label="b", nodeid="t::b"
    )
    verdict = verdicts["eager"]
    assert (verdict.status, verdict.not_compared) == ("regression", None)
    assert "reference workload 15% slower in 4 fresh process(es)" in verdict.message
    assert "raw and normalised time agree (host check)" in verdict.message
    assert failures
    assert failures[0].startswith("performance regression: b [eager]")


def test_a_shifted_reference_that_raw_time_contradicts_is_not_compared() -> None:
    """Normalised +25%, but the reference ran 20% faster and raw time is unchanged: the
    normalisation alone cannot fail anyone across hosts."""
    other_host = [_run(math.log(1.25) + d, ref=0.8) for d in (0.01, -0.01, 0.0, 0.005)]
    verdicts, failures = decide(
        other_host[0], BASE, _context(confirm=lambda: other_host), label="b", nodeid="t::b"
    )
    verdict = verdicts["eager"]
    assert (verdict.status, verdict.not_compared) == ("no-baseline", "host-differs")
    assert "they disagree on whether this is a regression" in verdict.message
    assert failures == []


def test_a_shifted_reference_with_raw_and_normalised_agreeing_keeps_the_usual_verdict() -> None:
    """Reference 20% slower, raw time +2%: neither side says regression, so the verdict stands
    (here: pass, and not an improvement either), with the host check's numbers in the message."""
    runs = [_run(math.log(1.02 / 1.2) + d, ref=1.2) for d in (0.01, -0.01, 0.0, 0.005)]
    verdicts, failures = decide(runs[0], BASE, _context(), label="b", nodeid="t")
    verdict = verdicts["eager"]
    assert (verdict.status, verdict.not_compared) == ("pass", None)
    assert "reference workload 20% slower in this run than in the baseline runs" in verdict.message
    assert "raw and normalised time agree (host check)" in verdict.message
    assert "not an improvement: raw time is +" in verdict.message
    assert failures == []


def test_one_fresh_run_beside_a_moved_reference_is_re_measured_before_the_host_is_blamed() -> None:
    """The gated run is a fresh process; its reference alone ran 50% slower (a busy moment).
    The confirmations, on the same host as the baseline, decide: a pass, not "host differs"."""
    calls: list[int] = []

    def confirm() -> list[RunRecord]:
        calls.append(1)
        return [_run(v) for v in (0.002, -0.004, 0.001, 0.0)]

    busy = _run(-math.log(1.5) + 0.1, ref=1.5)  # raw +10%, normalised -30%: they disagree
    context = dataclasses.replace(_context(confirm=confirm), current_is_fresh=True)
    verdicts, failures = decide(busy, BASE, context, label="b", nodeid="t")
    assert calls == [1]
    assert (verdicts["eager"].status, verdicts["eager"].not_compared) == ("pass", None)
    assert failures == []
    alone = dataclasses.replace(_context(confirm=None), current_is_fresh=True)
    verdicts, _ = decide(busy, BASE, alone, label="b", nodeid="t")
    assert verdicts["eager"].not_compared == "host-differs"  # nothing to re-measure with
