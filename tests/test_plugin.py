"""The plugin seen from a user's test suite: real inner pytest sessions through ``pytester``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_keisei_perf import stored_gate
from pytest_keisei_perf.result import Verdict

#: Fast inner runs: tiny budget, few rounds, the eager backend (dynamo only, no inductor codegen).
FAST = ("--perf-budget=0.02", "--perf-rounds=5", "--perf-compile-backend=eager", "-p", "no:cacheprovider")

LINEAR = """
import dataclasses, typing
import pytest, torch

def linear():
    torch.manual_seed(0)
    return torch.nn.Linear(8, 4).eval(), torch.randn(3, 8)
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*FAST, *args)


def test_help_shows_the_option_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        ["*keisei-perf*", "*--perf-update-baseline*", "*--perf-threshold=F*", "*perf_threshold*"]
    )


def test_fixture_marks_the_test_and_prints_the_table(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        LINEAR
        + """
def test_model(perf):
    model, x = linear()
    result = perf.benchmark(model, x)
    assert set(result.modes) == {"eager", "compiled"}
    assert result.speedup is not None and result.speedup > 0
    assert result.speedup_ci is not None and 0 < result.speedup_ci[0] < result.speedup_ci[1]
    assert result.accuracy.passed
    assert result.modes["compiled"].compile_time_s > 0
    assert result.modes["compiled"].graph_count == 1
    assert result.modes["compiled"].graph_breaks == 0
    assert result.modes["compiled"].recompiles == 0
    assert len(result.modes["eager"].samples_s) == 5
    assert result.verdicts["eager"].status == "no-baseline"

def test_plain():
    pass
"""
    )
    result = run(pytester, "-m", "perf", "--strict-markers")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "*keisei-perf: modes eager,compiled, threads 1*",
            "*= keisei-perf results =*",
            "benchmark*mode*median*spread*change*verdict*speedup*comp.",
            "test_model*eager*no-baseline*-*",
            "test_model*compiled*no-baseline*x*s",
        ]
    )


def test_strict_markers_accepts_the_perf_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
@pytest.mark.perf(threshold=0.1)
def test_a(perf):
    perf.benchmark(lambda: None)
"""
    )
    run(pytester, "--strict-markers").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            "perf(treshold=0.1)",
            "*test_bad: @pytest.mark.perf got unknown keyword 'treshold'; known keywords: modes*",
        ),
        ("perf(threshold=-1)", "*test_bad: @pytest.mark.perf(threshold=-1): must be in (0, 10], got -1*"),
        (
            "perf(modes=['eager', 'jit'])",
            "*@pytest.mark.perf(modes=*unknown mode(s) 'jit'; choose from eager, compiled*",
        ),
        ("perf(compile={'mdoe': 'default'})", "*unknown torch.compile argument(s) 'mdoe'*"),
        ("perf(strict_compile='yes')", "*strict_compile='yes'): expected True or False*"),
        ("perf(0.1)", "*takes keyword arguments only*"),
    ],
)
def test_bad_marker_is_a_collection_error(pytester: pytest.Pytester, marker: str, message: str) -> None:
    pytester.makepyfile(
        f"""
import pytest
@pytest.mark.{marker}
def test_bad(perf):
    perf.benchmark(lambda: None)

def test_other():
    pass
"""
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting*", message])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--perf-threshold", "abc"),
            "*keisei-perf: invalid --perf-threshold: expected a number, got 'abc'*",
        ),
        (("--perf-threads", "0"), "*invalid --perf-threads: must be >= 1, got '0'*"),
        (("--perf-modes", "eager,fast"), "*invalid --perf-modes: unknown mode(s) 'fast'*"),
    ],
)
def test_bad_option_is_a_usage_error(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_value_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nperf_alpha = 2\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid perf_alpha in the ini file: must be in (0, 0.5], got 2.0*"])
    pytester.makeini("[pytest]\nperf_alpha = abc\n")  # pytest's own typed conversion fails
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*keisei-perf: invalid perf_alpha in the ini file: expected float, *'abc'*"])


def test_cli_beats_ini_and_marker_beats_both(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nperf_threshold = 0.2\nperf_rounds = 7\n")
    pytester.makepyfile(
        """
import pytest
from pytest_keisei_perf.plugin import session_key

def test_session(request):
    s = request.config.stash[session_key].settings
    assert (s.threshold, s.rounds, s.alpha) == (0.3, 7, 0.05)

@pytest.mark.perf(threshold=0.4, modes=["eager"])
def test_marker(perf, request):
    from pytest_keisei_perf.plugin import _config_key
    assert request.node.stash[_config_key].threshold == 0.4  # the marker beat CLI and ini
    assert request.node.stash[_config_key].rounds == 7  # the ini's, where the marker is silent
    result = perf.benchmark(lambda: None)
    assert list(result.modes) == ["eager"]
"""
    )
    pytester.runpytest("--perf-threshold=0.3", "--perf-budget=0.01").assert_outcomes(passed=2)


def test_named_benchmarks_and_a_repeated_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.perf(modes=["eager"])
def test_two(perf):
    a = perf.benchmark(lambda: None, name="a")
    b = perf.benchmark(lambda x: x, 1, name="b")
    assert [r.name for r in perf.results] == ["a", "b"]

@pytest.mark.perf(modes=["eager"])
def test_repeat(perf):
    perf.benchmark(lambda: None, name="same")
    perf.benchmark(lambda: None, name="same")
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_repeat: a second benchmark with name 'same'; "
            "give each perf.benchmark() call in a test a distinct name=...*"
        ]
    )
    result.stdout.fnmatch_lines(["test_two[[]a[]]*eager*", "test_two[[]b[]]*eager*"])
    assert "Traceback" not in result.stdout.str()


RAISING_BACKEND = """
def raising_backend(gm, example_inputs):
    raise RuntimeError("backend exploded on purpose")
"""


def test_compile_failure_falls_back_with_a_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        LINEAR
        + RAISING_BACKEND
        + """
@pytest.mark.perf(compile={"backend": raising_backend})
def test_fallback(perf):
    model, x = linear()
    result = perf.benchmark(model, x)
    compiled = result.modes["compiled"]
    assert compiled.fallback
    assert "backend exploded on purpose" in compiled.fallback_error
    assert result.accuracy is None
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*PerfCompileFallbackWarning: test_*.py::test_fallback: "
            "torch.compile failed, timing eager instead: *backend exploded on purpose*",
            "test_fallback*compiled*fallback*",
        ]
    )


@pytest.mark.parametrize("how", ["option", "marker"])
def test_strict_compile_fails_the_test(pytester: pytest.Pytester, how: str) -> None:
    strict = ", strict_compile=True" if how == "marker" else ""
    pytester.makepyfile(
        LINEAR
        + RAISING_BACKEND
        + f"""
@pytest.mark.perf(compile={{"backend": raising_backend}}{strict})
def test_strict(perf):
    model, x = linear()
    perf.benchmark(model, x)
"""
    )
    result = run(pytester, *(["--perf-strict-compile"] if how == "option" else []))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*test_strict: torch.compile failed (BackendCompilerFailed: *backend exploded on purpose*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_output_mismatch_under_compile_fails_with_numbers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import torch

class Sneaky(torch.nn.Module):
    def forward(self, x):
        if torch.compiler.is_compiling():
            return (x * 2, x.sum())
        return (x * 2 + 1e-3, x.sum())

def test_sneaky(perf):
    perf.benchmark(Sneaky(), torch.ones(4, 4))
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_sneaky: compiled output does not match eager: output[[]0[]]: max abs error 0.001, "
            "max rel error 0.0005 exceed rtol=1.3e-06, atol=1e-05*"
        ]
    )


def test_nested_and_dataclass_outputs_are_compared_leaf_by_leaf(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import dataclasses, typing
import pytest, torch

class Pair(typing.NamedTuple):
    policy: torch.Tensor
    value: torch.Tensor

@dataclasses.dataclass
class Out:
    pair: Pair
    extras: dict

class Nested(torch.nn.Module):
    def forward(self, x):
        return Out(Pair(x.relu(), x.sum(-1)), {"log": [x.exp(), x.argmax(-1)], "n": 3})

class Drifting(Nested):
    def forward(self, x):
        out = super().forward(x)
        if torch.compiler.is_compiling():
            out.extras["log"][0] = out.extras["log"][0] * 1.5
        return out

def test_nested(perf):
    result = perf.benchmark(Nested(), torch.randn(4, 5), name="same")
    assert result.accuracy.passed

def test_drifting(perf):
    perf.benchmark(Drifting(), torch.randn(4, 5))
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_drifting: compiled output does not match eager: output.extras[[]'log'[]][[]0[]]: max abs*"]
    )


def test_nan_in_compiled_output_is_reported_as_such(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import torch

class NaNWhenCompiled(torch.nn.Module):
    def forward(self, x):
        if torch.compiler.is_compiling():
            return x / torch.zeros_like(x) * 0
        return x

def test_nan(perf):
    perf.benchmark(NaNWhenCompiled(), torch.ones(2, 3))
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*output: non-finite values differ: compiled has 6 NaN and 0 Inf, eager has 0 NaN and 0 Inf*"]
    )


def test_min_speedup_fails_when_confidently_below(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        LINEAR
        + """
@pytest.mark.perf(min_speedup=50)
def test_slow(perf):
    model, x = linear()
    perf.benchmark(model, x)
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_slow: compiled speedup *x (95% CI *x-*x) is below min_speedup 50x*"])


def test_slower_compiled_is_called_out(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest, torch

import time

def sleepy(gm, example_inputs):
    # compiled code that sleeps 2 ms per call: hundreds of times slower than eager on any machine
    def run(*args):
        time.sleep(0.002)
        return gm.forward(*args)
    return run

@pytest.mark.perf(compile={"backend": sleepy})
def test_slower(perf):
    perf.benchmark(torch.sin, torch.ones(8))
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*test_slower: compiled is SLOWER than eager (0.*x, 95% CI *); set min_speedup*"]
    )


def test_require_baseline_fails_without_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
@pytest.mark.perf(modes=["eager"])
def test_x(perf):
    perf.benchmark(lambda: None)
"""
    )
    result = run(pytester, "--perf-require-baseline")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_require_baseline_fails_without_one.py::test_x [[]eager[]]: not compared: "
            "no baseline under this machine key *; create one with pytest -m perf "
            "--perf-update-baseline (--perf-require-baseline)*",
            "keisei-perf: NOT COMPARED (no baseline under this machine key): 1 benchmark(s), 1 mode(s);*",
        ]
    )


def test_disable_calls_each_mode_once_without_compiling(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import torch
calls = []

def fn(x):
    calls.append(torch.compiler.is_compiling())
    return x + 1

def test_smoke(perf):
    result = perf.benchmark(fn, torch.ones(2))
    assert result.disabled
    assert result.modes == {}
    assert calls == [False, False]
"""
    )
    result = run(pytester, "--perf-disable")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*keisei-perf: disabled (smoke run)*", "test_smoke*smoke run*"])


def test_json_report(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        LINEAR
        + """
def test_model(perf):
    model, x = linear()
    perf.benchmark(model, x, name="linear")
"""
    )
    out = tmp_path / "report" / "perf.json"
    run(pytester, f"--perf-json={out}").assert_outcomes(passed=1)
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1
    assert data["machine"]["threads"] == 1
    assert {"cpu_model", "cpu_count", "torch", "python", "numpy", "scipy"} <= set(data["machine"])
    assert data["settings"]["threshold"] == 0.05
    (entry,) = data["results"]
    assert entry["benchmark_id"].endswith("test_model::linear")
    assert entry["compile_kwargs"] == {"backend": "eager"}
    compiled = entry["modes"]["compiled"]
    assert len(compiled["samples_s"]) == compiled["rounds"] == 5
    assert all(s > 0 for s in compiled["samples_s"])
    assert compiled["graph_count"] == 1
    assert compiled["compile_time_s"] > 0
    assert len(entry["reference_samples_s"]) == 5
    assert entry["accuracy"]["passed"] is True
    assert entry["verdicts"]["eager"]["status"] == "no-baseline"
    assert entry["speedup_ci"][0] <= entry["speedup"] <= entry["speedup_ci"][1]


def test_hooks_extend_machine_info_and_observe_results(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(
        """
seen = []
def pytest_keisei_perf_machine_info(config, info):
    info["runner"] = "ci-42"

def pytest_keisei_perf_result(item, result):
    seen.append((item.name, result.name, sorted(result.modes)))

def pytest_sessionfinish(session):
    assert seen == [("test_x", "n", ["eager"])], seen
    print("HOOK-SEEN", seen)
"""
    )
    pytester.makepyfile(
        """
import pytest
@pytest.mark.perf(modes=["eager"])
def test_x(perf):
    perf.benchmark(lambda: None, name="n")
"""
    )
    out = tmp_path / "perf.json"
    result = run(pytester, f"--perf-json={out}", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*HOOK-SEEN*"])
    assert json.loads(out.read_text())["machine"]["runner"] == "ci-42"


def test_perf_modes_option_narrows_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
@pytest.mark.perf(modes=["compiled"])
def test_compiled_only(perf):
    perf.benchmark(lambda: None)

def test_default(perf):
    assert list(perf.benchmark(lambda: None).modes) == ["eager"]
"""
    )
    result = run(pytester, "--perf-modes=eager", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*no mode left to run: --perf-modes eager excludes the marker's modes*"])


def test_threads_are_pinned_while_timing_and_restored(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest, torch
seen = []

def fn():
    seen.append(torch.get_num_threads())

@pytest.mark.perf(modes=["eager"])
def test_threads(perf):
    before = torch.get_num_threads()
    perf.benchmark(fn)
    assert set(seen) == {2}
    assert torch.get_num_threads() == before
"""
    )
    run(pytester, "--perf-threads=2").assert_outcomes(passed=1)


def test_float64_rule_end_to_end(pytester: pytest.Pytester) -> None:
    """A compiled leaf that fails allclose (another summation order) but is as close to the
    float64 answer as eager is passes, and says so."""
    pytester.makepyfile(
        """
import torch

class Cumsum(torch.nn.Module):
    def forward(self, x):
        if torch.compiler.is_compiling():
            c = x.view(100, 100).cumsum(1)
            offsets = c[:, -1].cumsum(0) - c[:, -1]
            return (c + offsets[:, None]).reshape(-1)
        return x.cumsum(0)

def test_cumsum(perf):
    x = torch.randn(10000, generator=torch.Generator().manual_seed(0)) * 100
    result = perf.benchmark(Cumsum(), x)
    assert result.accuracy.passed
    assert result.accuracy.used_fp64_reference
"""
    )
    run(pytester).assert_outcomes(passed=1)


def test_marker_keywords_reach_the_benchmark(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest, torch
from pytest_keisei_perf.plugin import _config_key
seen = []

def fn(x):
    seen.append(torch.is_inference_mode_enabled())
    return x * 2

@pytest.mark.perf(
    modes=["eager"], inference_mode=False, check_outputs=False, rounds=6, budget=0.05, alpha=0.01
)
def test_off(perf, request):
    result = perf.benchmark(fn, torch.ones(3))
    assert seen and not any(seen)
    assert result.accuracy is None
    assert len(result.modes["eager"].samples_s) == 6
    config = request.node.stash[_config_key]
    assert (config.budget_s, config.alpha) == (0.05, 0.01)

@pytest.mark.perf(modes=["eager"])
def test_inference_mode_is_the_default(perf):
    seen.clear()
    perf.benchmark(fn, torch.ones(3))
    assert seen and all(seen)

def pure(x):
    return x * 2

@pytest.mark.perf(rtol=0.5, atol=0.25)
def test_tolerances(perf):
    result = perf.benchmark(pure, torch.ones(3))
    assert (result.accuracy.rtol, result.accuracy.atol) == (0.5, 0.25)
"""
    )
    result = pytester.runpytest("--perf-rounds=5", "--perf-budget=0.01", "--perf-compile-backend=eager")
    result.assert_outcomes(passed=3)


def test_threads_are_pinned_before_compiling(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest, torch
compiled_with = []

def recording(gm, example_inputs):
    compiled_with.append(torch.get_num_threads())
    return gm.forward

@pytest.mark.perf(compile={"backend": recording})
def test_threads(perf):
    perf.benchmark(torch.cos, torch.ones(4))
    assert compiled_with == [2]
"""
    )
    run(pytester, "--perf-threads=2").assert_outcomes(passed=1)


def test_machine_name_and_compile_mode_reach_the_records(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        """
import pytest, torch

def test_x(perf):
    perf.benchmark(torch.sin, torch.ones(4))
"""
    )
    report = tmp_path / "r.json"
    result = pytester.runpytest(
        "--perf-rounds=5", "--perf-budget=0.01", "--perf-compile-backend=eager",
        "--perf-compile-mode=reduce-overhead", "--perf-machine=lab box 7", f"--perf-json={report}",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    data = json.loads(report.read_text())
    assert data["results"][0]["compile_kwargs"] == {"backend": "eager", "mode": "reduce-overhead"}
    result.stdout.fnmatch_lines(["*no baseline under this machine key lab-box-7-*"])


def _inconclusive(
    current: Any, runs: Any, context: Any, *, label: str, nodeid: str, missing: Any
) -> tuple[dict[str, Verdict], list[str]]:
    return {
        m: Verdict(mode=m, status="inconclusive", message=f"{label} [{m}]: inconclusive: shim")
        for m in current.modes
    }, []


def test_fail_inconclusive_and_the_speedup_warning_are_wired(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate's statistics are tested in test_stats/test_gate; this pins the plugin's wiring."""
    monkeypatch.setattr(stored_gate, "decide", _inconclusive)
    monkeypatch.setattr(stored_gate, "speedup_drop", lambda *a, **k: "compiled/eager speedup dropped (shim)")
    pytester.makepyfile(
        """
import torch
def test_x(perf):
    perf.benchmark(torch.sin, torch.ones(4))
"""
    )
    fast = ("--perf-rounds=5", "--perf-budget=0.01", "--perf-compile-backend=eager", "-p", "no:cacheprovider")
    passed = pytester.runpytest(*fast)
    passed.assert_outcomes(passed=1, warnings=1)
    passed.stdout.fnmatch_lines(
        [
            "*PerfSpeedupWarning: test_*.py::test_x: compiled/eager speedup dropped (shim)*",
            "keisei-perf: INCONCLUSIVE (compared, but the answer is unclear): 1 benchmark(s), 2 mode(s); "
            "e.g. test_*.py::test_x [[]eager[]]: inconclusive: shim; --perf-fail-inconclusive fails them",
        ]
    )
    failed = pytester.runpytest(*fast, "--perf-fail-inconclusive")
    failed.assert_outcomes(failed=1, warnings=1)
    failed.stdout.fnmatch_lines(
        [
            "*test_x [[]eager[]]: inconclusive: shim (--perf-fail-inconclusive)*",
            "keisei-perf: INCONCLUSIVE (*; they fail (--perf-fail-inconclusive)",
        ]
    )


def test_a_benchmark_failing_its_smoke_run_is_left_out_of_the_update(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "smoke-box")
    pytester.makepyfile(
        """
import pytest, torch

@pytest.mark.perf(modes=["eager"])
def test_good(perf):
    perf.benchmark(torch.sin, torch.ones(4))

@pytest.mark.perf(modes=["eager"])
def test_broken(perf):
    perf.benchmark(lambda: 1 / 0)
"""
    )
    result = pytester.runpytest(
        "--perf-rounds=5", "--perf-budget=0.01", "-p", "no:cacheprovider", "--perf-update-baseline",
        "--perf-baseline-runs=3", "--perf-compile-backend=eager",
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=1)
    (path,) = (pytester.path / "baselines").glob("smoke-box-*.json")
    assert list(json.loads(path.read_text())["benchmarks"]) == [
        "test_a_benchmark_failing_its_smoke_run_is_left_out_of_the_update.py::test_good"
    ]


COMPARE = """
import pytest, torch

def slow(x):
    for _ in range(200):
        y = x.sin()
    return y

def fast(x):
    return x.sin()

def off(x):
    return x.sin() + 1e-3

@pytest.mark.perf(min_speedup=5)
def test_fast_wins(perf):
    result = perf.compare({"slow": slow, "fast": fast}, torch.ones(64), name="sin")
    assert list(result.modes) == ["slow", "fast"]
    ratio, ci = result.speedups["fast"]
    assert ratio > 5 and ci[0] > 5  # 200x the work: orders of magnitude above any noise
    assert result.accuracy.passed

@pytest.mark.perf(min_speedup=1)
def test_slow_loses(perf):
    perf.compare({"fast": fast, "slow": slow}, torch.ones(64))

def test_outputs_are_checked(perf):
    perf.compare({"fast": fast, "off": off}, torch.ones(64))

def test_bad_variants(perf):
    perf.compare({"only": fast}, torch.ones(64))
"""


def test_compare_times_variants_against_the_first(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(COMPARE)
    junit = tmp_path / "junit.xml"
    result = pytester.runpytest("--perf-rounds=5", "--perf-budget=0.05", f"--junitxml={junit}")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "*test_slow_loses: slow is 0.0*x as fast as fast (95% CI *) is below min_speedup 1x: the "
            "whole interval lies below it*",
            "*test_outputs_are_checked: off output does not match fast: output: max abs error 0.001*",
            "*test_bad_variants: perf.compare() needs a mapping of at least two named callables*",
            "*PerfDeprecationWarning: keisei-perf: min_speedup in perf.compare() now means what it means*",
            "test_fast_wins[[]sin[]]*slow*",
            "test_fast_wins[[]sin[]]*fast*x*",
        ]
    )
    assert "compiled is SLOWER" not in result.stdout.str()
    xml = junit.read_text()
    assert 'name="perf.sin.fast.speedup"' in xml
    assert 'name="perf.sin.slow.median_s"' in xml


def test_compared_variants_take_part_in_baselines(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "compare-box")
    pytester.makepyfile(
        """
import torch

def plain(x):
    return x.sin()

def fused(x):
    return torch.sin(x)

def test_variants(perf):
    perf.compare({"plain": plain, "fused": fused}, torch.ones(64))
"""
    )
    fast = ("--perf-rounds=5", "--perf-budget=0.02", "-p", "no:cacheprovider")
    made = pytester.runpytest(*fast, "--perf-update-baseline", "--perf-baseline-runs=3")
    assert made.ret == pytest.ExitCode.OK, made.stdout.str()
    (path,) = (pytester.path / "baselines").glob("compare-box-*.json")
    (entry,) = json.loads(path.read_text())["benchmarks"].values()
    assert [sorted(run["modes"]) for run in entry["runs"]] == [["fused", "plain"]] * 3
    gated = pytester.runpytest(*fast, "-v", "--perf-threshold=10")
    assert gated.ret == pytest.ExitCode.OK, gated.stdout.str()
    gated.stdout.re_match_lines(
        [r"test_variants\s+plain\s.*\s(pass|improvement)\s", r"test_variants\s+fused\s.*"]
    )
    assert "NOT COMPARED" not in gated.stdout.str()
