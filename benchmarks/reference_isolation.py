"""Does the reference workload measure the machine, or also the benchmark beside it? (issue 23)

Fresh processes, interleaved across conditions, each timing one benchmark ABBA-wise with the
reference workload as the plugin does (:mod:`pytest_keisei_perf.measure`, whichever version is
imported: put an older checkout first on ``PYTHONPATH`` to measure it). Conditions:
``resnet_tower_tiny`` at batch 8 with 0%, +25% and +100% more real model work, and the full
256-channel ``resnet_tower`` at batch 1. Per process it records the reference's median timed
between the benchmark's rounds; how that level moves between conditions is what a code change
does to the machine's yardstick.

    python benchmarks/reference_isolation.py --processes 6 --out /tmp/refiso.jsonl
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


def child(condition: str) -> None:
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
    samples = measure.run_schedule(schedule, calls, per_round, stopwatch)
    ref_median = statistics.median(samples[measure.REFERENCE])
    print(
        json.dumps(
            {
                "condition": condition,
                "reference_s": ref_median,
                "bench_s": statistics.median(samples["bench"]),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("reference_isolation.jsonl"))
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    order = [c for _ in range(args.processes) for c in CONDITIONS]
    random.Random(0).shuffle(order)
    rows = []
    with args.out.open("w") as out:
        for condition in order:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", condition], capture_output=True, text=True, check=True
            )
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            out.write(json.dumps(row) + "\n")
    base = statistics.median(math.log(r["reference_s"]) for r in rows if r["condition"] == "tiny+0%")
    for condition in CONDITIONS:
        logs = [math.log(r["reference_s"]) for r in rows if r["condition"] == condition]
        shift = math.expm1(statistics.median(logs) - base)
        sd = statistics.stdev(logs) if len(logs) > 1 else float("nan")
        print(f"{condition:10s} reference {shift:+.1%} vs tiny+0% (median of {len(logs)}; sd {sd:.1%})")


if __name__ == "__main__":
    main()
