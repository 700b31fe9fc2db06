"""Which per-pair statistic an A/B should decide on: raw or machine-normalised, duet or sequential.

Not a unit test: it runs real fresh-process pairs for minutes and reports spreads. It

1. writes two copies of ``gate_e2e``'s throwaway project (one forward pass of ``--arch`` at
   ``--batch-size``, eager, 1 thread): side A as committed, side B with ``--slowdown`` injected
   (0 gives identical code on both sides);
2. gathers ``--pairs`` pairs with the plugin's own A/B machinery (:func:`ab.gather_pairs`, fresh
   worker processes), as duets and as sequential pairs, alternating schedules block by block so
   that machine drift meets both alike;
3. computes each pair's difference twice from the same processes: the machine-normalised
   statistic the A/B decides on (median log time minus the reference workload's), and the raw
   one (median log time alone);
4. prints, per schedule and statistic, the mean difference (the measured change) and the spread
   of the differences (what sets the detectable effect), and writes every pair to ``--jsonl``.

The same processes give both statistics, so the comparison between them is paired: whichever has
the smaller spread sees a given slowdown with fewer pairs.

Run: ``python benchmarks/pair_statistic.py --arch resnet_tower --pairs 20 --slowdown 0.05``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gate_e2e
from scipy.stats import median_abs_deviation

from pytest_keisei_perf.ab import PairPlan, gather_pairs
from pytest_keisei_perf.duet import duet_cores
from pytest_keisei_perf.record import RunRecord
from pytest_keisei_perf.result import PerfResult
from pytest_keisei_perf.settings import PerfSettings
from pytest_keisei_perf.workers import run_worker

MODE = "eager"
NODEID = "test_ours.py::test_tiny_forward"


def _side(project: Path, settings: PerfSettings) -> Callable[[Collection[int] | None], list[PerfResult]]:
    def run(cpus: Collection[int] | None) -> list[PerfResult]:
        return run_worker([NODEID], settings, cwd=project, wanted=None, cpus=cpus)

    return run


def _pairs(a: Path, b: Path, settings: PerfSettings, count: int, duet: bool) -> list[dict[str, float]]:
    cores = duet_cores(settings.threads) if duet else None
    if isinstance(cores, str):
        sys.exit(f"no duet on this machine: {cores}")
    plan = PairPlan(count, count, threshold=0.05, alpha=0.05)
    gathered = gather_pairs(
        "pair-statistic", lambda _: plan, run_a=_side(a, settings), run_b=_side(b, settings),
        say=lambda line: print(line, flush=True), cores=cores,
    )  # fmt: skip
    if gathered.problems:
        sys.exit(f"pairs failed: {gathered.problems}")
    (runs,) = gathered.pairs.values()
    return [_difference(ra, rb) for ra, rb in zip(runs.a, runs.b, strict=True)]


def _difference(a: RunRecord, b: RunRecord) -> dict[str, float]:
    normalised_a, normalised_b = a.statistic(MODE), b.statistic(MODE)
    raw_a, raw_b = a.raw_statistic(MODE), b.raw_statistic(MODE)
    if normalised_a is None or normalised_b is None or raw_a is None or raw_b is None:
        sys.exit(f"a run lacks the {MODE} mode")
    return {
        "normalised": normalised_b - normalised_a,
        "raw": raw_b - raw_a,
        "reference": b.reference_level - a.reference_level,
    }


def summary(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| schedule | statistic | pairs | change (mean) | SD of pair differences (log) | scaled MAD |",
        "|---|---|---|---|---|---|",
    ]
    for schedule in ("duet", "sequential"):
        mine = [r for r in rows if r["schedule"] == schedule]
        if not mine:
            continue
        for statistic in ("normalised", "raw"):
            values = [float(r[statistic]) for r in mine]
            mad = float(median_abs_deviation(values, scale="normal"))
            lines.append(
                f"| {schedule} | {statistic} | {len(values)} | {math.expm1(statistics.fmean(values)):+.2%} | "
                f"{statistics.stdev(values):.4f} | {mad:.4f} |"
            )
        refs = [float(r["reference"]) for r in mine]
        spread = statistics.stdev(refs)
        lines.append(f"| {schedule} | reference workload alone | {len(refs)} | - | {spread:.4f} | - |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet_tower_tiny")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=20, help="pairs per schedule (default 20)")
    parser.add_argument("--block", type=int, default=5, help="pairs per block before switching schedule")
    parser.add_argument("--slowdown", type=float, default=0.0, help="side B's injected slowdown (0.05 = 5%%)")
    parser.add_argument("--jsonl", type=Path, default=None)
    parser.add_argument("--summarise", type=Path, default=None, help="only print the table of a --jsonl")
    args = parser.parse_args()
    if args.summarise:
        print(summary([json.loads(line) for line in args.summarise.read_text().splitlines()]))
        return
    settings = PerfSettings(modes=(MODE,), compile_backend="eager")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pair-statistic-") as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        for side in (a, b):
            side.mkdir()
            gate_e2e.make_project(side, args.arch, args.batch_size)
        (b / "slowdown.txt").write_text(str(args.slowdown))
        done = {"duet": 0, "sequential": 0}
        while min(done.values()) < args.pairs:
            for schedule in ("duet", "sequential"):
                count = min(args.block, args.pairs - done[schedule])
                if count < 2:  # a plan needs two pairs; a last odd pair is skipped
                    done[schedule] = args.pairs
                    continue
                start = time.perf_counter()
                for difference in _pairs(a, b, settings, count, duet=schedule == "duet"):
                    row = {"schedule": schedule, "slowdown": args.slowdown, "arch": args.arch, **difference}
                    rows.append(row)
                    if args.jsonl:
                        with args.jsonl.open("a") as handle:
                            handle.write(json.dumps(row) + "\n")
                done[schedule] += count
                print(f"{schedule}: {count} pairs in {time.perf_counter() - start:.0f} s", flush=True)
    print(summary(rows))


if __name__ == "__main__":
    main()
