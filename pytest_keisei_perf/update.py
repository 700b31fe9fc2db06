"""``--perf-update-baseline``: the tests run once here (smoke), then every benchmark that passed
is measured in ``--perf-baseline-runs`` fresh processes per test, and those runs are stored.

Each test runs alone in its own fresh process, exactly as a confirmation does, so the runs that
decide a suspected regression later are alike the baseline's: a process's history is part of
its timing (docs, "Baselines and the regression gate").
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .calls import BenchmarkCall
    from .fresh import FreshProcesses
    from .result import PerfResult
    from .session import PerfSession
    from .settings import BenchmarkConfig
    from .stored_gate import StoredGate

__all__ = ["UpdateRole"]


class UpdateRole:
    """Smoke-runs each benchmark in the session; measures and stores after the test loop."""

    def __init__(self, session: PerfSession) -> None:
        from .fresh import FreshProcesses
        from .stored_gate import StoredGate

        self._session = session
        self.gate: StoredGate = StoredGate(session)
        self.fresh: FreshProcesses = FreshProcesses(session)
        self._loaded = False

    @property
    def _updating(self) -> bool:
        """An xdist worker only smoke-runs: its controller measures and stores."""
        return self._session.xdist_workers is None

    def activate(self) -> None:
        if not self._loaded:
            self._loaded = True
            self.gate.load()

    def measure(
        self, item: pytest.Item, call: BenchmarkCall, config: BenchmarkConfig, test_id: str
    ) -> PerfResult:
        return call.smoke(config, item.nodeid, test_id)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """The baseline file is checked before anything runs, and measured after the smoke runs;
        a worker that fails fails the session."""
        if self._updating:
            self.activate()
        outcome = yield
        if self._updating and not self._update():
            session.testsfailed += 1
        return outcome

    def _update(self) -> bool:
        """Measure and store, holding the machine-wide measurement lock; False when a worker
        failed (nothing is stored then)."""
        session = self._session
        store = session.store
        wanted: dict[str, list[str]] = {}
        for r in session.results:
            if not r.failures:
                wanted.setdefault(r.nodeid, []).append(r.benchmark_id)
        if store is None or not wanted:
            return True
        with session.measurement_lock():  # an update's workers must not time beside another's
            return self._measure_and_store(wanted)

    def _measure_and_store(self, wanted: dict[str, list[str]]) -> bool:
        from .baseline import run_record
        from .compile_state import measured_states
        from .workers import WorkerError

        session, say = self._session, self._session.say
        store = session.store
        assert store is not None
        commit = self.gate.commit
        runs: dict[str, list[dict[str, Any]]] = {b: [] for benches in wanted.values() for b in benches}
        total = session.settings.baseline_runs
        for i in range(1, total + 1):
            say(
                f"keisei-perf: baseline run {i}/{total}: {len(wanted)} test(s), each in a fresh process "
                f"({len(runs)} benchmarks)"
            )
            for nodeid, benches in sorted(wanted.items()):
                for state in measured_states(session.settings.compile_state):
                    try:
                        results = self.fresh.run(nodeid, benches, state=state)
                    except WorkerError as exc:
                        say(f"keisei-perf: baseline NOT updated (nothing was written): {exc}")
                        return False
                    for result in results:
                        runs[result.benchmark_id].append(run_record(result.to_dict(), git_commit=commit))
        path = store.replace_runs(runs)
        say(f"keisei-perf: stored {total} runs of {len(runs)} benchmark(s) in {path}")
        history = self.gate.history
        if history is not None:
            where = history.record_update(runs, self.gate.baselines, commit)
            say(f"keisei-perf: history of {len(runs)} benchmark(s) kept in {where}")
            for bench in runs:
                for finding in history.drift(bench, session.settings.threshold):
                    say(f"keisei-perf: DRIFT: {finding.message}")
        return True
