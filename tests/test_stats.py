"""The statistics: pinned values, invariants, and seeded simulations of realistic noise."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from pytest_keisei_perf import stats


def test_stats_module_does_not_import_torch() -> None:
    code = "import sys, pytest_keisei_perf.stats; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


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
