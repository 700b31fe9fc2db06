"""The job of one pytest process, chosen once in ``pytest_configure`` (:func:`make_role`).

- smoke (``--perf-disable``): each benchmark's calls run once; nothing is timed or imported
  beyond torch.
- worker (a fresh process of another session): measure here, judge nothing.
- gate (the default): measure, compare with the stored baselines, confirm suspects.
- A/B (``--perf-compare-ref``, :mod:`.ab`) and baseline update (:mod:`.update`).

A role is activated (baselines loaded, timing set up) once collection has found perf tests, and
only in a session that runs tests: ``--collect-only`` activates none.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import warnings
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .calls import BenchmarkCall
    from .fresh import FreshProcesses
    from .result import PerfResult
    from .session import PerfSession, Role
    from .settings import BenchmarkConfig
    from .stored_gate import StoredGate

__all__ = ["GateRole", "SmokeRole", "WorkerRole", "make_role", "role_name"]


def role_name(session: PerfSession) -> str:
    """Which job this process does; options that contradict each other were refused earlier."""
    s = session.settings
    if s.disable:
        return "smoke"
    if s.worker:
        return "worker"
    if s.update_baseline:
        return "update"
    if s.compare_ref:
        return "ab"
    return "gate"


def make_role(session: PerfSession) -> Role:
    """The role object of this process (a pytest plugin too, when it has hooks)."""
    name = role_name(session)
    if name == "smoke":
        return SmokeRole()
    if name == "worker":
        return WorkerRole(session)
    if name == "update":
        from .update import UpdateRole

        return UpdateRole(session)
    if name == "ab":
        from .ab import ABRole

        return ABRole(session)
    return GateRole(session)


class SmokeRole:
    """``--perf-disable``: the tests run, nothing is measured."""

    def activate(self) -> None:
        return None

    def measure(
        self, item: pytest.Item, call: BenchmarkCall, config: BenchmarkConfig, test_id: str
    ) -> PerfResult:
        return call.smoke(config, item.nodeid, test_id)


def measured_here(
    session: PerfSession, item: pytest.Item, call: BenchmarkCall, config: BenchmarkConfig, test_id: str
) -> PerfResult:
    """Every mode timed in this process; a compile that cannot be measured fails the test."""
    from .modes import PerfCompileError
    from .result import benchmark_id

    if session.compile_cache is not None:
        session.compile_cache.renew()  # a cold worker: each benchmark compiles from empty
    try:
        result = call.measure_here(config, item.nodeid, session.progress(benchmark_id(test_id, call.name)))
    except PerfCompileError as exc:
        pytest.fail(str(exc), pytrace=False)
    return dataclasses.replace(result, test_id=test_id)


class WorkerRole:
    """One fresh process of another session: it measures and hands its results back.

    What it has loaded by its first benchmark (torch, the test modules) lives until the process
    exits, so it is moved out of the collector's sight once (``gc.freeze``): a full collection
    (before peak device memory is read, at pytest's exit) then scans only what came after.
    """

    def __init__(self, session: PerfSession) -> None:
        self._session = session
        self._frozen = False
        #: node id -> words of a test that failed or was skipped here, for the parent
        self._outcomes: dict[str, str] = {}

    def activate(self) -> None:
        self._session.activate_timing()
        if not self._frozen:
            gc.collect()
            gc.freeze()
            self._frozen = True

    def measure(
        self, item: pytest.Item, call: BenchmarkCall, config: BenchmarkConfig, test_id: str
    ) -> PerfResult:
        from .result import Verdict
        from .worktree import FORBID_ROOT_ENV, ABError, check_imports

        self.activate()
        result = measured_here(self._session, item, call, config, test_id)
        verdicts = {m: Verdict(mode=m, status="no-baseline", message="worker run") for m in result.modes}
        result = dataclasses.replace(result, verdicts=verdicts)
        forbidden = os.environ.get(FORBID_ROOT_ENV)  # a REF-side process of an A/B run
        if forbidden:
            try:
                check_imports(forbidden)
            except ABError as exc:
                return dataclasses.replace(result, failures=(*result.failures, str(exc)))
        return result

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from .workers import last_lines

        if report.nodeid in self._outcomes or not (report.failed or report.skipped):
            return
        if report.skipped and isinstance(report.longrepr, tuple):
            words = f"skipped there: {report.longrepr[2]}"
        else:
            outcome = "failed" if report.failed else "skipped"
            words = f"{outcome} there ({report.when}):\n{last_lines(report.longreprtext)}"
        self._outcomes[report.nodeid] = words

    def pytest_sessionfinish(self) -> None:
        from .files import write_json_atomic
        from .workers import outcomes_path

        report = self._session.settings.json_path
        if report is not None and self._outcomes:
            write_json_atomic(outcomes_path(report), self._outcomes)


class GateRole:
    """The stored-baseline gate: gated benchmarks are measured in fresh processes like their
    baseline runs, judged against them, and suspects confirmed."""

    def __init__(self, session: PerfSession) -> None:
        from .fresh import FreshProcesses
        from .stored_gate import StoredGate

        self._session = session
        self.gate: StoredGate = StoredGate(session)
        self.fresh: FreshProcesses = FreshProcesses(session)
        self._loaded = False

    def activate(self) -> None:
        if not self._loaded:
            self._loaded = True
            self.gate.load()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.gate.drift is not None:
            self.gate.drift.keep(self._session.say)

    def measure(
        self, item: pytest.Item, call: BenchmarkCall, config: BenchmarkConfig, test_id: str
    ) -> PerfResult:
        from .compile_state import process_state, with_economics
        from .result import benchmark_id

        self.activate()
        s = self._session.settings
        bench = benchmark_id(test_id, call.name)
        # one benchmark at a time per machine: xdist workers and other sessions wait here
        with self._session.measurement_lock():
            if s.compile_state == "cold" and "compiled" in config.modes and not call.variants:
                state: str | None = "cold"  # an empty cache: only a fresh process has one
            elif self.gate.baselines.get(bench):
                # measured like the baseline's runs: an in-session run differs from fresh
                # processes systematically (docs, "The host check, measured")
                state = process_state(s.compile_state)
            else:
                state = None
            if state is not None:
                result = dataclasses.replace(
                    self.fresh.result(item, bench, state, call.order), test_id=test_id
                )
                fresh = True
            else:
                in_session = measured_here(self._session, item, call, config, test_id)
                result = self._warm_for_sure(item, bench, in_session)
                fresh = result is not in_session  # measured again in a fresh process
            confirm = self.fresh.confirmer(result) if s.confirm_runs > 0 else None
            result = self.gate.judge(result, config, confirm=confirm, fresh=fresh)
            times = self._session.compile_times
            if s.compile_state == "both" and "compiled" in result.modes:
                return self._with_cold(item, bench, result, config)
            if times is not None:
                times.note(result)
            return with_economics(result, times)

    def _warm_for_sure(self, item: pytest.Item, bench: str, result: PerfResult) -> PerfResult:
        """A run meant to be warm whose compile found the cache empty is measured again in a
        fresh process, which loads what this compile stored: the program every other CI run and
        the baseline time (an empty cache is a new runner, an evicted cache, a moved rootdir)."""
        from .compile_state import missed_cache

        compiled = result.modes.get("compiled")
        if compiled is None or not missed_cache(compiled.compile_cache):
            return result
        self.fresh.note_compile_times([result])  # the cold compile time, for the economics
        self._session.say(
            f"keisei-perf: {bench}: the compile cache was cold in this session; "
            "measuring again in a fresh process that loads what it stored"
        )
        return dataclasses.replace(self.fresh.result(item, bench, "warm"), test_id=result.test_id)

    def _with_cold(
        self, item: pytest.Item, bench: str, warm: PerfResult, config: BenchmarkConfig
    ) -> PerfResult:
        """``--perf-compile-state both``: add the cold-cache run of ``bench`` beside the warm one,
        gated against the baseline's cold runs, and warn when the two states' speedups differ."""
        from .compile_state import PerfCompileStateWarning, merge_cold, state_gap, with_economics

        times = self._session.compile_times
        cold = dataclasses.replace(self.fresh.result(item, bench, "cold"), test_id=warm.test_id)
        self.fresh.note_compile_times([warm])
        warm, cold = with_economics(warm, times), with_economics(cold, times)
        gap = state_gap(warm, cold)
        if gap is not None:
            warnings.warn(PerfCompileStateWarning(gap), stacklevel=1)
        compiled_only = dataclasses.replace(cold, modes={"compiled": cold.modes["compiled"]})
        confirm = (
            self.fresh.confirmer(compiled_only, "cold") if self._session.settings.confirm_runs > 0 else None
        )
        judged = self.gate.judge(compiled_only, config, confirm=confirm, fresh=True, state="cold")
        return merge_cold(warm, judged)
