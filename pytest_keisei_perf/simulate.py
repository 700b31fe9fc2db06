"""Seeded simulations of the shipped gate: synthetic runs through the real :func:`gate.decide`.

The tests and ``benchmarks/gate_operating_curve.py`` measure false alarms, power, the operating
curve and the spread of per-baseline false-alarm rates with these, so a bug in ``decide()``
(suspect selection, confirmation wiring, Benjamini-Hochberg, the direction of the test) changes
the numbers they check. Noise model: each process draws a normal offset of the normalised log
time with sd ``noise``, plus heavy-tailed spikes (t with 3 df) in a fifth of the processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .gate import GateContext, decide
from .ledger import FalseDiscoveryLedger
from .record import ModeRun, RunRecord

if TYPE_CHECKING:
    from .ab import PairPlan

__all__ = ["Scenario", "ab_comparison", "alarm_rate", "make_run", "session_regressions"]

#: Simulated runs compare only among themselves; any one version does (importing the real one
#: would import torch).
_REFERENCE_VERSION = 3
#: Rounds per simulated run; each round carries the run's level (the statistic is a median).
_ROUNDS = 5


def make_run(levels: dict[str, float], reference_s: float = 1.0) -> RunRecord:
    """A run whose normalised log statistic in each mode is ``levels[mode]``, on a machine whose
    reference workload took ``reference_s`` (raw times move with it)."""
    return RunRecord(
        modes={m: ModeRun(samples_s=(math.exp(v) * reference_s,) * _ROUNDS) for m, v in levels.items()},
        reference_samples_s=(reference_s,) * _ROUNDS,
        device="cpu",
        compile_kwargs={},
        reference_version=_REFERENCE_VERSION,
    )


@dataclass(frozen=True)
class Scenario:
    """One simulated session's set-up."""

    noise: float
    modes: tuple[str, ...] = ("eager",)
    baseline_runs: int = 5
    confirm_runs: int = 4
    threshold: float = 0.05
    alpha: float = 0.05
    #: Residual drift of the normalised statistic per run, in log units: baseline run i sits at
    #: ``i * drift``, later runs at ``baseline_runs * drift`` (the machine kept drifting).
    drift: float = 0.0
    #: How much slower (log units) the host runs after the baseline: the reference workload and
    #: raw times of later runs move together by this much (the normalised statistic does not).
    host_speed: float = 0.0
    #: Between-process sd of the reference's own log level (0: the reference reads the machine
    #: exactly, as in the runs above).
    reference_noise: float = 0.0

    def draw(
        self,
        rng: np.random.Generator,
        slowdown: float = 0.0,
        shift: float | None = None,
        *,
        later: bool = True,
    ) -> RunRecord:
        """One process: offset + occasional heavy-tailed spike, per mode."""
        shift = self.baseline_runs * self.drift if shift is None else shift
        levels = {}
        for mode in self.modes:
            spike = 0.5 * self.noise * rng.standard_t(3) if rng.random() < 0.2 else 0.0
            levels[mode] = math.log1p(slowdown) + shift + rng.normal(0, self.noise) + spike
        reference = self.host_speed if later else 0.0
        if self.reference_noise > 0:
            reference += rng.normal(0, self.reference_noise)
        return make_run(levels, math.exp(reference))

    def baseline(self, rng: np.random.Generator) -> list[RunRecord]:
        return [self.draw(rng, shift=i * self.drift, later=False) for i in range(self.baseline_runs)]


def session_regressions(
    scenario: Scenario,
    rng: np.random.Generator,
    slowdowns: Sequence[float],
    *,
    baselines: Sequence[Sequence[RunRecord]] | None = None,
) -> list[int]:
    """One gated session over ``len(slowdowns)`` benchmarks: regressions flagged per benchmark.

    Each benchmark's confirmations are fresh draws with its true slowdown, and Benjamini-Hochberg
    runs over every benchmark and mode, as in a real session. ``baselines`` fixes the stored runs
    (the frozen-baseline study); by default each benchmark gets fresh ones.
    """
    ledger = FalseDiscoveryLedger(expected=len(slowdowns) * len(scenario.modes))
    flagged = []
    for index, slowdown in enumerate(slowdowns):
        stored = list(baselines[index]) if baselines is not None else scenario.baseline(rng)

        def confirm(slowdown: float = slowdown) -> list[RunRecord]:
            return [scenario.draw(rng, slowdown) for _ in range(scenario.confirm_runs)]

        context = GateContext(
            threshold=scenario.threshold,
            alpha=scenario.alpha,
            confirm=confirm if scenario.confirm_runs > 0 else None,
            ledger=ledger,
        )
        verdicts, _ = decide(scenario.draw(rng, slowdown), stored, context, label=f"b{index}", nodeid="x")
        flagged.append(sum(v.status == "regression" for v in verdicts.values()))
    return flagged


def alarm_rate(scenario: Scenario, rng: np.random.Generator, slowdown: float, trials: int) -> float:
    """Share of single-benchmark sessions that fail as a regression at a true ``slowdown``."""
    return sum(session_regressions(scenario, rng, [slowdown])[0] > 0 for _ in range(trials)) / trials


def ab_comparison(
    plan: PairPlan,
    rng: np.random.Generator,
    effect: float,
    *,
    noise: float,
    wild_share: float = 0.0,
    wild_scale: float = 5.0,
) -> tuple[str, int]:
    """One simulated A/B comparison through the real stopping rule and :func:`ab.verdicts_for`:
    its verdict and the pairs it took.

    Each pair shares a machine offset (it cancels) and each side adds normal noise of sd
    ``noise``; with probability ``wild_share`` one side of a pair also meets a heavy-tailed spike
    (|t with 3 df| x ``wild_scale`` x ``noise``), a noisy neighbour slowing one process.
    """
    from .ab import PairedRuns, is_clear, verdicts_for

    runs = PairedRuns()
    for taken in range(1, plan.max_pairs + 1):
        common = rng.normal(0.0, 0.05)
        a, b = common + rng.normal(0.0, noise), common + math.log1p(effect) + rng.normal(0.0, noise)
        if rng.random() < wild_share:
            spike = abs(float(rng.standard_t(3))) * wild_scale * noise
            a, b = (a + spike, b) if rng.random() < 0.5 else (a, b + spike)
        runs.a.append(make_run({"eager": a}))
        runs.b.append(make_run({"eager": b}))
        if plan.done(taken, is_clear(runs, ["eager"], plan)):
            break
    verdicts, _ = verdicts_for("sim", runs, ["eager"], plan, ref="base", bh=lambda p: (p < plan.alpha, 1))
    return verdicts["eager"].status, len(runs.a)
