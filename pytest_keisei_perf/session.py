"""What every role of one pytest process shares: settings, collection, the machine, the
compile cache, the baseline store, the false-discovery ledger, results and the terminal.

The role (:mod:`.roles`) decides how a benchmark is measured and judged; this session runs the
part every role has in common: the marker checked at collection, and a result recorded,
announced and failed on.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import pytest

from .perf_warnings import PerfXdistWarning
from .settings import BenchmarkConfig, PerfConfigError, PerfSettings, resolve_marker

if TYPE_CHECKING:
    from .baseline import BaselineStore
    from .calls import BenchmarkCall
    from .compile_cache import CompileCache
    from .compile_state import CompileTimes
    from .ledger import FalseDiscoveryLedger
    from .result import PerfResult

__all__ = ["CONFIG_KEY", "PerfSession", "Role", "pytest_cache_dir"]

#: A perf test's resolved marker, stashed on its item at collection.
CONFIG_KEY: Final = pytest.StashKey[BenchmarkConfig]()


class Role(Protocol):
    """The job of one process: smoke run, worker, stored-baseline gate, A/B, or baseline update."""

    def activate(self) -> None:
        """Set up what the role needs, once a perf test is selected."""

    def measure(
        self, item: pytest.Item, call: BenchmarkCall, config: BenchmarkConfig, test_id: str
    ) -> PerfResult:
        """The benchmark's result with its verdicts and failures."""


def pytest_cache_dir(config: pytest.Config) -> Path:
    """pytest's cache dir, also when the cacheprovider plugin is disabled (its ini is then unknown)."""
    try:
        name = str(config.getini("cache_dir"))
    except ValueError:
        name = ".pytest_cache"
    return config.rootpath / name


class PerfSession:
    """One pytest process's shared perf state; its role is chosen once, in ``pytest_configure``."""

    def __init__(self, config: pytest.Config, settings: PerfSettings) -> None:
        self.config = config
        self.settings = settings
        workerinput = getattr(config, "workerinput", None)
        #: Number of xdist workers when this process is one of them, else None.
        self.xdist_workers: int | None = int(workerinput["workercount"]) if workerinput else None
        self.xdist_worker_id: str | None = workerinput["workerid"] if workerinput else None
        self.role: Role | None = None
        self.results: list[PerfResult] = []
        #: Comparisons Benjamini-Hochberg corrects over: one per selected perf test and mode.
        self.expected_comparisons = 0
        self.gated_benchmarks = 0
        self.compile_cache: CompileCache | None = None
        #: Last cold and warm compile times per benchmark (the report's compile economics).
        self.compile_times: CompileTimes | None = None
        self.store: BaselineStore | None = None
        self._ledger: FalseDiscoveryLedger | None = None
        self._machine: dict[str, Any] | None = None

    @property
    def timing_active(self) -> bool:
        return self.compile_cache is not None

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

    @property
    def ledger(self) -> FalseDiscoveryLedger:
        """The session's one Benjamini-Hochberg ledger (gate and A/B verdicts)."""
        if self._ledger is None:
            from .ledger import FalseDiscoveryLedger

            self._ledger = FalseDiscoveryLedger(expected=self.expected_comparisons)
        return self._ledger

    def activate_timing(self) -> None:
        """What timing needs, once: the compile cache, compile times, this machine's store."""
        if self.compile_cache is not None:
            return
        from .baseline import BaselineStore, machine_key
        from .compile_cache import CompileCache, resolve_cache_dir

        s = self.settings
        if s.worker and s.compile_state == "cold":
            self.compile_cache = CompileCache.empty()
        else:
            self.compile_cache = CompileCache(
                *resolve_cache_dir(s.compile_cache, pytest_cache_dir(self.config), s.threads)
            )
        self.compile_cache.activate()
        if not s.worker:
            from .compile_state import CompileTimes

            self.compile_times = CompileTimes(
                pytest_cache_dir(self.config) / "keisei-perf" / "compile-times.json"
            )
        self.store = BaselineStore(s.baseline_dir, *machine_key(self.machine, s.machine))

    def close(self) -> None:
        if self.compile_cache is not None:
            self.compile_cache.deactivate()

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
                node.stash[CONFIG_KEY] = resolve_marker(
                    self.settings, node.nodeid, list(node.iter_markers("perf"))
                )
            except PerfConfigError as exc:
                problems.append(str(exc))
        if not problems:
            return report
        return pytest.CollectReport(report.nodeid, "failed", "\n".join(problems), [], report.sections)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        perf_items = [item for item in session.items if CONFIG_KEY in item.stash]
        self.gated_benchmarks = len(perf_items)
        extra = 1 if self.settings.compile_state == "both" else 0  # the cold compiled mode
        self.expected_comparisons = sum(
            len(c.mode_names) + (extra if "compiled" in c.mode_names else 0)
            for c in (item.stash[CONFIG_KEY] for item in perf_items)
        )
        # a collection alone (--collect-only: IDE discovery, the A/B and prune probes) measures
        # nothing, so it loads no baseline and never imports torch for the timing set-up
        if perf_items and self.role is not None and not session.config.option.collectonly:
            self.role.activate()
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

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.compile_times is not None:
            try:
                self.compile_times.save()
            except OSError as exc:
                self.say(f"keisei-perf: could not keep compile times in {self.compile_times.path}: {exc}")

    # -- one benchmark -------------------------------------------------------------------------
    def benchmark(self, item: pytest.Item, call: BenchmarkCall) -> PerfResult:
        """Measure and judge one benchmark of ``item`` in this process's role; record the
        result, tell the ``pytest_keisei_perf_result`` hook, and fail on its failures."""
        from .ids import stable_test_id
        from .reporting import record_properties

        assert self.role is not None
        config = item.stash[CONFIG_KEY]
        if not config.modes:
            pytest.skip(
                f"no mode left to run: --perf-modes {','.join(self.settings.modes)} "
                "excludes the marker's modes"
            )
        test_id = stable_test_id(item.nodeid, item.path, self.config.rootpath)
        result = self.role.measure(item, call, config, test_id)
        self.results.append(result)
        record_properties(item, result)
        item.config.hook.pytest_keisei_perf_result(item=item, result=result)
        if result.failures:
            pytest.fail("\n".join(result.failures), pytrace=False)
        return result

    # -- the terminal --------------------------------------------------------------------------
    def progress(self, label: str) -> Callable[[str], None] | None:
        """With ``-v``: what a benchmark is doing, round counts at most every 2 s."""
        if self.config.get_verbosity() < 1 or self.settings.worker:
            return None
        last = [time.monotonic()]

        def say(what: str) -> None:
            now = time.monotonic()
            if what.startswith("round ") and now - last[0] < 2.0:
                return
            last[0] = now
            self.say(f"keisei-perf: {label}: {what}")

        return say

    def measurement_lock(self) -> contextlib.AbstractContextManager[None]:
        """The machine-wide measurement lock, saying so when this session has to wait for it."""
        from .locks import MEASUREMENT_LOCK, exclusive_lock

        def waiting() -> None:
            self.say(
                f"keisei-perf: waiting for another perf session to finish measuring ({MEASUREMENT_LOCK})"
            )

        return exclusive_lock(MEASUREMENT_LOCK, on_wait=waiting)

    def say(self, line: str) -> None:
        """A line on the terminal now, also from inside a test (output capture suspended)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        suspended = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with suspended:
            reporter.write_line(line)
