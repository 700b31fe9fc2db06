"""What one pytest session does with history: summaries of a baseline update, ``--perf-history``
lines of a gated run, and the drift check along both.

Two series are checked per benchmark and mode, never mixed: the baseline summaries of this
machine (each the mean of several fresh processes), and the gated runs of ``--perf-history``
(each one in-session run, which reads differently from a fresh process) with the current run last.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import history, trend
from .history import HistoryEntry
from .record import RunRecord

__all__ = ["DriftFinding", "DriftWatch", "SessionHistory"]


@dataclass(frozen=True)
class DriftFinding:
    """A drift above the threshold: the message a warning or a failure carries."""

    mode: str
    message: str


class SessionHistory:
    """This machine's baseline history file and the ``--perf-history`` file, read once."""

    def __init__(
        self,
        baseline_dir: Path,
        machine_key: str,
        *,
        torch_version: str | None,
        history_path: Path | None,
        window: int,
        since: str | None,
    ) -> None:
        self.baseline_path = history.history_file(baseline_dir, machine_key)
        self.machine_key = machine_key
        self.torch_version = torch_version
        self.history_path = history_path
        self.window = window
        self.since = since
        self._entries: list[HistoryEntry] | None = None
        #: Bad lines found while reading (``PATH:LINE: why``), for one warning each.
        self.problems: list[str] = []

    @property
    def entries(self) -> list[HistoryEntry]:
        if self._entries is None:
            self._entries = []
            for path in dict.fromkeys(p for p in (self.baseline_path, self.history_path) if p is not None):
                found, problems = history.read_history(path)
                self._entries += found
                self.problems += problems
        return self._entries

    def summary(
        self, bench: str, runs: Sequence[RunRecord], *, kind: str, commit: str | None = None
    ) -> HistoryEntry | None:
        return history.summarize(
            bench,
            runs,
            kind=kind,
            machine=self.machine_key,
            torch_version=self.torch_version,
            git_commit=commit,
        )

    def record_update(
        self,
        new_runs: Mapping[str, Sequence[Mapping[str, Any]]],
        old_runs: Mapping[str, Sequence[Mapping[str, Any]]],
        commit: str | None,
    ) -> Path:
        """Summarise an update's runs into the baseline history; the runs they replace too, the
        first time a benchmark gets history (they were stored before history existed)."""
        known = {e.benchmark_id for e in self.entries if e.kind == "baseline"}
        added: list[HistoryEntry] = []
        for bench, runs in new_runs.items():
            if bench not in known and old_runs.get(bench):
                previous = self.summary(bench, _records(old_runs[bench]), kind="baseline")
                if previous is not None:
                    added.append(previous)
            entry = self.summary(bench, _records(runs), kind="baseline", commit=commit)
            if entry is not None:
                added.append(entry)
        history.record_update(self.baseline_path, added)
        self.entries.extend(added)
        return self.baseline_path

    def drift(self, bench: str, threshold: float, current: HistoryEntry | None = None) -> list[DriftFinding]:
        """Drifts above ``threshold`` along this benchmark's baseline series and, with
        ``--perf-history``, its run series ending in ``current``."""
        findings: list[DriftFinding] = []
        kinds = ("baseline", "run") if self.history_path is not None else ("baseline",)
        entries = [*self.entries, *([current] if current is not None else [])]
        modes = dict.fromkeys(m for e in entries if e.benchmark_id == bench for m in e.modes)
        for kind in kinds:
            for mode in modes:
                chosen = self._window(
                    history.series(entries, bench, mode, kind=kind, machine=self.machine_key)
                )
                found = trend.drift([e.modes[mode].statistic for e in chosen], threshold=threshold)
                if found is not None and found.flagged:
                    findings.append(
                        DriftFinding(mode, _describe(bench, mode, kind, chosen, found, threshold))
                    )
        return findings

    def _window(self, entries: list[HistoryEntry]) -> list[HistoryEntry]:
        if self.since:
            starts = [i for i, e in enumerate(entries) if (e.git_commit or "").startswith(self.since)]
            if starts:
                return entries[starts[0] :]
        return entries[-self.window :]

    def append_runs(self, entries: Sequence[HistoryEntry]) -> int:
        """``--perf-history``: one line per gated run."""
        if self.history_path is None:
            return 0
        return history.append_entries(self.history_path, entries)


def _records(runs: Sequence[Mapping[str, Any]]) -> list[RunRecord]:
    """The runs as records; of a ``--perf-compile-state both`` update only the first state's
    (warm), so that one series never mixes compile-cache states."""
    records = [RunRecord.from_mapping(r) for r in runs]
    return [r for r in records if r.compile_state == records[0].compile_state] if records else []


def _describe(
    bench: str, mode: str, kind: str, entries: Sequence[HistoryEntry], found: trend.Drift, threshold: float
) -> str:
    first = entries[0]
    values = [e.modes[mode].statistic for e in entries]
    steps = ", ".join(f"{(b - a) * 100:+.1f}%" for a, b in itertools.pairwise(values))
    what = "re-baselines" if kind == "baseline" else "gated runs (--perf-history)"
    since = f"commit {first.git_commit[:12]}" if first.git_commit else first.timestamp
    return (
        f"{bench} [{mode}]: drifted {found.change:+.1%} over {len(entries)} {what} since {since} "
        f"(p={found.p_value:.2g}), above the {threshold:.0%} threshold; the steps between entries were "
        f"{steps} (log-normalised, approximately %)"
    )


class DriftWatch:
    """A gated session's side of the history: the drift check of each run, and the run
    summaries it appends to ``--perf-history`` at the end."""

    def __init__(
        self, history: SessionHistory, *, fail_drift: bool, commit: Callable[[], str | None]
    ) -> None:
        self.history = history
        self._fail_drift = fail_drift
        self._commit = commit
        self._runs: list[HistoryEntry] = []
        self._warned = 0

    def check(self, bench: str, current: RunRecord, threshold: float) -> list[str]:
        """Warn (or, with ``--perf-fail-drift``, fail) on drift along the history; remember this
        run's summary for ``--perf-history``."""
        import warnings

        from .compile_state import COLD_MODE
        from .perf_warnings import PerfDriftWarning, PerfHistoryWarning

        entry = None
        if self.history.history_path is not None:
            modes = {m: r for m, r in current.modes.items() if m != COLD_MODE}  # another process's
            run = dataclasses.replace(current, modes=modes)
            entry = self.history.summary(bench, [run], kind="run", commit=self._commit())
            if entry is not None:
                self._runs.append(entry)
        failures = []
        for finding in self.history.drift(bench, threshold, entry):
            warnings.warn(PerfDriftWarning(finding.message), stacklevel=1)
            if self._fail_drift:
                failures.append(f"{finding.message} (--perf-fail-drift)")
        for problem in self.history.problems[self._warned :]:
            warnings.warn(PerfHistoryWarning(f"keisei-perf: {problem}"), stacklevel=1)
        self._warned = len(self.history.problems)
        return failures

    def keep(self, say: Callable[[str], None]) -> None:
        """Append this process's run summaries to ``--perf-history``."""
        if not self._runs:
            return
        try:
            added = self.history.append_runs(self._runs)
            say(f"keisei-perf: {added} run summaries appended to {self.history.history_path}")
        except OSError as exc:
            say(f"keisei-perf: could not append to {self.history.history_path}: {exc}")
