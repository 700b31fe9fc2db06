"""Presenting results: the terminal table, the Markdown summary and the ``--perf-json`` file."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .breakdown import breakdown_markdown
from .files import write_json_atomic
from .result import NOT_COMPARED, CacheState, ModeResult, PerfResult, Verdict

__all__ = [
    "JSON_SCHEMA_VERSION",
    "MARKDOWN_MARKER",
    "economics_lines",
    "format_calls",
    "format_duration",
    "inconclusive_lines",
    "markdown_headline",
    "markdown_summary",
    "not_compared_lines",
    "summary_lines",
    "table_rows",
    "write_json_report",
]

#: Version of the --perf-json layout. 1: first release.
JSON_SCHEMA_VERSION: Final = 1
#: Column widths of the table; the whole row fits 100 columns.
_WIDTHS: Final = (29, 18, 9, 9, 7, 16, 12, 15, 6)
_HEADERS: Final = ("benchmark", "mode", "median", "p95", "spread", "change", "verdict", "speedup", "comp.")


def format_duration(seconds: float | None) -> str:
    """``1.23 ms`` style, three significant digits, or ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = float(f"{seconds:.3g}")  # round first: 0.9996 s is "1 s", not "1e+03 ms"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_calls(calls: float | str | None) -> str:
    """A break-even call count: ``1,234``, ``never`` or ``-`` when unknown."""
    if calls is None:
        return "-"
    if isinstance(calls, str):
        return calls
    return f"{math.ceil(calls):,}"


def _break_even_text(mode: ModeResult) -> str:
    """``1,234 warm / 9,876 cold``: calls before compiling pays, per cache state known."""
    counts = mode.break_even_calls or {}
    return " / ".join(f"{format_calls(counts[s])} {s}" for s in ("warm", "cold") if s in counts) or "-"


def economics_lines(results: Sequence[PerfResult]) -> list[str]:
    """Compile economics per compiled mode (printed with ``-v``): the cache state, cold and warm
    compile times, and after how many calls compiling pays."""
    lines = []
    for result in results:
        for name, mode in result.modes.items():
            if mode.compile_time_s is None or mode.fallback:
                continue
            state = f"{mode.compile_cache} cache" if mode.compile_cache else "no inductor cache"
            times = ", ".join(
                f"{format_duration(t)} {s}"
                for s, t in (("warm", mode.warm_compile_time_s), ("cold", mode.cold_compile_time_s))
                if t is not None
            ) or format_duration(mode.compile_time_s)
            counts = mode.break_even_calls or {}
            if counts and all(c == "never" for c in counts.values()):
                pays = "compiling never pays: compiled is not faster than eager"
            else:
                pays = "compiling pays after " + ", ".join(
                    f"{format_calls(counts[s])} calls from a {s} cache"
                    for s in ("warm", "cold")
                    if s in counts
                )
            lines.append(f"keisei-perf: {result.benchmark_id} [{name}, {state}]: compile {times}; {pays}")
    return lines


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _benchmark_label(result: PerfResult) -> str:
    test = result.nodeid.rsplit("::", 1)[-1]
    return f"{test}[{result.name}]" if result.name else test


def _row(cells: Sequence[str]) -> str:
    parts = [
        (_short(c, w).ljust(w) if i < 2 else _short(c, w).rjust(w))
        for i, (c, w) in enumerate(zip(cells, _WIDTHS, strict=True))
    ]
    return " ".join(parts).rstrip()


@dataclass(frozen=True)
class _Row:
    """One benchmark and mode, as every table shows it."""

    benchmark: str
    mode: str
    median_s: float | None
    spread: float | None
    verdict: Verdict | None
    speedup: str
    compile_time_s: float | None
    compile_cache: CacheState | None
    break_even: str = "-"
    p95_s: float | None = None
    throughput: float | None = None

    @property
    def status(self) -> str:
        return self.verdict.status if self.verdict is not None else "-"


_ORDER: Final = {"regression": 0, "inconclusive": 1, "improvement": 2, "no-baseline": 3, "pass": 4}


def table_rows(results: Sequence[PerfResult]) -> list[_Row]:
    """One row per benchmark and mode, regressions first, then in run order."""
    rows: list[tuple[int, int, _Row]] = []
    for index, result in enumerate(results):
        label = _benchmark_label(result)
        if result.disabled:
            rows.append((5, index, _Row(label, "-", None, None, None, "-", None, None)))
            continue
        for mode, m in result.modes.items():
            speedup = f"{result.speedup:.2f}x" if mode == "compiled" and result.speedup is not None else "-"
            if mode in result.speedups:  # perf.compare: this candidate over the first variant
                speedup = f"{result.speedups[mode][0]:.2f}x"
            if speedup != "-" and result.accuracy is not None and not result.accuracy.checked:
                speedup += " unchecked"  # a speedup of outputs nobody compared
            row = _Row(
                benchmark=label,
                mode=mode,
                median_s=m.median_s,
                spread=m.iqr_s / 2 / m.median_s if m.median_s > 0 else None,
                verdict=result.verdicts.get(mode),
                speedup="fallback" if m.fallback else speedup,
                compile_time_s=m.compile_time_s,
                compile_cache=m.compile_cache,
                break_even=_break_even_text(m),
                p95_s=m.p95_s,
                throughput=result.throughput(mode),
            )
            rows.append((_ORDER.get(row.status, 5), index, row))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [row for _, _, row in rows]


def _compile_cell(row: _Row) -> str:
    if row.compile_time_s is None:
        return "-"
    cache = {"warm": " (warm)", "cold": " (cold)", "partly warm": " (part warm)"}.get(
        row.compile_cache or "", ""
    )
    return format_duration(row.compile_time_s) + cache


def not_compared_lines(results: Sequence[PerfResult], *, verbose: bool = False) -> list[str]:
    """One line per reason why selected benchmarks were not compared, with counts and the first
    case's details (every case with ``verbose``). Printed at the end of every session."""
    by_reason: dict[str, list[tuple[str, Verdict]]] = {}
    for result in results:
        for verdict in result.verdicts.values():
            if verdict.not_compared is not None:
                by_reason.setdefault(verdict.not_compared, []).append((result.benchmark_id, verdict))
    lines = []
    for reason in NOT_COMPARED:
        cases = by_reason.get(reason)
        if not cases:
            continue
        benchmarks = sorted({bench for bench, _ in cases})
        details = list(dict.fromkeys(v.message for _, v in cases))
        lines.append(
            f"keisei-perf: NOT COMPARED ({NOT_COMPARED[reason]}): {len(benchmarks)} benchmark(s), "
            f"{len(cases)} mode(s); e.g. {details[0]}"
        )
        if verbose:
            lines.extend(f"  {detail}" for detail in details[1:])
    return lines


def inconclusive_lines(results: Sequence[PerfResult], *, fails: bool) -> list[str]:
    """One line when some comparisons could not decide (too noisy, too few runs or pairs, raw
    and normalised time disagreeing): an undecided comparison is said, never passed."""
    cases = [(r.benchmark_id, v) for r in results for v in r.verdicts.values() if v.status == "inconclusive"]
    if not cases:
        return []
    benchmarks = {bench for bench, _ in cases}
    tail = "they fail (--perf-fail-inconclusive)" if fails else "--perf-fail-inconclusive fails them"
    return [
        f"keisei-perf: INCONCLUSIVE (compared, but the answer is unclear): {len(benchmarks)} "
        f"benchmark(s), {len(cases)} mode(s); e.g. {cases[0][1].message}; {tail}"
    ]


def not_checked_lines(results: Sequence[PerfResult]) -> list[str]:
    """One line when some benchmarks' outputs could not be compared (compiled against eager, or
    candidates against the reference): a check that did not run is said, never passed."""
    cases = [r for r in results if r.accuracy is not None and not r.accuracy.checked]
    if not cases:
        return []
    first = cases[0]
    assert first.accuracy is not None
    return [
        f"keisei-perf: NOT CHECKED (outputs against eager or the reference variant): {len(cases)} "
        f"benchmark(s); e.g. {first.benchmark_id}: {first.accuracy.skipped_reason}; "
        "--perf-strict-accuracy fails them"
    ]


def summary_lines(results: Sequence[PerfResult]) -> list[str]:
    """The terminal table: one row per benchmark and mode, regressions first."""
    lines = [_row(_HEADERS)]
    for row in table_rows(results):
        if row.mode == "-":
            lines.append(_row([row.benchmark, "-", "-", "-", "-", "-", "smoke run", "-", "-"]))
            continue
        change = "-"
        verdict = row.verdict
        if verdict is not None and verdict.change is not None:
            change = f"{verdict.change:+.1%}"
            if verdict.change_ci is not None:
                change += f" ±{(verdict.change_ci[1] - verdict.change_ci[0]) / 2:.1%}"
        spread = f"±{row.spread:.1%}" if row.spread is not None else "-"
        compile_cell = format_duration(row.compile_time_s) if row.compile_time_s is not None else "-"
        lines.append(
            _row(
                [
                    row.benchmark,
                    row.mode,
                    format_duration(row.median_s),
                    format_duration(row.p95_s),
                    spread,
                    change,
                    row.status,
                    row.speedup,
                    compile_cell,
                ]
            )
        )
    return lines


#: The first line of every Markdown report: a workflow finds its own comment by it, to edit it.
MARKDOWN_MARKER: Final = "<!-- keisei-perf report -->"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else ("es" if word.endswith("s") else "s"))


def markdown_headline(rows: Sequence[_Row]) -> str:
    """One line for a pull request: regressions, improvements, not compared, and the largest
    slowdown measured, with its interval."""
    counts = {status: sum(r.status == status for r in rows) for status in _ORDER}
    parts = [
        _plural(counts["regression"], "regression"),
        _plural(counts["improvement"], "improvement"),
        f"{counts['no-baseline']} not compared",
    ]
    if counts["inconclusive"]:
        parts.append(f"{counts['inconclusive']} inconclusive")
    parts.append(f"{counts['pass']} pass")
    headline = ", ".join(parts)
    if counts["regression"]:
        headline = "**" + headline.replace(", ", "**, ", 1)
    slowest: tuple[float, _Row, Verdict] | None = None
    for row in rows:
        verdict = row.verdict
        if (
            verdict is not None
            and verdict.change is not None
            and (slowest is None or verdict.change > slowest[0])
        ):
            slowest = (verdict.change, row, verdict)
    if slowest is not None:
        change, row, verdict = slowest
        interval = (
            f" ({verdict.change_ci[0]:+.1%} to {verdict.change_ci[1]:+.1%})" if verdict.change_ci else ""
        )
        where = f"`{_escape(row.benchmark)}` [{row.mode}]"
        headline += f"; slowest change: {where} {change:+.1%}{interval}, {verdict.status}"
    return headline


def markdown_summary(results: Sequence[PerfResult], *, machine: str = "") -> str:
    """A GitHub-flavoured Markdown report for job summaries and pull-request comments: a marker
    line (to find the comment again and edit it), one headline, then the table folded."""
    rows = table_rows(results)
    headline = markdown_headline(rows) if rows else "no timed benchmarks"
    lines = [
        MARKDOWN_MARKER,
        "### keisei-perf results",
        "",
        headline + (f" on `{machine}`" if machine else ""),
        "",
        f"<details><summary>{_plural(len(rows), 'row')}: every benchmark and mode</summary>",
        "",
        "| benchmark | mode | median | p95 | items/s | change (95% CI) | verdict | detectable "
        "| speedup | compile | break-even calls |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        verdict = row.verdict
        change = detectable = "-"
        if verdict is not None and verdict.change is not None:
            change = f"{verdict.change:+.1%}"
            if verdict.change_ci is not None:
                change += f" ({verdict.change_ci[0]:+.1%} to {verdict.change_ci[1]:+.1%})"
        if verdict is not None and verdict.detectable_effect is not None:
            detectable = f"{verdict.detectable_effect:.1%}"
        status = {"regression": "**regression**", "-": "smoke run"}.get(row.status, row.status)
        cells = [
            f"`{_escape(row.benchmark)}`",
            row.mode,
            format_duration(row.median_s),
            format_duration(row.p95_s),
            f"{row.throughput:.4g}" if row.throughput is not None else "-",
            change,
            status,
            detectable,
            row.speedup,
            _compile_cell(row),
            row.break_even,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n" + breakdown_markdown(results)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _finite(value: Any) -> Any:
    """JSON has no NaN: unknown numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json_report(
    path: Path, *, machine: Mapping[str, Any], settings: Mapping[str, Any], results: Sequence[PerfResult]
) -> None:
    """The ``--perf-json`` file: schema version, machine record, settings and every result."""
    write_json_atomic(
        path,
        _finite(
            {
                "schema_version": JSON_SCHEMA_VERSION,
                "machine": dict(machine),
                "settings": dict(settings),
                "results": [r.to_dict() for r in results],
            }
        ),
    )
