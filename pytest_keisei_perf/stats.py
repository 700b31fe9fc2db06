"""Statistics of benchmark samples: pure numpy/scipy, no torch, pytest or I/O.

Numbers in, frozen dataclasses out. Degenerate input (too few values, zero spread) gives
``None``/NaN intervals or an ``inconclusive`` decision; errors are never swallowed.

scipy.stats is imported inside the functions that need it, not here: a fresh worker process
only summarises its samples and, when it compiles, estimates the speedup, and importing
scipy.stats would be a large share of its start-up (measured in docs/measurements.md). The
speedup estimate therefore needs no scipy.stats at all (:func:`trimmed_mean_and_se`).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

__all__ = ["SampleSummary", "SpeedupEstimate", "estimate_speedup", "summarize", "trimmed_mean_and_se"]

#: Share trimmed from each end of the paired log-ratios (Yuen's 20%).
TRIM: Final = 0.2
#: Between-process spread of the speedup that one process cannot see (measured on the CI box).
SPEEDUP_BETWEEN_RUN_SD: Final = 0.02


@dataclass(frozen=True)
class SampleSummary:
    """Median and interquartile range of per-call seconds."""

    median: float
    iqr: float
    n: int


def summarize(samples: Sequence[float]) -> SampleSummary:
    """Median and IQR; raises ``ValueError`` on an empty or non-finite sample."""
    data = np.asarray(samples, dtype=float)
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise ValueError(f"need finite samples, got {samples!r}")
    upper, lower = np.percentile(data, [75, 25])
    return SampleSummary(median=float(np.median(data)), iqr=float(upper - lower), n=int(data.size))


@dataclass(frozen=True)
class SpeedupEstimate:
    """eager/compiled time ratio with a confidence interval; ``ci`` is None when undefined."""

    ratio: float
    ci: tuple[float, float] | None
    pairs: int


def estimate_speedup(
    eager_s: Sequence[float],
    compiled_s: Sequence[float],
    *,
    confidence: float = 0.95,
    between_run_sd: float = SPEEDUP_BETWEEN_RUN_SD,
) -> SpeedupEstimate:
    """Speedup from ABBA-paired rounds: trimmed mean of per-pair log ratios with Yuen's interval.

    Round i of eager is paired with round i of compiled (they ran back to back). The interval is
    widened by ``between_run_sd`` because a single process cannot see how the ratio moves from
    process to process; with that term the interval keeps its coverage in simulation, which a
    naive sequential estimate loses.
    """
    n = min(len(eager_s), len(compiled_s))
    if n == 0:
        raise ValueError("no paired rounds to estimate a speedup from")
    eager, compiled = np.asarray(eager_s[:n], dtype=float), np.asarray(compiled_s[:n], dtype=float)
    for values in (eager, compiled):
        if not (np.all(np.isfinite(values)) and values.min() > 0):
            raise ValueError("speedup needs positive finite round times")
    centre, se_within = trimmed_mean_and_se(np.log(eager) - np.log(compiled), TRIM)
    if n < 3:
        return SpeedupEstimate(ratio=math.exp(centre), ci=None, pairs=n)
    kept = n - 2 * math.floor(TRIM * n)
    t_crit = t_quantile(0.5 + confidence / 2, max(kept - 1, 1))
    half = t_crit * math.hypot(se_within, between_run_sd)
    return SpeedupEstimate(
        ratio=math.exp(centre), ci=(math.exp(centre - half), math.exp(centre + half)), pairs=n
    )


def trimmed_mean_and_se(values: np.ndarray, trim: float) -> tuple[float, float]:
    """The ``trim``-trimmed mean and Yuen's standard error (from the Winsorized variance), as
    ``scipy.stats.trim_mean`` and ``scipy.stats.mstats.trimmed_stde`` compute them (the tests
    hold them to scipy's).

    Written out because this runs in every fresh process that compiles, where importing
    scipy.stats cost more than the compile of a small model (docs/measurements.md). The SE is
    NaN with fewer than 2 values.
    """
    ordered = np.sort(np.asarray(values, dtype=float))
    n = ordered.size
    cut = int(trim * n)
    mean = float(ordered[cut : n - cut].mean())
    if n < 2:
        return mean, math.nan
    winsorized = np.clip(ordered, ordered[cut], ordered[n - cut - 1])
    se = float(winsorized.std(ddof=1)) / ((1 - 2 * trim) * math.sqrt(n))
    return mean, se


# -- the regression gate ---------------------------------------------------------------------------
#: Fewer baseline runs than this cannot estimate between-run spread: the verdict is inconclusive.
MIN_BASELINE_RUNS: Final = 3
#: Floor on the between-run sd of the normalised log time: a lucky quiet baseline must not make
#: a 1% wobble look significant.
SD_FLOOR: Final = 0.01
#: Stage 1 only picks suspects to re-measure; it is deliberately loose.
SUSPECT_P: Final = 0.2
#: Power used for the minimum detectable effect.
POWER: Final = 0.8


def run_statistic(samples_s: Sequence[float], reference_s: Sequence[float]) -> float:
    """One process's statistic: median log round time minus the reference workload's.

    Dividing by the interleaved reference cancels machine speed, which is most of the spread
    between processes.
    """
    if not samples_s or not reference_s or min(samples_s) <= 0 or min(reference_s) <= 0:
        raise ValueError("run statistic needs positive samples and reference samples")
    # statistics.median: the one median (record.py's too); numpy's costs more on a few values
    return statistics.median(map(math.log, samples_s)) - statistics.median(map(math.log, reference_s))


@dataclass(frozen=True)
class GateDecision:
    """The comparison of current runs with baseline runs, all changes as fractions (+0.1 = 10% slower)."""

    status: str
    change: float | None
    change_ci: tuple[float, float] | None
    p_slower: float | None
    p_faster: float | None
    detectable_effect: float | None
    baseline_runs: int
    current_runs: int
    reason: str = ""
    #: Standard error of the log change (``log1p(change)``), for chaining independent changes.
    log_se: float | None = None


@functools.lru_cache(maxsize=4096)
def t_quantile(q: float, df: float) -> float:
    """Student's t quantile (``scipy.stats.t.ppf``), from scipy.special and cached: the gate and
    its simulations ask for the same few (level, df) pairs many thousands of times."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def t_sf(t_value: float, df: float) -> float:
    """Student's t survival function (``scipy.stats.t.sf``) without scipy.stats' argument checks."""
    from scipy.special import stdtr

    return float(stdtr(df, -t_value))


def detectable_effect(
    sd: float, baseline_runs: int, current_runs: int, alpha: float, power: float = POWER
) -> float:
    """Smallest slowdown (fraction) detected with probability ``power`` by the one-sided t-test."""
    df = baseline_runs + current_runs - 2
    se = sd * math.sqrt(1 / current_runs + 1 / baseline_runs)
    return math.expm1((t_quantile(1 - alpha, df) + t_quantile(power, df)) * se)


def compare_runs(
    baseline: Sequence[float], current: Sequence[float], *, threshold: float, alpha: float
) -> GateDecision:
    """One-sided t-tests of the current runs' statistics against the baseline runs'.

    Student's two-sample test: the spread between runs, pooled over baseline and current runs
    (a single current run adds no spread; df = K + C - 2) and floored at :data:`SD_FLOOR`, sets
    the noise scale. ``regression`` needs both significance (p < alpha) and an effect above
    ``threshold``; ``improvement`` likewise the other way.
    """
    k, c = len(baseline), len(current)
    if c == 0:
        raise ValueError("no current runs to compare")
    values = np.asarray([*baseline, *current], dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError("run statistics must be finite")
    if k < MIN_BASELINE_RUNS:
        return GateDecision(
            "inconclusive", None, None, None, None, None, k, c,
            reason=f"only {k} baseline run(s); at least {MIN_BASELINE_RUNS} are needed to estimate noise",
        )  # fmt: skip
    df = k + c - 2
    pooled_var = (k - 1) * float(np.var(baseline, ddof=1))
    if c > 1:
        pooled_var += (c - 1) * float(np.var(current, ddof=1))
    sd = max(math.sqrt(pooled_var / df), SD_FLOOR)
    d = float(np.mean(current) - np.mean(baseline))
    return _t_decision(
        d, sd * math.sqrt(1 / c + 1 / k), df, threshold=threshold, alpha=alpha,
        detectable=detectable_effect(sd, k, c, alpha), runs=(k, c),
    )  # fmt: skip


def _t_decision(
    d: float,
    se: float,
    df: float,
    *,
    threshold: float,
    alpha: float,
    detectable: float | None,
    runs: tuple[int, int],
    reason: str = "",
    confidence: float = 0.95,
) -> GateDecision:
    """One-sided p-values both ways, a ``confidence`` interval and the verdict for a log
    difference ``d``."""
    t_value = d / se
    p_slower, p_faster = t_sf(t_value, df), t_sf(-t_value, df)
    half = t_quantile(0.5 + confidence / 2, df) * se
    change = math.expm1(d)
    status = "pass"
    if p_slower < alpha and change > threshold:
        status = "regression"
    elif p_faster < alpha and change < -threshold:
        status = "improvement"
    return GateDecision(
        status=status,
        change=change,
        change_ci=(math.expm1(d - half), math.expm1(d + half)),
        p_slower=p_slower,
        p_faster=p_faster,
        detectable_effect=detectable,
        baseline_runs=runs[0],
        current_runs=runs[1],
        reason=reason,
        log_se=se,
    )


def compare_paired(
    differences: Sequence[float], *, threshold: float, alpha: float, confidence: float = 0.95
) -> GateDecision:
    """One-sided paired t-test on per-pair log differences (candidate minus reference run).

    Each pair ran back to back on the same host, so machine drift cancels within a pair; the
    spread of the differences (floored at :data:`SD_FLOOR`) is the noise. ``regression`` needs
    p < ``alpha`` and a slowdown above ``threshold``; ``improvement`` the mirror image.
    """
    n = len(differences)
    if n < 2:
        return GateDecision(
            "inconclusive", None, None, None, None, None, n, n,
            reason=f"only {n} pair(s); at least 2 are needed to estimate noise",
        )  # fmt: skip
    data = np.asarray(differences, dtype=float)
    if not np.all(np.isfinite(data)):
        raise ValueError("paired differences must be finite")
    sd = max(float(np.std(data, ddof=1)), SD_FLOOR)
    se = sd / math.sqrt(n)
    df = n - 1
    detectable = math.expm1((t_quantile(1 - alpha, df) + t_quantile(POWER, df)) * se)
    return _t_decision(
        float(np.mean(data)), se, df, threshold=threshold, alpha=alpha, detectable=detectable,
        runs=(n, n), confidence=confidence,
    )  # fmt: skip


def round_statistics(samples_s: Sequence[float], reference_s: Sequence[float]) -> list[float]:
    """Each round's log time minus the run's median log reference time."""
    ref = float(np.median(np.log(np.asarray(reference_s, dtype=float))))
    return [float(v) - ref for v in np.log(np.asarray(samples_s, dtype=float))]


#: Between-process spread of the normalised run statistic assumed when one run per side cannot
#: measure it (:func:`compare_rounds`): the middle of what these machines show.
ASSUMED_BETWEEN_RUN_SD: Final = 0.03


def compare_rounds(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    threshold: float,
    alpha: float,
    between_run_sd: float = ASSUMED_BETWEEN_RUN_SD,
) -> GateDecision:
    """Welch's t-test on the rounds of one run per side (``round_statistics`` values), widened
    by an assumed between-process spread.

    Rounds of one process share its offset, so the rounds alone cannot see between-process
    noise (two identical-code runs can differ "significantly"); each side's mean therefore
    gets ``between_run_sd`` of extra uncertainty. Several runs per side go through
    :func:`compare_runs`, which measures that spread instead of assuming it.
    """
    from scipy import stats as sps

    if len(baseline) < 2 or len(current) < 2:
        raise ValueError("a round-level comparison needs at least 2 rounds per side")
    welch = sps.ttest_ind(current, baseline, equal_var=False)
    d = float(np.mean(current) - np.mean(baseline))
    se_rounds = math.sqrt(
        float(np.var(current, ddof=1)) / len(current) + float(np.var(baseline, ddof=1)) / len(baseline)
    )
    se = math.hypot(se_rounds, math.sqrt(2) * between_run_sd)
    return _t_decision(
        d, se, float(welch.df), threshold=threshold, alpha=alpha, detectable=None, runs=(1, 1),
        reason=f"one run per side: rounds plus an assumed {between_run_sd:.0%} between-process spread",
    )  # fmt: skip


#: A run's reference workload this far (as a fraction) from the baseline runs' mean says the host
#: differs, when it is also :data:`HOST_SHIFT_Z` prediction sds away: above the reference's spread
#: within one loaded host, below its shift on another host of the same CPU string (docs, "The
#: host check, measured").
HOST_SHIFT_MIN: Final = 0.10
HOST_SHIFT_Z: Final = 3.0
#: Floor on the reference's between-run sd in that test (a quiet baseline must not make every
#: busier run look like another host).
HOST_REF_SD_FLOOR: Final = 0.03


def host_shift(baseline_levels: Sequence[float], current_levels: Sequence[float]) -> float | None:
    """How much faster (< 0) or slower (> 0) the reference ran than on the baseline's host, when
    that is beyond what one host does between processes; else None.

    ``*_levels`` are median log reference times of fresh processes (the baseline's runs, and
    this host's). The test is a prediction interval for the mean of C new runs:
    ``|d| / (sd * sqrt(1/K + 1/C)) > HOST_SHIFT_Z`` and ``|exp(d) - 1| > HOST_SHIFT_MIN``.
    """
    k, c = len(baseline_levels), len(current_levels)
    if k == 0 or c == 0:
        return None
    sd = float(np.std(baseline_levels, ddof=1)) if k > 1 else 0.0
    sd = max(sd, HOST_REF_SD_FLOOR)
    d = float(np.mean(current_levels)) - float(np.mean(baseline_levels))
    if abs(math.expm1(d)) > HOST_SHIFT_MIN and abs(d) / (sd * math.sqrt(1 / k + 1 / c)) > HOST_SHIFT_Z:
        return math.expm1(d)
    return None


def is_suspect(decision: GateDecision, threshold: float) -> bool:
    """Stage 1: worth re-measuring in fresh processes before anyone is failed."""
    return (
        decision.p_slower is not None
        and decision.change is not None
        and decision.p_slower < SUSPECT_P
        and decision.change > threshold / 2
    )


def bh_adjusted(p_values: Sequence[float], total: int) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (scipy's step-up procedure) of ``p_values``, with
    ``total`` - len(p_values) comparisons not yet decided counted as p = 1."""
    from scipy import stats as sps

    padded = np.ones(max(total, len(p_values), 1))
    padded[: len(p_values)] = p_values
    return [float(q) for q in sps.false_discovery_control(padded)[: len(p_values)]]


def online_bh_rejects(p_value: float, earlier: Sequence[float], total: int, alpha: float) -> bool:
    """Benjamini-Hochberg as tests finish: ``p_value`` among the ``earlier`` p-values, with the
    comparisons not yet decided counted as p = 1.

    Each later p-value can only lower this one's adjusted p, so a rejection made now is one BH
    over the whole session makes too: deciding early is never less strict. An adjusted p-value is
    never below the raw one, so a p-value above ``alpha`` is refused without the correction: most
    comparisons of a session, and nearly all of a simulation's, are such.
    """
    if p_value > alpha:
        return False
    return bh_adjusted([*earlier, p_value], total)[-1] <= alpha
