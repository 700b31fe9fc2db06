"""The stored-baseline gate on one host, as a foreign repository meets it (issue 23).

A throwaway project times four forward passes of ``resnet_tower_tiny`` at batch 8 (eager, the
plugin's defaults), or five for 25% more *real* model work (unlike a spin-wait, it also moves
memory). It baselines once, then gates identical and +25% runs in a
shuffled order, and counts per condition: runs failed as regressions, runs NOT COMPARED, runs
that paid for fresh-process confirmations, and the wall time of one gated run.

    python benchmarks/host_check_e2e.py --runs 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST_MODULE = """
import os

import pytest
import torch

import keisei_models

EXTRA = float(os.environ.get("E2E_EXTRA_WORK", "0"))
MODEL = keisei_models.build("resnet_tower_tiny", seed=0).eval()
(X,) = keisei_models.example_inputs("resnet_tower_tiny", batch_size=8)
PASSES = round(4 * (1 + EXTRA))


def forward(x):
    for _ in range(PASSES):
        out = MODEL(x)
    return out


@pytest.mark.perf(modes=("eager",))
def test_acc_tiny(perf):
    with torch.inference_mode():
        perf.benchmark(forward, X)
"""

CONDITIONS = {"identical": 0.0, "+25% work": 0.25}


def _pytest(project: Path, args: list[str], extra: float) -> tuple[int, float, str]:
    env = {**os.environ, "E2E_EXTRA_WORK": str(extra)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "perf", *args],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.returncode, time.perf_counter() - start, proc.stdout + proc.stderr


def _in_session_levels(report: Path) -> dict[str, float]:
    """The stage-1 run's median log time and median log reference time, as the report has them."""
    try:
        result = json.loads(report.read_text())["results"][0]
    except (OSError, KeyError, IndexError, ValueError):
        return {}
    return {
        "raw_log": statistics.median(math.log(s) for s in result["modes"]["eager"]["samples_s"]),
        "ref_log": statistics.median(math.log(s) for s in result["reference_samples_s"]),
    }


def _baseline_levels(root: Path) -> list[dict[str, float]]:
    (path,) = (root / "baselines").glob("*.json")
    entry = next(iter(json.loads(path.read_text())["benchmarks"].values()))
    return [
        {
            "raw_log": statistics.median(math.log(s) for s in run["modes"]["eager"]["samples_s"]),
            "ref_log": statistics.median(math.log(s) for s in run["reference_samples_s"]),
        }
        for run in entry["runs"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="gated runs per condition")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="keisei-host-e2e-"))
    (root / "test_acc.py").write_text(TEST_MODULE)
    (root / "pytest.ini").write_text("[pytest]\n")
    code, wall, output = _pytest(root, ["--perf-update-baseline"], 0.0)
    if code != 0:
        sys.exit(f"baseline failed (exit {code}):\n{output}")
    print(f"baseline (5 fresh runs): {wall:.0f} s", flush=True)
    base = _baseline_levels(root)
    base_raw = statistics.fmean(b["raw_log"] for b in base)
    base_ref = statistics.fmean(b["ref_log"] for b in base)
    for b in base:
        print(
            f"  baseline run: raw {math.expm1(b['raw_log'] - base_raw):+.1%}, "
            f"reference {math.expm1(b['ref_log'] - base_ref):+.1%} vs the baseline mean"
        )
    order = [c for c in CONDITIONS for _ in range(opts.runs)]
    random.Random(opts.seed).shuffle(order)
    trials = []
    for i, condition in enumerate(order, 1):
        report = root / f"run{i}.json"
        code, wall, output = _pytest(root, [f"--perf-json={report}"], CONDITIONS[condition])
        trial = {
            "condition": condition,
            "regression": code == 1 and "performance regression" in output,
            "not_compared": "NOT COMPARED" in output,
            "confirmed": "confirming in fresh process" in output,
            "exit": code,
            "wall_s": wall,
            **_in_session_levels(report),
            "lines": [
                line for line in output.splitlines() if "test_acc_tiny" in line or "keisei-perf:" in line
            ],
        }
        if code not in (0, 1):
            sys.exit(f"run errored (exit {code}):\n{output}")
        trials.append(trial)
        flags = [k for k in ("regression", "not_compared", "confirmed") if trial[k]]
        levels = ""
        if "raw_log" in trial:
            levels = (
                f"stage-1 run: raw {math.expm1(trial['raw_log'] - base_raw):+.1%}, "
                f"reference {math.expm1(trial['ref_log'] - base_ref):+.1%}"
            )
        print(f"[{i}/{len(order)}] {condition}: exit {code} {flags} {wall:.0f} s {levels}", flush=True)
    print(
        "\n| condition | failed as regression | NOT COMPARED | paid confirmations "
        "| s per gated run (median, max) |"
    )
    print("|---|---|---|---|---|")
    for condition in CONDITIONS:
        mine = [t for t in trials if t["condition"] == condition]
        walls = [t["wall_s"] for t in mine]
        print(
            f"| {condition} | {sum(t['regression'] for t in mine)}/{len(mine)} | "
            f"{sum(t['not_compared'] for t in mine)}/{len(mine)} | "
            f"{sum(t['confirmed'] for t in mine)}/{len(mine)} | "
            f"{statistics.median(walls):.0f}, {max(walls):.0f} |"
        )
    if opts.json:
        opts.json.write_text(json.dumps(trials, indent=1) + "\n")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
