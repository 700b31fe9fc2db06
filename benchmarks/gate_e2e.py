"""Measure the regression gates end to end on this machine, next to pytest-benchmark.

Not a unit test: it runs real pytest sessions for tens of minutes and reports counts. It

1. writes a throwaway git project whose one test times one forward pass of ``--arch`` (default
   ``resnet_tower_tiny``; the project's suite times ``resnet_tower``) at ``--batch-size``, eager, 1
   thread, with an optional injected slowdown read from ``slowdown.txt`` beside the test: a spin-wait of
   that fraction of the forward time, calibrated in each process so that "10%" means 10% of what
   that process measures. The commit says 0; a run writes its condition there, uncommitted;
2. baselines the stored-baseline gate with ``--perf-update-baseline`` (and pytest-benchmark with
   ``--benchmark-save``);
3. runs identical code and 5% / 10% slowdowns, interleaved so that machine drift hits every
   condition alike, and gates each run with each tool: ``pytest -m perf`` against the stored
   baselines at the plugin's defaults, ``--perf-compare-ref HEAD`` (head against the committed
   base) in sequential and in duet pairs, and pytest-benchmark's
   ``--benchmark-compare-fail=median:5%``;
4. prints, per tool and condition, how often it failed the run as a regression and (for
   keisei-perf) how often it said inconclusive, with the wall time of one gated run; every
   trial goes to ``--jsonl`` as it happens.

Run: ``python benchmarks/gate_e2e.py --runs 20`` (needs ``pip install pytest-benchmark``);
``--tools`` picks some of them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

TEST_MODULE = """
import time
from pathlib import Path

import pytest
import torch

import keisei_models

torch.set_num_threads(1)
SLOWDOWN = float((Path(__file__).parent / "slowdown.txt").read_text())
MODEL = keisei_models.build("{arch}", seed=0).eval()
(X,) = keisei_models.example_inputs("{arch}", batch_size={batch_size})


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
REGRESSION_TEXT = {"pytest-benchmark": "Performance has regressed"}
CONDITIONS = {"identical": 0.0, "slower 5%": 0.05, "slower 10%": 0.10}
TOOLS = ("keisei-perf stored", "keisei-perf A/B sequential", "keisei-perf A/B duet", "pytest-benchmark")
#: Each tool's threshold, as the table states it.
THRESHOLDS = {
    "keisei-perf stored": "5% (default)",
    "keisei-perf A/B sequential": "5% (default)",
    "keisei-perf A/B duet": "5% (default)",
    "pytest-benchmark": "median:5%",
}


@dataclass
class Trial:
    tool: str
    condition: str
    #: regression, pass, inconclusive or improvement (pytest-benchmark: regression or pass)
    status: str
    wall_s: float
    #: keisei-perf: the verdict's detectable effect and paired pairs (A/B), when it says them
    detectable: float | None = None
    pairs: int | None = None
    message: str = ""


def _pytest(project: Path, args: list[str]) -> tuple[int, float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["KEISEI_PERF_MACHINE"] = "e2e-bench"
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
    code, wall, output = _pytest(project, args)
    if code != 0:
        sys.exit(f"{what} failed (exit {code}):\n{output}")
    print(f"{what}: {wall:.1f} s", flush=True)


def _git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@e2e", *args], cwd=project, check=True,
        capture_output=True,
    )  # fmt: skip


def make_project(root: Path, arch: str, batch_size: int) -> None:
    module = TEST_MODULE.replace("{arch}", arch).replace("{batch_size}", str(batch_size))
    (root / "test_ours.py").write_text(module + OURS)
    (root / "test_pytest_benchmark.py").write_text(module + PYTEST_BENCHMARK)
    (root / "slowdown.txt").write_text("0")
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly\n")
    (root / ".gitignore").write_text(".bench/\nbaselines/\n*.json\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")


def keisei_trial(tool: str, condition: str, project: Path, args: list[str]) -> Trial:
    report = project / "report.json"
    report.unlink(missing_ok=True)
    code, wall, output = _pytest(project, [*args, f"--perf-json={report}"])
    if code not in (0, 1) or not report.exists():
        sys.exit(f"{tool} run errored (exit {code}):\n{output}")
    (result,) = json.loads(report.read_text())["results"]
    verdict = result["verdicts"]["eager"]
    message = verdict.get("message") or ""
    if code == 1 and verdict["status"] != "regression":
        sys.exit(f"{tool} run failed without a regression (exit {code}):\n{output}")
    detectable = re.search(r"detectable (\d+(?:\.\d+)?)%", message)
    pairs = re.search(r"paired over (\d+)", message)
    return Trial(
        tool, condition, verdict["status"], wall,
        detectable=float(detectable.group(1)) / 100 if detectable else None,
        pairs=int(pairs.group(1)) if pairs else None, message=message,
    )  # fmt: skip


def pytest_benchmark_trial(condition: str, project: Path, args: list[str]) -> Trial:
    code, wall, output = _pytest(project, args)
    failed = code == 1 and REGRESSION_TEXT["pytest-benchmark"] in output
    if code not in (0, 1) or (code == 1 and not failed):
        sys.exit(f"pytest-benchmark run errored (exit {code}):\n{output}")
    return Trial("pytest-benchmark", condition, "regression" if failed else "pass", wall)


def table(trials: list[Trial], tools: list[str]) -> str:
    lines = [
        "| tool | threshold | identical: false alarms | 5% slower: caught | 10% slower: caught "
        "| inconclusive (A/A / 5% / 10%) | pass above its detectable | median detectable "
        "| mean pairs | s per gated run (median, max) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        cells, unclear = [], []
        for condition in CONDITIONS:
            mine = [t for t in trials if t.tool == tool and t.condition == condition]
            cells.append(f"{sum(t.status == 'regression' for t in mine)}/{len(mine)}")
            unclear.append(str(sum(t.status == "inconclusive" for t in mine)))
        mine = [t for t in trials if t.tool == tool]
        blind = sum(t.status == "pass" and t.detectable is not None and t.detectable > 0.05 for t in mine)
        walls = sorted(t.wall_s for t in mine)
        wall = f"{walls[len(walls) // 2]:.0f}, {walls[-1]:.0f}" if walls else "-"
        detectables = [t.detectable for t in mine if t.detectable is not None]
        detectable = f"{statistics.median(detectables):.1%}" if detectables else "-"
        pairs = [t.pairs for t in mine if t.pairs is not None]
        mean_pairs = f"{statistics.mean(pairs):.1f}" if pairs else "-"
        row = [tool, THRESHOLDS[tool], *cells, " / ".join(unclear), str(blind), detectable, mean_pairs, wall]
        lines.append(f"| {' | '.join(row)} |")
    return "\n".join(lines)


def pair_noise(trials: list[Trial], tools: list[str]) -> str:
    """Per A/B schedule: the spread of one pair's difference (from each run's interval), the wall
    time per pair, and the spread at equal wall time, the number that decides between schedules
    (an interval's width goes as spread x sqrt(seconds per pair / seconds spent))."""
    from scipy import stats as sps

    lines = [
        "| schedule | runs | pair spread (median sd, log) | s per pair (median) "
        "| spread x sqrt(s per pair) |",
        "|---|---|---|---|---|",
    ]
    for tool in tools:
        sds, per_pair = [], []
        for t in trials:
            found = re.search(
                r"\((\d+(?:\.\d+)?)% CI ([-+]\d+(?:\.\d+)?)% to ([-+]\d+(?:\.\d+)?)%", t.message
            )
            if t.tool != tool or not found or t.pairs is None:
                continue
            level, lo, hi = (float(g) / 100 for g in found.groups())
            kept = t.pairs - len(
                re.findall(r"[-+]\d+(?:\.\d+)?%", t.message.partition("set aside (")[2].partition(")")[0])
            )
            half = (math.log1p(hi) - math.log1p(lo)) / 2
            sds.append(half / float(sps.t.ppf((1 + level) / 2, kept - 1)) * math.sqrt(kept))
            per_pair.append(t.wall_s / (t.pairs + 1))  # the warm-up is a pair's worth of processes
        if sds:
            sd, wall = statistics.median(sds), statistics.median(per_pair)
            lines.append(f"| {tool} | {len(sds)} | {sd:.3f} | {wall:.1f} | {sd * math.sqrt(wall):.3f} |")
    return "\n".join(lines)


def summarise(path: Path) -> None:
    trials = [Trial(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    tools = [t for t in TOOLS if any(x.tool == t for x in trials)]
    print(table(trials, tools))
    print()
    print(pair_noise(trials, [t for t in tools if "A/B" in t]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="gated runs per condition and tool")
    parser.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, of: " + ", ".join(TOOLS))
    parser.add_argument("--arch", default="resnet_tower_tiny", help="the keisei_models architecture timed")
    parser.add_argument("--batch-size", type=int, default=8, help="its batch size")
    parser.add_argument("--jsonl", type=Path, help="append every trial here as it happens")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway project")
    parser.add_argument("--summarise", type=Path, metavar="JSONL", help="print the tables of earlier trials")
    opts = parser.parse_args()
    if opts.summarise:
        summarise(opts.summarise)
        return
    tools = [t.strip() for t in opts.tools.split(",")]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        sys.exit(f"unknown tool(s) {unknown}; choose from {TOOLS}")
    if "pytest-benchmark" in tools:
        try:
            import pytest_benchmark  # noqa: F401
        except ImportError:
            sys.exit("pytest-benchmark is needed for the comparison: pip install pytest-benchmark")

    root = Path(tempfile.mkdtemp(prefix="keisei-gate-e2e-"))
    make_project(root, opts.arch, opts.batch_size)
    ours = ["test_ours.py", "-m", "perf", "-p", "no:benchmark"]
    ab = [*ours, "--perf-compare-ref=HEAD"]
    theirs = ["test_pytest_benchmark.py", "-p", "no:keisei_perf", "--benchmark-storage", str(root / ".bench")]
    args = {
        "keisei-perf stored": ours,
        "keisei-perf A/B sequential": [*ab, "--perf-ab-schedule=sequential"],
        "keisei-perf A/B duet": [*ab, "--perf-ab-schedule=duet"],
    }
    if "keisei-perf stored" in tools:
        _checked(root, [*ours, "--perf-update-baseline"], "keisei-perf baseline (5 fresh runs)")
    saved = ""
    if "pytest-benchmark" in tools:
        _checked(root, [*theirs, "--benchmark-save=base"], "pytest-benchmark baseline")
        saved = next((root / ".bench").rglob("*base.json")).stem

    order = [c for c in CONDITIONS for _ in range(opts.runs)]
    random.Random(opts.seed).shuffle(order)
    trials: list[Trial] = []
    for i, condition in enumerate(order, 1):
        (root / "slowdown.txt").write_text(str(CONDITIONS[condition]))
        done = []
        for tool in tools:
            if tool == "pytest-benchmark":
                compare = [f"--benchmark-compare={saved}", "--benchmark-compare-fail=median:5%"]
                trial = pytest_benchmark_trial(condition, root, [*theirs, *compare])
            else:
                trial = keisei_trial(tool, condition, root, args[tool])
            trials.append(trial)
            done.append(trial)
            if opts.jsonl:
                with opts.jsonl.open("a") as out:
                    out.write(json.dumps(asdict(trial)) + "\n")
        print(
            f"[{i}/{len(order)}] {condition}: "
            + ", ".join(f"{t.tool} {t.status} ({t.wall_s:.0f} s)" for t in done),
            flush=True,
        )
    print()
    print(table(trials, tools))
    print()
    print(pair_noise(trials, [t for t in tools if "A/B" in t]))
    if opts.keep:
        print(f"project kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
