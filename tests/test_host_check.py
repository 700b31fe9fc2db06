"""The host check end to end: a machine that slows down between the baseline and the run must
not hide a real regression, and a reference that alone moves must not raise a false one.

A conftest shim replaces the reference workload by a spin-wait, so that "the machine" (the
reference and the benchmark together), "only the reference" and "the benchmark's own work"
can each be moved by an environment variable, in the session and in its fresh processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_keisei_perf import measure

FAST = ("--perf-budget=0.02", "--perf-rounds=5", "--perf-confirm-runs=2", "-p", "no:cacheprovider")

SHIM = """
import os
import time

import pytest_keisei_perf.measure as measure

MACHINE = float(os.environ.get("SHIM_MACHINE", "1"))  # how slow the whole host runs
REFERENCE_ONLY = float(os.environ.get("SHIM_REFERENCE", "1"))  # how slow the reference alone runs


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def reference_workload(device="cpu"):
    return lambda: spin(200e-6 * MACHINE * REFERENCE_ONLY)


measure.reference_workload = reference_workload
"""

TEST = """
import os

import pytest
from conftest import MACHINE, spin

WORK = 1 + float(os.environ.get("SHIM_EXTRA_WORK", "0"))


@pytest.mark.perf(modes=("eager",))
def test_spin(perf):
    perf.benchmark(spin, 300e-6 * MACHINE * WORK)
"""


@pytest.fixture(scope="module")
def stored_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spin benchmark baselined once per module (3 fresh runs), through a real update run."""
    folder = tmp_path_factory.mktemp("host-project")
    (folder / "conftest.py").write_text(SHIM)
    (folder / "test_spin.py").write_text(TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIM_", "PYTEST_"))}
    env["KEISEI_PERF_MACHINE"] = "host-box"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *FAST, "-m", "perf", "--perf-update-baseline",
         "--perf-baseline-runs=3"],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder / "baselines"


def _gate(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, baselines: Path, **env: str
) -> pytest.RunResult:
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "host-box")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makeconftest(SHIM)
    pytester.makepyfile(test_spin=TEST)
    shutil.copytree(baselines, pytester.path / "baselines")
    # the session runs here; the shim patches this process's measure module, so it is restored
    # after the test (its fresh processes load the shim themselves)
    monkeypatch.setattr(measure, "reference_workload", measure.reference_workload)
    return pytester.runpytest(*FAST, "-m", "perf", "-v")


def test_a_slower_host_does_not_hide_a_real_regression(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, stored_baseline: Path
) -> None:
    """The miss of issue 23: the host 15% slower, and 25% more work on top (raw +44%)."""
    gated = _gate(pytester, monkeypatch, stored_baseline, SHIM_MACHINE="1.15", SHIM_EXTRA_WORK="0.25")
    out = gated.stdout.str()
    assert gated.ret == pytest.ExitCode.TESTS_FAILED, out
    assert "performance regression: test_spin.py::test_spin [eager]" in out
    assert "raw and normalised time agree (host check)" in out
    assert "NOT COMPARED" not in out


def test_a_reference_that_alone_moves_is_not_a_regression(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, stored_baseline: Path
) -> None:
    """The original false alarm: only the reference runs 25% faster; the benchmark is unchanged."""
    gated = _gate(pytester, monkeypatch, stored_baseline, SHIM_REFERENCE="0.75")
    out = gated.stdout.str()
    assert gated.ret == pytest.ExitCode.OK, out
    assert "performance regression" not in out
    assert "NOT COMPARED (this host differs from the baseline's)" in out
    assert "they disagree on whether this is a regression" in out
