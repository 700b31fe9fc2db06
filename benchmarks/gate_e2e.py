"""Measure the regression gate end to end on this machine, next to pytest-benchmark.

Not a unit test: it runs real pytest sessions for tens of minutes and reports counts. It

1. writes a throwaway project whose one test times ``resnet_tower_tiny`` (eager, 1 thread) with
   an optional injected slowdown: a spin-wait of a given fraction of the forward time, calibrated
   in each process so that "10%" means 10% of what that process measures;
2. baselines it with ``--perf-update-baseline`` (and pytest-benchmark with ``--benchmark-save``);
3. runs identical code and 10% / 25% slowdowns, interleaved so that machine drift hits every
   condition alike, and gates each run with ``pytest -m perf`` at the plugin's defaults and with
   pytest-benchmark's ``--benchmark-compare-fail=median:5%``;
4. prints false alarms and detections per condition with the wall time of one gated run.

Run: ``python benchmarks/gate_e2e.py --runs 20`` (needs ``pip install pytest-benchmark``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

TEST_MODULE = """
import os
import time

import pytest
import torch

import keisei_models

torch.set_num_threads(1)
SLOWDOWN = float(os.environ.get("E2E_SLOWDOWN", "0"))
MODEL = keisei_models.build("resnet_tower_tiny", seed=0).eval()
(X,) = keisei_models.example_inputs("resnet_tower_tiny", batch_size=8)


def _median_forward_s() -> float:
    with torch.inference_mode():
        for _ in range(10):
            MODEL(X)
        times = []
        for _ in range(31):
            start = time.perf_counter()
            MODEL(X)
            times.append(time.perf_counter() - start)
    return sorted(times)[15]


EXTRA_S = SLOWDOWN * _median_forward_s() if SLOWDOWN else 0.0


def forward(x):
    out = MODEL(x)
    if EXTRA_S:
        end = time.perf_counter() + EXTRA_S
        while time.perf_counter() < end:
            pass
    return out
"""

OURS = """
@pytest.mark.perf(modes=("eager",))
def test_tiny_forward(perf):
    with torch.inference_mode():
        perf.benchmark(forward, X)
"""

PYTEST_BENCHMARK = """
def test_tiny_forward(benchmark):
    with torch.inference_mode():
        benchmark(forward, X)
"""

#: What each tool prints when it fails a run for a slowdown (any other failure is an error).
REGRESSION_TEXT = {"keisei-perf": "performance regression", "pytest-benchmark": "Performance has regressed"}
CONDITIONS = {"identical": 0.0, "slower 10%": 0.10, "slower 25%": 0.25}


@dataclass
class Trial:
    tool: str
    condition: str
    failed: bool
    wall_s: float


def _pytest(project: Path, args: list[str], slowdown: float) -> tuple[int, float, str]:
    env = {**os.environ, "E2E_SLOWDOWN": str(slowdown), "KEISEI_PERF_MACHINE": "e2e-bench"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, time.perf_counter() - start, proc.stdout + proc.stderr


def _checked(project: Path, args: list[str], what: str) -> None:
    code, wall, output = _pytest(project, args, 0.0)
    if code != 0:
        sys.exit(f"{what} failed (exit {code}):\n{output}")
    print(f"{what}: {wall:.1f} s", flush=True)


def make_project(root: Path) -> None:
    (root / "test_ours.py").write_text(TEST_MODULE + OURS)
    (root / "test_pytest_benchmark.py").write_text(TEST_MODULE + PYTEST_BENCHMARK)
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="gated runs per condition and tool")
    parser.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    parser.add_argument("--json", type=Path, help="write every trial here")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway project")
    opts = parser.parse_args()
    try:
        import pytest_benchmark  # noqa: F401
    except ImportError:
        sys.exit("pytest-benchmark is needed for the comparison: pip install pytest-benchmark")

    root = Path(tempfile.mkdtemp(prefix="keisei-gate-e2e-"))
    make_project(root)
    ours = ["test_ours.py", "-m", "perf", "-p", "no:benchmark"]
    theirs = ["test_pytest_benchmark.py", "-p", "no:keisei_perf", "--benchmark-storage", str(root / ".bench")]
    _checked(root, [*ours, "--perf-update-baseline"], "keisei-perf baseline (5 fresh runs)")
    _checked(root, [*theirs, "--benchmark-save=base"], "pytest-benchmark baseline")
    saved = next((root / ".bench").rglob("*base.json")).stem

    order = [c for c in CONDITIONS for _ in range(opts.runs)]
    random.Random(opts.seed).shuffle(order)
    trials: list[Trial] = []
    for i, condition in enumerate(order, 1):
        slowdown = CONDITIONS[condition]
        for tool, args in (
            ("keisei-perf", ours),
            (
                "pytest-benchmark",
                [*theirs, f"--benchmark-compare={saved}", "--benchmark-compare-fail=median:5%"],
            ),
        ):
            code, wall, output = _pytest(root, args, slowdown)
            failed = code == 1 and REGRESSION_TEXT[tool] in output
            if code not in (0, 1) or (code == 1 and not failed):
                sys.exit(f"{tool} run errored (exit {code}):\n{output}")
            trials.append(Trial(tool, condition, failed, wall))
        print(
            f"[{i}/{len(order)}] {condition}: "
            + ", ".join(f"{t.tool} {'FAIL' if t.failed else 'pass'} ({t.wall_s:.0f} s)" for t in trials[-2:]),
            flush=True,
        )

    print("\n| tool | identical: false alarms | 10% slower: caught | 25% slower: caught | s per gated run |")
    print("|---|---|---|---|---|")
    for tool in ("keisei-perf", "pytest-benchmark"):
        cells = []
        for condition in CONDITIONS:
            mine = [t for t in trials if t.tool == tool and t.condition == condition]
            cells.append(f"{sum(t.failed for t in mine)}/{len(mine)}")
        walls = sorted(t.wall_s for t in trials if t.tool == tool)
        print(f"| {tool} | {' | '.join(cells)} | {walls[len(walls) // 2]:.0f} (max {walls[-1]:.0f}) |")
    if opts.json:
        opts.json.write_text(json.dumps([asdict(t) for t in trials], indent=2) + "\n")
    if opts.keep:
        print(f"project kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
