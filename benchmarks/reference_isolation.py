"""Does the reference workload measure the machine, or also the benchmark beside it? (issue 23)

Fresh processes, interleaved across conditions, each timing one benchmark ABBA-wise with the
reference workload as the plugin does (:mod:`pytest_keisei_perf.measure`, whichever version is
imported: put an older checkout first on ``PYTHONPATH`` to measure it). Conditions:
``resnet_tower_tiny`` at batch 8 with 0%, +25% and +100% more real model work, and the full
256-channel ``resnet_tower`` at batch 1. Per process it records the reference's median timed
between the benchmark's rounds; how that level moves between conditions is what a code change
does to the machine's yardstick. ``--placement`` also times the reference elsewhere: all its
rounds before or after the benchmark's, or interleaved with the caches flushed before each
round (candidate remedies; docs/ has the numbers).

    python benchmarks/reference_isolation.py --processes 15 --placement interleaved flushed
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
from pathlib import Path

CONDITIONS = ("tiny+0%", "tiny+25%", "tiny+100%", "tower256")
#: where the reference rounds run: between the benchmark's (the plugin's way), all before them,
#: all after them, or between them with the last-level cache overwritten first
PLACEMENTS = ("interleaved", "before", "after", "flushed")


def _flushed_schedule(schedule, calls, per_round, stopwatch):  # type: ignore[no-untyped-def]
    """As ``measure.run_schedule``, with the last-level cache overwritten before each reference round."""
    import torch

    from pytest_keisei_perf import measure

    sweep = torch.zeros(16 * 1024 * 1024)  # 64 MiB, beyond any last-level cache here
    samples: dict[str, list[float]] = {key: [] for key in calls}
    with measure.gc_paused():
        for key in schedule:
            if key == measure.REFERENCE:
                sweep.add_(1.0)
            n = per_round[key]
            samples[key].append(stopwatch.time_calls(calls[key], n) / n)
    return samples


def child(condition: str, placement: str) -> None:
    import torch

    import keisei_models
    from pytest_keisei_perf import measure

    torch.set_num_threads(1)
    name = "resnet_tower" if condition == "tower256" else "resnet_tower_tiny"
    batch = 1 if condition == "tower256" else 8
    model = keisei_models.build(name, seed=0).eval()
    (x,) = keisei_models.example_inputs(name, batch_size=batch)
    extra = {"tiny+25%": 0.25, "tiny+100%": 1.0}.get(condition, 0.0)
    (x_extra,) = keisei_models.example_inputs(name, batch_size=max(1, round(batch * extra)))

    def bench() -> object:
        with torch.inference_mode():
            out = model(x)
            if extra:
                out = model(x_extra)
            return out

    stopwatch = measure.Stopwatch()
    reference = measure.reference_workload("cpu")
    ref_warm = measure.warm_up(reference, stopwatch, max_time_s=0.5, min_batch_s=2e-3)
    warm = measure.warm_up(bench, stopwatch, max_time_s=1.0)
    plan = measure.plan_rounds(warm.per_call_s, budget_s=1.0, target_rounds=15)
    schedule = measure.abba_schedule(["bench"], plan.rounds)
    calls = {"bench": bench, measure.REFERENCE: reference}
    per_round = {"bench": plan.calls_per_round, measure.REFERENCE: ref_warm.batch_calls}
    if placement == "interleaved":
        samples = measure.run_schedule(schedule, calls, per_round, stopwatch)
    elif placement == "flushed":
        samples = _flushed_schedule(schedule, calls, per_round, stopwatch)
    else:
        bench_only = [k for k in schedule if k != measure.REFERENCE]
        ref_only = [measure.REFERENCE] * (len(schedule) - len(bench_only))
        order = ref_only + bench_only if placement == "before" else bench_only + ref_only
        samples = measure.run_schedule(order, calls, per_round, stopwatch)
    ref_median = statistics.median(samples[measure.REFERENCE])
    print(
        json.dumps(
            {
                "condition": condition,
                "placement": placement,
                "reference_s": ref_median,
                "bench_s": statistics.median(samples["bench"]),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--placement", nargs="+", default=["interleaved"], choices=PLACEMENTS)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("reference_isolation.jsonl"))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.placement[0])
        return
    order = [(c, p) for _ in range(args.processes) for c in CONDITIONS for p in args.placement]
    random.Random(0).shuffle(order)
    rows = []
    with args.out.open("w") as out:
        for condition, placement in order:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", condition, "--placement", placement],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            out.write(json.dumps(row) + "\n")
    for placement in args.placement:
        _summarise([r for r in rows if r.get("placement", "interleaved") == placement], placement)


def _summarise(rows: list[dict[str, object]], placement: str) -> None:
    def logs(condition: str) -> list[float]:
        return [math.log(float(r["reference_s"])) for r in rows if r["condition"] == condition]  # type: ignore[arg-type]

    base = statistics.median(logs("tiny+0%"))
    for condition in CONDITIONS:
        values = logs(condition)
        shift = math.expm1(statistics.median(values) - base)
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(
            f"{placement:11s} {condition:10s} reference {shift:+.1%} vs tiny+0%"
            f" (median of {len(values)}; sd {sd:.1%})"
        )


if __name__ == "__main__":
    main()
