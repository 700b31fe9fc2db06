"""pytest hooks of pytest-keisei-perf: options, the ``perf`` marker and fixture, reporting.

Hooks stay thin: they convert pytest objects and delegate to ``settings``, ``runner``,
``report`` and ``machine``. All per-session state lives in one :class:`PerfSession`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from . import hookspecs
from .settings import (
    MARKER_KEYWORDS,
    BenchmarkConfig,
    PerfConfigError,
    PerfSettings,
    add_options,
    resolve_marker,
    resolve_settings,
)

if TYPE_CHECKING:
    from .ab import PairedRuns, RefCheckout
    from .baseline import BaselineStore
    from .compile_cache import CompileCache
    from .compile_state import CompileTimes
    from .history import HistoryEntry
    from .history_session import SessionHistory
    from .record import RunRecord
    from .result import PerfResult

# Everything beyond option parsing is imported where it is first needed, torch, numpy and scipy
# only once a perf test is selected: installing the plugin must cost nothing in sessions that
# run none (measured: benchmarks/plugin_overhead.py).

__all__ = [
    "PERF_MARKER_HELP",
    "PerfDriftWarning",
    "PerfFixture",
    "PerfHistoryWarning",
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


class PerfDriftWarning(pytest.PytestWarning):
    """A benchmark drifted beyond the threshold along its history, step by small step."""


class PerfHistoryWarning(pytest.PytestWarning):
    """A history line could not be read; it was skipped (and is left as it is)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    from .plots import PlotUnavailableError, require_matplotlib

    config.addinivalue_line("markers", PERF_MARKER_HELP)
    settings = resolve_settings(config)
    if settings.plot_dir is not None:
        try:
            require_matplotlib()
        except PlotUnavailableError as exc:
            raise pytest.UsageError(f"keisei-perf: {exc}") from None
    if settings.compare_ref and settings.history_path is not None and not settings.worker:
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"keisei-perf: --perf-history {settings.history_path} is not recorded in an A/B run "
                "(--perf-compare-ref): its verdicts compare two commits, not this one with its history"
            ),
            stacklevel=2,
        )
    session = PerfSession(config, settings)
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
        if session.compile_cache is not None:
            session.compile_cache.deactivate()
        config.pluginmanager.unregister(session)
        del config.stash[session_key]


class PerfSession:
    """The plugin's state for one pytest session: settings, results, the machine record."""

    def __init__(self, config: pytest.Config, settings: PerfSettings) -> None:
        self.config = config
        self.settings = settings
        #: Set up by :meth:`activate`, once a perf test is selected.
        self.compile_cache: CompileCache | None = None
        workerinput = getattr(config, "workerinput", None)
        #: Number of xdist workers when this process is one of them, else None.
        self.xdist_workers: int | None = int(workerinput["workercount"]) if workerinput else None
        self.xdist_worker_id: str | None = workerinput["workerid"] if workerinput else None
        self.results: list[PerfResult] = []
        self._machine: dict[str, Any] | None = None
        self.store: BaselineStore | None = None
        self.baselines: dict[str, list[dict[str, Any]]] = {}
        #: Facts of the other machines' baseline files, by key: never used for gating.
        self.other_machines: dict[str, dict[str, Any]] = {}
        #: p-values Benjamini-Hochberg corrects over: one per selected perf test and mode.
        self.expected_comparisons = 0
        self.gated_benchmarks = 0
        self._decided_p_values: list[float] = []
        self._active = False
        #: ``--perf-compare-ref``: the REF checkout, and per test the pairs it gave.
        self.ref_checkout: RefCheckout | None = None
        #: Last cold and warm compile times per benchmark (the report's compile economics).
        self.compile_times: CompileTimes | None = None
        #: Baseline history and ``--perf-history`` (not in workers or A/B sessions).
        self.history: SessionHistory | None = None
        #: Summaries of this session's gated runs, appended to ``--perf-history`` at the end.
        self._history_runs: list[HistoryEntry] = []
        self._history_warned = 0
        #: Fresh-process results per (test, compile state): one worker serves a test's benchmarks.
        self._state_runs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._ab_runs: dict[str, tuple[dict[str, PairedRuns], set[str], dict[str, dict[str, Any]]]] = {}

    def activate(self) -> None:
        """Set up what timing needs, once: the compile cache, the machine key, this machine's
        baseline file (validated: a corrupt one stops the run before anything is measured)."""
        if self._active or self.settings.disable:
            return
        self._active = True
        from .baseline import BaselineError, BaselineStore, machine_key
        from .compile_cache import CompileCache, resolve_cache_dir

        if self.settings.worker and self.settings.compile_state == "cold":
            self.compile_cache = CompileCache.empty()
        else:
            self.compile_cache = CompileCache(
                *resolve_cache_dir(
                    self.settings.compile_cache, _pytest_cache_dir(self.config), self.settings.threads
                )
            )
        self.compile_cache.activate()
        if not self.settings.worker:
            from .compile_state import CompileTimes

            times_path = _pytest_cache_dir(self.config) / "keisei-perf" / "compile-times.json"
            self.compile_times = CompileTimes(times_path)
        key, facts = machine_key(self.machine, self.settings.machine)
        self.store = BaselineStore(self.settings.baseline_dir, key, facts)
        if self.settings.worker:
            return
        if self.settings.compare_ref:  # A/B: no baseline is read or written
            from .ab import ABError, RefCheckout

            try:
                self.ref_checkout = RefCheckout(
                    self.settings.compare_ref, self.config.rootpath, self.settings.import_roots
                )
            except ABError as exc:
                raise pytest.UsageError(
                    f"keisei-perf: --perf-compare-ref {self.settings.compare_ref}: {exc}"
                ) from None
            return
        try:
            self.baselines = self.store.load()
            self.other_machines = self.store.other_machines()
        except BaselineError as exc:
            raise pytest.UsageError(f"keisei-perf: {exc}") from None
        from .history_session import SessionHistory

        self.history = SessionHistory(
            self.settings.baseline_dir,
            key,
            torch_version=self.machine.get("torch"),
            history_path=self.settings.history_path,
            window=self.settings.drift_window,
            since=self.settings.drift_since,
        )

    @property
    def gating(self) -> bool:
        """Whether results are compared with baselines (not in update, worker or smoke runs)."""
        s = self.settings
        return not (s.update_baseline or s.worker or s.disable or s.compare_ref)

    @property
    def reporting(self) -> bool:
        """Whether this process writes the summary, Markdown, plots (not workers of any kind)."""
        return not self.settings.worker and self.xdist_workers is None

    @property
    def machine(self) -> dict[str, Any]:
        """The environment record, extended by ``pytest_keisei_perf_machine_info`` implementations."""
        if self._machine is None:
            from .machine import machine_info

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

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        perf_items = [item for item in session.items if _config_key in item.stash]
        self.gated_benchmarks = len(perf_items)
        extra = 1 if self.settings.compile_state == "both" else 0  # the cold compiled mode
        self.expected_comparisons = sum(
            len(c.modes) + (extra if "compiled" in c.modes else 0)
            for c in (item.stash[_config_key] for item in perf_items)
        )
        if perf_items:
            self.activate()
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
        from .result import PerfResult

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
            f"threshold {s.threshold:.0%}, alpha {s.alpha:g}, baselines {s.baseline_dir}"
        ]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        from .report import economics_lines, not_compared_lines, summary_lines

        if not self.results or self.xdist_workers is not None:
            return
        terminalreporter.write_sep("=", "keisei-perf results")
        for line in summary_lines(self.results):
            terminalreporter.write_line(line)
        verbose = self.config.get_verbosity() > 0
        notes = [
            v.message
            for r in self.results
            for v in r.verdicts.values()
            if v.message and v.not_compared is None and (v.status != "no-baseline" or verbose)
        ]
        for r in self.results:
            if "compiled" in r.modes and r.speedup_ci is not None and r.speedup_ci[1] < 1.0:
                notes.append(
                    f"{r.benchmark_id}: compiled is SLOWER than eager ({r.speedup:.2f}x, 95% CI "
                    f"{r.speedup_ci[0]:.2f}x-{r.speedup_ci[1]:.2f}x); set min_speedup to fail on this"
                )
        for note in notes:
            terminalreporter.write_line(note)
        if verbose:
            for line in economics_lines(self.results):
                terminalreporter.write_line(line)
        for line in not_compared_lines(self.results, verbose=verbose):
            terminalreporter.write_line(line, yellow=True, bold=True)
        if self.compile_cache is not None:
            terminalreporter.write_line(f"keisei-perf: compile cache {self.compile_cache.describe()}")
        for what, path in (
            ("JSON report", self.settings.json_path),
            ("Markdown summary", self.settings.markdown_path),
            ("plots", self.settings.plot_dir),
        ):
            if path is not None and self.reporting:
                terminalreporter.write_line(f"keisei-perf: {what} written to {path}")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """A baseline update checks the baseline file before anything runs, and measures after
        the smoke runs; a worker that fails fails the session."""
        updating = self.settings.update_baseline and not self.settings.worker and self.xdist_workers is None
        if updating:
            self.activate()
        outcome = yield
        if updating and not self._update_baselines():
            session.testsfailed += 1
        return outcome

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from .report import write_json_report

        if self.ref_checkout is not None:
            self.ref_checkout.close()
        self._keep_session_facts()
        if self.xdist_workers is not None:
            # an xdist worker hands its results to the controller, which reports and re-baselines
            self.config.workeroutput[_WORKEROUTPUT_KEY] = json.dumps(  # type: ignore[attr-defined]
                [r.to_dict() for r in self.results], default=str
            )
            return
        if self.reporting and self.results:
            self._write_summaries()
        if self.settings.json_path is None:
            return
        settings = {
            k: (str(v) if not isinstance(v, (int, float, bool, str, tuple, type(None))) else v)
            for k, v in dataclasses.asdict(self.settings).items()
        }
        try:
            write_json_report(
                self.settings.json_path,
                machine=self.machine if self._active else {},
                settings=settings,
                results=self.results,
            )
        except OSError as exc:  # the results table still prints; the session fails
            self._say(f"keisei-perf: could not write the JSON report {self.settings.json_path}: {exc}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _keep_session_facts(self) -> None:
        """``--perf-history`` lines of this process's gated runs (an xdist worker appends its
        own), and the compile times seen."""
        if self.history is not None and self._history_runs:
            try:
                added = self.history.append_runs(self._history_runs)
                self._say(f"keisei-perf: {added} run summaries appended to {self.settings.history_path}")
            except OSError as exc:
                self._say(f"keisei-perf: could not append to {self.settings.history_path}: {exc}")
        if self.compile_times is not None:
            try:
                self.compile_times.save()
            except OSError as exc:
                self._say(f"keisei-perf: could not keep compile times in {self.compile_times.path}: {exc}")

    def _write_summaries(self) -> None:
        """Markdown to ``--perf-markdown`` and ``$GITHUB_STEP_SUMMARY``; pictures to ``--perf-plot``."""
        from .report import markdown_summary

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
            from .plots import write_plots

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
        device: str | None = None,
        variants: Mapping[str, Callable[..., Any]] | None = None,
    ) -> PerfResult:
        """Run one benchmark for ``item``, decide its verdicts, record it, fail on a problem.

        With ``variants`` (``perf.compare``) the variants are timed against each other instead
        of eager against compiled; ``fn`` is then the first (reference) variant.
        """
        from .compile_state import with_economics
        from .ids import stable_test_id
        from .locks import MEASUREMENT_LOCK, exclusive_lock
        from .modes import PerfCompileError
        from .result import benchmark_id
        from .runner import run_benchmark, run_comparison, smoke_run

        self.activate()
        config = item.stash[_config_key]
        if not config.modes:
            pytest.skip(
                f"no mode left to run: --perf-modes {','.join(self.settings.modes)} "
                "excludes the marker's modes"
            )
        test_id = stable_test_id(item.nodeid, item.path, self.config.rootpath)
        if self.ref_checkout is not None and not (self.settings.disable or self.settings.update_baseline):
            result = self._ab_benchmark(item, config, test_id, name)
        elif self.settings.disable or (self.settings.update_baseline and not self.settings.worker):
            # an update measures in fresh processes only; this one just checks the tests run
            calls = list(variants.values()) if variants else [fn]
            for call in calls:
                result = smoke_run(
                    call, args, kwargs, config=config, nodeid=item.nodeid, name=name, device=device
                )
            result = dataclasses.replace(result, test_id=test_id)
        else:
            # one benchmark at a time per machine: xdist workers and other sessions wait here
            lock = exclusive_lock(MEASUREMENT_LOCK) if not self.settings.worker else contextlib.nullcontext()
            with lock:
                measure: Callable[..., PerfResult] = (
                    functools.partial(run_comparison, variants)
                    if variants
                    else functools.partial(run_benchmark, fn)
                )
                bench = benchmark_id(test_id, name)
                if self.compile_cache is not None:
                    self.compile_cache.renew()  # a cold worker: each benchmark compiles from empty
                fresh_state = self._fresh_state(bench, config, variants)
                fresh = fresh_state is not None
                if fresh_state is not None:
                    result = dataclasses.replace(
                        self._fresh_result(item, bench, fresh_state, order=list(variants or ())),
                        test_id=test_id,
                    )
                else:
                    try:
                        result = measure(
                            args,
                            kwargs,
                            config=config,
                            nodeid=item.nodeid,
                            name=name,
                            device=device,
                            progress=self._progress(bench),
                        )
                    except PerfCompileError as exc:
                        pytest.fail(str(exc), pytrace=False)
                    in_session = dataclasses.replace(result, test_id=test_id)
                    result = self._warm_for_sure(item, bench, in_session)
                    fresh = result is not in_session  # measured again in a fresh process
                result = self._decide(result, config, fresh=fresh)
                both = self.settings.compile_state == "both" and not self.settings.worker
                if both and "compiled" in result.modes:
                    result = self._with_cold(item, bench, result, config)
                elif self.compile_times is not None:
                    self.compile_times.note(result)
                    result = with_economics(result, self.compile_times)
                result = self._check_ref_imports(result)
        self.results.append(result)
        _record_properties(item, result)
        item.config.hook.pytest_keisei_perf_result(item=item, result=result)
        if result.failures:
            pytest.fail("\n".join(result.failures), pytrace=False)
        return result

    def _fresh_state(
        self, bench: str, config: BenchmarkConfig, variants: Mapping[str, Callable[..., Any]] | None
    ) -> str | None:
        """The compile state to measure ``bench`` in, in a fresh process; None to measure here.

        A gated benchmark with baseline runs is measured in a fresh process, like those runs: an
        in-session run differs from fresh processes systematically (README, "The host check,
        measured"), which made stage 1 flag identical code or miss real slowdowns. A cold state
        needs an empty cache, which only a fresh process has.
        """
        from .compile_state import process_state

        if self.settings.worker:
            return None
        if self.settings.compile_state == "cold" and "compiled" in config.modes and not variants:
            return "cold"
        if self.gating and self.baselines.get(bench):
            return process_state(self.settings.compile_state)
        return None

    def _fresh_result(
        self, item: pytest.Item, bench: str, state: str, order: Sequence[str] = ()
    ) -> PerfResult:
        """``bench`` measured in a fresh process in compile-cache ``state``; one process per test
        and state serves all the test's benchmarks. A benchmark that failed or went missing
        there fails here, with the process's words."""
        from .result import PerfResult
        from .workers import WorkerError, entry_problem

        key = (item.nodeid, state)
        problem = None
        if key not in self._state_runs:
            try:
                entries = self._run_worker(item.nodeid, [bench], state=state, others=True)
                self._state_runs[key] = {e["benchmark_id"]: e for e in entries}
            except WorkerError as exc:
                problem = str(exc)
        entry = self._state_runs.get(key, {}).get(bench)
        if problem is None and entry is None:
            problem = "the fresh process gave no result for it"
        elif problem is None and entry is not None:
            problem = entry_problem(entry)
        if problem is not None:  # outside the except block: no chained traceback
            pytest.fail(
                f"{bench}: measuring in a fresh process ({state} compile cache) failed: {problem}", False
            )
        assert entry is not None
        result = PerfResult.from_dict(entry)
        # the report stores modes sorted by name: give them back in the order they run here
        ran = [*order, *item.stash[_config_key].modes]
        modes = dict(
            sorted(result.modes.items(), key=lambda kv: ran.index(kv[0]) if kv[0] in ran else len(ran))
        )
        return dataclasses.replace(result, modes=modes, verdicts={}, failures=())

    def _warm_for_sure(self, item: pytest.Item, bench: str, result: PerfResult) -> PerfResult:
        """A run meant to be warm whose compile found the cache empty is measured again in a
        fresh process, which loads what this compile stored: the program every other CI run and
        the baseline time (an empty cache is a new runner, an evicted cache, a moved rootdir)."""
        from .compile_state import missed_cache

        compiled = result.modes.get("compiled")
        if self.settings.worker or compiled is None or not missed_cache(compiled.compile_cache):
            return result
        if self.compile_times is not None:
            self.compile_times.note(result)  # the cold compile time, for the economics
        self._say(
            f"keisei-perf: {bench}: the compile cache was cold in this session; "
            "measuring again in a fresh process that loads what it stored"
        )
        return dataclasses.replace(self._fresh_result(item, bench, "warm"), test_id=result.test_id)

    def _with_cold(
        self, item: pytest.Item, bench: str, warm: PerfResult, config: BenchmarkConfig
    ) -> PerfResult:
        """``--perf-compile-state both``: add the cold-cache run of ``bench`` beside the warm one,
        gated against the baseline's cold runs, and warn when the two states' speedups differ."""
        from .compile_state import PerfCompileStateWarning, merge_cold, state_gap, with_economics

        cold = dataclasses.replace(self._fresh_result(item, bench, "cold"), test_id=warm.test_id)
        if self.compile_times is not None:
            self.compile_times.note(warm)
        warm, cold = with_economics(warm, self.compile_times), with_economics(cold, self.compile_times)
        gap = state_gap(warm, cold)
        if gap is not None:
            warnings.warn(PerfCompileStateWarning(gap), stacklevel=1)
        compiled_only = dataclasses.replace(cold, modes={"compiled": cold.modes["compiled"]})
        return merge_cold(warm, self._decide(compiled_only, config, state="cold", fresh=True))

    def _check_ref_imports(self, result: PerfResult) -> PerfResult:
        """In a REF-side process of ``--perf-compare-ref``: fail if the working tree's code ran."""
        from .ab import FORBID_ROOT_ENV, ABError, check_imports

        forbidden = os.environ.get(FORBID_ROOT_ENV)
        if not (self.settings.worker and forbidden):
            return result
        try:
            check_imports(forbidden)
        except ABError as exc:
            return dataclasses.replace(result, failures=(*result.failures, str(exc)))
        return result

    def _ab_benchmark(
        self, item: pytest.Item, config: BenchmarkConfig, test_id: str, name: str
    ) -> PerfResult:
        """``--perf-compare-ref``: this benchmark's verdicts from interleaved REF / working-tree pairs."""
        from . import ab
        from .locks import MEASUREMENT_LOCK, exclusive_lock
        from .result import PerfResult, Verdict, benchmark_id
        from .workers import WorkerError

        assert self.ref_checkout is not None
        ref = self.settings.compare_ref
        if item.nodeid not in self._ab_runs:
            problem = None
            try:
                with exclusive_lock(MEASUREMENT_LOCK):
                    self._ab_runs[item.nodeid] = self._gather_ab(item, config)
            except (WorkerError, ab.ABError) as exc:
                problem = str(exc)
            if problem is not None:
                pytest.fail(f"{test_id}: A/B against {ref} failed: {problem}", pytrace=False)
        pairs, new, last_b = self._ab_runs[item.nodeid]
        bench = benchmark_id(test_id, name)
        entry = last_b.get(bench)
        if entry is None:
            pytest.fail(f"{bench}: the working tree's fresh processes gave no result for it", pytrace=False)
        result = dataclasses.replace(PerfResult.from_dict(entry), verdicts={}, failures=(), test_id=test_id)
        if bench in new:
            message = f"{bench}: new benchmark: it does not exist at {ref}; nothing to compare"
            verdicts = {
                m: Verdict(mode=m, status="no-baseline", message=message, not_compared="new")
                for m in result.modes
            }
            return dataclasses.replace(result, verdicts=verdicts)

        def bh(p: float) -> tuple[bool, int]:
            from .stats import online_bh_rejects

            total = max(self.expected_comparisons, len(self._decided_p_values) + 1)
            rejected = online_bh_rejects(p, self._decided_p_values, total, config.alpha)
            self._decided_p_values.append(p)
            return rejected, total

        verdicts, failures = ab.verdicts_for(
            bench, pairs[bench], list(result.modes), ref=str(ref), threshold=config.threshold,
            alpha=config.alpha, bh=bh, nodeid=item.nodeid,
        )  # fmt: skip
        if self.settings.fail_inconclusive:
            failures += [
                f"{v.message} (--perf-fail-inconclusive)"
                for v in verdicts.values()
                if v.status == "inconclusive"
            ]
        return dataclasses.replace(result, verdicts=verdicts, failures=tuple(failures))

    def _gather_ab(
        self, item: pytest.Item, config: BenchmarkConfig
    ) -> tuple[dict[str, PairedRuns], set[str], dict[str, dict[str, Any]]]:
        from . import ab
        from .compile_state import process_state

        checkout = self.ref_checkout
        assert checkout is not None
        path_part, sep, rest = item.nodeid.partition("::")
        user_args = self._worker_args
        last_b: dict[str, dict[str, Any]] = {}

        def run_b() -> list[dict[str, Any]]:
            entries = self._run_worker(item.nodeid, None)
            last_b.update({e["benchmark_id"]: e for e in entries})
            return entries

        def run_ref() -> list[dict[str, Any]] | None:
            return ab.run_ref_worker(
                checkout,
                self.config.rootpath / path_part,
                sep + rest,
                settings=self.settings,
                user_args=user_args,
                invocation_dir=self.config.invocation_params.dir,
            )

        def run_a() -> list[dict[str, Any]] | None:
            # REF gets the same warm guarantee as the working tree's processes
            state = process_state(self.settings.compile_state)
            return self._warm_retry(run_ref, f"{item.nodeid} at {self.settings.compare_ref}", state)

        pairs, new = ab.gather_pairs(
            item.nodeid,
            pairs=self.settings.ab_pairs,
            run_a=run_a,
            run_b=run_b,
            threshold=config.threshold,
            alpha=config.alpha,
            say=self._say,
        )
        return pairs, new, last_b

    def _missing(self, bench: str) -> tuple[str, str]:
        """Why there are no runs for ``bench``: (reason, message) naming what differs."""
        from .baseline import fact_differences

        store = self.store
        if not self.baselines and store is not None:
            message = f"{bench}: not compared: no baseline under this machine key {store.key}"
            if self.other_machines:
                nearest = min(
                    self.other_machines,
                    key=lambda key: len(fact_differences(store.facts, self.other_machines[key])),
                )
                differences = fact_differences(store.facts, self.other_machines[nearest])
                message += f"; nearest stored key {nearest} differs in: {', '.join(differences) or 'nothing'}"
            return "machine", message + "; create one with pytest -m perf --perf-update-baseline"
        nearest_id = _nearest_id(bench, self.baselines)
        hint = f"; a stored id differs only by its prefix: {nearest_id}" if nearest_id else ""
        return "no-entry", f"{bench}: not compared: no baseline entry for this id{hint}"

    def _decide(
        self, result: PerfResult, config: BenchmarkConfig, state: str | None = None, *, fresh: bool = False
    ) -> PerfResult:
        """Verdicts per mode from the gate; ``no-baseline`` when there is nothing to compare with.

        ``state`` is the compile-cache state confirmations re-measure in (the session's own by
        default)."""
        from .gate import GateContext, decide, speedup_drop
        from .record import RunRecord
        from .result import Verdict

        if not self.gating:
            note = "baseline update run" if self.settings.update_baseline else "worker run"
            verdicts = {mode: Verdict(mode=mode, status="no-baseline", message=note) for mode in result.modes}
            return dataclasses.replace(result, verdicts=verdicts)
        current = RunRecord.from_mapping(result.to_dict())
        bench = result.benchmark_id
        stored = [RunRecord.from_mapping(r) for r in self.baselines.get(bench, ())]
        context = GateContext(
            threshold=config.threshold,
            alpha=config.alpha,
            total_comparisons=max(self.expected_comparisons, len(self._decided_p_values) + len(result.modes)),
            confirm=self._confirmer(result, state) if self.settings.confirm_runs > 0 else None,
            decided_p_values=self._decided_p_values,
            current_is_fresh=fresh,
        )
        verdicts, gate_failures = decide(
            current, stored, context, label=bench, nodeid=result.nodeid, missing=self._missing(bench)
        )
        failures = [*result.failures, *gate_failures]
        if state is None:
            failures += self._check_drift(bench, current, config)
        dropped = speedup_drop(current, stored, threshold=config.threshold, alpha=config.alpha)
        if dropped:
            warnings.warn(PerfSpeedupWarning(f"{bench}: {dropped}"), stacklevel=1)
        for mode, verdict in verdicts.items():
            if (
                verdict.status == "no-baseline"
                and self.settings.require_baseline
                and verdict.not_compared != "new"
            ):
                failures.append(f"{bench} [{mode}]: {verdict.message} (--perf-require-baseline)")
            if verdict.status == "inconclusive" and self.settings.fail_inconclusive:
                failures.append(f"{verdict.message} (--perf-fail-inconclusive)")
        return dataclasses.replace(result, verdicts=verdicts, failures=tuple(failures))

    def _check_drift(self, bench: str, current: RunRecord, config: BenchmarkConfig) -> list[str]:
        """Warn (or, with ``--perf-fail-drift``, fail) on drift along the history; remember this
        run's summary for ``--perf-history``."""
        from .compile_state import COLD_MODE

        if self.history is None:
            return []
        entry = None
        if self.settings.history_path is not None:
            modes = {m: r for m, r in current.modes.items() if m != COLD_MODE}  # another process's
            run = dataclasses.replace(current, modes=modes)
            entry = self.history.summary(bench, [run], kind="run", commit=self._git_commit)
            if entry is not None:
                self._history_runs.append(entry)
        failures = []
        for finding in self.history.drift(bench, config.threshold, entry):
            warnings.warn(PerfDriftWarning(finding.message), stacklevel=1)
            if self.settings.fail_drift:
                failures.append(f"{finding.message} (--perf-fail-drift)")
        for problem in self.history.problems[self._history_warned :]:
            warnings.warn(PerfHistoryWarning(f"keisei-perf: {problem}"), stacklevel=1)
        self._history_warned = len(self.history.problems)
        return failures

    @functools.cached_property
    def _git_commit(self) -> str | None:
        from .baseline import git_commit

        return git_commit(self.config.rootpath)

    @functools.cached_property
    def _worker_args(self) -> list[str]:
        """The user's configuration, as every fresh worker process of this session must get it."""
        from .workers import user_worker_args

        actions = getattr(getattr(self.config, "_parser", None), "optparser", None)
        return user_worker_args(
            [str(a) for a in self.config.invocation_params.args],
            self.config.getini("addopts"),
            os.environ.get("PYTEST_ADDOPTS", ""),
            getattr(actions, "_option_string_actions", {}),
            inipath=self.config.inipath,
            rootpath=self.config.rootpath,
        )

    def _run_worker(
        self, nodeid: str, wanted: Sequence[str] | None, state: str | None = None, others: bool = False
    ) -> list[dict[str, Any]]:
        """One fresh process over ``nodeid`` in compile-cache ``state`` (the session's by default;
        ``both`` means warm here). A warm run whose compile found the cache empty runs once more:
        its compile has filled the cache, and warm means loaded from it."""
        from .compile_state import process_state
        from .workers import run_worker

        state = state or process_state(self.settings.compile_state)
        target = str(self.config.rootpath / nodeid)  # absolute: the worker runs in the invocation dir

        def run() -> list[dict[str, Any]]:
            return run_worker(
                [target],
                dataclasses.replace(self.settings, compile_state=state),
                cwd=self.config.invocation_params.dir,
                wanted=wanted,
                others=others,
                user_args=self._worker_args,
            )

        entries = self._warm_retry(run, nodeid, state) or []
        if state == "cold":
            self._note_compile_times(entries)
        return entries

    def _warm_retry(
        self, run: Callable[[], list[dict[str, Any]] | None], label: str, state: str
    ) -> list[dict[str, Any]] | None:
        """``run()`` a fresh process; once more when it was meant to be warm and its compile
        found the cache empty (it has filled it since)."""
        from .compile_state import needs_warm_rerun

        entries = run()
        if state == "warm" and entries and any(needs_warm_rerun(e) for e in entries):
            self._note_compile_times(entries)
            self._say(f"keisei-perf: {label}: the compile cache was cold; measuring again, warm")
            entries = run()
        return entries

    def _note_compile_times(self, entries: Sequence[dict[str, Any]]) -> None:
        from .result import PerfResult

        if self.compile_times is not None:
            for entry in entries:
                self.compile_times.note(PerfResult.from_dict(entry))

    def _confirmer(self, result: PerfResult, state: str | None = None) -> Callable[[], list[RunRecord]]:
        """Re-measure ``result``'s test in fresh processes; their runs of this benchmark."""
        from .record import RunRecord
        from .workers import WorkerError

        def confirm() -> list[RunRecord]:
            fresh: list[RunRecord] = []
            total = self.settings.confirm_runs
            for i in range(1, total + 1):
                self._say(
                    f"keisei-perf: {result.benchmark_id} looks slower; "
                    f"confirming in fresh process {i}/{total}"
                )
                problem = None
                try:
                    entries = self._run_worker(result.nodeid, [result.benchmark_id], state=state)
                except WorkerError as exc:
                    problem = str(exc)
                if problem is not None:  # outside the except block: no chained traceback
                    pytest.fail(
                        f"{result.benchmark_id}: could not confirm a suspected regression: {problem}",
                        pytrace=False,
                    )
                fresh.extend(RunRecord.from_mapping(e) for e in entries)
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
        """A line on the terminal now, also from inside a test (output capture suspended)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        suspended = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with suspended:
            reporter.write_line(line)

    def _update_baselines(self) -> bool:
        """Measure every benchmark that passed its smoke run in ``--perf-baseline-runs`` fresh
        processes per test and store those runs; False when a worker failed (nothing stored).

        Each test runs alone in its own fresh process, exactly as a confirmation does, so the
        runs that decide a suspected regression later are alike the baseline's. (Run after other
        tests in one process, ``resnet_tower`` at batch 64 read ~10% slower against the reference
        than run alone: a process's history is part of its timing.)
        """
        from .baseline import git_commit, run_record
        from .compile_state import measured_states
        from .workers import WorkerError

        if self.store is None:
            return True
        wanted: dict[str, list[str]] = {}
        for r in self.results:
            if not r.failures:
                wanted.setdefault(r.nodeid, []).append(r.benchmark_id)
        if not wanted:
            return True
        commit = git_commit(self.config.rootpath)
        runs: dict[str, list[dict[str, Any]]] = {b: [] for benches in wanted.values() for b in benches}
        total = self.settings.baseline_runs
        for i in range(1, total + 1):
            self._say(
                f"keisei-perf: baseline run {i}/{total}: {len(wanted)} test(s), each in a fresh process "
                f"({len(runs)} benchmarks)"
            )
            for nodeid, benches in sorted(wanted.items()):
                for state in measured_states(self.settings.compile_state):
                    try:
                        entries = self._run_worker(nodeid, benches, state=state)
                    except WorkerError as exc:
                        self._say(f"keisei-perf: baseline NOT updated (nothing was written): {exc}")
                        return False
                    for entry in entries:
                        runs[entry["benchmark_id"]].append(run_record(entry, git_commit=commit))
        path = self.store.replace_runs(runs)
        self._say(f"keisei-perf: stored {total} runs of {len(runs)} benchmark(s) in {path}")
        if self.history is not None:
            where = self.history.record_update(runs, self.baselines, commit)
            self._say(f"keisei-perf: history of {len(runs)} benchmark(s) kept in {where}")
            for bench in runs:
                for finding in self.history.drift(bench, self.settings.threshold):
                    self._say(f"keisei-perf: DRIFT: {finding.message}")
        return True


def _nearest_id(bench: str, stored: dict[str, Any]) -> str | None:
    """A stored id that equals ``bench`` but for leading path components (another rootdir)."""
    for other in sorted(stored):
        if other.endswith("/" + bench) or bench.endswith("/" + other):
            return other
    return None


def _record_properties(item: pytest.Item, result: PerfResult) -> None:
    """Results as JUnit XML properties of the test (what ``record_property`` does)."""
    prefix = f"perf.{result.name}." if result.name else "perf."
    props: list[tuple[str, object]] = []
    for mode, m in result.modes.items():
        props += [(f"{prefix}{mode}.median_s", m.median_s), (f"{prefix}{mode}.rounds", m.rounds)]
        if m.compile_time_s is not None:
            props.append((f"{prefix}{mode}.compile_time_s", round(m.compile_time_s, 4)))
            props.append((f"{prefix}{mode}.compile_cache", str(m.compile_cache)))
        for state, seconds in (("cold", m.cold_compile_time_s), ("warm", m.warm_compile_time_s)):
            if seconds is not None:
                props.append((f"{prefix}{mode}.{state}_compile_time_s", round(seconds, 4)))
        for state, calls in (m.break_even_calls or {}).items():
            value = calls if isinstance(calls, str) else round(calls, 1)
            props.append((f"{prefix}{mode}.break_even_calls.{state}", value))
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
    for candidate, (ratio, ci) in result.speedups.items():
        props.append((f"{prefix}{candidate}.speedup", round(ratio, 4)))
        if ci is not None:
            props.append((f"{prefix}{candidate}.speedup_ci", f"{ci[0]:.4f},{ci[1]:.4f}"))
    item.user_properties.extend(props)


class PerfFixture:
    """The ``perf`` fixture: ``perf.benchmark(fn, *args, name="", **kwargs) -> PerfResult``."""

    def __init__(self, item: pytest.Item, session: PerfSession) -> None:
        self._item = item
        self._session = session
        self._names: set[str] = set()
        #: Results of this test's benchmarks, in call order.
        self.results: list[PerfResult] = []

    def benchmark(
        self, fn: Callable[..., Any], *args: Any, name: str = "", device: Any = None, **kwargs: Any
    ) -> PerfResult:
        """Warm up, time every mode, check compiled against eager, and gate against the baseline.

        ``fn`` is an ``nn.Module`` or any callable, called as ``fn(*args, **kwargs)``. Several
        benchmarks in one test need distinct ``name`` values. ``device`` (``"cuda"``,
        ``"cuda:1"``, a ``torch.device``) says where the work runs when the arguments do not show
        it (a closure); otherwise it is read off the tensors and module parameters. A
        regression, a speedup below ``min_speedup`` or an output mismatch fails the test with a
        message naming the numbers.
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
        if device is not None:
            import torch

            try:
                torch.device(device)
            except (RuntimeError, TypeError) as exc:
                pytest.fail(
                    f"{self._item.nodeid}: perf.benchmark(device={device!r}) is not a torch device: {exc}",
                    pytrace=False,
                )
        self._names.add(name)
        result = self._session.benchmark(
            self._item, fn, args, kwargs, name, device=str(device) if device is not None else None
        )
        self.results.append(result)
        return result

    def compare(
        self,
        variants: Mapping[str, Callable[..., Any]],
        *args: Any,
        name: str = "",
        device: Any = None,
        **kwargs: Any,
    ) -> PerfResult:
        """Time ``variants`` (an ordered mapping of name -> callable) against each other.

        The first variant is the reference, each later one a candidate: rounds alternate ABBA
        with the reference workload, every candidate's outputs are checked against the
        reference's with the usual tolerance rules, and ``result.speedups[candidate]`` is
        reference time / candidate time with a 95% interval. The marker's ``min_speedup`` must
        hold with confidence (the interval's lower end) for each candidate. Each variant is a mode
        of the result: it is gated against its baseline like eager and compiled are.
        """
        where = f"{self._item.nodeid}: perf.compare()"
        if not isinstance(variants, Mapping) or len(variants) < 2:
            pytest.fail(
                f"{where} needs a mapping of at least two named callables, got {variants!r}", pytrace=False
            )
        bad = [str(k) for k, v in variants.items() if not isinstance(k, str) or not k or not callable(v)]
        if bad:
            pytest.fail(
                f"{where}: variant(s) {', '.join(bad)} need a non-empty name and a callable", pytrace=False
            )
        if name in self._names:
            pytest.fail(
                f"{where}: a second benchmark named {name!r}; give each a distinct name=...", pytrace=False
            )
        self._names.add(name)
        first = next(iter(variants.values()))
        result = self._session.benchmark(
            self._item,
            first,
            args,
            kwargs,
            name,
            device=str(device) if device is not None else None,
            variants=dict(variants),
        )
        self.results.append(result)
        return result


@pytest.fixture
def perf(request: pytest.FixtureRequest) -> PerfFixture:
    """Benchmark a model or callable in eager and compiled modes: ``perf.benchmark(model, x)``."""
    return PerfFixture(request.node, request.config.stash[session_key])
