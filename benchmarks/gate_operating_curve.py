"""The shipped gate's operating characteristic, simulated through the real ``gate.decide``.

Prints, for normalised between-process noise of 3, 5 and 7%:
- the share of runs failing as a regression at true slowdowns of 0, 3, 4, 5, 7, 10 and 25%
  (5 baseline runs, 1 stage-1 run, 4 confirmations, threshold 5%, alpha 0.05);
- a naive ``median > 1.05 x baseline median`` rule on the same runs, for contrast;
- the session-wide false-alarm rate of 10 benchmarks x 2 modes on identical code (BH at work);
- the same curve when the host runs 15% faster, or 15% / 30% slower, after the baseline (the
  reference workload and raw times move together; the normalised statistic does not);
- the frozen-baseline spread: many fixed baselines, each tested against many identical-code
  runs; mean, 95th percentile and worst per-baseline false-alarm rate.

    python benchmarks/gate_operating_curve.py [--trials 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from pytest_keisei_perf.simulate import Scenario, alarm_rate, session_regressions

SLOWDOWNS = (0.0, 0.03, 0.04, 0.05, 0.07, 0.10, 0.25)


def naive_rate(scenario: Scenario, rng: np.random.Generator, slowdown: float, trials: int) -> float:
    hits = 0
    for _ in range(trials):
        base = float(np.median([r.statistic("eager") for r in scenario.baseline(rng)]))
        now = scenario.draw(rng, slowdown).statistic("eager")
        assert now is not None
        hits += math.exp(now - base) > 1.05
    return hits / trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    header = " | ".join(f"{s:+.0%}" for s in SLOWDOWNS)
    print(f"| noise | {header} | naive: A/A / +10% |")
    print("|---" * (len(SLOWDOWNS) + 2) + "|")
    for noise in (0.03, 0.05, 0.07):
        scenario = Scenario(noise=noise)
        cells = " | ".join(f"{alarm_rate(scenario, rng, s, args.trials):.1%}" for s in SLOWDOWNS)
        naive_aa, naive_10 = (naive_rate(scenario, rng, s, args.trials) for s in (0.0, 0.10))
        naive = f"{naive_aa:.1%} / {naive_10:.0%}"
        print(f"| {noise:.0%} | {cells} | {naive} |")
    print("\nA host-speed shift between baseline and run (3% noise, reference noise 3%):")
    print(f"| host after the baseline | {header} |")
    print("|---" * (len(SLOWDOWNS) + 1) + "|")
    for host in (-0.15, 0.0, 0.15, 0.30):
        scenario = Scenario(noise=0.03, host_speed=math.log1p(host), reference_noise=0.03)
        cells = " | ".join(f"{alarm_rate(scenario, rng, s, args.trials):.1%}" for s in SLOWDOWNS)
        print(f"| {host:+.0%} | {cells} |")
    sessions = max(args.trials // 2, 200)
    for noise in (0.03, 0.07):
        both = Scenario(noise=noise, modes=("eager", "compiled"))
        any_alarm = sum(any(session_regressions(both, rng, [0.0] * 10)) for _ in range(sessions)) / sessions
        print(
            f"10 benchmarks x 2 modes, identical code, {noise:.0%} noise: "
            f"a false alarm in {any_alarm:.1%} of sessions"
        )
    for noise in (0.03, 0.05):
        scenario = Scenario(noise=noise)
        rates = []
        for _ in range(150):
            stored = scenario.baseline(rng)
            runs = 150
            hits = sum(
                session_regressions(scenario, rng, [0.0], baselines=[stored])[0] > 0 for _ in range(runs)
            )
            rates.append(hits / runs)
        r = np.asarray(rates)
        print(
            f"frozen baselines at {noise:.0%} noise (150 baselines x 150 runs): mean {r.mean():.2%}, "
            f"95th percentile {np.percentile(r, 95):.1%}, worst {r.max():.1%}, "
            f"{(r > 0.02).mean():.0%} of baselines above 2%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
