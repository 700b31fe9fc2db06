"""Trends along a benchmark's history: step changes, and drift accumulated over many entries.

Values are the reference-normalised log statistic of each entry (a baseline's runs, or one
gated run), oldest first.

* **Steps**: binary segmentation. A segment's best split is the one with the largest pooled
  two-sample t statistic; its p-value is that maximum's rank among the maxima of random
  permutations of the segment, so the rate of false steps is ``alpha`` per flat series whatever
  its length (measured in ``tests/test_trend.py``). Found steps split the series and each side is
  searched again; each step is then sized between its neighbouring steps.
* **Chains**: A/B entries each carry a change against their parent commit; :func:`chain` adds
  them up with their variances (the trend on hosted runners of mixed hardware).
* **Drift**: the change from the first to the last entry of a window. The noise of one entry is
  estimated from the series itself (the MAD of successive differences, which a steady creep does
  not inflate); a drift counts when it exceeds the threshold and is significant one-sided at
  ``alpha``. Re-baselines that each stay under the threshold can add up to a drift beyond it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

__all__ = ["DRIFT_ALPHA", "STEP_ALPHA", "ChainPoint", "Drift", "Step", "chain", "detect_steps", "drift"]

#: False-step rate per flat series.
STEP_ALPHA: Final = 0.01
#: One-sided significance of a drift.
DRIFT_ALPHA: Final = 0.01
#: Fewest entries on each side of a step.
MIN_SEGMENT: Final = 3
PERMUTATIONS: Final = 999


@dataclass(frozen=True)
class Step:
    """A level change before entry ``index`` (0-based): ``change`` is a fraction (+0.1 = 10% slower)."""

    index: int
    before: float
    after: float
    p_value: float

    @property
    def change(self) -> float:
        return math.exp(self.after - self.before) - 1


@dataclass(frozen=True)
class Drift:
    """The change across a window of entries, with its one-sided significance."""

    change: float
    p_value: float
    flagged: bool


def _max_t(segments: np.ndarray, min_segment: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row: the largest |pooled t| over the split points, and where it is."""
    n = segments.shape[1]
    cumsum, cumsq = np.cumsum(segments, axis=1), np.cumsum(segments**2, axis=1)
    total, total_sq = cumsum[:, -1:], cumsq[:, -1:]
    k = np.arange(min_segment, n - min_segment + 1)  # left part is segments[:, :k]
    left_sum, left_sq = cumsum[:, k - 1], cumsq[:, k - 1]
    right_sum, right_sq = total - left_sum, total_sq - left_sq
    n1, n2 = k.astype(float), (n - k).astype(float)
    m1, m2 = left_sum / n1, right_sum / n2
    ss = (left_sq - n1 * m1**2) + (right_sq - n2 * m2**2)
    pooled = np.sqrt(np.maximum(ss, 0.0) / (n - 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(m2 - m1) / (pooled * np.sqrt(1 / n1 + 1 / n2))
    t = np.where(np.isfinite(t), t, 0.0)
    best = np.argmax(t, axis=1)
    return t[np.arange(t.shape[0]), best], k[best]


def detect_steps(
    values: Sequence[float],
    *,
    alpha: float = STEP_ALPHA,
    min_segment: int = MIN_SEGMENT,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> list[Step]:
    """Step changes in ``values`` (oldest first), in order of position."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    steps: list[Step] = []

    def search(lo: int, hi: int) -> None:
        segment = data[lo:hi]
        if segment.size < 2 * min_segment or np.ptp(segment) == 0:
            return
        observed, where = _max_t(segment[None, :], min_segment)
        shuffled = rng.permuted(np.broadcast_to(segment, (permutations, segment.size)), axis=1)
        null, _ = _max_t(shuffled, min_segment)
        p = (1 + int(np.sum(null >= observed[0]))) / (permutations + 1)
        if p >= alpha:
            return
        split = lo + int(where[0])
        steps.append(Step(index=split, before=0.0, after=0.0, p_value=p))  # sized at the end
        search(lo, split)
        search(split, hi)

    search(0, data.size)
    # sizes from the final segmentation: a step's sides end at the neighbouring steps
    bounds = [0, *sorted(s.index for s in steps), data.size]
    p_values = {s.index: s.p_value for s in steps}
    return [
        Step(index=b, before=float(data[a:b].mean()), after=float(data[b:c].mean()), p_value=p_values[b])
        for a, b, c in zip(bounds, bounds[1:], bounds[2:], strict=False)
    ]


def noise_sd(values: Sequence[float]) -> float | None:
    """One entry's noise, from successive differences (robust; None with fewer than 3 entries)."""
    if len(values) < 3:
        return None
    import scipy.stats as sps  # here, as below: scipy.stats alone doubles the plugin's start-up

    diffs = np.diff(np.asarray(values, dtype=float))
    return float(sps.median_abs_deviation(diffs, scale="normal")) / math.sqrt(2)


def drift(
    values: Sequence[float],
    *,
    threshold: float,
    alpha: float = DRIFT_ALPHA,
    noise_floor: float = 0.005,
) -> Drift | None:
    """The drift from the first to the last of ``values``; None with fewer than 3 entries.

    ``noise_floor`` (log units) keeps a series of identical numbers from looking noise-free.
    """
    sd = noise_sd(values)
    if sd is None:
        return None
    sd = max(sd, noise_floor)
    delta = float(values[-1]) - float(values[0])
    import scipy.stats as sps

    z = delta / (sd * math.sqrt(2))
    p = float(sps.norm.sf(z))
    change = math.exp(delta) - 1
    return Drift(change=change, p_value=p, flagged=change > threshold and p < alpha)


@dataclass(frozen=True)
class ChainPoint:
    """The level after one link of a chain of relative changes, as a fraction of the level
    before the first link (+0.1 = 10% slower), with its interval."""

    level: float
    low: float
    high: float
    #: Standard deviation of ``log1p(level)``.
    log_sd: float

    def drift(self, threshold: float, alpha: float = DRIFT_ALPHA) -> Drift:
        """The chain up to here as a drift, either way: two-sided significance, so a flat chain
        is flagged at most ``alpha`` of the time."""
        import scipy.stats as sps

        if self.log_sd <= 0:
            return Drift(change=self.level, p_value=1.0, flagged=False)
        p = float(2 * sps.norm.sf(abs(math.log1p(self.level)) / self.log_sd))
        return Drift(change=self.level, p_value=p, flagged=abs(self.level) > threshold and p < alpha)


def chain(
    log_changes: Sequence[float], log_ses: Sequence[float], *, confidence: float = 0.95
) -> list[ChainPoint]:
    """Chain independent relative changes, each measured against its predecessor (an A/B of
    each commit against its parent): the log changes add up, and so do their variances, so the
    interval widens along the chain as honestly as the links allow. No host identity is
    needed: each link was paired on one host."""
    if len(log_changes) != len(log_ses):
        raise ValueError("need one standard error per change")
    if not all(math.isfinite(x) for x in (*log_changes, *log_ses)) or any(s < 0 for s in log_ses):
        raise ValueError("changes and standard errors must be finite, errors non-negative")
    import scipy.stats as sps

    z = float(sps.norm.ppf(0.5 + confidence / 2))
    levels = np.cumsum(np.asarray(log_changes, dtype=float))
    sds = np.sqrt(np.cumsum(np.square(np.asarray(log_ses, dtype=float))))
    return [
        ChainPoint(level=math.expm1(m), low=math.expm1(m - z * s), high=math.expm1(m + z * s), log_sd=s)
        for m, s in zip(levels.tolist(), sds.tolist(), strict=True)
    ]
