"""The edges of a verdict: ids that survive another rootdir, workers that deliver or fail, the
user's configuration in fresh processes, and a plugin that costs nothing when no perf test runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pytest
from extras import need

from pytest_keisei_perf.ids import stable_test_id
from pytest_keisei_perf.workers import forwarded_args

FAST = ("--perf-budget=0.02", "--perf-rounds=5", "--perf-modes=eager", "-p", "no:cacheprovider")

BUSY = """
import pytest

@pytest.mark.perf
def test_busy(perf):
    perf.benchmark(sum, range(2000))
"""


def test_ids_are_relative_to_the_project_root(tmp_path: pytest.TempPathFactory) -> None:
    root = tmp_path / "proj"  # type: ignore[operator]
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    test_file = root / "tests" / "test_x.py"
    test_file.write_text("")
    parent = root.parent
    # the rootdir pytest picked when --perf-baseline-dir /elsewhere was a separate argument
    assert (
        stable_test_id("proj/tests/test_x.py::test_a[1]", test_file, parent) == "tests/test_x.py::test_a[1]"
    )
    assert stable_test_id("tests/test_x.py::C::test_b", test_file, root) == "tests/test_x.py::C::test_b"
    loose = parent / "loose"
    loose.mkdir()
    (loose / "test_y.py").write_text("")
    found = stable_test_id("test_y.py::t", loose / "test_y.py", loose)
    assert found == "test_y.py::t" or found.endswith("loose/test_y.py::t")


def test_a_baseline_outside_the_project_is_found_from_any_rootdir(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU trial's silent pass: ``--perf-baseline-dir /ci/baselines`` as a separate argument
    moved the rootdir, every id gained a prefix and nothing was compared."""
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "ids-box")
    project = pytester.mkdir("proj")
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_s.py").write_text(BUSY)
    store = pytester.path / "ci" / "baselines"
    monkeypatch.chdir(project)
    made = pytester.runpytest(
        *FAST, f"--perf-baseline-dir={store}", "--perf-update-baseline", "--perf-baseline-runs=3"
    )
    assert made.ret == pytest.ExitCode.OK, made.stdout.str()
    (path,) = store.glob("ids-box-*.json")
    assert list(json.loads(path.read_text())["benchmarks"]) == ["tests/test_s.py::test_busy"]
    monkeypatch.chdir(pytester.path)
    report = pytester.path / "report.json"
    gated = pytester.runpytest(
        *FAST, "proj/tests/test_s.py", "--perf-baseline-dir", str(store), f"--perf-json={report}",
        "--perf-threshold=10",
    )  # fmt: skip
    assert gated.ret == pytest.ExitCode.OK, gated.stdout.str()
    assert "NOT COMPARED" not in gated.stdout.str()
    (result,) = json.loads(report.read_text())["results"]
    assert result["benchmark_id"] == "tests/test_s.py::test_busy"
    assert result["verdicts"]["eager"]["status"] in {"pass", "improvement"}


def test_baseline_runs_below_three_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BUSY)
    result = pytester.runpytest("--perf-update-baseline", "--perf-baseline-runs=2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid --perf-baseline-runs: must be >= 3, got '2'*"])


def test_a_crashing_baseline_worker_fails_the_update_and_writes_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "crash-box")
    pytester.makepyfile(
        """
import os, sys
import pytest

@pytest.mark.perf
def test_crash(perf):
    if "--perf-worker" in sys.argv:
        os._exit(3)  # a hard crash: no report, no pytest summary
    perf.benchmark(sum, range(10))
"""
    )
    result = pytester.runpytest(*FAST, "--perf-update-baseline", "--perf-baseline-runs=3")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*keisei-perf: baseline NOT updated (nothing was written): worker process exited with 3 and "
            "wrote no report:*",
        ]
    )
    assert not list((pytester.path / "baselines").glob("*.json"))


def test_a_fresh_process_that_yields_no_result_fails_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "skip-box")
    pytester.makepyfile(
        """
import os, sys
import pytest

@pytest.mark.perf
def test_flaky(perf):
    if "--perf-worker" in sys.argv and os.environ.get("KP_SKIP_IN_WORKER"):
        pytest.skip("gone in fresh processes")
    perf.benchmark(sum, range(int(os.environ.get("KP_N", "2000"))))
"""
    )
    made = pytester.runpytest(*FAST, "--perf-update-baseline", "--perf-baseline-runs=3")
    assert made.ret == pytest.ExitCode.OK, made.stdout.str()
    monkeypatch.setenv("KP_SKIP_IN_WORKER", "1")
    monkeypatch.setenv("KP_N", "200000")  # 100x the work: certainly a suspect
    result = pytester.runpytest(*FAST, "--perf-confirm-runs=1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*::test_flaky: measuring in a fresh process (warm compile cache) failed: worker process "
            "(exit 0) yielded no result for *::test_flaky:*",
            "*1 skipped in *",  # the worker's own last lines
        ]
    )
    assert "During handling" not in result.stdout.str()


def test_workers_run_under_the_users_configuration(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conftest option, an ini file with xdist in addopts, and a -o override reach every
    fresh process; xdist itself does not (two timings side by side corrupt each other)."""
    need("xdist")
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "config-box")
    pytester.makeini("[pytest]\naddopts = -n 0 -p no:randomly\nkp_colour = grey\n")
    pytester.makeconftest(
        """
def pytest_addoption(parser):
    parser.addoption("--kp-size", default="1")
    parser.addini("kp_colour", "a colour")
"""
    )
    pytester.makepyfile(
        """
import os
import pytest

@pytest.mark.perf
def test_configured(perf, request):
    assert request.config.getoption("kp_size") == "7"
    assert request.config.getini("kp_colour") == "blue"
    assert not os.environ.get("PYTEST_XDIST_WORKER")
    perf.benchmark(sum, range(100))
"""
    )
    result = pytester.runpytest_subprocess(
        *FAST, "--kp-size", "7", "-o", "kp_colour=blue", "--perf-update-baseline", "--perf-baseline-runs=3"
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*stored 3 runs of 1 benchmark(s)*"])


def test_forwarded_args_keep_configuration_and_drop_selection_output_and_parallelism() -> None:
    parser = argparse.ArgumentParser()
    for flag, dest, nargs in (
        ("-p", "plugins", None), ("-o", "override_ini", None), ("-k", "keyword", None),
        ("-n", "numprocesses", None), ("-v", "verbose", 0), ("--kp-size", "kp_size", None),
        ("--perf-threads", "perf_threads", None), ("--strict-markers", "strict_markers", 0),
    ):  # fmt: skip
        if nargs == 0:
            parser.add_argument(flag, dest=dest, action="store_true")
        else:
            parser.add_argument(flag, dest=dest)
    actions = parser._option_string_actions
    tokens = [
        "tests/x.py", "-p", "no:randomly", "-pxdist", "-o", "addopts=-n 2", "-o", "x=1", "-k", "slow",
        "-n", "2", "-v", "--kp-size=7", "--kp-size", "8", "--perf-threads=2", "--strict-markers",
        "--unknown-flag", "positional",
    ]  # fmt: skip
    assert forwarded_args(tokens, actions) == [
        "-p", "no:randomly", "-o", "x=1", "--kp-size=7", "--kp-size", "8", "--strict-markers",
        "--unknown-flag",
    ]  # fmt: skip


def test_the_plugin_costs_nothing_when_no_perf_test_is_selected(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import os, sys
def pytest_sessionfinish():
    print("TORCH_IMPORTED", "torch" in sys.modules)
    print("SCIPY_STATS_IMPORTED", "scipy.stats" in sys.modules)
    print("CACHE_ENV", os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
"""
    )
    pytester.makepyfile(
        """
import pytest
def test_plain():
    pass

@pytest.mark.perf
def test_perf(perf):
    pass
"""
    )
    env_before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    result = pytester.runpytest_subprocess("-s", "-m", "not perf")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*TORCH_IMPORTED False*", "*SCIPY_STATS_IMPORTED False*", f"*CACHE_ENV {env_before}*"]
    )
    assert "keisei-perf results" not in result.stdout.str()


def test_a_worker_process_ends_as_an_interpreter_would_with_pytests_exit_code(tmp_path: Path) -> None:
    """The worker program skips only the teardown of objects: the exit code, atexit handlers,
    non-daemon threads, thread pools left running and buffered output all come through."""
    import subprocess

    from pytest_keisei_perf.workers import WORKER_PROGRAM

    (tmp_path / "test_end.py").write_text(
        """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

POOLS = []

def test_fails():
    atexit.register(lambda: Path("atexit.txt").write_text("ran"))
    def late():
        time.sleep(0.3)
        Path("thread.txt").write_text("ran")
    threading.Thread(target=late).start()
    POOLS.append(ThreadPoolExecutor(1))  # left running: the interpreter's exit stops it
    POOLS[-1].submit(time.sleep, 0)
    sys.stdout.write("unflushed-tail")
    assert False
"""
    )
    proc = subprocess.run(
        [sys.executable, "-c", WORKER_PROGRAM, "-s", "-q", "-p", "no:cacheprovider", "test_end.py"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout + proc.stderr
    assert "1 failed" in proc.stdout
    assert "unflushed-tail" in proc.stdout
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "thread.txt").read_text() == "ran"


def test_an_eager_benchmark_of_a_module_does_not_import_dynamo(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dynamo's import is most of a compiled fresh process's start; an eager-only session of an
    nn.Module must not pay it. Asking whether the module holds a compiled one imported it, and so
    did asking whether an inherited TORCHINDUCTOR_CACHE_DIR is inductor's default."""
    from pytest_keisei_perf._compat import torch_default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", torch_default_cache_dir())
    pytester.makeconftest(
        """
import sys
def pytest_sessionfinish():
    print("DYNAMO_IMPORTED", "torch._dynamo" in sys.modules)
"""
    )
    pytester.makepyfile(
        """
import torch

def test_module(perf):
    perf.benchmark(torch.nn.Linear(4, 2).eval(), torch.ones(3, 4))
"""
    )
    result = pytester.runpytest_subprocess("-s", *FAST)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*DYNAMO_IMPORTED False*"])


def test_a_collection_alone_loads_no_baseline_and_does_not_import_torch(pytester: pytest.Pytester) -> None:
    """``--collect-only`` (an IDE's test discovery, the A/B and prune probes) measures nothing: it
    must not pay torch's import for the timing set-up, nor speak of baselines it never compares."""
    pytester.makeconftest(
        """
import sys
def pytest_sessionfinish():
    print("TORCH_IMPORTED", "torch" in sys.modules)
"""
    )
    pytester.makepyfile(
        """
def work():
    return sum(range(100))

def test_work(perf):
    perf.benchmark(work)
"""
    )
    result = pytester.runpytest_subprocess("-s", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*::test_work", "*TORCH_IMPORTED False*"])
    assert "machine key" not in result.stdout.str() + result.stderr.str()


def test_inductors_default_cache_folder_is_known_without_importing_inductor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from pytest_keisei_perf._compat import torch_default_cache_dir

    monkeypatch.delitem(sys.modules, "torch._inductor")  # as in a process that never loaded it
    assert torch_default_cache_dir() == default_cache_dir()


def test_a_compiled_module_inside_another_is_still_seen() -> None:
    import torch

    from pytest_keisei_perf._compat import holds_compiled_module

    plain = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert not holds_compiled_module(plain)
    assert holds_compiled_module(torch.nn.Sequential(torch.compile(torch.nn.Linear(2, 2), backend="eager")))


def test_bh_counts_every_benchmark_and_mode(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
from pytest_keisei_perf.plugin import session_key
def pytest_keisei_perf_result(item, result):
    print("EXPECTED", item.config.stash[session_key].expected_comparisons)
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.perf(modes=["eager"])
def test_one(perf):
    perf.benchmark(sum, range(3))

@pytest.mark.perf
def test_two(perf):
    perf.benchmark(sum, range(3), name="a")
    perf.benchmark(sum, range(3), name="b")

def test_not_perf():
    pass
"""
    )
    result = pytester.runpytest("-s", "--perf-disable")
    result.assert_outcomes(passed=3)
    # eager + (eager, compiled): named benchmarks inside a test add theirs as they are decided
    result.stdout.fnmatch_lines(["*EXPECTED 3*"])


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX paths in the expectations")


def test_the_device_can_be_stated_and_a_bad_one_is_named(pytester: pytest.Pytester) -> None:
    from pytest_keisei_perf.runner import detect_device

    assert detect_device(lambda: None, (), {}) == "cpu"
    assert detect_device(lambda: None, (), {}, "cuda:1") == "cuda:1"  # stated: no CUDA query needed
    assert detect_device(lambda batch: None, ({"obs": [1]},), {}, "cpu") == "cpu"
    pytester.makepyfile(
        """
def test_bad(perf):
    perf.benchmark(lambda: None, device="gpu")
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_bad: perf.benchmark(device='gpu') is not a torch device: *"])
