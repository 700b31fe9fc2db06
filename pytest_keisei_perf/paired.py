"""The A/B's paired decision, read after every pair: no pass without the power to see a slowdown.

A comparison of REF and the working tree looks at its pairs after each new one and stops once
every answer is clear: a regression (or improvement) beyond the threshold, or a pass whose upper
bound *and* detectable effect lie below the threshold. An answer still unclear at the last pair
allowed is ``inconclusive``, never a pass.

Looking after every pair would inflate false alarms at a fixed level, so every look uses one
stricter level (Pocock's idea): the per-look level at which a no-change comparison crosses at
*any* look with probability ``alpha``, found by a seeded simulation of the paired t-test. The
same level bounds the passes, so a real slowdown at the threshold passes at any look with
probability at most ``alpha`` too. Reported p-values are rescaled to the overall level.

One wild pair (a process that met a noisy neighbour) can capsize a t-test on five pairs, so from
:data:`MIN_PAIRS_FOR_WILD` pairs on, a pair whose difference lies more than
:data:`WILD_PAIR_MADS` scaled median absolute deviations from the median is set aside and named;
at most one pair in five.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import stats as sps

from . import stats

__all__ = ["MIN_PAIRS_FOR_WILD", "WILD_PAIR_MADS", "PairedLook", "look", "per_look_level", "wild_pairs"]

#: A pair this many scaled MADs from the median difference is wild.
WILD_PAIR_MADS: Final = 7.0
#: Fewer pairs than this cannot tell a wild pair from the spread.
MIN_PAIRS_FOR_WILD: Final = 5
_SIMULATIONS: Final = 40_000


def wild_pairs(differences: Sequence[float]) -> list[int]:
    """Indices of the wild pairs among ``differences``, the farthest first (at most one in five)."""
    n = len(differences)
    if n < MIN_PAIRS_FOR_WILD:
        return []
    data = np.asarray(differences, dtype=float)
    median = float(np.median(data))
    scale = max(float(sps.median_abs_deviation(data, scale="normal")), stats.SD_FLOOR)
    distance = np.abs(data - median) / scale
    order = [int(i) for i in np.argsort(-distance, kind="stable")]
    return [i for i in order[: n // 5] if distance[i] > WILD_PAIR_MADS]


@functools.cache
def per_look_level(alpha: float, first: int, last: int) -> float:
    """The one-sided level for each look at ``first`` .. ``last`` pairs such that, with no change,
    some look crosses it with probability ``alpha`` (the paired t-test on normal differences is
    scale-free, so one seeded simulation serves every benchmark)."""
    if not 2 <= first <= last:
        raise ValueError(f"looks need 2 <= first <= last, got {first}, {last}")
    if first == last:
        return alpha
    rng = np.random.default_rng(20261202)
    x = rng.standard_normal((_SIMULATIONS, last))
    n = np.arange(first, last + 1)
    sums, squares = np.cumsum(x, axis=1)[:, n - 1], np.cumsum(x * x, axis=1)[:, n - 1]
    means = sums / n
    sd = np.sqrt((squares - n * means * means) / (n - 1))
    smallest_p = sps.t.sf(means / (sd / np.sqrt(n)), n - 1).min(axis=1)
    return float(np.quantile(smallest_p, alpha))


@dataclass(frozen=True)
class PairedLook:
    """One look at a mode's pairs: the decision at the per-look level (p-values rescaled to the
    overall level), and the wild pairs set aside."""

    decision: stats.GateDecision
    level: float
    threshold: float
    pairs: int
    wild: tuple[float, ...] = ()

    @property
    def powered_pass(self) -> bool:
        """A pass that could have seen a slowdown at the threshold: upper bound and detectable
        effect both below it."""
        d = self.decision
        return (
            d.status == "pass"
            and d.change_ci is not None
            and d.change_ci[1] < self.threshold
            and d.detectable_effect is not None
            and d.detectable_effect <= self.threshold
        )

    @property
    def clear(self) -> bool:
        return self.decision.status in ("regression", "improvement") or self.powered_pass

    @property
    def confidence(self) -> float:
        """The two-sided coverage of the reported interval (its upper bound is one-sided at the
        per-look level)."""
        return 1 - 2 * self.level

    def why_unclear(self) -> str:
        """What keeps this look from a pass, in words."""
        d = self.decision
        if d.change_ci is None or d.detectable_effect is None:
            return d.reason or "too few pairs"
        parts = []
        if d.detectable_effect > self.threshold:
            parts.append(f"it can detect only {d.detectable_effect:.1%}")
        if d.change_ci[1] >= self.threshold:
            parts.append(f"its interval reaches {d.change_ci[1]:+.1%}")
        return " and ".join(parts) + f", past the {self.threshold * 100:g}% threshold"


def look(
    differences: Sequence[float], *, threshold: float, alpha: float, first: int, last: int
) -> PairedLook:
    """The decision on ``differences`` (log B minus log A per pair) at a look of a comparison that
    looks after every pair from ``first`` to ``last``."""
    level = per_look_level(alpha, max(first, 2), max(last, first, 2))
    wild = wild_pairs(differences)
    kept = [d for i, d in enumerate(differences) if i not in wild]
    decision = stats.compare_paired(kept, threshold=threshold, alpha=level, confidence=1 - 2 * level)
    scale = alpha / level
    decision = dataclasses.replace(
        decision,
        p_slower=None if decision.p_slower is None else min(1.0, decision.p_slower * scale),
        p_faster=None if decision.p_faster is None else min(1.0, decision.p_faster * scale),
    )
    return PairedLook(
        decision=decision,
        level=level,
        threshold=threshold,
        pairs=len(differences),
        wild=tuple(math.expm1(differences[i]) for i in wild),
    )
