"""pytest hooks of pytest-keisei-perf: options, the ``perf`` marker and fixture, reporting.

Hooks stay thin: they convert pytest objects and delegate to ``settings``, ``runner``,
``report`` and ``machine``. All per-session state lives in one :class:`PerfSession`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Final

import pytest

from . import hookspecs
from .baseline import BaselineError, BaselineStore, git_commit, machine_key, run_record
from .compile_cache import CompileCache, resolve_cache_dir
from .gate import GateContext, decide, speedup_drop
from .locks import MEASUREMENT_LOCK, exclusive_lock
from .machine import machine_info
from .modes import PerfCompileError
from .plots import PlotUnavailableError, require_matplotlib, write_plots
from .report import markdown_summary, summary_lines, write_json_report
from .result import PerfResult, Verdict, benchmark_id
from .runner import run_benchmark, smoke_run
from .settings import (
    MARKER_KEYWORDS,
    BenchmarkConfig,
    PerfConfigError,
    PerfSettings,
    add_options,
    resolve_marker,
    resolve_settings,
)
from .workers import WorkerError, run_worker

__all__ = [
    "PERF_MARKER_HELP",
    "PerfFixture",
    "PerfSession",
    "PerfSpeedupWarning",
    "PerfXdistWarning",
    "perf",
    "session_key",
]

PERF_MARKER_HELP: Final = (
    f"perf({', '.join(MARKER_KEYWORDS)}): a performance benchmark timed in eager and torch.compile "
    "modes and gated against its baseline; tests using the perf fixture get it automatically"
)

session_key = pytest.StashKey["PerfSession"]()
_config_key = pytest.StashKey[BenchmarkConfig]()
#: Key of the results an xdist worker hands to the controller (JSON text: execnet-safe).
_WORKEROUTPUT_KEY: Final = "keisei_perf_results"
#: Where GitHub Actions collects a job's Markdown summary.
STEP_SUMMARY_ENV: Final = "GITHUB_STEP_SUMMARY"


class PerfSpeedupWarning(pytest.PytestWarning):
    """The compiled/eager speedup fell significantly below the baseline's."""


class PerfXdistWarning(pytest.PytestWarning):
    """Perf benchmarks ran under pytest-xdist beside other tests, which disturb their timings."""


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", PERF_MARKER_HELP)
    settings = resolve_settings(config)
    if settings.plot_dir is not None:
        try:
            require_matplotlib()
        except PlotUnavailableError as exc:
            raise pytest.UsageError(f"keisei-perf: {exc}") from None
    cache = CompileCache(
        *resolve_cache_dir(settings.compile_cache, _pytest_cache_dir(config), settings.threads)
    )
    cache.activate()
    session = PerfSession(config, settings, cache)
    config.stash[session_key] = session
    config.pluginmanager.register(session, "keisei_perf_session")


def _pytest_cache_dir(config: pytest.Config) -> Path:
    """pytest's cache dir, also when the cacheprovider plugin is disabled (its ini is then unknown)."""
    try:
        name = str(config.getini("cache_dir"))
    except ValueError:
        name = ".pytest_cache"
    return config.rootpath / name


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(session_key, None)
    if session is not None:
        session.compile_cache.deactivate()
        config.pluginmanager.unregister(session)
        del config.stash[session_key]


class PerfSession:
    """The plugin's state for one pytest session: settings, results, the machine record."""

    def __init__(self, config: pytest.Config, settings: PerfSettings, compile_cache: CompileCache) -> None:
        self.config = config
        self.settings = settings
        self.compile_cache = compile_cache
        workerinput = getattr(config, "workerinput", None)
        #: Number of xdist workers when this process is one of them, else None.
        self.xdist_workers: int | None = int(workerinput["workercount"]) if workerinput else None
        self.xdist_worker_id: str | None = workerinput["workerid"] if workerinput else None
        self.results: list[PerfResult] = []
        self._machine: dict[str, Any] | None = None
        self.store: BaselineStore | None = None
        self.baselines: dict[str, list[dict[str, Any]]] = {}
        #: Keys of other machines' baseline files, listed once: they are never used for gating.
        self.other_machines: list[str] = []
        self.gated_benchmarks = 0
        self._decided_p_values: list[float] = []

    @property
    def gating(self) -> bool:
        """Whether results are compared with baselines (not in update, worker or smoke runs)."""
        s = self.settings
        return not (s.update_baseline or s.worker or s.disable)

    @property
    def reporting(self) -> bool:
        """Whether this process writes the summary, Markdown, plots (not workers of any kind)."""
        return not self.settings.worker and self.xdist_workers is None

    @property
    def machine(self) -> dict[str, Any]:
        """The environment record, extended by ``pytest_keisei_perf_machine_info`` implementations."""
        if self._machine is None:
            info = machine_info(threads=self.settings.threads)
            self.config.hook.pytest_keisei_perf_machine_info(config=self.config, info=info)
            self._machine = info
        return self._machine

    # -- collection ----------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        """Mark tests that use the ``perf`` fixture and validate ``@pytest.mark.perf`` keywords.

        A bad keyword turns the collector's report into a collection error naming the test.
        """
        report = yield
        if report.outcome != "passed":
            return report
        problems: list[str] = []
        for node in report.result:
            if not isinstance(node, pytest.Item):
                continue
            if "perf" in getattr(node, "fixturenames", ()) and node.get_closest_marker("perf") is None:
                node.add_marker("perf")
            if node.get_closest_marker("perf") is None:
                continue
            try:
                node.stash[_config_key] = resolve_marker(
                    self.settings, node.nodeid, list(node.iter_markers("perf"))
                )
            except PerfConfigError as exc:
                problems.append(str(exc))
        if not problems:
            return report
        return pytest.CollectReport(report.nodeid, "failed", "\n".join(problems), [], report.sections)

    def pytest_sessionstart(self) -> None:
        """Open this machine's baseline file; a corrupt one stops the run before any test."""
        if self.settings.disable:
            return
        key, facts = machine_key(self.machine, self.settings.machine)
        self.store = BaselineStore(self.settings.baseline_dir, key, facts)
        if not self.gating:
            return
        try:
            self.baselines = self.store.load()
            self.other_machines = self.store.other_machines()
        except BaselineError as exc:
            raise pytest.UsageError(f"keisei-perf: {exc}") from None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.gated_benchmarks = sum(
            1 for item in session.items if item.get_closest_marker("perf") is not None
        )
        others = len(session.items) - self.gated_benchmarks
        if (
            self.xdist_worker_id == "gw0"
            and (self.xdist_workers or 0) > 1
            and self.gated_benchmarks
            and others
        ):
            warnings.warn(
                PerfXdistWarning(
                    f"keisei-perf: {self.gated_benchmarks} perf test(s) run under pytest-xdist with "
                    f"{self.xdist_workers} workers beside {others} other test(s). Perf benchmarks take "
                    "turns on a machine-wide lock, but the other tests still run beside them and "
                    "disturb their timings: time perf tests on their own (pytest -m perf, or -p no:xdist)."
                ),
                stacklevel=1,
            )

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: collect the results a worker measured, for one summary."""
        data = getattr(node, "workeroutput", {}).get(_WORKEROUTPUT_KEY)
        if data:
            self.results.extend(PerfResult.from_dict(d) for d in json.loads(data))
            self.results.sort(key=lambda r: r.benchmark_id)

    # -- reporting -----------------------------------------------------------------------------
    def pytest_report_header(self) -> list[str]:
        s = self.settings
        mode = "disabled (smoke run)" if s.disable else f"modes {','.join(s.modes)}"
        return [
            f"keisei-perf: {mode}, threads {s.threads}, budget {s.budget_s:g} s/mode, "
            f"threshold {s.threshold:.0%}, alpha {s.alpha:g}, baselines {s.baseline_dir}",
            f"keisei-perf: compile cache {self.compile_cache.describe()}",
        ]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.results or self.xdist_workers is not None:
            return
        terminalreporter.write_sep("=", "keisei-perf results")
        for line in summary_lines(self.results):
            terminalreporter.write_line(line)
        notes = [
            v.message
            for r in self.results
            for v in r.verdicts.values()
            if v.message and (v.status != "no-baseline" or self.config.get_verbosity() > 0)
        ]
        for r in self.results:
            if r.speedup_ci is not None and r.speedup_ci[1] < 1.0:
                notes.append(
                    f"{r.benchmark_id}: compiled is SLOWER than eager ({r.speedup:.2f}x, 95% CI "
                    f"{r.speedup_ci[0]:.2f}x-{r.speedup_ci[1]:.2f}x); set min_speedup to fail on this"
                )
        for note in notes:
            terminalreporter.write_line(note)
        for what, path in (
            ("JSON report", self.settings.json_path),
            ("Markdown summary", self.settings.markdown_path),
            ("plots", self.settings.plot_dir),
        ):
            if path is not None and self.reporting:
                terminalreporter.write_line(f"keisei-perf: {what} written to {path}")

    def pytest_sessionfinish(self) -> None:
        if self.xdist_workers is not None:
            # an xdist worker hands its results to the controller, which reports and re-baselines
            self.config.workeroutput[_WORKEROUTPUT_KEY] = json.dumps(  # type: ignore[attr-defined]
                [r.to_dict() for r in self.results], default=str
            )
            return
        if self.settings.update_baseline and not self.settings.worker:
            self._update_baselines()
        if self.reporting and self.results:
            self._write_summaries()
        if self.settings.json_path is None:
            return
        settings = {
            k: (str(v) if not isinstance(v, (int, float, bool, str, tuple, type(None))) else v)
            for k, v in dataclasses.asdict(self.settings).items()
        }
        write_json_report(
            self.settings.json_path, machine=self.machine, settings=settings, results=self.results
        )

    def _write_summaries(self) -> None:
        """Markdown to ``--perf-markdown`` and ``$GITHUB_STEP_SUMMARY``; pictures to ``--perf-plot``."""
        machine = self.store.key if self.store is not None else ""
        markdown = markdown_summary(self.results, machine=machine)
        try:
            if self.settings.markdown_path is not None:
                self.settings.markdown_path.parent.mkdir(parents=True, exist_ok=True)
                self.settings.markdown_path.write_text(markdown, encoding="utf-8")
            step_summary = os.environ.get(STEP_SUMMARY_ENV)
            if step_summary:
                with open(step_summary, "a", encoding="utf-8") as handle:
                    handle.write(markdown + "\n")
        except OSError as exc:
            self._say(f"keisei-perf: could not write the Markdown summary: {exc}")
        if self.settings.plot_dir is not None:
            try:
                write_plots(self.settings.plot_dir, self.results, self.baselines)
            except Exception as exc:  # matplotlib or the file system; the results stand regardless
                self._say(f"keisei-perf: could not draw the plots in {self.settings.plot_dir}: {exc}")

    # -- benchmarks ----------------------------------------------------------------------------
    def benchmark(
        self,
        item: pytest.Item,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str,
    ) -> PerfResult:
        """Run one benchmark for ``item``, decide its verdicts, record it, fail on a problem."""
        config = item.stash[_config_key]
        if not config.modes:
            pytest.skip(
                f"no mode left to run: --perf-modes {','.join(self.settings.modes)} "
                "excludes the marker's modes"
            )
        if self.settings.disable or (self.settings.update_baseline and not self.settings.worker):
            # an update measures in fresh processes only; this one just checks the tests run
            result = smoke_run(fn, args, kwargs, config=config, nodeid=item.nodeid, name=name)
        else:
            # one benchmark at a time per machine: xdist workers and other sessions wait here
            lock = exclusive_lock(MEASUREMENT_LOCK) if not self.settings.worker else contextlib.nullcontext()
            with lock:
                try:
                    result = run_benchmark(
                        fn,
                        args,
                        kwargs,
                        config=config,
                        nodeid=item.nodeid,
                        name=name,
                        progress=self._progress(benchmark_id(item.nodeid, name)),
                    )
                except PerfCompileError as exc:
                    pytest.fail(str(exc), pytrace=False)
                result = self._decide(result, config)
        self.results.append(result)
        _record_properties(item, result)
        item.config.hook.pytest_keisei_perf_result(item=item, result=result)
        if result.failures:
            pytest.fail("\n".join(result.failures), pytrace=False)
        return result

    def _decide(self, result: PerfResult, config: BenchmarkConfig) -> PerfResult:
        """Verdicts per mode from the gate; ``no-baseline`` when there is nothing to compare with."""
        if not self.gating:
            note = "baseline update run" if self.settings.update_baseline else "worker run"
            verdicts = {mode: Verdict(mode=mode, status="no-baseline", message=note) for mode in result.modes}
            return dataclasses.replace(result, verdicts=verdicts)
        current = result.to_dict()
        context = GateContext(
            threshold=config.threshold,
            alpha=config.alpha,
            total_benchmarks=max(self.gated_benchmarks, len(self.results) + 1),
            confirm=self._confirmer(result) if self.settings.confirm_runs > 0 else None,
            other_machines=self.other_machines,
            decided_p_values=self._decided_p_values,
        )
        verdicts, gate_failures = decide(
            current,
            self.baselines.get(result.benchmark_id),
            context,
            label=result.benchmark_id,
            nodeid=result.nodeid,
        )
        failures = [*result.failures, *gate_failures]
        dropped = speedup_drop(
            current,
            self.baselines.get(result.benchmark_id),
            threshold=config.threshold,
            alpha=config.alpha,
        )
        if dropped:
            warnings.warn(PerfSpeedupWarning(f"{result.benchmark_id}: {dropped}"), stacklevel=1)
        for mode, verdict in verdicts.items():
            if verdict.status == "no-baseline" and self.settings.require_baseline:
                failures.append(
                    f"{result.benchmark_id} [{mode}]: {verdict.message} (--perf-require-baseline)"
                )
            if verdict.status == "inconclusive" and self.settings.fail_inconclusive:
                failures.append(f"{verdict.message} (--perf-fail-inconclusive)")
        return dataclasses.replace(result, verdicts=verdicts, failures=tuple(failures))

    def _confirmer(self, result: PerfResult) -> Callable[[], list[dict[str, Any]]]:
        """Re-measure ``result``'s test in fresh processes; their results for this benchmark."""

        def confirm() -> list[dict[str, Any]]:
            fresh: list[dict[str, Any]] = []
            total = self.settings.confirm_runs
            for i in range(1, total + 1):
                self._say(
                    f"keisei-perf: {result.benchmark_id} looks slower; "
                    f"confirming in fresh process {i}/{total}"
                )
                try:
                    entries = run_worker([result.nodeid], self.settings, cwd=self.config.rootpath)
                except WorkerError as exc:
                    pytest.fail(
                        f"{result.benchmark_id}: could not confirm a suspected regression: {exc}",
                        pytrace=False,
                    )
                fresh.extend(e for e in entries if e["benchmark_id"] == result.benchmark_id)
            return fresh

        return confirm

    def _progress(self, label: str) -> Callable[[str], None] | None:
        """With ``-v``: what a benchmark is doing, round counts at most every 2 s."""
        if self.config.get_verbosity() < 1 or self.settings.worker:
            return None
        last = [time.monotonic()]

        def say(what: str) -> None:
            now = time.monotonic()
            if what.startswith("round ") and now - last[0] < 2.0:
                return
            last[0] = now
            self._say(f"keisei-perf: {label}: {what}")

        return say

    def _say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)

    def _update_baselines(self) -> None:
        """Measure every benchmark that passed its smoke run in ``--perf-baseline-runs`` fresh
        processes per test and store those runs.

        Each test runs alone in its own fresh process, exactly as a confirmation does, so the
        runs that decide a suspected regression later are alike the baseline's. (Run after other
        tests in one process, ``resnet_tower`` at batch 64 read ~10% slower against the reference
        than run alone: a process's history is part of its timing.)
        """
        if self.store is None:
            return
        wanted = {r.benchmark_id for r in self.results if not r.failures}
        nodeids = sorted({r.nodeid for r in self.results if r.benchmark_id in wanted})
        if not nodeids:
            return
        commit = git_commit(self.config.rootpath)
        runs: dict[str, list[dict[str, Any]]] = {bench: [] for bench in sorted(wanted)}
        total = self.settings.baseline_runs
        for i in range(1, total + 1):
            self._say(
                f"keisei-perf: baseline run {i}/{total}: {len(nodeids)} test(s), each in a fresh process "
                f"({len(runs)} benchmarks)"
            )
            for nodeid in nodeids:
                try:
                    entries = run_worker([nodeid], self.settings, cwd=self.config.rootpath)
                except WorkerError as exc:
                    self._say(f"keisei-perf: baseline NOT updated: {exc}")
                    return
                for entry in entries:
                    if entry["benchmark_id"] in runs:
                        runs[entry["benchmark_id"]].append(run_record(entry, git_commit=commit))
        incomplete = sorted(bench for bench, bench_runs in runs.items() if len(bench_runs) < total)
        for bench in incomplete:
            self._say(f"keisei-perf: {bench} failed in a fresh process; its baseline was NOT updated")
            del runs[bench]
        if runs:
            path = self.store.replace_runs(runs)
            self._say(f"keisei-perf: stored {total} runs of {len(runs)} benchmark(s) in {path}")


def _record_properties(item: pytest.Item, result: PerfResult) -> None:
    """Results as JUnit XML properties of the test (what ``record_property`` does)."""
    prefix = f"perf.{result.name}." if result.name else "perf."
    props: list[tuple[str, object]] = []
    for mode, m in result.modes.items():
        props += [(f"{prefix}{mode}.median_s", m.median_s), (f"{prefix}{mode}.rounds", m.rounds)]
        if m.compile_time_s is not None:
            props.append((f"{prefix}{mode}.compile_time_s", round(m.compile_time_s, 4)))
        verdict = result.verdicts.get(mode)
        if verdict is None:
            continue
        props.append((f"{prefix}{mode}.verdict", verdict.status))
        if verdict.change is not None:
            props.append((f"{prefix}{mode}.change", round(verdict.change, 5)))
        if verdict.change_ci is not None:
            props.append(
                (f"{prefix}{mode}.change_ci", f"{verdict.change_ci[0]:.5f},{verdict.change_ci[1]:.5f}")
            )
        if verdict.detectable_effect is not None:
            props.append((f"{prefix}{mode}.detectable_effect", round(verdict.detectable_effect, 5)))
    if result.speedup is not None:
        props.append((f"{prefix}speedup", round(result.speedup, 4)))
    item.user_properties.extend(props)


class PerfFixture:
    """The ``perf`` fixture: ``perf.benchmark(fn, *args, name="", **kwargs) -> PerfResult``."""

    def __init__(self, item: pytest.Item, session: PerfSession) -> None:
        self._item = item
        self._session = session
        self._names: set[str] = set()
        #: Results of this test's benchmarks, in call order.
        self.results: list[PerfResult] = []

    def benchmark(self, fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> PerfResult:
        """Warm up, time every mode, check compiled against eager, and gate against the baseline.

        ``fn`` is an ``nn.Module`` or any callable, called as ``fn(*args, **kwargs)``. Several
        benchmarks in one test need distinct ``name`` values. A regression, a speedup below
        ``min_speedup`` or an output mismatch fails the test with a message naming the numbers.
        """
        if not callable(fn):
            pytest.fail(
                f"{self._item.nodeid}: perf.benchmark() needs a callable, got {type(fn).__name__}",
                pytrace=False,
            )
        if not isinstance(name, str):
            pytest.fail(f"{self._item.nodeid}: benchmark name must be a string, got {name!r}", pytrace=False)
        if name in self._names:
            what = f"name {name!r}" if name else "no name"
            pytest.fail(
                f"{self._item.nodeid}: a second benchmark with {what}; give each perf.benchmark() call "
                "in a test a distinct name=...",
                pytrace=False,
            )
        self._names.add(name)
        result = self._session.benchmark(self._item, fn, args, kwargs, name)
        self.results.append(result)
        return result


@pytest.fixture
def perf(request: pytest.FixtureRequest) -> PerfFixture:
    """Benchmark a model or callable in eager and compiled modes: ``perf.benchmark(model, x)``."""
    return PerfFixture(request.node, request.config.stash[session_key])
