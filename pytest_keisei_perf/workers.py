"""Fresh processes: re-invoking pytest on chosen node ids in worker mode, reading back results.

The unit of replication is the process: the spread between processes (7-18% here) dwarfs the
spread inside one (~2%), so baselines and confirmations need new processes, not more rounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .settings import PerfSettings

__all__ = ["WorkerError", "run_worker", "worker_command"]


class WorkerError(RuntimeError):
    """A worker process failed to produce a report."""


def worker_command(nodeids: Sequence[str], settings: PerfSettings, report: Path) -> list[str]:
    """The pytest command line of one worker, carrying every setting that affects timing."""
    command = [sys.executable, "-m", "pytest", *nodeids, "-q", "-p", "no:cacheprovider"]
    command += ["-m", "", "--perf-worker", f"--perf-json={report}"]  # -m "": override any addopts -m
    command += [
        f"--perf-threads={settings.threads}",
        f"--perf-budget={settings.budget_s}",
        f"--perf-rounds={settings.rounds}",
        f"--perf-modes={','.join(settings.modes)}",
        f"--perf-compile-backend={settings.compile_backend}",
        f"--perf-baseline-dir={settings.baseline_dir}",
    ]
    if settings.compile_mode:
        command.append(f"--perf-compile-mode={settings.compile_mode}")
    if settings.strict_compile:
        command.append("--perf-strict-compile")
    if settings.machine:
        command.append(f"--perf-machine={settings.machine}")
    return command


def run_worker(
    nodeids: Sequence[str], settings: PerfSettings, *, cwd: Path, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Run one fresh process over ``nodeids``; the results of benchmarks that passed there."""
    with tempfile.TemporaryDirectory(prefix="keisei-perf-worker-") as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            worker_command(nodeids, settings, report), cwd=cwd, capture_output=True, text=True, check=False
        )
        if not report.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise WorkerError(f"worker process exited with {proc.returncode} and wrote no report:\n{tail}")
        data = json.loads(report.read_text(encoding="utf-8"))
    if proc.returncode not in (0, 1) and log is not None:
        log(f"keisei-perf: worker exited with {proc.returncode}")
    return [entry for entry in data["results"] if not entry["failures"] and not entry["disabled"]]
