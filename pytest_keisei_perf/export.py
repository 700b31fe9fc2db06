"""``keisei-perf export``: a ``--perf-json`` report in another tool's format.

``github-action-benchmark`` takes a list of ``{"name", "unit", "value", "range", "extra"}``
entries (its ``customSmallerIsBetter`` tool): one per benchmark and mode here, the median in
milliseconds, the interquartile range as the range.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["FORMATS", "ExportError", "github_action_benchmark"]


class ExportError(ValueError):
    """The report cannot be exported; the message names the entry."""


def github_action_benchmark(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every timed mode of every result (smoke runs have none), in the report's order.
    ``report`` is valid in the report format (:mod:`.formats`): the caller checked it."""
    machine = report["machine"]
    host = f"{machine.get('cpu_model', '')}, torch {machine.get('torch', '?')}" if machine else ""
    entries = []
    for index, result in enumerate(report["results"]):
        if result.get("disabled"):
            continue
        for mode, facts in result["modes"].items():
            if facts.get("iqr_s") is None:
                raise ExportError(
                    f"results[{index}] ({result['benchmark_id']} [{mode}]): no iqr_s, so no range"
                )
            median, iqr = float(facts["median_s"]), float(facts["iqr_s"])
            verdict = (result.get("verdicts") or {}).get(mode) or {}
            extra = [f"rounds: {len(facts.get('samples_s') or ())}", f"verdict: {verdict.get('status', '-')}"]
            if host:
                extra.append(f"host: {host}")
            entries.append(
                {
                    "name": f"{result['benchmark_id']} [{mode}]",
                    "unit": "ms",
                    "value": round(median * 1e3, 6),
                    "range": f"± {iqr * 1e3 / 2:.4g}",
                    "extra": "\n".join(extra),
                }
            )
    return entries


#: ``--format`` values and their converters.
FORMATS: Final = {"github-action-benchmark": github_action_benchmark}
