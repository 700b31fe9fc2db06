"""``keisei-perf history``: one self-contained HTML page of every benchmark's history, plus PNGs.

Per benchmark, machine and series (baseline updates, or gated runs from ``--perf-history``): the
normalised time of each mode relative to the first entry, and the compiled/eager speedup, against
the entries' commits, with detected steps marked; then a table of the largest changes. The page
has no script and loads nothing: each picture is embedded as a data URI and also written beside
it as a PNG for CI artifacts.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import trend
from .files import file_stem, write_text_atomic
from .history import HistoryEntry
from .plots import require_matplotlib

__all__ = ["Change", "SeriesReport", "analyse", "write_page"]

_MODE_COLOURS: Final = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00")
_KIND_TITLES: Final = {
    "baseline": "baseline updates",
    "run": "gated runs (--perf-history)",
    "ab": "A/B against the parent, chained",
}
#: A/B entries need no host identity: one chain per benchmark whatever runner measured each link.
ANY_RUNNER: Final = "any runner"
#: Entries listed, newest first, under each series' picture.
_LISTED: Final = 30


@dataclass(frozen=True)
class Change:
    """One detected step or drift, for the table of largest changes."""

    benchmark_id: str
    machine: str
    kind: str
    mode: str
    what: str  # "step" or "drift"
    at: str  # commit or timestamp where it happens (a step) or starts (a drift)
    change: float
    p_value: float


@dataclass(frozen=True)
class SeriesReport:
    """One benchmark on one machine, one kind of entry, with its steps per mode."""

    benchmark_id: str
    machine: str
    kind: str
    entries: list[HistoryEntry]
    steps: dict[str, list[trend.Step]]
    #: ``kind="ab"`` only: each mode's chained level per entry that has the mode.
    chains: dict[str, list[trend.ChainPoint]] = dataclasses.field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.benchmark_id} — {self.machine}, {_KIND_TITLES[self.kind]}"

    @property
    def stem(self) -> str:
        return file_stem(f"{self.machine}-{self.kind}-{self.benchmark_id}")


def _label(entry: HistoryEntry) -> str:
    return entry.git_commit[:8] if entry.git_commit else entry.timestamp[:10]


def analyse(entries: Sequence[HistoryEntry], *, threshold: float) -> tuple[list[SeriesReport], list[Change]]:
    """Group entries into series, find their steps and drifts; changes sorted largest first."""
    groups: dict[tuple[str, str, str], list[HistoryEntry]] = {}
    for entry in entries:
        machine = ANY_RUNNER if entry.kind == "ab" else entry.machine
        groups.setdefault((entry.benchmark_id, machine, entry.kind), []).append(entry)
    reports: list[SeriesReport] = []
    changes: list[Change] = []
    for (bench, machine, kind), group in sorted(groups.items()):
        group.sort(key=lambda e: e.timestamp)
        report = _chained(bench, group) if kind == "ab" else _stepped(bench, machine, kind, group)
        reports.append(report)
        changes += _changes(report, threshold)
    changes.sort(key=lambda c: -abs(c.change))
    return reports, changes


def _stepped(bench: str, machine: str, kind: str, group: list[HistoryEntry]) -> SeriesReport:
    steps = {
        mode: trend.detect_steps([e.modes[mode].statistic for e in group if mode in e.modes])
        for mode in dict.fromkeys(m for e in group for m in e.modes)
    }
    return SeriesReport(bench, machine, kind, group, steps)


def _chained(bench: str, group: list[HistoryEntry]) -> SeriesReport:
    chains = {}
    for mode in dict.fromkeys(m for e in group for m in e.modes):
        links = [e.modes[mode] for e in group if mode in e.modes]
        chains[mode] = trend.chain(
            [math.log1p(m.change or 0.0) for m in links], [m.change_se or 0.0 for m in links]
        )
    return SeriesReport(bench, ANY_RUNNER, "ab", group, {m: [] for m in chains}, chains)


def _changes(report: SeriesReport, threshold: float) -> list[Change]:
    """The series' steps and its drift (a chain: its whole length, judged by
    :meth:`trend.ChainPoint.drift`)."""
    bench, machine, kind = report.benchmark_id, report.machine, report.kind
    found = []
    for mode, steps in report.steps.items():
        having = [e for e in report.entries if mode in e.modes]
        for step in steps:
            at = _label(having[step.index])
            found.append(Change(bench, machine, kind, mode, "step", at, step.change, step.p_value))
        chain = report.chains.get(mode)
        drift = (
            chain[-1].drift(threshold)
            if chain
            else trend.drift([e.modes[mode].statistic for e in having], threshold=threshold)
        )
        if drift is not None and drift.flagged:
            found.append(
                Change(bench, machine, kind, mode, "drift", _label(having[0]), drift.change, drift.p_value)
            )
    return found


def _figure(report: SeriesReport) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5.2), dpi=100, layout="constrained")
    time_axes, speed_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    labels = [_label(e) for e in report.entries]
    index = {id(e): i for i, e in enumerate(report.entries)}
    for colour, (mode, steps) in zip(_MODE_COLOURS * 4, report.steps.items(), strict=False):
        having = [e for e in report.entries if mode in e.modes]
        xs = [index[id(e)] for e in having]
        chain = report.chains.get(mode)
        if chain:
            time_axes.plot(xs, [1 + p.level for p in chain], "o-", color=colour, label=mode, markersize=4)
            lows, highs = [1 + p.low for p in chain], [1 + p.high for p in chain]
            time_axes.fill_between(xs, lows, highs, color=colour, alpha=0.15, linewidth=0)
            continue
        first = having[0].modes[mode].statistic
        ys = [math.exp(e.modes[mode].statistic - first) for e in having]
        time_axes.plot(xs, ys, "o-", color=colour, label=mode, markersize=4)
        for step in steps:
            x = xs[step.index] - 0.5
            time_axes.axvline(x, color=colour, linestyle="--", linewidth=1)
            time_axes.annotate(
                f"{step.change:+.1%}", (x, max(ys)), color=colour, fontsize=8, ha="center", va="bottom"
            )
    time_axes.axhline(1.0, color="#9e9e9e", linewidth=0.8)
    time_axes.set_ylabel(
        "time vs before the first link\n(chained A/B, 95% band)"
        if report.chains
        else "time vs first entry\n(reference-normalised)"
    )
    time_axes.legend(loc="upper left", fontsize=8)
    time_axes.set_title(report.title, fontsize=10)
    speed = [(i, e.speedup) for i, e in enumerate(report.entries) if e.speedup]
    if speed:
        speed_axes.plot([i for i, _ in speed], [s for _, s in speed], "s-", color="#424242", markersize=4)
        speed_axes.axhline(1.0, color="#9e9e9e", linewidth=0.8)
    speed_axes.set_ylabel("compiled/eager\nspeedup")
    speed_axes.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
    return figure


_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #212121; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bdbdbd; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.slower { color: #c62828; } .faster { color: #2e7d32; }
img { max-width: 100%; border: 1px solid #e0e0e0; }
"""


def _commit_cell(entry: HistoryEntry, commit_url: str | None) -> str:
    label = html.escape(_label(entry))
    if entry.git_commit and commit_url:
        return f'<a href="{html.escape(commit_url.format(commit=entry.git_commit))}">{label}</a>'
    return label


def _entry_value(report: SeriesReport, mode: str, position: int, entry: HistoryEntry) -> str:
    """One cell of the entries table: a link's change and the chain's level, or the time."""
    summary = entry.modes[mode]
    chain = report.chains.get(mode)
    if chain and summary.change is not None:
        point = chain[position]
        return f"{summary.change:+.1%} (chained {point.level:+.1%}, {point.low:+.1%} to {point.high:+.1%})"
    return f"{summary.median_s * 1e3:.4g} ms"


def _entries_table(report: SeriesReport, commit_url: str | None) -> str:
    """The series' newest entries, each linked to its commit, with each mode's value."""
    modes = list(report.steps)
    positions = {
        mode: {id(e): i for i, e in enumerate(e for e in report.entries if mode in e.modes)} for mode in modes
    }
    rows = []
    for entry in report.entries[::-1][:_LISTED]:
        cells = [
            _entry_value(report, m, positions[m][id(entry)], entry) if m in entry.modes else "-"
            for m in modes
        ]
        rows.append(
            f"<tr><td>{_commit_cell(entry, commit_url)}</td><td>{html.escape(entry.timestamp)}</td>"
            + "".join(f'<td class="num">{html.escape(c)}</td>' for c in cells)
            + "</tr>"
        )
    head = "".join(f"<th>{html.escape(m)}</th>" for m in modes)
    return f"<table><tr><th>commit</th><th>time</th>{head}</tr>\n" + "\n".join(rows) + "</table>"


def write_page(
    out_dir: Path,
    entries: Sequence[HistoryEntry],
    *,
    threshold: float,
    problems: Sequence[str] = (),
    commit_url: str | None = None,
) -> tuple[Path, list[Change]]:
    """Write ``index.html`` and one PNG per series into ``out_dir``; the page and the changes.

    ``commit_url`` (``https://github.com/OWNER/REPO/commit/{commit}``) links each entry to its
    commit."""
    require_matplotlib()
    reports, changes = analyse(entries, threshold=threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for report in reports:
        buffer = io.BytesIO()
        _figure(report).savefig(buffer, format="png")
        png = buffer.getvalue()
        (out_dir / f"{report.stem}.png").write_bytes(png)
        data = base64.b64encode(png).decode("ascii")
        sections.append(
            f'<h2 id="{html.escape(report.stem)}">{html.escape(report.title)}</h2>\n'
            f"<p>{len(report.entries)} entries, {_label(report.entries[0])} to "
            f"{_label(report.entries[-1])}.</p>\n"
            f'<img alt="{html.escape(report.title)}" src="data:image/png;base64,{data}">\n'
            + _entries_table(report, commit_url)
        )
    rows = "\n".join(
        f"<tr><td>{html.escape(c.benchmark_id)}</td><td>{html.escape(c.machine)}</td>"
        f"<td>{_KIND_TITLES[c.kind]}</td><td>{html.escape(c.mode)}</td><td>{c.what}</td>"
        f'<td>{html.escape(c.at)}</td><td class="num {"slower" if c.change > 0 else "faster"}">'
        f'{c.change:+.1%}</td><td class="num">{c.p_value:.2g}</td></tr>'
        for c in changes[:50]
    )
    table = (
        "<table><tr><th>benchmark</th><th>machine</th><th>series</th><th>mode</th><th>change</th>"
        f"<th>at / since</th><th>size</th><th>p</th></tr>\n{rows}</table>"
        if changes
        else "<p>No steps or drifts found.</p>"
    )
    warnings = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>keisei-perf history</title>
<style>{_STYLE}</style></head>
<body>
<h1>keisei-perf history</h1>
<p>{len(entries)} entries in {len(reports)} series. Steps: binary segmentation with a permutation
test, {trend.STEP_ALPHA:.0%} false steps per flat series. Drift: first to last entry, flagged above
{threshold:.0%} and significant at {trend.DRIFT_ALPHA:.0%}. A/B series chain each commit's change
against its parent; the band is the 95% interval, which widens along the chain.</p>
{f"<h2>Lines skipped</h2><ul>{warnings}</ul>" if warnings else ""}
<h2>Largest changes</h2>
{table}
{chr(10).join(sections)}
</body></html>
"""
    path = out_dir / "index.html"
    write_text_atomic(path, page)
    return path, changes
