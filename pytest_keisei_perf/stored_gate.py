"""The stored-baseline gate of one session: this machine's baseline runs, why a benchmark has
none, and its verdicts (:func:`gate.decide`) with the session's ledger and drift check."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from .baseline import BaselineError, git_commit, nearest_machine
from .gate import GateContext, concluded, decide, speedup_drop
from .history_session import DriftWatch, SessionHistory
from .perf_warnings import PerfSpeedupWarning
from .record import RunRecord

if TYPE_CHECKING:
    from .result import PerfResult
    from .session import PerfSession
    from .settings import BenchmarkConfig

__all__ = ["StoredGate", "nearest_id"]


def nearest_id(bench: str, stored: dict[str, Any]) -> str | None:
    """A stored id that equals ``bench`` but for leading path components (another rootdir)."""
    for other in sorted(stored):
        if other.endswith("/" + bench) or bench.endswith("/" + other):
            return other
    return None


class StoredGate:
    """This machine's baseline file, read once and validated, and the verdicts against it."""

    def __init__(self, session: PerfSession) -> None:
        self._session = session
        self.baselines: dict[str, list[dict[str, Any]]] = {}
        #: Facts of the other machines' baseline files, by key: never used for gating.
        self.other_machines: dict[str, dict[str, Any]] = {}
        self.history: SessionHistory | None = None
        self.drift: DriftWatch | None = None

    def load(self) -> None:
        """Read the baselines (a corrupt file stops the run before anything is measured) and
        this machine's history."""
        session = self._session
        session.activate_timing()
        store, settings = session.store, session.settings
        assert store is not None
        try:
            self.baselines = store.load()
            self.other_machines = store.other_machines()
        except BaselineError as exc:
            raise pytest.UsageError(f"keisei-perf: {exc}") from None
        self.history = SessionHistory(
            settings.baseline_dir,
            store.key,
            torch_version=session.machine.get("torch"),
            history_path=settings.history_path,
            window=settings.drift_window,
            since=settings.drift_since,
        )
        self.drift = DriftWatch(self.history, fail_drift=settings.fail_drift, commit=lambda: self.commit)
        session.say(self.key_line())

    def key_line(self) -> str:
        """Said before the first measurement: this host's key and whether anything can be
        compared here, so a host without a baseline learns it at the start, not minutes later."""
        store = self._session.store
        assert store is not None
        if self.baselines:
            return f"keisei-perf: machine key {store.key}: {len(self.baselines)} benchmark(s) in {store.path}"
        line = f"keisei-perf: machine key {store.key}: no baseline here, so nothing will be compared"
        nearest = self._nearest_key()
        return f"{line} ({nearest})" if nearest else line

    def _nearest_key(self) -> str:
        store = self._session.store
        assert store is not None
        found = nearest_machine(store.facts, self.other_machines)
        if found is None:
            return ""
        return f"nearest stored key {found[0]} differs in: {', '.join(found[1]) or 'nothing'}"

    @functools.cached_property
    def commit(self) -> str | None:
        return git_commit(self._session.config.rootpath)

    def missing(self, bench: str) -> tuple[str, str]:
        """Why there are no runs for ``bench``: (reason, message) naming what differs."""
        store = self._session.store
        if not self.baselines and store is not None:
            message = f"{bench}: not compared: no baseline under this machine key {store.key}"
            nearest = self._nearest_key()
            if nearest:
                message += f"; {nearest}"
            return "machine", message + "; create one with pytest -m perf --perf-update-baseline"
        similar = nearest_id(bench, self.baselines)
        hint = f"; a stored id differs only by its prefix: {similar}" if similar else ""
        return "no-entry", f"{bench}: not compared: no baseline entry for this id{hint}"

    def judge(
        self,
        result: PerfResult,
        config: BenchmarkConfig,
        *,
        confirm: Callable[[], Sequence[RunRecord]] | None,
        fresh: bool,
        state: str | None = None,
    ) -> PerfResult:
        """Verdicts per mode from the gate; ``no-baseline`` when there is nothing to compare with.

        ``state`` is the compile-cache state of an extra run beside the session's own (the
        cold runs of ``--perf-compile-state both``): its drift is not checked."""
        settings = self._session.settings
        current = RunRecord.from_result(result)
        bench = result.benchmark_id
        stored = [RunRecord.from_mapping(r) for r in self.baselines.get(bench, ())]
        plain = current  # the history and drift series stay the measured modes
        if config.gate_p95:
            current, stored = current.with_p95_modes(), [r.with_p95_modes() for r in stored]
            if confirm is not None:
                confirm = _with_p95(confirm)
        context = GateContext(
            threshold=config.threshold,
            alpha=config.alpha,
            confirm=confirm,
            ledger=self._session.ledger,
            current_is_fresh=fresh,
        )
        verdicts, gate_failures = decide(
            current, stored, context, label=bench, nodeid=result.nodeid, missing=self.missing(bench)
        )
        failures = [*result.failures, *gate_failures]
        if state is None and self.drift is not None:
            failures += self.drift.check(bench, plain, config.threshold)
        dropped = speedup_drop(current, stored, threshold=config.threshold, alpha=config.alpha)
        if dropped:
            warnings.warn(PerfSpeedupWarning(f"{bench}: {dropped}"), stacklevel=1)
        return concluded(result, verdicts, failures, settings)


def _with_p95(confirm: Callable[[], Sequence[RunRecord]]) -> Callable[[], Sequence[RunRecord]]:
    """Confirmation runs with their p95 modes, like the runs they confirm."""

    def confirmed() -> Sequence[RunRecord]:
        return [run.with_p95_modes() for run in confirm()]

    return confirmed
