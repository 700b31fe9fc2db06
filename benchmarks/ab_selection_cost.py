"""Wall time of ``--perf-compare-ref`` over a selection of N perf tests, for the plugin at two
commits: per-test processes (before issue 19 item 2) against one process per side per pair for
the whole selection. The plugin of each commit is put first on ``PYTHONPATH`` from a git
worktree of this repository.

    python benchmarks/ab_selection_cost.py --before 541e5bc --after HEAD --tests 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = """
import pytest
import torch

MODEL = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()
X = torch.randn(16, 64)


@pytest.mark.perf(modes=("eager",))
def test_model_{i}(perf):
    with torch.inference_mode():
        perf.benchmark(MODEL, X)
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def project(folder: Path, tests: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (folder / "tests").mkdir()
    for i in range(tests):
        (folder / "tests" / f"test_m{i}.py").write_text(TEST.format(i=i))
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "base")
    return folder


def timed(folder: Path, plugin: Path) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(plugin)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "perf", "-p", "no:cacheprovider", "--perf-compare-ref=HEAD",
         "--perf-budget=0.1"],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return time.perf_counter() - start, proc.returncode, proc.stdout[-1500:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--tests", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    out = []
    with tempfile.TemporaryDirectory(prefix="ab-cost-") as tmp:
        work = Path(tmp)
        folder = project(work / "project", args.tests)
        plugins = {}
        for label, commit in (("before", args.before), ("after", args.after)):
            plugins[label] = work / label
            git(ROOT, "worktree", "add", "--detach", str(plugins[label]), commit)
        try:
            for repeat in range(args.repeats):
                for label in ("before", "after") if repeat % 2 == 0 else ("after", "before"):
                    wall, code, tail = timed(folder, plugins[label])
                    row = {"plugin": label, "tests": args.tests, "wall_s": round(wall, 1), "exit": code}
                    print(json.dumps(row), flush=True)
                    if code not in (0, 1):
                        print(tail)
                    out.append(row)
        finally:
            for path in plugins.values():
                git(ROOT, "worktree", "remove", "--force", str(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
