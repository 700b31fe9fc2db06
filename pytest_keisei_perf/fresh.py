"""Fresh processes of one session: a test measured alone, warm for sure, and confirmations.

Every result comes back typed (:class:`PerfResult`), once, where the process ends.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

import pytest

from .compile_state import needs_warm_rerun, process_state
from .result import PerfResult
from .workers import WorkerError, entry_problem, run_worker, user_worker_args

if TYPE_CHECKING:
    from .record import RunRecord
    from .session import PerfSession

__all__ = ["FreshProcesses"]


class FreshProcesses:
    """Runs this session's tests in fresh worker processes, with the user's configuration."""

    def __init__(self, session: PerfSession) -> None:
        self._session = session
        #: Results per (test, compile state): one process serves all the test's benchmarks.
        self._by_test: dict[tuple[str, str], dict[str, PerfResult]] = {}

    @functools.cached_property
    def user_args(self) -> list[str]:
        """The user's configuration, as every fresh worker process of this session must get it."""
        config = self._session.config
        actions = getattr(getattr(config, "_parser", None), "optparser", None)
        return user_worker_args(
            [str(a) for a in config.invocation_params.args],
            config.getini("addopts"),
            os.environ.get("PYTEST_ADDOPTS", ""),
            getattr(actions, "_option_string_actions", {}),
            inipath=config.inipath,
            rootpath=config.rootpath,
        )

    def run(
        self,
        nodeid: str | Sequence[str],
        wanted: Sequence[str] | None,
        state: str | None = None,
        others: bool = False,
        cpus: Collection[int] | None = None,
    ) -> list[PerfResult]:
        """One fresh process over ``nodeid`` (or several, in their order) in compile-cache
        ``state`` (the session's by default; ``both`` means warm here), warm for sure
        (:meth:`warm_retry`), pinned to ``cpus`` when given."""
        settings = self._session.settings
        state = state or process_state(settings.compile_state)
        config = self._session.config
        nodeids = [nodeid] if isinstance(nodeid, str) else list(nodeid)
        # absolute: the worker runs in the invocation dir
        targets = [str(config.rootpath / n) for n in nodeids]

        def run() -> list[PerfResult]:
            return run_worker(
                targets,
                dataclasses.replace(settings, compile_state=state),
                cwd=config.invocation_params.dir,
                wanted=wanted,
                others=others,
                user_args=self.user_args,
                cpus=cpus,
            )

        label = nodeids[0] if len(nodeids) == 1 else f"the {len(nodeids)} selected tests"
        results = self.warm_retry(run, label, state) or []
        if state == "cold":
            self.note_compile_times(results)
        return results

    def warm_retry(
        self, run: Callable[[], list[PerfResult] | None], label: str, state: str
    ) -> list[PerfResult] | None:
        """``run()`` a fresh process; once more when it was meant to be warm and its compile
        found the cache empty (it has filled it since)."""
        results = run()
        if state == "warm" and results and any(needs_warm_rerun(r) for r in results):
            self.note_compile_times(results)
            self._session.say(f"keisei-perf: {label}: the compile cache was cold; measuring again, warm")
            results = run()
        return results

    def note_compile_times(self, results: Sequence[PerfResult]) -> None:
        times = self._session.compile_times
        if times is not None:
            for result in results:
                times.note(result)

    def result(self, item: pytest.Item, bench: str, state: str, order: Sequence[str] = ()) -> PerfResult:
        """``bench`` measured in a fresh process in compile-cache ``state``; one process per test
        and state serves all the test's benchmarks. A benchmark that failed or went missing
        there fails here, with the process's words."""
        from .session import CONFIG_KEY

        key = (item.nodeid, state)
        problem = None
        if key not in self._by_test:
            try:
                results = self.run(item.nodeid, [bench], state=state, others=True)
                self._by_test[key] = {r.benchmark_id: r for r in results}
            except WorkerError as exc:
                problem = str(exc)
        result = self._by_test.get(key, {}).get(bench)
        if problem is None:
            problem = "the fresh process gave no result for it" if result is None else entry_problem(result)
        if problem is not None:  # outside the except block: no chained traceback
            pytest.fail(
                f"{bench}: measuring in a fresh process ({state} compile cache) failed: {problem}", False
            )
        assert result is not None
        # the report stores modes sorted by name: give them back in the order they run here
        ran = [*order, *item.stash[CONFIG_KEY].modes]
        modes = dict(
            sorted(result.modes.items(), key=lambda kv: ran.index(kv[0]) if kv[0] in ran else len(ran))
        )
        return dataclasses.replace(result, modes=modes, verdicts={}, failures=())

    def confirmer(self, result: PerfResult, state: str | None = None) -> Callable[[], list[RunRecord]]:
        """Re-measure ``result``'s test in fresh processes; their runs of this benchmark."""
        from .record import RunRecord

        def confirm() -> list[RunRecord]:
            fresh: list[RunRecord] = []
            total = self._session.settings.confirm_runs
            for i in range(1, total + 1):
                self._session.say(
                    f"keisei-perf: {result.benchmark_id} looks slower; "
                    f"confirming in fresh process {i}/{total}"
                )
                problem = None
                try:
                    runs = self.run(result.nodeid, [result.benchmark_id], state=state)
                except WorkerError as exc:
                    problem = str(exc)
                if problem is not None:  # outside the except block: no chained traceback
                    pytest.fail(
                        f"{result.benchmark_id}: could not confirm a suspected regression: {problem}",
                        pytrace=False,
                    )
                fresh.extend(RunRecord.from_result(r) for r in runs)
            return fresh

        return confirm
