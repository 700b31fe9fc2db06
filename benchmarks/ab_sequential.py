"""The A/B's stopping rule, simulated (issue 19): false alarms, power, passes without power and
pairs taken, for the rule before 2026-12-02 and the shipped sequential rule, under normal and
heavy-tailed pair noise.

"before": 5 pairs, an early stop after 3 when the 99% interval cleared the threshold or p < alpha/10;
the final verdict a 95% paired t-test, "pass" whatever the power. "sequential": the shipped rule
(:mod:`pytest_keisei_perf.paired` through :func:`simulate.ab_comparison`), with and without its
wild-pair rule. Noise is per process, in log units; "heavy" gives a fifth of the pairs a spike.

    python benchmarks/ab_sequential.py --trials 1000
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from pytest_keisei_perf import paired, stats
from pytest_keisei_perf.ab import PairPlan
from pytest_keisei_perf.simulate import ab_comparison

THRESHOLD, ALPHA = 0.05, 0.05
STATUSES = ("regression", "pass", "pass (no power)", "inconclusive", "improvement")


def before(rng: np.random.Generator, effect: float, noise: float, wild_share: float) -> tuple[str, int]:
    """The rule before 2026-12-02, on the same noise model as :func:`simulate.ab_comparison`."""
    differences: list[float] = []
    decision = None
    for taken in range(1, 6):
        a, b = rng.normal(0.0, noise), math.log1p(effect) + rng.normal(0.0, noise)
        if rng.random() < wild_share:
            spike = abs(float(rng.standard_t(3))) * 5.0 * noise
            a, b = (a + spike, b) if rng.random() < 0.5 else (a, b + spike)
        differences.append(b - a)
        if 3 <= taken < 5:
            early = stats.compare_paired(differences, threshold=THRESHOLD, alpha=ALPHA, confidence=0.99)
            assert early.change_ci is not None
            assert early.p_slower is not None
            if early.change_ci[1] < THRESHOLD or (
                early.p_slower < ALPHA / 10 and early.change_ci[0] > THRESHOLD
            ):
                break
    decision = stats.compare_paired(differences, threshold=THRESHOLD, alpha=ALPHA)
    powered = decision.detectable_effect is not None and decision.detectable_effect <= THRESHOLD
    status = decision.status if decision.status != "pass" or powered else "pass (no power)"
    return status, len(differences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    plan = PairPlan(pairs=5, max_pairs=12, threshold=THRESHOLD, alpha=ALPHA)
    print(
        f"threshold {THRESHOLD:.0%}, alpha {ALPHA}; per-look level {paired.per_look_level(ALPHA, 5, 12):.4f}"
    )
    columns = ["rule", "noise sd", "tails", "effect", *STATUSES, "mean pairs"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    shipped_mads = paired.WILD_PAIR_MADS
    for noise in (0.02, 0.04):
        for tails, wild_share in (("normal", 0.0), ("heavy", 0.2)):
            for effect in (0.0, 0.05, 0.10):
                for rule in ("before", "sequential, no wild rule", "sequential (shipped)"):
                    rng = np.random.default_rng(2026)
                    paired.WILD_PAIR_MADS = math.inf if rule == "sequential, no wild rule" else shipped_mads
                    if rule == "before":
                        out = [before(rng, effect, noise, wild_share) for _ in range(args.trials)]
                    else:
                        out = [
                            ab_comparison(plan, rng, effect, noise=noise, wild_share=wild_share)
                            for _ in range(args.trials)
                        ]
                    paired.WILD_PAIR_MADS = shipped_mads
                    shares = [f"{sum(s == k for s, _ in out) / args.trials:.1%}" for k in STATUSES]
                    cells = [rule, f"{noise:.0%}", tails, f"+{effect:.0%}", *shares]
                    print("| " + " | ".join([*cells, f"{np.mean([n for _, n in out]):.1f}"]) + " |")


if __name__ == "__main__":
    main()
