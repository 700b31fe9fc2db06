"""Compile-mode variants in one benchmark: named ``compile=`` settings, each its own mode."""

from __future__ import annotations

import json

import pytest

from pytest_keisei_perf.result import ModeResult, PerfResult
from pytest_keisei_perf.variants import cpu_notes, fastest_line

FAST = ("--perf-budget=0.05", "--perf-rounds=5", "-p", "no:cacheprovider")

MATRIX = """
import pytest
import torch

def broken(gm, example_inputs):
    raise RuntimeError("this backend is broken")

MATRIX = {"eager": {"backend": "eager"}, "aot": {"backend": "aot_eager"}, "broken": {"backend": broken}}
NAMED_LIKE_ARGUMENTS = {"dynamic": {"backend": "eager", "dynamic": True}, "mode": {"backend": "eager"}}

@pytest.mark.perf(compile=NAMED_LIKE_ARGUMENTS)
def test_settings_named_like_arguments(perf):
    result = perf.benchmark(torch.sin, torch.ones(8))
    assert list(result.modes) == ["eager", "compiled[dynamic]", "compiled[mode]"]

# inductor (options are its own); a matrix product is an extern kernel, so no C++ is built
@pytest.mark.perf(compile={"options": {"max_autotune": False}})
def test_options_is_an_argument(perf):
    result = perf.benchmark(torch.mm, torch.ones(8, 8), torch.ones(8, 8))
    assert list(result.modes) == ["eager", "compiled"]
    assert result.compile_kwargs["options"] == {"max_autotune": False}

@pytest.mark.perf(compile=MATRIX)
def test_matrix(perf):
    net = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU()).eval()
    result = perf.benchmark(net, torch.randn(8, 32))
    assert list(result.modes) == ["eager", "compiled[eager]", "compiled[aot]", "compiled[broken]"]
    assert result.modes["compiled[broken]"].fallback
    assert not result.modes["compiled[aot]"].fallback
    assert result.modes["compiled[aot]"].compile_time_s is not None
    assert result.modes["compiled[aot]"].graph_count == 1
    assert set(result.speedups) == {"compiled[eager]", "compiled[aot]", "compiled[broken]"}
    assert result.speedup is None  # no single compiled mode
    assert result.accuracy.checked and result.accuracy.passed
    assert result.compile_kwargs["variants"]["compiled[aot]"]["backend"] == "aot_eager"
"""

BAD = """
import pytest

@pytest.mark.perf(compile={"bad]": {}})
def test_bad_name(perf):
    pass

@pytest.mark.perf(compile={"x": {"bogus": 1}})
def test_bad_setting(perf):
    pass
"""


def test_each_named_setting_is_its_own_mode_and_a_fallback_is_shown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_matrix=MATRIX)
    report = pytester.path / "perf.json"
    result = pytester.runpytest(*FAST, f"--perf-json={report}")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*PerfCompileFallbackWarning*torch.compile failed, timing eager instead*this backend is broken*",
            "test_matrix*compiled[[]aot[]]*",
            "test_matrix*compiled[[]broken[]]*fallback*",
        ]
    )
    line = next(
        x for x in result.stdout.lines if "test_matrix.py::test_matrix:" in x and "compile setting" in x
    )
    assert "compiled[broken]" not in line  # a fallback is eager: it takes no part in "fastest"
    assert "compiled[aot]" in line
    assert "compiled[eager]" in line
    data = json.loads(report.read_text())
    entry = next(r for r in data["results"] if r["benchmark_id"].endswith("test_matrix"))
    assert set(entry["modes"]) == {"eager", "compiled[eager]", "compiled[aot]", "compiled[broken]"}
    assert entry["speedups"]["compiled[aot]"]["ci"] is not None


def test_bad_named_settings_are_collection_errors_naming_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad=BAD)
    result = pytester.runpytest(*FAST)
    result.stdout.fnmatch_lines(
        [
            "*test_bad_name: @pytest.mark.perf(compile={'bad]': {}}): compile setting names must be*",
            "*test_bad_setting: @pytest.mark.perf(compile=*): setting 'x': unknown torch.compile "
            "argument(s) 'bogus'*",
        ]
    )


def _mode(name: str, fallback: bool = False) -> ModeResult:
    return ModeResult(name, 1e-3, 1e-5, (1e-3,) * 5, 1, 1, True, fallback=fallback)


def _result(speedups: dict[str, tuple[float, tuple[float, float] | None]], device: str = "cpu") -> PerfResult:
    modes = {"eager": _mode("eager"), **{m: _mode(m) for m in speedups}}
    variants = {m: {"mode": m[len("compiled[") : -1]} for m in speedups}
    return PerfResult("t.py::b", "", device, 1, {"variants": variants}, modes, speedups=speedups)


def test_the_fastest_setting_is_named_only_when_its_interval_clears_the_others() -> None:
    clear = _result({"compiled[default]": (1.2, (1.1, 1.3)), "compiled[max-autotune]": (1.6, (1.45, 1.7))})
    assert fastest_line(clear) == (
        "t.py::b: fastest compile setting: compiled[max-autotune]; speedups over eager: "
        "compiled[default] 1.20x (1.10x-1.30x), compiled[max-autotune] 1.60x (1.45x-1.70x)"
    )
    overlap = _result({"compiled[default]": (1.2, (1.1, 1.5)), "compiled[max-autotune]": (1.3, (1.2, 1.4))})
    line = fastest_line(overlap)
    assert line is not None
    assert line.startswith("t.py::b: no compile setting is distinguishably fastest (intervals overlap)")
    assert fastest_line(_result({"compiled[default]": (1.2, (1.1, 1.3))})) is None


def test_a_cuda_graph_mode_on_a_cpu_says_what_it_does_not_do() -> None:
    result = _result({"compiled[default]": (1.0, None), "compiled[reduce-overhead]": (1.0, None)})
    assert cpu_notes(result) == [
        "t.py::b [compiled[reduce-overhead]]: mode='reduce-overhead' uses CUDA graphs only on CUDA; "
        "on cpu it compiles without them"
    ]
    on_gpu = _result({"compiled[reduce-overhead]": (1.0, None)}, device="cuda:0")
    assert cpu_notes(on_gpu) == []
