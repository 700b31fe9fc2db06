"""Running in CI: Markdown summaries, JUnit properties, plots, progress lines, compile cache, xdist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import torch
from extras import need, need_tool

from pytest_keisei_perf import _compat
from pytest_keisei_perf.compile_cache import CACHE_ENV, default_cache_dir, resolve_cache_dir
from pytest_keisei_perf.report import markdown_summary
from pytest_keisei_perf.result import ModeResult, PerfResult, Verdict

FAST = ("--perf-budget=0.02", "--perf-rounds=5", "--perf-compile-backend=eager", "-p", "no:cacheprovider")

TWO_BENCHMARKS = """
import torch

def test_model(perf):
    torch.manual_seed(0)
    perf.benchmark(torch.nn.Linear(8, 4).eval(), torch.randn(3, 8))

def test_function(perf):
    perf.benchmark(lambda x: x.sin() + 1, torch.ones(16), name="sin")
"""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result(name: str, status: str, change: float | None) -> PerfResult:
    mode = ModeResult("eager", 1e-3, 1e-5, (1e-3,) * 5, 1, 10, True)
    verdict = Verdict(
        "eager", status, change=change, change_ci=(change - 0.02, change + 0.02) if change else None
    )
    return PerfResult(
        nodeid=f"t.py::{name}", name="", device="cpu", threads=1, compile_kwargs={},
        modes={"eager": mode}, verdicts={"eager": verdict},
    )  # fmt: skip


def test_markdown_puts_regressions_first_with_intervals() -> None:
    text = markdown_summary(
        [
            _result("fine", "pass", 0.01),
            _result("slow", "regression", 0.3),
            _result("new", "no-baseline", None),
        ],
        machine="box-1",
    )
    lines = text.splitlines()
    assert lines[:2] == ["<!-- keisei-perf report -->", "### keisei-perf results"]
    assert lines[3] == (
        "**1 regression**, 0 improvements, 1 not compared, 1 pass; slowest change: `slow` [eager] "
        "+30.0% (+28.0% to +32.0%), regression on `box-1`"
    )
    # the table is folded under the headline, for a pull-request comment
    assert lines[5].startswith("<details><summary>3 rows")
    assert lines.index("</details>") > max(i for i, line in enumerate(lines) if line.startswith("| `"))
    rows = [line for line in lines if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["slow", "new", "fine"]
    assert "| +30.0% (+28.0% to +32.0%) | **regression** |" in rows[0]


def test_markdown_headline_without_regressions_names_the_largest_change() -> None:
    text = markdown_summary([_result("a", "pass", -0.02), _result("b", "pass", 0.01)])
    assert "0 regressions, 0 improvements, 0 not compared, 2 pass; slowest change: `b` [eager] +1.0%" in text
    assert "**" not in text.splitlines()[3]


def test_markdown_file_step_summary_and_junit_properties(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytester.makepyfile(TWO_BENCHMARKS)
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    junit = tmp_path / "junit.xml"
    result = pytester.runpytest(*FAST, "--perf-markdown=out/perf.md", f"--junitxml={junit}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*keisei-perf: Markdown summary written to *perf.md*"])
    markdown = (pytester.path / "out" / "perf.md").read_text()
    assert "| `test_model` | compiled |" in markdown
    assert "| `test_function[sin]` | eager |" in markdown
    assert step_summary.read_text() == "earlier step\n" + markdown + "\n"

    properties = {
        (case.get("name"), prop.get("name")): prop.get("value")
        for case in ET.parse(junit).getroot().iter("testcase")
        for prop in case.iter("property")
    }
    assert float(properties[("test_model", "perf.eager.median_s")]) > 0
    assert properties[("test_model", "perf.compiled.verdict")] == "no-baseline"
    assert float(properties[("test_model", "perf.compiled.compile_time_s")]) > 0
    assert float(properties[("test_model", "perf.speedup")]) > 0
    assert properties[("test_function", "perf.sin.eager.rounds")] == "5"


def test_plots_are_written_as_png(pytester: pytest.Pytester) -> None:
    need("matplotlib")
    pytester.makepyfile(TWO_BENCHMARKS)
    result = pytester.runpytest(*FAST, "--perf-plot=plots")
    result.assert_outcomes(passed=2)
    names = sorted(p.name for p in (pytester.path / "plots").iterdir())
    assert names == ["overview.png", "test_plots_are_written_as_png.py_test_function_sin.png",
                     "test_plots_are_written_as_png.py_test_model.png"]  # fmt: skip
    from matplotlib.image import imread

    for name in names:
        path = pytester.path / "plots" / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        height, width, _ = imread(path).shape
        assert height > 100
        assert width > 100


def test_plot_without_matplotlib_says_how_to_get_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    pytester.makepyfile(TWO_BENCHMARKS)
    result = pytester.runpytest(*FAST, "--perf-plot=plots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--perf-plot needs matplotlib: pip install 'pytest-keisei-perf[[]plot[]]'*"]
    )
    assert not (pytester.path / "plots").exists()


def test_verbose_runs_say_what_a_benchmark_is_doing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TWO_BENCHMARKS)
    result = pytester.runpytest(*FAST, "-v", "-k", "test_model")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*keisei-perf: *::test_model: compiling (eager)*",
            "*keisei-perf: *::test_model: warming up eager*",
            "*keisei-perf: *::test_model: warming up compiled*",
            "*keisei-perf: *::test_model: timing 5 rounds of eager, compiled with the reference workload*",
        ]
    )
    quiet = pytester.runpytest(*FAST, "-k", "test_model")
    assert "warming up" not in quiet.stdout.str()


# -- the compile cache ------------------------------------------------------------------------------
def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    default, source = resolve_cache_dir(None, tmp_path / ".pytest_cache", 1)
    assert source == "default"
    assert default == default_cache_dir(tmp_path / ".pytest_cache", 1)
    assert default.parent == tmp_path / ".pytest_cache" / "keisei-perf" / "inductor"
    assert torch.__version__.split("+")[0] in default.name
    assert default.name.endswith("-1t")
    assert default_cache_dir(tmp_path, 2) != default_cache_dir(tmp_path, 1)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert resolve_cache_dir(None, tmp_path, 1) == (tmp_path / "mine", f"${CACHE_ENV}")
    assert resolve_cache_dir(str(tmp_path / "opt"), tmp_path, 1) == (tmp_path / "opt", "--perf-compile-cache")
    assert resolve_cache_dir("torch", tmp_path, 1) == (None, "--perf-compile-cache=torch")
    # inductor writes its own default into the variable once it compiles: that is not a choice
    monkeypatch.setenv(CACHE_ENV, _compat.torch_default_cache_dir())
    assert resolve_cache_dir(None, tmp_path, 1) == (default_cache_dir(tmp_path, 1), "default")


def test_a_chosen_cache_folder_is_told_from_the_default_without_importing_inductor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every worker inherits the variable; importing inductor to read its default would cost
    each worker that never compiles a large share of its start-up."""
    elsewhere = tmp_path / "torchinductor_someone_else"  # the default's name, not its folder
    monkeypatch.setenv(CACHE_ENV, str(elsewhere))
    assert resolve_cache_dir(None, tmp_path, 1) == (elsewhere, f"${CACHE_ENV}")
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from pytest_keisei_perf.compile_cache import resolve_cache_dir\n"
        "print(resolve_cache_dir(None, Path('.'), 1)[1], 'torch._inductor' in sys.modules)"
    )
    env = {**os.environ, CACHE_ENV: str(tmp_path / "mine")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [f"${CACHE_ENV}", "False"]


def test_session_points_inductor_at_the_default_cache_and_restores_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    pytester.makepyfile(
        """
import os
def test_env(perf):
    print("CACHE=" + os.environ["TORCHINDUCTOR_CACHE_DIR"])
    perf.benchmark(lambda: None)
"""
    )
    result = pytester.runpytest("-s", "--perf-modes=eager", "--perf-budget=0.01")
    result.assert_outcomes(passed=1)
    expected = default_cache_dir(pytester.path / ".pytest_cache", 1)
    result.stdout.fnmatch_lines([f"*CACHE={expected}", f"*keisei-perf: compile cache {expected} (default)*"])
    assert not expected.exists()  # nothing compiled, nothing written
    assert CACHE_ENV not in os.environ


def test_compile_cache_state_tells_cold_from_warm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "inductor"))

    def compile_once() -> str | None:
        torch.compiler.reset()
        _compat.reset_dynamo_counters()
        torch.compile(lambda x: x @ x)(torch.ones(4, 4))  # an extern kernel: no C++ to build
        return _compat.compile_cache_state()

    try:
        assert compile_once() == "cold"
        assert compile_once() == "warm"
    finally:
        torch.compiler.reset()


# -- pytest-xdist -----------------------------------------------------------------------------------
XDIST_SUITE = (
    TWO_BENCHMARKS
    + """
def test_not_perf():
    pass
"""
)


def test_xdist_prints_one_summary_and_warns_about_concurrent_tests(pytester: pytest.Pytester) -> None:
    need("xdist")
    pytester.makepyfile(XDIST_SUITE)
    result = pytester.runpytest_subprocess(*FAST, "-n", "2", "--perf-json=report.json")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert out.count("keisei-perf results") == 1
    result.stdout.fnmatch_lines(
        ["*PerfXdistWarning*", "*keisei-perf results*", "test_function[[]sin[]]*eager*", "test_model*eager*"]
    )
    report = json.loads((pytester.path / "report.json").read_text())
    assert sorted(r["benchmark_id"] for r in report["results"]) == [
        "test_xdist_prints_one_summary_and_warns_about_concurrent_tests.py::test_function::sin",
        "test_xdist_prints_one_summary_and_warns_about_concurrent_tests.py::test_model",
    ]


def test_xdist_update_loses_no_baseline_entry(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("xdist")
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "xdist-box")
    pytester.makepyfile(TWO_BENCHMARKS)
    result = pytester.runpytest_subprocess(
        *FAST,
        "-n",
        "2",
        "-m",
        "perf",
        "--perf-update-baseline",
        "--perf-baseline-runs=3",
        "--perf-modes=eager",  # what is stored is under test, not compiling: 6 workers skip dynamo
    )
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    (path,) = (pytester.path / "baselines").glob("xdist-box-*.json")
    benchmarks = json.loads(path.read_text())["benchmarks"]
    assert len(benchmarks) == 2
    assert all(len(entry["runs"]) == 3 for entry in benchmarks.values())


# -- the example workflow ---------------------------------------------------------------------------
WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "perf.yml"


def _workflow_run(tmp_path: Path, event: str, **kwargs: Any) -> Any:
    need("yaml")
    from workflow_runner import WorkflowRun

    github = {"sha": "0" * 40, "ref": "refs/heads/main", "repository": "o/r", **kwargs.pop("github", {})}
    return WorkflowRun.load(WORKFLOW, clone=tmp_path, scratch=tmp_path / "scratch", event_name=event,
                            github=github, **kwargs)  # fmt: skip


def test_example_workflow_passes_actionlint_and_shellcheck() -> None:
    """actionlint knows which action versions GitHub still runs (node20 ones are gone) and runs
    shellcheck over every run: block."""
    actionlint = need_tool("actionlint")
    need_tool("shellcheck")
    proc = subprocess.run([actionlint, str(WORKFLOW)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("event", "inputs", "variables", "expected"),
    [
        ("pull_request", {}, {}, {"pull-request"}),
        ("push", {}, {}, {"main", "publish"}),  # a hosted runner of any CPU: nothing keyed to a host
        ("push", {}, {"KEISEI_PERF_FIXED_RUNNER": "self-hosted"}, {"main", "publish", "stored-baselines"}),
        ("workflow_dispatch", {"rebaseline": True}, {}, {"rebaseline"}),
        ("workflow_dispatch", {"rebaseline": False}, {}, {"main", "publish"}),
    ],
)
def test_each_event_runs_the_jobs_it_should(
    tmp_path: Path, event: str, inputs: dict[str, Any], variables: dict[str, Any], expected: set[str]
) -> None:
    run = _workflow_run(tmp_path, event, inputs=inputs, variables=variables)
    from workflow_runner import JobRun

    chosen = set()
    for name in run.order():
        job = run.workflow["jobs"][name]
        if run.condition(job.get("if")):
            chosen.add(name)
            run.jobs[name] = JobRun()
        else:
            run.jobs[name] = JobRun(result="skipped")
    assert chosen == expected


def test_workflow_pins_torch_and_keeps_the_compile_cache_for_every_gate() -> None:
    yaml = need("yaml")
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["env"]["TORCH_SPEC"] == "torch==2.13.0"
    for name in ("pull-request", "main"):
        steps = workflow["jobs"][name]["steps"]
        cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
        assert cache["with"]["path"] == ".pytest_cache/keisei-perf"
        assert "env.TORCH_SPEC" in cache["with"]["key"]
        runs = "\n".join(s.get("run", "") for s in steps)
        assert 'pip install "$TORCH_SPEC" -e .' in runs
        assert "--perf-compare-ref" in runs
    assert "--perf-history=perf-history.jsonl" in str(workflow["jobs"]["main"])
    publish = workflow["jobs"]["publish"]
    assert publish["concurrency"] == {"group": "keisei-perf-history", "cancel-in-progress": False}
    assert "--perf-require-baseline" in str(workflow["jobs"]["stored-baselines"])


@pytest.mark.parametrize(
    ("fork", "gh_exit", "commented"),
    [(False, 0, True), (True, 0, False), (False, 1, True)],
    ids=["same-repository", "fork-without-token", "gh-refused"],
)
def test_the_comment_step_posts_once_and_never_fails_the_job(
    tmp_path: Path, fork: bool, gh_exit: int, commented: bool
) -> None:
    """The comment step run for real: the report is posted or edited in place with gh; a fork's
    pull request (no write token) and a refused comment leave it in the job summary, green."""
    from workflow_runner import JobRun

    (tmp_path / "perf-ab.md").write_text("<!-- keisei-perf report -->\n### keisei-perf results\n")
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "gh").write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/gh.log"\nexit {gh_exit}\n')
    (stub / "gh").chmod(0o755)
    head = "someone/fork" if fork else "o/r"
    pull_request = {"number": 7, "head": {"repo": {"full_name": head}}}
    run = _workflow_run(
        tmp_path, "pull_request", github={"event": {"pull_request": pull_request}, "base_ref": "main"},
        overrides={"PATH": f"{stub}:{os.environ['PATH']}"},
    )  # fmt: skip
    (step,) = [
        s for s in run.workflow["jobs"]["pull-request"]["steps"] if s.get("name", "").startswith("Comment")
    ]
    job = JobRun()
    assert run.condition(step.get("if"), job=job)
    env = {k: run.substitute(str(v), job=job) for k, v in step["env"].items()}
    assert env["FROM_FORK"] == ("true" if fork else "false")
    assert run._bash(step, job, env, tmp_path, "comment"), job.log[-1]
    log = tmp_path / "gh.log"
    assert log.exists() == commented
    if commented:
        assert log.read_text().strip() == "pr comment 7 --edit-last --create-if-none --body-file perf-ab.md"
    if fork or gh_exit:
        assert "job summary" in job.log[-1]
