"""The trend statistics on seeded simulations: how often they find a real step or drift, and how
often they invent one in a flat series. Numbers measured here are quoted in the README."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_keisei_perf.trend import STEP_ALPHA, chain, detect_steps, drift, noise_sd

NOISE = 0.03  # 3% noise per entry, the between-process spread of a normalised run here


def test_a_ten_percent_step_in_thirty_entries_is_found_nine_times_in_ten() -> None:
    rng = np.random.default_rng(2026)
    found = 0
    trials = 200
    for i in range(trials):
        values = rng.normal(0.0, NOISE, 30)
        at = int(rng.integers(5, 26))
        values[at:] += math.log(1.10)
        steps = detect_steps(values, seed=i)
        found += any(abs(s.index - at) <= 1 and 0.05 < s.change < 0.16 for s in steps)
    assert found / trials >= 0.90


def test_a_flat_series_gets_a_step_at_most_five_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    trials = 400
    false_steps = sum(bool(detect_steps(rng.normal(0.0, NOISE, 30), seed=i)) for i in range(trials))
    assert false_steps / trials <= 0.05
    assert false_steps / trials <= 3 * STEP_ALPHA  # and near the stated rate, not just under 5%


def test_steps_are_placed_and_sized() -> None:
    values = [0.0] * 10 + [math.log(1.2)] * 10 + [math.log(1.1)] * 10
    values = list(np.asarray(values) + np.random.default_rng(3).normal(0, 0.005, 30))
    steps = detect_steps(values)
    assert [s.index for s in steps] == [10, 20]
    assert steps[0].change == pytest.approx(0.2, abs=0.02)
    assert steps[1].change == pytest.approx(1.1 / 1.2 - 1, abs=0.02)
    assert detect_steps([0.0] * 30) == []  # constant: nothing, no division by zero
    assert detect_steps([0.0, 0.1, 0.2]) == []  # too short to split


def test_five_re_baselines_of_four_percent_drift_although_no_step_does() -> None:
    """The creeping scenario: each +4% change is below the 5% threshold, and re-baselined."""
    rng = np.random.default_rng(11)
    per_entry = NOISE / math.sqrt(5)  # a baseline entry is the mean of 5 runs
    flagged = 0
    for _ in range(200):
        values = math.log(1.04) * np.arange(6) + rng.normal(0.0, per_entry, 6)
        result = drift(list(values), threshold=0.05)
        assert result is not None
        flagged += result.flagged
    assert flagged / 200 >= 0.95
    noiseless = [math.log(1.04) * k for k in range(6)]
    assert max(np.exp(np.diff(noiseless)) - 1) < 0.05  # no single step reaches the threshold
    creeping = drift(noiseless, threshold=0.05)
    assert creeping is not None
    assert creeping.change == pytest.approx(1.04**5 - 1)


def test_a_flat_history_rarely_drifts() -> None:
    rng = np.random.default_rng(5)
    for length, noise in ((30, NOISE), (6, NOISE / math.sqrt(5))):
        alarms = 0
        for _ in range(400):
            result = drift(list(rng.normal(0.0, noise, length)), threshold=0.05)
            assert result is not None
            alarms += result.flagged
        assert alarms / 400 <= 0.05


def test_drift_needs_three_entries_and_a_noise_estimate_ignores_a_steady_creep() -> None:
    assert drift([0.0, 0.5], threshold=0.05) is None
    creep = [0.04 * k for k in range(10)]
    assert noise_sd(creep) == pytest.approx(0.0)
    result = drift(creep, threshold=0.05)
    assert result is not None
    assert result.flagged  # the noise floor keeps a perfect line from being infinitely significant
    assert not drift([0.0, 0.01, -0.01, 0.0, 0.02], threshold=0.05).flagged  # type: ignore[union-attr]


# -- chains of A/B changes (hosted runners of mixed hardware) ----------------------------------------
def test_a_chain_adds_log_changes_and_their_variances() -> None:
    first, second = chain([math.log(1.1), math.log(1.1)], [0.01, 0.02])
    assert first.level == pytest.approx(0.1)
    assert second.level == pytest.approx(0.21)
    assert second.log_sd == pytest.approx(math.hypot(0.01, 0.02))
    assert first.low < 0.1 < first.high
    assert second.high - second.low > first.high - first.low  # the interval widens along the chain
    with pytest.raises(ValueError, match="one standard error per change"):
        chain([0.1], [])


def test_a_chain_of_unchanged_commits_keeps_its_coverage_and_a_creep_is_found() -> None:
    """Thirty commits each paired against its parent, 1% standard error per link: with no change
    the 95% interval of the whole chain covers zero 95% of the time and a drift is rarely
    flagged; a creep of +1% per commit (+35% in all, none of it a step a gate would fail) is."""
    rng = np.random.default_rng(20261202)
    links, se, trials = 30, 0.01, 2000
    flat = [chain(rng.normal(0.0, se, links).tolist(), [se] * links)[-1] for _ in range(trials)]
    coverage = sum(p.low <= 0 <= p.high for p in flat) / trials
    false_drifts = sum(p.drift(0.05).flagged for p in flat) / trials
    assert 0.93 <= coverage <= 0.97
    assert false_drifts <= 0.015  # DRIFT_ALPHA (1%) plus three binomial sds over 2000 trials
    creep = math.log(1.01)
    crept = [chain(rng.normal(creep, se, links).tolist(), [se] * links)[-1] for _ in range(trials)]
    found = sum(p.drift(0.05).flagged for p in crept) / trials
    assert found >= 0.95
