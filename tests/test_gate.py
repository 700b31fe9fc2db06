"""The gate end to end: real baselines from fresh processes, injected slowdowns, bad files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pytest_keisei_perf.gate import speedup_drop
from pytest_keisei_perf.record import RunRecord
from pytest_keisei_perf.simulate import make_run

#: Worker processes re-run these tests; they read the slowdown from the environment they inherit.
WORKLOAD = """
import os
import pytest, torch

def busy(n):
    # CPU work, not a wall-clock wait: it slows down with the machine like the reference does
    return sum(range(n))

SLOW = float(os.environ.get("KP_SLOW", "1"))

@pytest.mark.perf(modes=["eager"])
def test_busy(perf):
    perf.benchmark(busy, int(20_000 * SLOW))

def breaking(x):
    y = x.sin()
    if os.environ.get("KP_BREAK") == "1":
        torch._dynamo.graph_break()
    return y.cos()

# a few-microsecond call: its timing wobbles by >5% between sessions; this test is for the
# compile facts, so its timing gate only catches gross changes
@pytest.mark.perf(threshold=0.5)
def test_graphs(perf):
    perf.benchmark(breaking, torch.ones(8))
"""

FAST = ("--perf-budget=0.05", "--perf-rounds=6", "--perf-compile-backend=eager", "-p", "no:cacheprovider")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("KP_SLOW", raising=False)
    monkeypatch.delenv("KP_BREAK", raising=False)
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "test-box")
    pytester.makepyfile(test_work=WORKLOAD)
    result = pytester.runpytest(*FAST, "--perf-update-baseline", "--perf-baseline-runs=3")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*keisei-perf: baseline run 1/3: 2 test(s), each in a fresh process (2 benchmarks)*",
            "*keisei-perf: baseline run 2/3: 2 test(s), each in a fresh process (2 benchmarks)*",
            "*keisei-perf: baseline run 3/3: 2 test(s), each in a fresh process (2 benchmarks)*",
            "*keisei-perf: stored 3 runs of 2 benchmark(s) in *baselines/test-box-*.json*",
        ]
    )
    return pytester


def _baseline_file(pytester: pytest.Pytester) -> Path:
    (path,) = (pytester.path / "baselines").glob("*.json")
    return path


def test_update_stores_independent_runs_per_benchmark(project: pytest.Pytester) -> None:
    data = json.loads(_baseline_file(project).read_text())
    assert data["schema_version"] == 1
    assert data["machine"]["name"] == "test-box"
    runs = data["benchmarks"]["test_work.py::test_busy"]["runs"]
    assert len(runs) == 3
    assert len({tuple(r["modes"]["eager"]["samples_s"]) for r in runs}) == 3  # three processes
    graphs = data["benchmarks"]["test_work.py::test_graphs"]["runs"][0]["modes"]["compiled"]
    assert (graphs["graph_count"], graphs["graph_breaks"], graphs["recompiles"]) == (1, 0, 0)


def test_identical_code_is_compared_and_passes(project: pytest.Pytester) -> None:
    # threshold 1000%: the verdict cannot depend on how busy the machine is, only on the wiring
    result = project.runpytest(*FAST, "-v", "--perf-threshold=10")
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines([r"test_busy\s+eager\s.*\s(pass|improvement)\s"])
    assert "regression" not in result.stdout.str()
    assert "NOT COMPARED" not in result.stdout.str()


def test_injected_slowdown_fails_after_confirmation(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KP_SLOW", "30")  # 30x the work: orders of magnitude above any noise
    result = project.runpytest(*FAST, "--perf-confirm-runs=2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_work.py::test_busy looks slower; confirming in fresh process 1/2*",
            "*test_work.py::test_busy looks slower; confirming in fresh process 2/2*",
            "*performance regression: test_work.py::test_busy [[]eager[]]: median * vs baseline *; "
            "change +*% (95% CI +*% to +*%, machine-normalised), p=*, "
            "3 baseline runs vs 2 current; detectable *",
            "*if the change is intended, re-baseline: "
            "pytest -m perf --perf-update-baseline 'test_work.py::test_busy'*",
            "test_busy*eager*regression*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_new_graph_break_fails_with_the_numbers(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KP_BREAK", "1")
    # A huge threshold keeps the timing gate out of it: with no confirmations an unconfirmed
    # stage-1 decision on test_busy could otherwise false-alarm now and then.
    result = project.runpytest(*FAST, "--perf-confirm-runs=0", "--perf-threshold=10")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_work.py::test_graphs [[]compiled[]]: graph breaks went from 0 to 1*"])


def test_another_machine_baseline_is_not_used(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "test-bx")  # a typo must not pass silently
    result = project.runpytest(*FAST)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "keisei-perf: NOT COMPARED (no baseline under this machine key): 2 benchmark(s), 3 mode(s); "
            "e.g. *: not compared: no baseline under this machine key test-bx-*; nearest stored key "
            "test-box-* differs in: name test-box -> test-bx; create one with*"
        ]
    )
    failed = project.runpytest(*FAST, "--perf-require-baseline")
    failed.assert_outcomes(failed=2)


def test_corrupt_baseline_stops_the_run_and_is_left_alone(project: pytest.Pytester) -> None:
    path = _baseline_file(project)
    path.write_text(
        '{"schema_version": 1, "benchmarks": {"x": {"runs": [{"modes": {}, "reference_samples_s": [-1]}]}}}'
    )
    before = path.read_bytes()
    result = project.runpytest(*FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*keisei-perf: {path}: *reference_samples_s holds -1; samples must be positive*"]
    )
    assert path.read_bytes() == before


def test_speedup_drop_is_flagged_only_when_significant() -> None:
    def run(speedup: float | None) -> RunRecord:
        return dataclasses.replace(make_run({"eager": 0.0}), speedup=speedup)

    runs = [run(s) for s in (1.50, 1.53, 1.47, 1.51, 1.49)]
    message = speedup_drop(run(1.05), runs, threshold=0.05, alpha=0.05)
    assert message is not None
    assert "dropped from 1.50x (baseline median of 5 runs) to 1.05x" in message
    assert speedup_drop(run(1.48), runs, threshold=0.05, alpha=0.05) is None
    assert speedup_drop(run(1.05), runs[:2], threshold=0.05, alpha=0.05) is None
    assert speedup_drop(run(None), runs, threshold=0.05, alpha=0.05) is None
