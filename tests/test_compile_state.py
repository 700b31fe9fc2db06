"""Compile state as a condition: warm and cold runs never compared with each other, the cold
state measured in a fresh process from an empty cache, and what compiling costs."""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_keisei_perf import _compat
from pytest_keisei_perf.compile_state import (
    COLD_MODE,
    CompileTimes,
    break_even_calls,
    measured_states,
    merge_cold,
    needs_warm_rerun,
    state_gap,
    with_economics,
)
from pytest_keisei_perf.gate import GateContext, decide
from pytest_keisei_perf.record import RunRecord
from pytest_keisei_perf.result import ModeResult, PerfResult, Verdict
from pytest_keisei_perf.simulate import make_run


# -- pieces --------------------------------------------------------------------------------------
def test_break_even_is_compile_time_over_the_saving_per_call() -> None:
    assert break_even_calls(2.0, eager_s=3e-3, compiled_s=1e-3) == pytest.approx(1000)
    assert break_even_calls(2.0, eager_s=1e-3, compiled_s=1e-3) == "never"
    assert break_even_calls(2.0, eager_s=1e-3, compiled_s=2e-3) == "never"
    assert break_even_calls(None, eager_s=3e-3, compiled_s=1e-3) is None


def test_cache_state_comes_from_the_fx_graph_counters() -> None:
    state = _compat.compile_cache_state
    assert state({"inductor.fxgraph_cache_hit": 2}) == "warm"
    assert state({"inductor.fxgraph_cache_miss": 1, "aot_autograd.autograd_cache_miss": 1}) == "cold"
    assert state({"inductor.fxgraph_cache_hit": 1, "inductor.fxgraph_cache_miss": 1}) == "partly warm"
    assert state({"aot_autograd.autograd_cache_hit": 1}) is None  # no inductor graph
    assert measured_states("both") == ("warm", "cold")
    assert measured_states("cold") == ("cold",)


def _mode(name: str, median: float, cache: str | None = None, compile_s: float | None = None) -> ModeResult:
    return ModeResult(
        mode=name, median_s=median, iqr_s=median / 50, samples_s=(median,) * 5, calls_per_round=1,
        warmup_calls=3, warmup_stable=True, compile_time_s=compile_s, compile_cache=cache,
    )  # fmt: skip


def _result(
    compiled_s: float, cache: str, compile_s: float, speedup_ci: tuple[float, float], bench: str = "b"
) -> PerfResult:
    return PerfResult(
        nodeid="t.py::" + bench,
        name="",
        device="cpu",
        threads=1,
        compile_kwargs={"backend": "inductor"},
        modes={"eager": _mode("eager", 3e-3), "compiled": _mode("compiled", compiled_s, cache, compile_s)},
        speedup=3e-3 / compiled_s,
        speedup_ci=speedup_ci,
        test_id="t.py::" + bench,
    )


def test_economics_take_the_other_state_from_the_kept_times(tmp_path: Path) -> None:
    times = CompileTimes(tmp_path / "times.json")
    times.note(_result(2e-3, "cold", 20.0, (1.4, 1.6)))
    times.save()
    warm = with_economics(_result(2e-3, "warm", 4.0, (1.4, 1.6)), CompileTimes(tmp_path / "times.json"))
    compiled = warm.modes["compiled"]
    assert (compiled.warm_compile_time_s, compiled.cold_compile_time_s) == (4.0, 20.0)
    assert dict(compiled.break_even_calls or {}) == pytest.approx({"cold": 20_000, "warm": 4_000})
    # another device, backend, thread count or torch: another compile, not this one's time
    other = dataclasses.replace(_result(2e-3, "warm", 4.0, (1.4, 1.6)), threads=4)
    assert with_economics(other, times).modes["compiled"].cold_compile_time_s is None
    slower = with_economics(_result(4e-3, "warm", 4.0, (0.7, 0.8)), None)
    assert slower.modes["compiled"].break_even_calls == {"warm": "never"}


def test_economics_cover_named_settings_and_sweep_shapes(tmp_path: Path) -> None:
    """Every compiled mode gets its compile times and break-even, against its own eager mode
    (``eager[b4]`` for a sweep's ``compiled[b4]``), and keeps its times under its own key."""
    modes = {
        "eager": _mode("eager", 3e-3),
        "compiled[default]": _mode("compiled[default]", 2e-3, "cold", 10.0),
        "compiled[max-autotune]": _mode("compiled[max-autotune]", 1e-3, "cold", 30.0),
        "eager[b4]": _mode("eager[b4]", 5e-3),
        "compiled[b4]": _mode("compiled[b4]", 4e-3, "cold", 2.0),
    }
    cold = dataclasses.replace(_result(2e-3, "cold", 1.0, (1.4, 1.6)), modes=modes)
    times = CompileTimes(tmp_path / "times.json")
    times.note(cold)
    warm_modes = {
        m: dataclasses.replace(
            r, compile_cache="warm" if r.compile_time_s else None, compile_time_s=r.compile_time_s and 1.0
        )
        for m, r in modes.items()
    }
    warm = with_economics(dataclasses.replace(cold, modes=warm_modes), times)
    assert warm.modes["compiled[default]"].cold_compile_time_s == 10.0
    assert warm.modes["compiled[max-autotune]"].cold_compile_time_s == 30.0
    assert dict(warm.modes["compiled[default]"].break_even_calls or {}) == pytest.approx(
        {"cold": 10_000, "warm": 1_000}
    )
    assert dict(warm.modes["compiled[b4]"].break_even_calls or {}) == pytest.approx(
        {"cold": 2_000, "warm": 1_000}
    )
    assert warm.modes["eager"].break_even_calls is None


def test_a_corrupt_times_file_is_only_a_missing_hint(tmp_path: Path) -> None:
    path = tmp_path / "times.json"
    path.write_text("{not json")
    assert CompileTimes(path).lookup(_result(2e-3, "warm", 4.0, (1.4, 1.6)), "cold") is None


def test_disjoint_intervals_name_the_slower_state() -> None:
    warm, cold = _result(2.5e-3, "warm", 1.5, (0.98, 1.05)), _result(1.95e-3, "cold", 6.0, (1.50, 1.57))
    message = state_gap(warm, cold)
    assert message is not None
    assert "code loaded from the compile cache runs 1.28x slower than freshly compiled" in message
    assert "0.98x-1.05x" in message
    assert "1.50x-1.57x" in message
    assert state_gap(warm, _result(2.4e-3, "cold", 6.0, (1.0, 1.3))) is None  # overlapping


def test_merge_puts_the_cold_compiled_mode_beside_the_warm_one() -> None:
    warm, cold = _result(2.5e-3, "warm", 1.5, (0.98, 1.05)), _result(1.95e-3, "cold", 6.0, (1.50, 1.57))
    cold = dataclasses.replace(cold, verdicts={"compiled": Verdict(mode="compiled", status="pass")})
    merged = merge_cold(warm, cold)
    assert list(merged.modes) == ["eager", "compiled", COLD_MODE]
    assert merged.modes[COLD_MODE].compile_cache == "cold"
    assert merged.verdicts[COLD_MODE].mode == COLD_MODE
    assert merged.speedups["compiled"][0] == pytest.approx(1.2)
    assert merged.speedups[COLD_MODE][0] == pytest.approx(3e-3 / 1.95e-3)
    assert (
        json.loads(json.dumps(merged.to_dict(), default=str))["modes"][COLD_MODE]["compile_cache"] == "cold"
    )


def test_only_an_empty_cache_asks_for_a_warm_rerun() -> None:
    assert needs_warm_rerun(_result(2e-3, "cold", 9.0, (1, 2)))
    assert needs_warm_rerun(_result(2e-3, "partly warm", 9.0, (1, 2)))
    assert not needs_warm_rerun(_result(2e-3, "warm", 2.0, (1, 2)))
    eager_only = _result(2e-3, "warm", 2.0, (1, 2))
    assert not needs_warm_rerun(dataclasses.replace(eager_only, modes={"eager": eager_only.modes["eager"]}))


# -- the gate ------------------------------------------------------------------------------------
def _stored(cache: str | None, level: float = 0.0) -> RunRecord:
    run = make_run({"eager": level, "compiled": level})
    modes = dict(run.modes)
    modes["compiled"] = dataclasses.replace(modes["compiled"], compile_cache=cache)
    return dataclasses.replace(run, modes=modes)


def test_runs_compare_only_within_one_compile_state() -> None:
    context = GateContext(threshold=0.05, alpha=0.05, total_comparisons=2, confirm=None)
    cold_runs = [_stored("cold", v) for v in (0.0, 0.01, -0.01)]
    verdicts, failures = decide(_stored("warm"), cold_runs, context, label="b", nodeid="t::b")
    assert {v.not_compared for v in verdicts.values()} == {"compile-state"}
    assert "loaded from a warm compile cache" in verdicts["compiled"].message
    assert "compiled from an empty compile cache" in verdicts["compiled"].message
    assert failures == []
    # a baseline of both states: a warm run is decided by the warm runs alone
    warm_runs = [_stored("warm", v) for v in (0.0, 0.01, -0.01)]
    slow_cold = [_stored("cold", 0.5) for _ in range(3)]
    mixed, _ = decide(_stored("warm"), [*warm_runs, *slow_cold], context, label="b", nodeid="t::b")
    assert mixed["compiled"].status == "pass"
    assert mixed["compiled"].baseline_runs == 3


# -- through pytest ------------------------------------------------------------------------------
#: A matrix product alone: inductor calls its extern kernel and generates no C++, so a cold compile
#: (a real fx-graph cache miss) costs about a second instead of a C++ build's 10-20 s here.
INDUCTOR_SUITE = """
import torch

def work(x):
    return x @ x

def test_work(perf):
    perf.benchmark(work, torch.ones(8, 8))
"""
INDUCTOR = (
    "--perf-budget=0.05",
    "--perf-rounds=5",
    "--perf-compile-backend=inductor",
    "--perf-confirm-runs=0",
)


def test_both_states_side_by_side_from_an_empty_cache(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's cache starts empty: its own compile is cold, so the warm row is re-measured
    in a fresh process that loads the cache; the cold row comes from a fresh process with an
    empty cache of its own. Table, -v line, JSON and JUnit carry both."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    pytester.makepyfile(INDUCTOR_SUITE)
    result = pytester.runpytest_subprocess(
        *INDUCTOR,
        "-v",
        "--perf-compile-state=both",
        "--perf-json=report.json",
        "--junitxml=junit.xml",
        "--perf-markdown=summary.md",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*the compile cache was cold in this session; measuring again in a fresh process*",
            "*keisei-perf results*",
            "test_work*compiled *",
            "test_work*compiled-cold *",
            "*::test_work [[]compiled, warm cache[]]: compile * warm, * cold;*",
            "*::test_work [[]compiled-cold, cold cache[]]: compile *",
        ]
    )
    data = json.loads((pytester.path / "report.json").read_text())
    (entry,) = data["results"]
    warm, cold = entry["modes"]["compiled"], entry["modes"][COLD_MODE]
    assert (warm["compile_cache"], cold["compile_cache"]) == ("warm", "cold")
    assert warm["compile_counters"]["inductor.fxgraph_cache_hit"] >= 1
    assert cold["compile_counters"]["inductor.fxgraph_cache_miss"] >= 1
    assert "inductor.fxgraph_cache_hit" not in cold["compile_counters"]
    # both compile times are known: the session's own cold compile, and the warm one
    assert warm["cold_compile_time_s"] > 0
    assert warm["warm_compile_time_s"] == warm["compile_time_s"]
    assert set(warm["break_even_calls"]) == {"cold", "warm"}
    assert set(entry["speedups"]) == {"compiled", COLD_MODE}
    props = {
        p.get("name"): p.get("value")
        for p in ET.parse(pytester.path / "junit.xml").getroot().iter("property")
    }
    assert props["perf.compiled.compile_cache"] == "warm"
    assert props[f"perf.{COLD_MODE}.compile_cache"] == "cold"
    assert f"perf.{COLD_MODE}.speedup" in props
    assert "perf.compiled.break_even_calls.cold" in props
    assert entry["verdicts"][COLD_MODE]["mode"] == COLD_MODE
    assert math.isfinite(cold["median_s"])
    markdown = (pytester.path / "summary.md").read_text()
    assert "| compile | break-even calls |" in markdown
    assert f"| {COLD_MODE} |" in markdown
    assert "never warm / never cold" in markdown or " warm / " in markdown


def test_compile_state_option_is_validated(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--perf-compile-state=lukewarm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*invalid --perf-compile-state: expected one of warm, cold, both, got 'lukewarm'*"]
    )
    pytester.makeini("[pytest]\nperf_compile_state = cold\n")
    ok = pytester.runpytest("-p", "no:cacheprovider")
    ok.assert_outcomes(passed=1)


def test_cold_state_measures_in_a_fresh_process_with_its_own_empty_cache(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session runs the test body, but the benchmarks are timed by a fresh process whose
    inductor and Triton caches point at a new empty folder, removed when it ends; two benchmarks
    of one function in one test both compile cold (each gets an empty folder of its own)."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    pytester.makepyfile(
        """
import os, torch

def work(x):
    return x @ x

def test_work(perf):
    folders = os.environ["TORCHINDUCTOR_CACHE_DIR"], os.environ.get("TRITON_CACHE_DIR", "-")
    with open("seen.txt", "a") as handle:
        handle.write(" ".join(folders) + "\\n")
    perf.benchmark(work, torch.ones(8, 8), name="first")
    perf.benchmark(work, torch.ones(8, 8), name="again")
"""
    )
    result = pytester.runpytest_subprocess(*INDUCTOR, "--perf-compile-state=cold", "--perf-json=report.json")
    result.assert_outcomes(passed=1)
    session, worker = (line.split() for line in (pytester.path / "seen.txt").read_text().splitlines())
    assert "keisei-perf/inductor" in session[0]
    assert Path(worker[0]).name.startswith("keisei-perf-cold-cache-")
    assert worker[1] == str(Path(worker[0]) / "triton")
    assert not Path(worker[0]).exists()
    entries = json.loads((pytester.path / "report.json").read_text())["results"]
    assert [e["name"] for e in entries] == ["first", "again"]
    assert [e["modes"]["compiled"]["compile_cache"] for e in entries] == ["cold", "cold"]
    assert not (pytester.path / ".pytest_cache" / "keisei-perf" / "inductor").exists()  # nothing warm


def test_an_update_on_an_empty_cache_stores_only_warm_runs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first fresh process compiles cold and fills the cache; it is measured again, so every
    stored run is in the state CI will be in."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "warm-box")
    pytester.makepyfile(INDUCTOR_SUITE)
    result = pytester.runpytest_subprocess(*INDUCTOR, "--perf-update-baseline", "--perf-baseline-runs=3")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*::test_work: the compile cache was cold; measuring again, warm"])
    (path,) = (pytester.path / "baselines").glob("warm-box-*.json")
    (entry,) = json.loads(path.read_text())["benchmarks"].values()
    assert [run["modes"]["compiled"]["compile_cache"] for run in entry["runs"]] == ["warm"] * 3
