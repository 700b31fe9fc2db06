"""The statistics: pinned values, invariants, and seeded simulations of realistic noise."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from pytest_keisei_perf import simulate, stats
from pytest_keisei_perf.simulate import Scenario


def test_stats_module_does_not_import_torch() -> None:
    code = "import sys, pytest_keisei_perf.stats; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_speedup_estimate_does_not_import_scipy_stats() -> None:
    """Every fresh process that compiles estimates a speedup; scipy.stats would add about a
    second to each (docs/measurements.md)."""
    code = (
        "import sys; from pytest_keisei_perf import stats\n"
        "stats.estimate_speedup([2.0, 2.1, 1.9, 2.0], [1.0, 1.1, 0.9, 1.0])\n"
        "assert 'scipy.stats' not in sys.modules, 'scipy.stats imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_trimmed_mean_and_its_se_are_scipys() -> None:
    """Held to scipy.stats.trim_mean and mstats.trimmed_stde over sizes 1-40 and 101, heavy
    tails and ties included."""
    import warnings

    from scipy import stats as sps
    from scipy.stats import mstats

    rng = np.random.default_rng(11)
    for n in [*range(1, 41), 101]:
        for _ in range(20):
            values = rng.standard_t(3, n) * rng.uniform(0.01, 1.0)
            if rng.uniform() < 0.3:
                values = np.round(values, 1)  # ties
            mean, se = stats.trimmed_mean_and_se(values, 0.2)
            assert mean == pytest.approx(sps.trim_mean(values, 0.2), rel=1e-12, abs=1e-15)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns that n=1 gives a masked (NaN) SE
                expected = float(mstats.trimmed_stde(values, limits=(0.2, 0.2)))
            if n == 1:
                assert math.isnan(se)
                assert math.isnan(expected)
            else:
                assert se == pytest.approx(expected, rel=1e-10, abs=1e-15)


def test_summarize() -> None:
    summary = stats.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert summary.median == 3.0
    assert summary.iqr == 2.0
    with pytest.raises(ValueError, match="finite"):
        stats.summarize([1.0, math.nan])
    with pytest.raises(ValueError, match="finite"):
        stats.summarize([])


def test_speedup_is_symmetric_and_exact_without_noise() -> None:
    est = stats.estimate_speedup([2.0] * 10, [1.0] * 10)
    assert est.ratio == pytest.approx(2.0)
    assert est.ci is not None
    low, high = est.ci
    assert low < 2.0 < high  # the between-run term keeps the interval open
    swapped = stats.estimate_speedup([1.0] * 10, [2.0] * 10)
    assert swapped.ratio == pytest.approx(0.5)
    assert swapped.ci == pytest.approx((1 / high, 1 / low))


def test_speedup_with_too_few_pairs_has_no_interval() -> None:
    assert stats.estimate_speedup([2.0, 2.0], [1.0, 1.0]).ci is None
    with pytest.raises(ValueError, match="no paired rounds"):
        stats.estimate_speedup([], [])
    with pytest.raises(ValueError, match="positive"):
        stats.estimate_speedup([1.0, 0.0, 1.0], [1.0, 1.0, 1.0])


def test_speedup_interval_covers_the_truth_under_drift_and_spikes() -> None:
    """Rounds share machine drift (cancelled by pairing) and get heavy-tailed spikes."""
    rng = np.random.default_rng(20261125)
    true_speedup, covered, trials = 1.4, 0, 400
    for _ in range(trials):
        n = 20
        drift = np.cumsum(rng.normal(0, 0.01, n))  # slow machine drift, shared by the pair
        run_offset = rng.normal(0, 0.02)  # this process's compiled/eager ratio is off by ~2%
        eager = 0.010 * np.exp(drift + rng.normal(0, 0.01, n))
        compiled = eager / true_speedup * np.exp(run_offset + rng.normal(0, 0.015, n))
        spikes = rng.random(n) < 0.1
        compiled[spikes] *= rng.uniform(1.5, 3.0, spikes.sum())
        est = stats.estimate_speedup(list(eager), list(compiled))
        assert est.ci is not None
        covered += est.ci[0] <= true_speedup <= est.ci[1]
    coverage = covered / trials
    assert coverage >= 0.9, f"95% interval covered the true speedup in only {coverage:.1%} of runs"


# -- the shipped gate (gate.decide, confirmations, BH), on seeded simulations -----------------------
MODERATE_SD = 0.03  # normalised between-process spread measured on these machines: 3-7%


def _naive(scenario: Scenario, rng: np.random.Generator, slowdown: float) -> bool:
    """pytest-benchmark style: this run's median more than 5% above the baseline's."""
    base = float(np.median([r.statistic("eager") for r in scenario.baseline(rng)]))
    now = scenario.draw(rng, slowdown).statistic("eager")
    assert now is not None
    return math.exp(now - base) > 1.05


def test_gate_false_alarms_at_most_1pct_on_identical_code() -> None:
    rng = np.random.default_rng(1)
    scenario = Scenario(noise=MODERATE_SD)
    trials = 4000
    alarms = simulate.alarm_rate(scenario, rng, 0.0, trials)  # measured 0.4%
    naive = sum(_naive(scenario, rng, 0.0) for _ in range(trials)) / trials
    assert alarms <= 0.01, f"A/A false-alarm rate {alarms:.2%}"
    assert naive > 5 * max(alarms, 0.002), f"naive rule {naive:.1%} vs gate {alarms:.2%}"


def test_gate_catches_10pct_and_25pct_slowdowns() -> None:
    rng = np.random.default_rng(2)
    scenario = Scenario(noise=MODERATE_SD)
    power10 = simulate.alarm_rate(scenario, rng, 0.10, 2000)  # measured 94.7%
    power25 = simulate.alarm_rate(scenario, rng, 0.25, 1000)
    assert power10 >= 0.90, f"power at +10%: {power10:.1%}"
    assert power25 >= 0.99, f"power at +25%: {power25:.1%}"


def test_gate_improvements_never_fail() -> None:
    """A test of the wrong direction would fail faster code."""
    rng = np.random.default_rng(22)
    assert simulate.alarm_rate(Scenario(noise=MODERATE_SD), rng, -0.20, 500) == 0.0


def test_operating_curve_at_3pct_noise() -> None:
    """The README's curve: share of runs failing by true slowdown (threshold 5%, alpha 0.05)."""
    rng = np.random.default_rng(3)
    scenario = Scenario(noise=MODERATE_SD)
    measured = {s: simulate.alarm_rate(scenario, rng, s, 1500) for s in (0.03, 0.05, 0.07)}
    # measured with 2,000 trials: 11.3% / 37.4% / 69.1%
    assert 0.05 <= measured[0.03] <= 0.18
    assert 0.27 <= measured[0.05] <= 0.48
    assert 0.58 <= measured[0.07] <= 0.80


def test_confirmations_are_what_keeps_identical_code_quiet() -> None:
    """Without confirmations, stage 1 decides alone: 3.3% false alarms instead of 0.4%."""
    rng = np.random.default_rng(4)
    unconfirmed = simulate.alarm_rate(Scenario(noise=MODERATE_SD, confirm_runs=0), rng, 0.0, 3000)
    assert unconfirmed > 0.015, f"stage 1 alone false-alarmed {unconfirmed:.2%}"


def test_benjamini_hochberg_holds_a_session_of_20_comparisons() -> None:
    """10 benchmarks x 2 modes of identical code at 7% noise: any false alarm in 2.3% of sessions
    (measured); 20 uncorrected comparisons at the single-comparison rate (1.9%) would give 32%."""
    rng = np.random.default_rng(5)
    scenario = Scenario(noise=0.07, modes=("eager", "compiled"))
    trials = 800
    sessions = sum(any(simulate.session_regressions(scenario, rng, [0.0] * 10)) for _ in range(trials))
    assert sessions / trials <= 0.08, f"session-wide false alarms {sessions / trials:.1%}"


def test_residual_drift_stays_quiet_but_a_real_trend_is_seen() -> None:
    """Drift that makes the current runs look slower: 0.3% per run (1.5% by the current run)
    false-alarms 1.1% of the time (measured); 2% per run (10%) is a real shift and is flagged."""
    rng = np.random.default_rng(6)
    slow_drift = simulate.alarm_rate(Scenario(noise=MODERATE_SD, drift=0.003), rng, 0.0, 3000)
    trend = simulate.alarm_rate(Scenario(noise=MODERATE_SD, drift=0.02), rng, 0.0, 500)
    assert slow_drift <= 0.025, f"false alarms under slow drift {slow_drift:.2%}"
    assert trend >= 0.3, f"a 10% drift was flagged in only {trend:.1%} of runs"


def test_frozen_baselines_spread_their_false_alarm_rate() -> None:
    """One committed baseline is reused by every later run, so its sampling error is frozen: at
    5% noise the mean rate stays low while some baselines false-alarm far more often."""
    rng = np.random.default_rng(7)
    scenario = Scenario(noise=0.05)
    rates = []
    for _ in range(40):
        stored = scenario.baseline(rng)
        hits = sum(
            simulate.session_regressions(scenario, rng, [0.0], baselines=[stored])[0] for _ in range(60)
        )
        rates.append(hits / 60)
    assert float(np.mean(rates)) <= 0.04, f"mean per-baseline rate {np.mean(rates):.2%}"
    assert max(rates) > 3 * max(float(np.mean(rates)), 0.005), (
        "no unlucky baseline: the model lost its spread"
    )


def test_compare_runs_pinned_values_and_symmetry() -> None:
    baseline = [0.0, 0.02, -0.02, 0.01, -0.01]
    slower = stats.compare_runs(baseline, [0.2], threshold=0.05, alpha=0.05)
    faster = stats.compare_runs(baseline, [-0.2], threshold=0.05, alpha=0.05)
    assert slower.status == "regression"
    assert faster.status == "improvement"
    assert slower.p_slower == pytest.approx(faster.p_faster)
    assert slower.change == pytest.approx(math.expm1(0.2))
    # sd = 0.0158, se = sd*sqrt(1 + 1/5) = 0.0173, t = 11.55 with 4 df
    assert slower.p_slower == pytest.approx(1.6e-4, rel=0.1)
    # 95% CI: 0.2 -+ t(0.975, 4) * 0.0173 = 0.2 -+ 0.0481, as changes
    assert slower.change_ci == pytest.approx((math.expm1(0.2 - 0.0481), math.expm1(0.2 + 0.0481)), rel=0.02)
    same = stats.compare_runs(baseline, [0.0], threshold=0.05, alpha=0.05)
    assert same.status == "pass"


def test_significant_but_within_threshold_passes() -> None:
    baseline = [0.0, 0.001, -0.001, 0.0005, -0.0005]
    decision = stats.compare_runs(baseline, [0.03, 0.03], threshold=0.05, alpha=0.05)
    assert decision.p_slower is not None
    assert decision.p_slower < 0.05
    assert decision.status == "pass"


def test_too_few_baseline_runs_is_inconclusive() -> None:
    decision = stats.compare_runs([0.0, 0.1], [0.5], threshold=0.05, alpha=0.05)
    assert decision.status == "inconclusive"
    assert "at least 3" in decision.reason


def test_detectable_effect_shrinks_with_more_runs_and_less_noise() -> None:
    base = stats.detectable_effect(0.03, 5, 1, 0.05)
    assert stats.detectable_effect(0.03, 10, 2, 0.05) < base
    assert stats.detectable_effect(0.01, 5, 1, 0.05) < base
    assert 0.05 < base < 0.3


def test_run_statistic_normalises_by_the_reference() -> None:
    fast_machine = stats.run_statistic([1.0, 1.1, 0.9], [0.1, 0.1, 0.1])
    slow_machine = stats.run_statistic([2.0, 2.2, 1.8], [0.2, 0.2, 0.2])
    assert fast_machine == pytest.approx(slow_machine)
    with pytest.raises(ValueError, match="positive"):
        stats.run_statistic([1.0], [0.0])


def test_online_bh_is_stricter_with_more_benchmarks() -> None:
    assert stats.online_bh_rejects(0.04, [], total=1, alpha=0.05)
    assert not stats.online_bh_rejects(0.04, [], total=10, alpha=0.05)
    assert stats.online_bh_rejects(0.009, [0.001, 0.002], total=10, alpha=0.05)  # rank 3: 3*0.05/10


def test_one_run_per_side_comparison_accounts_for_between_process_noise() -> None:
    """keisei-perf compare of two single reports: rounds alone false-alarm often (13% here)."""

    def run(rng: np.random.Generator, slowdown: float = 0.0) -> list[float]:
        return list(math.log1p(slowdown) + rng.normal(0, MODERATE_SD) + rng.normal(0, 0.01, 20))

    def alarm(rng: np.random.Generator, slowdown: float, **kwargs: float) -> bool:
        decision = stats.compare_rounds(run(rng), run(rng, slowdown), threshold=0.05, alpha=0.05, **kwargs)
        return decision.status == "regression"

    rng = np.random.default_rng(5)
    trials = 2000
    widened = sum(alarm(rng, 0.0) for _ in range(trials)) / trials
    rounds_only = sum(alarm(rng, 0.0, between_run_sd=0.0) for _ in range(trials)) / trials
    power25 = sum(alarm(rng, 0.25) for _ in range(trials)) / trials
    assert widened <= 0.06, f"A/A false alarms {widened:.1%}"
    assert rounds_only > 2 * widened, f"rounds only {rounds_only:.1%} vs widened {widened:.1%}"
    assert power25 >= 0.99, f"power at +25% {power25:.1%}"


def test_host_shift_needs_both_a_large_and_an_improbable_shift() -> None:
    levels = [math.log(v) for v in (1.0, 1.02, 0.98, 1.01, 0.99)]  # sd 1.6%: floored at 3%
    assert stats.host_shift(levels, [math.log(0.80)]) == pytest.approx(0.80 / math.exp(np.mean(levels)) - 1)
    assert stats.host_shift(levels, [math.log(1.25)]) == pytest.approx(1.25 / math.exp(np.mean(levels)) - 1)
    assert stats.host_shift(levels, [math.log(0.92)]) is None  # 8%: below the 10% floor
    noisy = [math.log(v) for v in (0.8, 1.2, 0.9, 1.1, 1.0)]  # sd ~15%: 12% is 0.8 prediction sds
    assert stats.host_shift(noisy, [math.log(0.88)]) is None
    # the prediction interval narrows with more current runs: 12% off is 2.5 sds for one run, 4.1 for four
    spread = [math.log(v) for v in (1.0, 1.06, 0.94, 1.03, 0.97)]
    assert stats.host_shift(spread, [math.log(0.88)]) is None
    assert stats.host_shift(spread, [math.log(0.88)] * 4) is not None
    assert stats.host_shift([], [0.0]) is None
    assert stats.host_shift(levels, []) is None


def test_is_suspect_boundaries() -> None:
    def decision(change: float, p: float) -> stats.GateDecision:
        return stats.GateDecision("pass", change, (0.0, 0.0), p, 1 - p, 0.1, 5, 1)

    assert stats.is_suspect(decision(0.03, 0.1), 0.05)
    assert not stats.is_suspect(decision(0.025, 0.1), 0.05)  # half the threshold is not enough
    assert not stats.is_suspect(decision(0.03, 0.2), 0.05)  # p must be below 0.2
    assert not stats.is_suspect(decision(-0.3, 0.0), 0.05)


def test_compare_paired_pinned_values() -> None:
    diffs = [0.10, 0.12, 0.08, 0.11, 0.09]  # mean 0.10, sd 0.0158, se 0.00707, t = 14.1 on 4 df
    decision = stats.compare_paired(diffs, threshold=0.05, alpha=0.05)
    assert decision.status == "regression"
    assert decision.change == pytest.approx(math.expm1(0.10))
    assert decision.p_slower == pytest.approx(7.3e-5, rel=0.1)
    assert decision.change_ci == pytest.approx(
        (math.expm1(0.10 - 0.01963), math.expm1(0.10 + 0.01963)), rel=1e-3
    )
    assert stats.compare_paired([-d for d in diffs], threshold=0.05, alpha=0.05).status == "improvement"
    assert stats.compare_paired([0.01, -0.01, 0.0], threshold=0.05, alpha=0.05).status == "pass"
    assert stats.compare_paired([0.3], threshold=0.05, alpha=0.05).status == "inconclusive"
    wide = stats.compare_paired(diffs, threshold=0.05, alpha=0.05, confidence=0.99)
    assert wide.change_ci is not None
    assert decision.change_ci is not None
    assert wide.change_ci[0] < decision.change_ci[0]
    assert wide.change_ci[1] > decision.change_ci[1]


def test_detectable_effect_pinned() -> None:
    # df = 5 + 1 - 2: (t(0.95, 4) + t(0.8, 4)) * 0.03 * sqrt(1 + 1/5) = (2.132 + 0.941) * 0.03286 = 0.1010
    assert stats.detectable_effect(0.03, 5, 1, 0.05) == pytest.approx(math.expm1(0.1010), rel=0.01)


def test_online_bh_counts_the_rank_among_earlier_p_values() -> None:
    assert stats.online_bh_rejects(0.01, [0.5, 0.2], total=5, alpha=0.05)  # rank 1: 0.01 <= 0.01
    assert not stats.online_bh_rejects(0.011, [0.5, 0.2], total=5, alpha=0.05)
    assert stats.online_bh_rejects(0.02, [0.001], total=5, alpha=0.05)  # rank 2: 0.02 <= 0.02
    assert stats.online_bh_rejects(0.02, [0.02], total=5, alpha=0.05)  # ties count as earlier ranks
    assert stats.online_bh_rejects(0.04, [], total=0, alpha=0.05)  # total floored at 1


def test_estimate_speedup_pinned_to_yuens_interval() -> None:
    """The specification, written out: trimmed mean of paired log ratios, Yuen's standard error
    on the 20%-trimmed data, widened by the between-run sd, t on (kept - 1) df."""
    from scipy import stats as sps
    from scipy.stats import mstats

    eager = [2.0, 2.2, 1.8, 2.1, 1.9, 2.0, 2.3, 1.7, 2.05, 1.95]
    compiled = [1.0, 1.05, 0.95, 1.0, 1.0, 1.1, 0.9, 1.0, 1.02, 0.98]
    logs = np.log(eager) - np.log(compiled)
    centre = sps.trim_mean(logs, 0.2)
    se = float(mstats.trimmed_stde(logs, limits=(0.2, 0.2)))
    half = float(sps.t.ppf(0.975, df=10 - 2 * 2 - 1)) * math.hypot(se, 0.02)
    est = stats.estimate_speedup(eager, compiled)
    assert est.pairs == 10
    assert est.ratio == pytest.approx(math.exp(centre), rel=1e-12)
    assert est.ci == pytest.approx((math.exp(centre - half), math.exp(centre + half)), rel=1e-12)
    assert est.ratio == pytest.approx(2.0, rel=0.03)
    three = stats.estimate_speedup([2.0, 2.1, 1.9], [1.0, 1.0, 1.0])
    assert three.ci is not None  # three pairs are enough for an interval
    assert stats.estimate_speedup(eager[:7], compiled[:9]).pairs == 7  # pairs up to the shorter side
    with pytest.raises(ValueError, match=r"^no paired rounds to estimate a speedup from$"):
        stats.estimate_speedup([], [1.0])
    with pytest.raises(ValueError, match=r"^speedup needs positive finite round times$"):
        stats.estimate_speedup([1.0, math.inf], [1.0, 1.0])


def test_error_messages_are_exact() -> None:
    with pytest.raises(ValueError, match=r"^need finite samples, got \[\]$"):
        stats.summarize([])
    with pytest.raises(ValueError, match=r"^run statistic needs positive samples and reference samples$"):
        stats.run_statistic([], [1.0])
    with pytest.raises(ValueError, match=r"^no current runs to compare$"):
        stats.compare_runs([0.0] * 3, [], threshold=0.05, alpha=0.05)
    with pytest.raises(ValueError, match=r"^run statistics must be finite$"):
        stats.compare_runs([0.0, 0.0, math.nan], [0.0], threshold=0.05, alpha=0.05)
    with pytest.raises(ValueError, match=r"^a round-level comparison needs at least 2 rounds per side$"):
        stats.compare_rounds([0.0], [0.0, 1.0], threshold=0.05, alpha=0.05)
    with pytest.raises(ValueError, match=r"^paired differences must be finite$"):
        stats.compare_paired([0.0, math.inf], threshold=0.05, alpha=0.05)


def test_compare_rounds_pinned_values() -> None:
    base = [0.0, 0.01, -0.01, 0.005, -0.005]
    now = [0.2, 0.21, 0.19, 0.205, 0.195]
    decision = stats.compare_rounds(base, now, threshold=0.05, alpha=0.05)
    se = math.hypot(math.sqrt(np.var(base, ddof=1) / 5 + np.var(now, ddof=1) / 5), math.sqrt(2) * 0.03)
    assert decision.change == pytest.approx(math.expm1(0.2))
    assert decision.status == "regression"
    assert (decision.baseline_runs, decision.current_runs) == (1, 1)
    assert "assumed 3% between-process spread" in decision.reason
    welch_df = sps_welch_df(base, now)
    half = _t975(welch_df) * se
    assert decision.change_ci == pytest.approx((math.expm1(0.2 - half), math.expm1(0.2 + half)), rel=1e-9)


def sps_welch_df(a: list[float], b: list[float]) -> float:
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    return float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))


def _t975(df: float) -> float:
    from scipy import stats as sps

    return float(sps.t.ppf(0.975, df))


def test_compare_paired_spells_out_its_numbers() -> None:
    from scipy import stats as sps

    diffs = [0.02, 0.05, -0.01, 0.04, 0.03]
    n, mean, sd = 5, float(np.mean(diffs)), float(np.std(diffs, ddof=1))
    se = sd / math.sqrt(n)
    decision = stats.compare_paired(diffs, threshold=0.05, alpha=0.05)
    assert (decision.baseline_runs, decision.current_runs) == (5, 5)
    assert decision.p_slower == pytest.approx(float(sps.t.sf(mean / se, n - 1)), rel=1e-9)
    assert decision.p_faster == pytest.approx(float(sps.t.cdf(mean / se, n - 1)), rel=1e-9)
    assert decision.detectable_effect == pytest.approx(
        math.expm1((float(sps.t.ppf(0.95, 4)) + float(sps.t.ppf(0.8, 4))) * se), rel=1e-9
    )
    half99 = float(sps.t.ppf(0.995, 4)) * se
    wide = stats.compare_paired(diffs, threshold=0.05, alpha=0.05, confidence=0.99)
    assert wide.change_ci == pytest.approx((math.expm1(mean - half99), math.expm1(mean + half99)), rel=1e-9)
    assert wide.change == decision.change
    assert wide.status == decision.status == "pass"  # +3% is below the 5% threshold
    floored = stats.compare_paired([0.1, 0.1, 0.1], threshold=0.05, alpha=0.05)  # sd 0: floored at 1%
    assert floored.change_ci == pytest.approx(
        (math.expm1(0.1 - float(sps.t.ppf(0.975, 2)) * 0.01 / math.sqrt(3)),
         math.expm1(0.1 + float(sps.t.ppf(0.975, 2)) * 0.01 / math.sqrt(3))), rel=1e-9
    )  # fmt: skip
    assert stats.compare_paired([0.2, 0.21], threshold=0.05, alpha=0.05).status == "regression"
    one = stats.compare_paired([0.3], threshold=0.05, alpha=0.05)
    assert one.reason == "only 1 pair(s); at least 2 are needed to estimate noise"
    assert (one.change, one.change_ci, one.p_slower, one.baseline_runs) == (None, None, None, 1)


def test_round_statistics_subtract_the_median_log_reference() -> None:
    values = stats.round_statistics([2.0, 4.0], [1.0, 2.0, 4.0])
    assert values == pytest.approx([math.log(2.0) - math.log(2.0), math.log(4.0) - math.log(2.0)])
    assert stats.round_statistics([1.0], [1.0]) == [0.0]


def test_summarize_pinned() -> None:
    summary = stats.summarize([1, 2, 3, 4])
    assert (summary.median, summary.iqr, summary.n) == (2.5, 1.5, 4)
    assert isinstance(summary.median, float)


def test_boundaries_of_the_small_sample_paths() -> None:
    two = stats.estimate_speedup([2.0, 2.0], [1.0, 1.0])
    assert (two.ratio, two.ci, two.pairs) == (pytest.approx(2.0), None, 2)
    short = stats.compare_paired([0.3], threshold=0.05, alpha=0.05)
    assert (short.baseline_runs, short.current_runs) == (1, 1)
    # two rounds per side are enough for the round-level test
    assert stats.compare_rounds([0.0, 0.01], [0.3, 0.31], threshold=0.05, alpha=0.05).change is not None
    # BH: one earlier smaller p-value gives rank 2, so 0.025 > 2 * 0.05 / 5 is not rejected
    assert not stats.online_bh_rejects(0.025, [0.001], total=5, alpha=0.05)
    assert stats.online_bh_rejects(0.025, [0.001, 0.002], total=5, alpha=0.05)  # rank 3: 0.03


def test_run_statistic_and_compare_runs_edges_pinned() -> None:
    from scipy import stats as sps

    assert stats.run_statistic([1.0], [2.0]) == pytest.approx(-math.log(2.0))  # one reference round
    with pytest.raises(ValueError, match="positive"):
        stats.run_statistic([0.0, 1.0], [1.0])
    base, now = [0.0, 0.02, -0.02, 0.01, -0.01], [0.1, 0.14]
    pooled = (4 * np.var(base, ddof=1) + 1 * np.var(now, ddof=1)) / 5
    se = math.sqrt(pooled) * math.sqrt(1 / 2 + 1 / 5)
    decision = stats.compare_runs(base, now, threshold=0.05, alpha=0.05)
    assert decision.p_slower == pytest.approx(float(sps.t.sf(0.12 / se, 5)), rel=1e-9)
    assert (decision.baseline_runs, decision.current_runs) == (5, 2)
    few = stats.compare_runs([0.0, 0.1], [0.5, 0.4], threshold=0.05, alpha=0.05)
    assert (few.status, few.baseline_runs, few.current_runs, few.change) == ("inconclusive", 2, 2, None)


def test_online_bh_answers_as_the_full_correction_does() -> None:
    """A p-value above alpha is refused before the correction is computed: seeded draws, many of
    them at or just around alpha, get the answer of scipy's adjusted p-value every time."""
    rng = np.random.default_rng(12)
    answers = set()
    for _ in range(3000):
        total = int(rng.integers(1, 12))
        earlier = [float(p) for p in rng.uniform(0, 0.2, size=int(rng.integers(0, total)))]
        p_value = float(rng.choice([rng.uniform(0, 0.1), 0.05, np.nextafter(0.05, 1)]))
        full = stats.bh_adjusted([*earlier, p_value], total)[-1] <= 0.05
        assert stats.online_bh_rejects(p_value, earlier, total, 0.05) == full, (p_value, earlier, total)
        answers.add((full, p_value > 0.05))
    assert answers == {(True, False), (False, False), (False, True)}  # every case was met


def test_the_ledger_is_bh_over_a_batch_and_never_laxer_online() -> None:
    """Known at once (``keisei-perf compare``), the ledger's decisions are scipy's BH; decided
    one by one as tests finish, every rejection is one the final BH makes too (seeded: 2000
    sessions of 12 comparisons with some real effects)."""
    from scipy import stats as sps

    from pytest_keisei_perf.ledger import FalseDiscoveryLedger

    batch = [0.001, 0.025, 0.3, 0.04, 0.8]
    ledger = FalseDiscoveryLedger()
    ledger.expect(batch)
    exact = [bool(q <= 0.05) for q in sps.false_discovery_control(batch)]
    assert [ledger.decide(p, 0.05)[0] for p in batch] == exact == [True, False, False, False, False]
    assert FalseDiscoveryLedger().decide(0.025, 0.05) == (True, 1)  # alone it survives
    rng = np.random.default_rng(11)
    online_rejections = 0
    for _ in range(2000):
        p_values = np.concatenate([rng.uniform(size=9), rng.uniform(0, 0.02, size=3)])
        rng.shuffle(p_values)
        final = sps.false_discovery_control(p_values) <= 0.05
        online = FalseDiscoveryLedger(expected=len(p_values))
        for p, rejected_at_the_end in zip(p_values, final, strict=True):
            rejected, total = online.decide(float(p), 0.05)
            assert total == 12
            assert rejected <= rejected_at_the_end, "an online rejection the final BH does not make"
            online_rejections += rejected
    assert online_rejections > 2000  # it does reject: most sessions' real effects are found
