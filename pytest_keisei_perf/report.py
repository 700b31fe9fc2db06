"""Presenting results: the end-of-session terminal table and the ``--perf-json`` file."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from .result import PerfResult

__all__ = [
    "JSON_SCHEMA_VERSION",
    "format_duration",
    "summary_lines",
    "write_json_atomic",
    "write_json_report",
]

#: Version of the --perf-json layout. 1: first release.
JSON_SCHEMA_VERSION: Final = 1
#: Column widths of the table; the whole row fits 100 columns.
_WIDTHS: Final = (34, 8, 9, 7, 16, 12, 8, 6)
_HEADERS: Final = ("benchmark", "mode", "median", "spread", "change", "verdict", "speedup", "comp.")


def format_duration(seconds: float | None) -> str:
    """``1.23 ms`` style, three significant digits, or ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


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


def summary_lines(results: Sequence[PerfResult]) -> list[str]:
    """The table rows: one per benchmark and mode, regressions first."""
    order = {"regression": 0, "inconclusive": 1, "improvement": 2, "no-baseline": 3, "pass": 4}
    rows: list[tuple[int, int, list[str]]] = []
    for index, result in enumerate(results):
        if result.disabled:
            rows.append((5, index, [_benchmark_label(result), "-", "-", "-", "-", "smoke run", "-", "-"]))
            continue
        for mode, m in result.modes.items():
            verdict = result.verdicts.get(mode)
            change = "-"
            if verdict is not None and verdict.change is not None:
                change = f"{verdict.change:+.1%}"
                if verdict.change_ci is not None:
                    change += f" ±{(verdict.change_ci[1] - verdict.change_ci[0]) / 2:.1%}"
            speedup = f"{result.speedup:.2f}x" if mode == "compiled" and result.speedup is not None else "-"
            if m.fallback:
                speedup = "fallback"
            spread = f"±{m.iqr_s / 2 / m.median_s:.1%}" if m.median_s > 0 else "-"
            status = verdict.status if verdict is not None else "-"
            rows.append(
                (
                    order.get(status, 5),
                    index,
                    [
                        _benchmark_label(result),
                        mode,
                        format_duration(m.median_s),
                        spread,
                        change,
                        status,
                        speedup,
                        format_duration(m.compile_time_s) if m.compile_time_s is not None else "-",
                    ],
                )
            )
    rows.sort(key=lambda r: (r[0], r[1]))
    return [_row(_HEADERS), *(_row(cells) for _, _, cells in rows)]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as sorted, indented JSON via a temporary file and ``os.replace``.

    A crash or a concurrent reader never sees a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, allow_nan=False, default=_fallback)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fallback(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


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
