"""Performance history that survives re-baselining: one JSON line per summary.

Two files share one line format (``"format": "keisei-perf-history", "version": 1``):

* ``<baselines>/<machine key>.history.jsonl``: every ``--perf-update-baseline`` appends a summary of
  the runs it stores (and, the first time, of the runs it replaces); at most
  :data:`MAX_ENTRIES` per benchmark are kept.
* ``--perf-history PATH``: every gated run appends its summary, for a CI cache, artifact or branch.
  An A/B run (``--perf-compare-ref``) appends ``kind="ab"`` entries instead: each mode's change
  against REF with the standard error of its log, which needs no host identity, so a history
  of pushes on mixed runners chains into a trend (:func:`pytest_keisei_perf.trend.chain`).

A line that is not valid JSON or not a valid entry is named in a warning and skipped. It is
never rewritten: appends leave it alone, and trimming keeps it verbatim.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from . import formats
from .record import RunRecord, utc_now

__all__ = [
    "FORMAT",
    "MAX_ENTRIES",
    "VERSION",
    "HistoryEntry",
    "ModeSummary",
    "ab_entry",
    "append_entries",
    "history_file",
    "read_history",
    "record_update",
    "series",
    "summarize",
]

FORMAT: Final = "keisei-perf-history"
VERSION: Final = 1
#: Entries kept per benchmark in a baseline history file.
MAX_ENTRIES: Final = 200
KINDS: Final = ("baseline", "run", "ab")


@dataclass(frozen=True)
class ModeSummary:
    """One mode over an entry's runs: ``statistic`` is the mean reference-normalised log time."""

    median_s: float
    statistic: float
    statistic_sd: float | None = None
    compile_time_s: float | None = None
    compile_state: str | None = None
    #: Median over the runs of each run's p95 of single calls (None where calls were too short).
    p95_s: float | None = None
    #: ``kind="ab"`` only: the paired change against REF (fraction) and the standard error of
    #: ``log1p(change)``.
    change: float | None = None
    change_se: float | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """A summary of one baseline (``kind="baseline"``), one gated run (``kind="run"``) or one A/B
    run against REF (``kind="ab"``; ``extra["ref_commit"]`` names REF)."""

    kind: str
    benchmark_id: str
    machine: str
    timestamp: str
    runs: int
    modes: Mapping[str, ModeSummary]
    git_commit: str | None = None
    torch: str | None = None
    speedup: float | None = None
    compile_state: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {"format": FORMAT, "version": VERSION} | asdict(self)
        data["modes"] = {name: asdict(mode) for name, mode in self.modes.items()}
        return data

    @classmethod
    def from_json(cls, data: Any) -> HistoryEntry:
        """Parse and check one line's object against the history-line format (:mod:`.formats`);
        ``ValueError`` says what is wrong."""
        version = data.get("version") if isinstance(data, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
            raise ValueError(f"version {version} is newer than this plugin understands ({VERSION}); upgrade")
        problem = formats.first_problem("history-line", data)
        if problem:
            raise ValueError(problem)
        modes = {}
        for name, raw in data["modes"].items():
            summary = ModeSummary(
                median_s=float(raw["median_s"]),
                statistic=float(raw["statistic"]),
                statistic_sd=_number_or_none(raw.get("statistic_sd")),
                compile_time_s=_number_or_none(raw.get("compile_time_s")),
                compile_state=raw.get("compile_state") if isinstance(raw.get("compile_state"), str) else None,
                p95_s=_number_or_none(raw.get("p95_s")),
                change=_number_or_none(raw.get("change")),
                change_se=_number_or_none(raw.get("change_se")),
            )
            modes[str(name)] = summary
        return cls(
            kind=data["kind"],
            benchmark_id=data["benchmark_id"],
            machine=data["machine"],
            timestamp=data["timestamp"],
            runs=int(data["runs"]),
            modes=modes,
            git_commit=data.get("git_commit"),
            torch=data.get("torch"),
            speedup=_number_or_none(data.get("speedup")),
            compile_state=data.get("compile_state"),
            extra=data.get("extra") or {},
        )


def _number_or_none(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def history_file(baseline_dir: Path, machine_key: str) -> Path:
    """The history kept beside a machine's baseline file."""
    return baseline_dir / f"{machine_key}.history.jsonl"


def summarize(
    benchmark_id: str,
    runs: Sequence[RunRecord],
    *,
    kind: str,
    machine: str,
    torch_version: str | None,
    git_commit: str | None = None,
) -> HistoryEntry | None:
    """One entry for ``runs`` of one benchmark; None when no run has a usable mode."""
    modes: dict[str, ModeSummary] = {}
    for mode in dict.fromkeys(m for r in runs for m in r.modes):
        having = [r for r in runs if mode in r.modes and r.reference_samples_s]
        values = [v for v in (r.statistic(mode) for r in having) if v is not None]
        if not values:
            continue
        compile_times = [t for t in (r.modes[mode].compile_time_s for r in having) if t is not None]
        p95s = [p for p in (r.modes[mode].p95_s for r in having) if p is not None]
        modes[mode] = ModeSummary(
            median_s=statistics.median(r.modes[mode].median_s for r in having),
            statistic=statistics.fmean(values),
            statistic_sd=statistics.stdev(values) if len(values) > 1 else None,
            compile_time_s=statistics.median(compile_times) if compile_times else None,
            compile_state=having[-1].modes[mode].compile_cache,
            p95_s=statistics.median(p95s) if p95s else None,
        )
    if not modes:
        return None
    speedups = [r.speedup for r in runs if r.speedup]
    last = runs[-1]
    return HistoryEntry(
        kind=kind,
        benchmark_id=benchmark_id,
        machine=machine,
        timestamp=last.timestamp or utc_now(),
        runs=len(runs),
        modes=modes,
        git_commit=git_commit or last.git_commit,
        torch=torch_version,
        speedup=statistics.median(speedups) if speedups else None,
        compile_state=last.compile_state,
    )


def ab_entry(
    benchmark_id: str,
    runs: Sequence[RunRecord],
    changes: Mapping[str, tuple[float, float]],
    *,
    machine: str,
    torch_version: str | None,
    git_commit: str | None,
    ref_commit: str | None,
) -> HistoryEntry | None:
    """One ``kind="ab"`` entry: the working tree's ``runs`` summarised, each mode with its
    (change, standard error of the log change) against REF from ``changes``."""
    entry = summarize(
        benchmark_id, runs, kind="ab", machine=machine, torch_version=torch_version, git_commit=git_commit
    )
    if entry is None:
        return None
    modes = {
        name: dataclasses.replace(summary, change=changes[name][0], change_se=changes[name][1])
        for name, summary in entry.modes.items()
        if name in changes
    }
    if not modes:
        return None
    return dataclasses.replace(entry, modes=modes, extra={"ref_commit": ref_commit} if ref_commit else {})


def read_history(path: Path) -> tuple[list[HistoryEntry], list[str]]:
    """The valid entries of ``path`` in file order, and one problem per bad line
    (``PATH:LINE: what is wrong``). A missing file is an empty history."""
    entries: list[HistoryEntry] = []
    problems: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: cannot be read: {exc}"]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(_parse(line))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            problems.append(f"{path}:{number}: {exc}; line skipped")
    return entries, problems


def _parse(line: str) -> HistoryEntry:
    """One line's entry; ``ValueError`` (bad JSON included) says what is wrong."""
    return HistoryEntry.from_json(json.loads(line, parse_constant=_reject_constant))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _line(entry: HistoryEntry) -> str:
    return json.dumps(entry.to_json(), sort_keys=True, allow_nan=False)


def append_entries(path: Path, entries: Iterable[HistoryEntry]) -> int:
    """Append ``entries`` as lines (``--perf-history``); existing lines are never touched."""
    text = "".join(_line(e) + "\n" for e in entries)
    if not text:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        if handle.tell() > 0 and not _ends_with_newline(path):
            handle.write("\n")  # a truncated last line stays a line of its own
        handle.write(text)
    return text.count("\n")


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def record_update(path: Path, entries: Sequence[HistoryEntry], *, max_entries: int = MAX_ENTRIES) -> None:
    """Add a baseline update's entries and keep the last ``max_entries`` per benchmark.

    The file is rewritten atomically (under the caller's lock); lines that are not valid
    entries are kept verbatim where they were.
    """
    from .files import write_text_atomic
    from .locks import lock_beside

    with lock_beside(path):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        lines = [ln for ln in lines if ln.strip()] + [_line(e) for e in entries]
        parsed: list[HistoryEntry | None] = []
        for line in lines:
            try:
                parsed.append(_parse(line))
            except ValueError:
                parsed.append(None)
        seen: dict[str, int] = {}
        keep = [True] * len(lines)
        for i in range(len(lines) - 1, -1, -1):
            entry = parsed[i]
            if entry is None:
                continue
            seen[entry.benchmark_id] = seen.get(entry.benchmark_id, 0) + 1
            keep[i] = seen[entry.benchmark_id] <= max_entries
        text = "".join(line + "\n" for line, kept in zip(lines, keep, strict=True) if kept)
        write_text_atomic(path, text)


def series(
    entries: Iterable[HistoryEntry], benchmark_id: str, mode: str, *, kind: str, machine: str | None = None
) -> list[HistoryEntry]:
    """The entries of one benchmark, mode and kind (and machine), oldest first."""
    chosen = [
        e
        for e in entries
        if e.benchmark_id == benchmark_id
        and e.kind == kind
        and mode in e.modes
        and (machine is None or e.machine == machine)
    ]
    return sorted(chosen, key=lambda e: e.timestamp)
