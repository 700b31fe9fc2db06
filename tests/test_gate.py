"""The gate end to end: real baselines from fresh processes, injected slowdowns, bad files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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

def picky(gm, example_inputs):
    if os.environ.get("KP_NOCOMPILE") == "1":
        raise RuntimeError("picky backend refuses")
    return gm.forward

@pytest.mark.perf(threshold=0.5, compile={"backend": picky})
def test_picky(perf):
    perf.benchmark(torch.sin, torch.ones(8))
"""

FAST = ("--perf-budget=0.05", "--perf-rounds=6", "--perf-compile-backend=eager", "-p", "no:cacheprovider")


@pytest.fixture(scope="module")
def stored_baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The workload baselined once per module (9 fresh processes), through a real update run."""
    folder = tmp_path_factory.mktemp("gate-project")
    (folder / "test_work.py").write_text(WORKLOAD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KP_", "PYTEST_"))}
    env["KEISEI_PERF_MACHINE"] = "test-box"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *FAST, "--perf-update-baseline", "--perf-baseline-runs=3"],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder / "baselines", proc.stdout


@pytest.fixture
def project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, stored_baseline: tuple[Path, str]
) -> pytest.Pytester:
    """A project holding the workload and a copy of its stored baseline."""
    for name in ("KP_SLOW", "KP_BREAK", "KP_NOCOMPILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "test-box")
    pytester.makepyfile(test_work=WORKLOAD)
    shutil.copytree(stored_baseline[0], pytester.path / "baselines")
    return pytester


def test_update_runs_each_test_in_fresh_processes(stored_baseline: tuple[Path, str]) -> None:
    lines = stored_baseline[1].splitlines()
    assert any("3 passed" in line for line in lines)
    for i in (1, 2, 3):
        assert f"keisei-perf: baseline run {i}/3: 3 test(s), each in a fresh process (3 benchmarks)" in lines
    assert any(
        line.startswith("keisei-perf: stored 3 runs of 3 benchmark(s) in ") and "baselines/test-box-" in line
        for line in lines
    )


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
    result.assert_outcomes(passed=3)
    result.stdout.re_match_lines([r"test_busy\s+eager\s.*\s(pass|improvement)\s"])
    assert "regression" not in result.stdout.str()
    assert "NOT COMPARED" not in result.stdout.str()


def test_injected_slowdown_fails_after_confirmation(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KP_SLOW", "30")  # 30x the work: orders of magnitude above any noise
    # the tail latency is gated too when asked (the stored runs carry each mode's p95)
    test_file = project.path / "test_work.py"
    test_file.write_text(
        test_file.read_text().replace('modes=["eager"])', 'modes=["eager"], gate_p95=True)', 1)
    )
    result = project.runpytest(*FAST, "--perf-confirm-runs=2", "-k", "test_busy")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(
        [
            "*test_work.py::test_busy looks slower; confirming in fresh process 1/2*",
            "*test_work.py::test_busy looks slower; confirming in fresh process 2/2*",
            "*performance regression: test_work.py::test_busy [[]eager[]]: median * vs baseline *; "
            "change +*% (95% CI +*% to +*%, machine-normalised), p=*, "
            "3 baseline runs vs 2 current; detectable *",
            "*performance regression: test_work.py::test_busy [[]eager p95[]]: median * vs baseline *",
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
    # only the test with the break: its timing legitimately regresses too, and other tests' stage-1
    # timings (no confirmations here) must not decide this test's outcome
    result = project.runpytest(*FAST, "--perf-confirm-runs=0", "--perf-threshold=10", "-k", "test_graphs")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*test_work.py::test_graphs [[]compiled[]]: graph breaks went from 0 to 1*"])


def test_a_compile_that_now_fails_fails_the_test(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KP_NOCOMPILE", "1")
    result = project.runpytest(
        *FAST, "--perf-confirm-runs=0", "--perf-threshold=10", "-W", "ignore", "-k", "picky"
    )
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(
        [
            "*test_work.py::test_picky [[]compiled[]]: torch.compile failed and fell back to eager, but the "
            "baseline compiled: BackendCompilerFailed: *picky backend refuses*"
        ]
    )


def _edit_baseline(pytester: pytest.Pytester, edit: Callable[[dict[str, Any]], None]) -> None:
    path = _baseline_file(pytester)
    data = json.loads(path.read_text())
    edit(data["benchmarks"])
    path.write_text(json.dumps(data))


def test_every_reason_for_not_comparing_is_said_without_v(project: pytest.Pytester) -> None:
    def edit(benchmarks: dict[str, Any]) -> None:
        for run in benchmarks["test_work.py::test_busy"]["runs"]:  # as if timed on a slower host
            run["reference_samples_s"] = [3 * s for s in run["reference_samples_s"]]
        benchmarks["test_work.py::test_graphs"]["runs"] = benchmarks["test_work.py::test_graphs"]["runs"][:2]
        benchmarks["proj/test_work.py::test_picky"] = benchmarks.pop("test_work.py::test_picky")

    _edit_baseline(project, edit)
    # test_busy now reads ~3x slower against its edited baseline: a suspect, re-measured in fresh
    # processes, whose reference is then compared with the baseline's. Its raw time is unchanged,
    # but a 300 us call on 3 baseline runs can read +30% raw by chance (p~0.02 once in CI): the
    # threshold keeps that noise from making raw time "agree" with the normalised +200%.
    result = project.runpytest(*FAST, "--perf-threshold=0.5")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "keisei-perf: NOT COMPARED (no baseline entry for this id): 1 benchmark(s), 2 mode(s); e.g. "
            "test_work.py::test_picky: not compared: no baseline entry for this id; a stored id differs "
            "only by its prefix: proj/test_work.py::test_picky",
            "keisei-perf: NOT COMPARED (too few baseline runs): 1 benchmark(s), 2 mode(s); e.g. "
            "test_work.py::test_graphs [[]*[]]: not compared: only 2 baseline run(s); at least 3 *",
            "keisei-perf: NOT COMPARED (this host differs from the baseline's): 1 benchmark(s), 1 mode(s); "
            "e.g. test_work.py::test_busy [[]eager[]]: not compared: this host differs from the baseline's "
            "(reference workload *% faster in 4 fresh process(es) than in the baseline runs; raw eager "
            "median *, machine-normalised *: they disagree on whether this is a regression); re-measure, or "
            "re-baseline on this host if the host changed",
        ]
    )
    # the same reasons fail with --perf-require-baseline (the host check needs no confirmation
    # here: the session's own fresh process already times the reference 3x faster)
    failed = project.runpytest(
        *FAST, "--perf-require-baseline", "--perf-threshold=0.5", "--perf-confirm-runs=0"
    )
    failed.assert_outcomes(failed=3)
    failed.stdout.fnmatch_lines(
        [
            "test_work.py::test_busy [[]eager[]]: not compared: this host differs from the baseline's "
            "*(--perf-require-baseline)",
            "test_work.py::test_graphs [[]eager[]]: not compared: only 2 baseline run(s)*"
            "(--perf-require-baseline)",
            "test_work.py::test_picky [[]*[]]: not compared: no baseline entry for this id*"
            "(--perf-require-baseline)",
        ]
    )


def test_baseline_of_another_device_is_not_compared(project: pytest.Pytester) -> None:
    def edit(benchmarks: dict[str, Any]) -> None:
        for run in benchmarks["test_work.py::test_busy"]["runs"]:
            run["device"] = "cuda:0"

    _edit_baseline(project, edit)
    result = project.runpytest(*FAST, "--perf-threshold=10", "-k", "busy")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "keisei-perf: NOT COMPARED (baseline recorded with another device, compile settings, threads or "
            "reference): 1 benchmark(s), 1 mode(s); e.g. test_work.py::test_busy: not compared: the baseline "
            "was recorded with device cuda:0 -> cpu; re-baseline"
        ]
    )


def test_a_baseline_of_another_compile_state_is_named_at_the_end(project: pytest.Pytester) -> None:
    """Stored runs that compiled cold, and a run that did not: not compared, and the end of the
    session says why."""

    def edit(benchmarks: dict[str, Any]) -> None:
        for run in benchmarks["test_work.py::test_graphs"]["runs"]:
            run["modes"]["compiled"]["compile_cache"] = "cold"

    _edit_baseline(project, edit)
    result = project.runpytest(*FAST, "--perf-threshold=10", "-k", "test_graphs")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(
        [
            "*NOT COMPARED (compiled in another compile-cache state than the baseline): 1 benchmark(s), "
            "2 mode(s); e.g. *not compiled by inductor, the baseline's 3 run(s) compiled from an empty "
            "compile cache*"
        ]
    )


def test_corrupt_baseline_stops_an_update_before_measuring(project: pytest.Pytester) -> None:
    path = _baseline_file(project)
    path.write_text('{"schema_version": 1, "machine": {}, "benchmarks": []}')
    before = path.read_bytes()
    result = project.runpytest(*FAST, "--perf-update-baseline", "--perf-baseline-runs=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*keisei-perf: {path}: benchmarks must be an object, got []*"])
    assert "baseline run" not in result.stdout.str()
    assert path.read_bytes() == before


def test_another_machine_baseline_is_not_used(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "test-bx")  # a typo must not pass silently
    result = project.runpytest(*FAST)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            # said before the first measurement, not only at the end
            "keisei-perf: machine key test-bx-*: no baseline here, so nothing will be compared (nearest "
            "stored key test-box-* differs in: name test-box -> test-bx)",
            "*keisei-perf results*",
            "keisei-perf: NOT COMPARED (no baseline under this machine key): 3 benchmark(s), 5 mode(s); "
            "e.g. *: not compared: no baseline under this machine key test-bx-*; nearest stored key "
            "test-box-* differs in: name test-box -> test-bx; create one with*",
        ]
    )
    failed = project.runpytest(*FAST, "--perf-require-baseline")
    failed.assert_outcomes(failed=3)


def test_corrupt_baseline_stops_the_run_and_is_left_alone(project: pytest.Pytester) -> None:
    path = _baseline_file(project)
    path.write_text(
        '{"schema_version": 1, "machine": {}, "benchmarks": {"x": {"runs": [{"modes": {"eager": '
        '{"samples_s": [1e-3]}}, "reference_samples_s": [-1]}]}}}'
    )
    before = path.read_bytes()
    result = project.runpytest(*FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"*keisei-perf: {path}: benchmarks[[]'x'[]].runs[[]0[]].reference_samples_s[[]0[]] "
            "must be above 0, got -1"
        ]
    )
    assert path.read_bytes() == before
