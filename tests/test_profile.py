"""``--perf-profile`` and ``focus=``: where the time goes, outside the timed rounds, and the bound
that a part's share puts on replacing it. One fresh inner session covers the plugin's side."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_keisei_perf import profiling, runner
from pytest_keisei_perf.breakdown import Breakdown, FocusError, Share, amdahl_line, focus_share, skew_note
from pytest_keisei_perf.settings import BenchmarkConfig


class Slow(nn.Module):
    """Many times the work of everything else in :class:`WithSlowPart`."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(256, 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(40):
            x = torch.tanh(x @ self.weight)
        return x


class WithSlowPart(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fast = nn.Linear(256, 256)
        self.slow = Slow()
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(256, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.slow(self.fast(x)))


def _config(**overrides: Any) -> BenchmarkConfig:
    base = BenchmarkConfig(
        modes=("eager", "compiled"), threshold=0.05, alpha=0.05, rtol=None, atol=None, min_speedup=None,
        compile_kwargs={"backend": "eager"}, budget_s=0.05, rounds=5, profile=True,
    )  # fmt: skip
    return BenchmarkConfig(**{**base.__dict__, **overrides})


def test_a_deliberately_slow_submodule_is_named_the_largest_share(tmp_path: Path) -> None:
    model, x = WithSlowPart().eval(), torch.randn(8, 256)
    with torch.inference_mode():
        # warm first, as a benchmark is when it is profiled: a process's first linear layer pays
        # one-time kernel set-up (CI once saw 98% of the time in `fast` from it)
        model(x)
        found = profiling.profile_modes(
            {"eager": lambda: model(x)},
            modules={"eager": model},
            device="cpu",
            trace_dir=tmp_path,
            label="t::x",
        )
    b = found["eager"]
    assert b.modules[0].name == "slow", b.modules
    assert b.classes[0].name == "Slow", b.classes
    assert b.classes[0].share > 0.5
    slow = b.classes[0]
    assert slow.low is not None
    assert slow.high is not None
    assert 0 < slow.low <= slow.share <= slow.high <= 1  # the spread over the 5 profiled calls
    assert "over the profiled calls" in amdahl_line(slow, "eager", "Slow")
    assert {s.name for s in b.classes} == {"Linear", "Slow", "Sequential", "ReLU"}
    assert next(s for s in b.classes if s.name == "Linear").count == 2  # fast and head.1
    own = sum(s.share for s in b.classes_self)
    assert 0.9 < own <= 1.0 + 1e-9, b.classes_self  # own shares do not overlap
    assert "outside every submodule" in b.unattributed
    trace = json.loads(Path(b.trace or "").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert "keisei-perf.module slow (Slow)" in names


def test_compiled_code_is_attributed_by_op_and_says_why_not_by_module() -> None:
    model, x = WithSlowPart().eval(), torch.randn(4, 256)
    compiled = torch.compile(model, backend="aot_eager")
    with torch.inference_mode():
        compiled(x)
        b = profiling.profile_modes(
            {"compiled": lambda: compiled(x)},
            modules={"compiled": None},
            device="cpu",
            trace_dir=None,
            label="x",
        )["compiled"]
    assert b.classes == ()
    assert b.modules == ()
    assert b.ops, "compiled code must still be attributed to ops"
    assert "no module boundaries survive compilation" in b.unattributed
    assert b.trace is None


def test_the_profile_runs_after_every_timed_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """No profiler inside a timed round: every call made while profiling comes after the last
    timed one, and the timed rounds are the ones asked for."""
    profiling_now = [False]
    seen: list[bool] = []
    real = profiling._profile_one

    def spy(*args: Any, **kwargs: Any) -> Breakdown:
        profiling_now[0] = True
        return real(*args, **kwargs)

    monkeypatch.setattr(profiling, "_profile_one", spy)
    model, x = WithSlowPart().eval(), torch.randn(2, 256)

    def fn(t: torch.Tensor) -> torch.Tensor:
        seen.append(profiling_now[0])
        return model(t)

    result = runner.run_benchmark(fn, (x,), {}, config=_config(modes=("eager",)), nodeid="t.py::t", name="")
    assert seen.index(True) == len(seen) - (1 + profiling.PROFILED_CALLS)
    assert all(seen[seen.index(True) :])
    assert result.modes["eager"].rounds == 5
    assert set(result.breakdowns) == {"eager"}
    assert result.breakdowns["eager"].profiled_vs_timed is not None
    assert result.breakdowns["eager"].unattributed.startswith("eager: not an nn.Module")


def test_focus_names_a_class_or_path_and_a_typo_says_what_exists() -> None:
    b = Breakdown(
        "eager",
        0.01,
        "cpu",
        modules=(Share("blocks.0.se", 0.04),),
        classes=(Share("SE", 0.061, 9), Share("Conv2d", 0.9, 18)),
    )
    assert focus_share(b, "SE").share == 0.061
    assert focus_share(b, "blocks.0.se").share == 0.04
    with pytest.raises(FocusError, match=r"focus='Se' names no submodule .* its classes: SE, Conv2d"):
        focus_share(b, "Se")
    line = amdahl_line(focus_share(b, "SE"), "eager", "SE", {"fused": 1.05})
    assert line == (
        "SE (9x) is 6.1% of eager time here; a perfect replacement saves at most 6.1% (Amdahl: at most "
        "1.06x); fused measured 1.05x (saves 4.8%)"
    )


def test_a_gain_beyond_the_bound_and_a_skewed_profile_are_said() -> None:
    part = Share("SE", 0.10, 9)
    assert "beyond the bound" in amdahl_line(part, "eager", "SE", {"cut": 2.0})
    assert "beyond the bound" not in amdahl_line(part, "eager", "SE", {"fused": 1.1})
    skewed = Breakdown("eager", 0.02, "cpu", profiled_vs_timed=2.0)
    assert "2x the timed median" in skew_note(skewed)
    assert skew_note(Breakdown("eager", 0.02, "cpu", profiled_vs_timed=1.05)) == ""


def test_a_breakdown_survives_the_json_round_trip() -> None:
    b = Breakdown(
        "eager",
        0.01,
        "cpu",
        (Share("a", 0.5),),
        (Share("A", 0.5, 2),),
        (Share("A", 0.4, 2),),
        (Share("aten::mm", 0.3, 4.0),),
        "x",
        "t.json",
    )
    assert Breakdown.from_dict(json.loads(json.dumps(b.to_dict()))) == b


INNER = """
import pytest
import torch
from torch import nn


class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(128, 128))

    def forward(self, x):
        for _ in range(20):
            x = torch.tanh(x @ self.weight)
        return x


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.fast = nn.Linear(128, 128)
        self.slow = Slow()

    def forward(self, x):
        return self.slow(self.fast(x))


class Faster(Model):
    def forward(self, x):
        return self.fast(x)


@pytest.mark.perf(focus="Slow")
def test_focus(perf):
    perf.benchmark(Model().eval(), torch.randn(4, 128))


@pytest.mark.perf(focus="Slow", check_outputs=False)
def test_compare(perf):
    perf.compare({"plain": Model().eval(), "cut": Faster().eval()}, torch.randn(4, 128))


@pytest.mark.perf(focus="Slo")
def test_typo(perf):
    perf.benchmark(Model().eval(), torch.randn(4, 128))
"""


@pytest.fixture(scope="module")
def inner(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, dict[str, Any]], Path]:
    folder = tmp_path_factory.mktemp("profile")
    (folder / "test_inner.py").write_text(INNER)
    report, traces, markdown = folder / "perf.json", folder / "traces", folder / "summary.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--perf-budget=0.05", "--perf-rounds=5",
         "--perf-compile-backend=eager", "-p", "no:cacheprovider", f"--perf-json={report}",
         f"--perf-profile={traces}",
         f"--perf-markdown={markdown}", f"--perf-baseline-dir={folder}", "-rA"],
        cwd=folder, env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the typo fails, on purpose
    data = json.loads(report.read_text())
    results = {r["benchmark_id"].split("::")[-1]: r for r in data["results"]}
    return proc.stdout + "\n" + markdown.read_text(), results, traces


def test_a_profiled_session_writes_traces_and_says_where_the_time_goes(
    inner: tuple[str, dict[str, dict[str, Any]], Path],
) -> None:
    out, results, traces = inner
    written = sorted(p.name for p in traces.iterdir())
    assert "test_inner.py_test_focus.eager.trace.json" in written
    assert "test_inner.py_test_focus.compiled.trace.json" in written
    assert "keisei-perf: where the time goes" in out
    eager = results["test_focus"]["breakdowns"]["eager"]
    assert eager["classes"][0]["name"] == "Slow"
    assert "#### Where the time goes" in out
    assert "| Slow | 1 |" in out


def test_focus_states_the_bound_and_compare_puts_the_measured_gain_beside_it(
    inner: tuple[str, dict[str, dict[str, Any]], Path],
) -> None:
    out, results, _ = inner
    assert results["test_focus"]["bound"].startswith("Slow is ")
    assert "a perfect replacement saves at most" in out
    compare = results["test_compare"]["bound"]
    assert compare.startswith("Slow is ")
    assert "of plain time here" in compare
    assert "; cut measured " in compare


def test_a_focus_naming_nothing_fails_and_lists_what_exists(
    inner: tuple[str, dict[str, dict[str, Any]], Path],
) -> None:
    out, results, _ = inner
    assert results["test_typo"]["bound"] is None
    assert (
        "focus='Slo' names no submodule class or path of the profiled model; its classes: Slow, Linear" in out
    )
    assert "FAILED test_inner.py::test_typo" in out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"focus": 3}, r"focus=3\): expected a module class name or module path"),
        ({"focus": "Squeeze Excitation"}, r"expected a module class name or module path"),
        (
            {"focus": "SE", "profile": False},
            r"focus='SE'\) needs a profile, but the marker says profile=False",
        ),
        ({"profile": "yes"}, r"profile='yes'\): expected True or False"),
    ],
)
def test_bad_profile_keywords_are_named(kwargs: dict[str, Any], message: str) -> None:
    from pytest_keisei_perf.settings import PerfConfigError, PerfSettings, resolve_marker

    with pytest.raises(PerfConfigError, match=message):
        resolve_marker(PerfSettings(), "t.py::t", [pytest.mark.perf(**kwargs).mark])


def test_focus_turns_profiling_on_and_the_session_option_sets_the_trace_folder(tmp_path: Path) -> None:
    from pytest_keisei_perf.settings import PerfSettings, resolve_marker

    config = resolve_marker(PerfSettings(), "t.py::t", [pytest.mark.perf(focus="SE").mark])
    assert (config.profile, config.profile_dir, config.focus) == (True, None, "SE")
    plain = resolve_marker(PerfSettings(profile_dir=tmp_path), "t.py::t", [])
    assert (plain.profile, plain.profile_dir) == (True, tmp_path)
    assert not resolve_marker(PerfSettings(), "t.py::t", []).profile


def _result(modes: tuple[str, ...], **fields: Any) -> Any:
    from pytest_keisei_perf.result import ModeResult, PerfResult

    made = {m: ModeResult(m, 0.01, 0.001, (0.01,) * 5, 1, 1, True) for m in modes}
    return PerfResult(
        nodeid="t.py::t", name="", device="cpu", threads=1, compile_kwargs={}, modes=made, **fields
    )


def test_named_compile_settings_keep_each_profile_and_their_slowdowns_are_said() -> None:
    from pytest_keisei_perf.reporting import slower_than_eager_lines
    from pytest_keisei_perf.settings import BenchmarkConfig
    from pytest_keisei_perf.variants import merge_blocks

    eager, compiled = Breakdown("eager", 0.01, "cpu"), Breakdown("compiled", 0.02, "cpu")
    blocks = {
        f"compiled[{name}]": _result(
            ("eager", "compiled"),
            speedup=ratio,
            speedup_ci=(ratio - 0.1, ratio + 0.05),
            breakdowns={"eager": eager, "compiled": compiled},
        )
        for name, ratio in (("default", 1.3), ("reduce-overhead", 0.8))
    }
    config = BenchmarkConfig(
        modes=("eager", "compiled"), threshold=0.05, alpha=0.05, rtol=None, atol=None, min_speedup=None
    )
    merged = merge_blocks(blocks, config)
    assert list(merged.breakdowns) == ["eager", "compiled[default]", "compiled[reduce-overhead]"]
    assert merged.breakdowns["compiled[default]"].mode == "compiled[default]"
    lines = slower_than_eager_lines([merged])
    assert len(lines) == 1
    assert lines[0].startswith("t.py::t: compiled[reduce-overhead] is SLOWER than eager (0.80x")


def test_the_plot_draws_a_stacked_bar_per_profiled_benchmark(tmp_path: Path) -> None:
    from extras import need

    need("matplotlib")
    from pytest_keisei_perf.plots import write_plots

    eager = Breakdown("eager", 0.01, "cpu", classes_self=(Share("Conv2d", 0.8, 9), Share("SE", 0.1, 9)))
    compiled = Breakdown("compiled", 0.008, "cpu", ops=(Share("aten::mkldnn_convolution", 0.85, 9),))
    profiled = _result(
        ("eager", "compiled"), breakdowns={"eager": eager, "compiled": compiled}, bound="SE is 10%"
    )
    plain = dataclasses.replace(profiled, nodeid="t.py::plain", breakdowns={}, bound=None)
    written = {p.name for p in write_plots(tmp_path, [profiled, plain], {})}
    assert "t.py_t.breakdown.png" in written
    assert "t.py_plain.breakdown.png" not in written
    assert (tmp_path / "t.py_t.breakdown.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
