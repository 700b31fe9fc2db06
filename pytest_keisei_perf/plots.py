"""``--perf-plot DIR``: pictures of each benchmark's rounds and a one-page overview.

matplotlib is an optional extra; :func:`require_matplotlib` turns its absence into one clear
message before any test runs. Figures are drawn with ``matplotlib.figure.Figure`` directly, never
through pyplot, so the user's backend and global state stay untouched.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .files import file_stem
from .report import format_duration, table_rows
from .result import PerfResult

__all__ = ["INSTALL_HINT", "PlotUnavailableError", "require_matplotlib", "write_plots"]

INSTALL_HINT: Final = "pip install 'pytest-keisei-perf[plot]'"
_COLOURS: Final = {
    "regression": "#c62828",
    "improvement": "#2e7d32",
    "inconclusive": "#ef6c00",
    "pass": "#1565c0",
    "no-baseline": "#757575",
}


class PlotUnavailableError(RuntimeError):
    """``--perf-plot`` was asked for but matplotlib is not installed."""


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailableError(f"--perf-plot needs matplotlib: {INSTALL_HINT}") from None


def write_plots(
    directory: Path,
    results: Sequence[PerfResult],
    baselines: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[Path]:
    """One PNG per timed benchmark plus ``overview.png``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    timed = [r for r in results if not r.disabled and r.modes]
    for result in timed:
        path = directory / f"{file_stem(result.benchmark_id)}.png"
        _benchmark_figure(result, baselines.get(result.benchmark_id, ())).savefig(path, dpi=100)
        written.append(path)
        if result.breakdowns:
            path = directory / f"{file_stem(result.benchmark_id)}.breakdown.png"
            _breakdown_figure(result).savefig(path, dpi=100)
            written.append(path)
    if timed:
        path = directory / "overview.png"
        _overview_figure(timed).savefig(path, dpi=100)
        written.append(path)
    return written


def _benchmark_figure(result: PerfResult, runs: Sequence[Mapping[str, Any]]) -> Any:
    """Per mode: every baseline run's rounds and this run's, as jittered strips with medians."""
    from matplotlib.figure import Figure

    modes = list(result.modes)
    figure = Figure(figsize=(4.5 * len(modes) + 1, 4.2), layout="constrained")
    axes = figure.subplots(1, len(modes), squeeze=False)[0]
    for ax, mode in zip(axes, modes, strict=True):
        groups = [
            (f"b{i}", [s * 1e3 for s in run["modes"][mode]["samples_s"]])
            for i, run in enumerate(runs, 1)
            if mode in run.get("modes", {})
        ]
        groups.append(("now", [s * 1e3 for s in result.modes[mode].samples_s]))
        verdict = result.verdicts.get(mode)
        status = verdict.status if verdict is not None else "-"
        for x, (label, samples) in enumerate(groups):
            colour = _COLOURS.get(status, "#000000") if label == "now" else "#9e9e9e"
            jitter = [x + ((i * 0.618) % 1 - 0.5) * 0.4 for i in range(len(samples))]
            ax.scatter(jitter, samples, s=10, alpha=0.7, color=colour)
            median = statistics.median(samples)
            ax.hlines(median, x - 0.3, x + 0.3, color="black", linewidth=1.5)
        ax.set_xticks(range(len(groups)), [label for label, _ in groups])
        ax.set_ylabel("time per call (ms)")
        change = ""
        if verdict is not None and verdict.change is not None:
            change = f" {verdict.change:+.1%}"
        ax.set_title(f"{mode}: {status}{change}", color=_COLOURS.get(status, "#000000"))
        ax.grid(axis="y", alpha=0.3)
    speedup = f", compiled {result.speedup:.2f}x eager" if result.speedup is not None else ""
    subtitle = f"baseline runs b1..b{len(runs)} vs this run" if runs else "no baseline: this run only"
    figure.suptitle(f"{result.benchmark_id}{speedup}\n{subtitle}", fontsize=10)
    return figure


def _breakdown_figure(result: PerfResult) -> Any:
    """``--perf-profile``: one stacked bar per mode, by module class (own time, so the parts add
    up), or by op where no module is left (compiled code); the rest is "other"."""
    from matplotlib.figure import Figure

    modes = list(result.breakdowns)
    figure = Figure(figsize=(11, 1.6 + 0.9 * len(modes)), layout="constrained")
    ax = figure.subplots()
    palette = [f"C{i}" for i in range(10)]
    colours: dict[str, str] = {}
    for y, mode in enumerate(reversed(modes)):
        b = result.breakdowns[mode]
        parts = [s for s in (b.classes_self or b.ops) if s.share >= 0.005][:9]
        left = 0.0
        for part in parts:
            colour = colours.setdefault(part.name, palette[len(colours) % len(palette)])
            ax.barh(y, part.share * 100, left=left * 100, color=colour, label=part.name)
            if part.share >= 0.04:
                centre = (left + part.share / 2) * 100
                ax.text(centre, y, f"{part.share:.0%}", ha="center", va="center", fontsize=8)
            left += part.share
        ax.barh(y, max(0.0, 1 - left) * 100, left=left * 100, color="#e0e0e0")
    ax.set_yticks(range(len(modes)), list(reversed(modes)))
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of a profiled call (%): module classes' own time, or ops where no module is left")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(
        unique.values(), unique.keys(), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4
    )
    bound = f"\n{result.bound}" if result.bound else ""
    figure.suptitle(f"{result.benchmark_id}: where the time goes{bound}", fontsize=9)
    return figure


def _overview_figure(results: Sequence[PerfResult]) -> Any:
    """Change against baseline with its 95% interval, one bar per benchmark and mode."""
    from matplotlib.figure import Figure

    rows = [row for row in table_rows(results) if row.mode != "-"]
    figure = Figure(figsize=(12, 1.4 + 0.45 * len(rows)), layout="constrained")
    ax = figure.subplots()
    for y, row in enumerate(reversed(rows)):
        verdict = row.verdict
        colour = _COLOURS.get(row.status, "#000000")
        if verdict is None or verdict.change is None:
            ax.text(0, y, f"{row.status} ({format_duration(row.median_s)})", va="center", color=colour)
            continue
        ax.barh(y, verdict.change * 100, color=colour, alpha=0.6)
        if verdict.change_ci is not None:
            centre = verdict.change * 100
            low, high = (c * 100 for c in verdict.change_ci)
            ax.errorbar(centre, y, xerr=[[centre - low], [high - centre]], color="black", capsize=3)
    ax.set_yticks(range(len(rows)), [f"{row.benchmark} [{row.mode}]" for row in reversed(rows)])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("change vs baseline (%, machine-normalised, 95% interval)")
    figure.suptitle(
        "keisei-perf: regressions red, improvements green, passes blue, no baseline grey", fontsize=11
    )
    ax.grid(axis="x", alpha=0.3)
    return figure
