"""Every private torch API the plugin touches, behind small functions with a fallback.

Dynamo's counters are the only source of graph, graph-break and recompile counts; they are
private and have moved between releases, so when they are missing the counts read ``None``
("not known") instead of breaking a benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DynamoCounts", "dynamo_counts", "reset_dynamo_counters"]


@dataclass(frozen=True)
class DynamoCounts:
    """Snapshot of dynamo's cumulative counters; ``None`` where this torch does not expose one."""

    graphs: int | None
    graph_breaks: int | None
    frames: int | None


def _counters() -> Any | None:
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch builds without dynamo
        return None
    return counters


def reset_dynamo_counters() -> None:
    """Zero dynamo's counters so the next snapshot counts one benchmark only."""
    counters = _counters()
    if counters is not None:
        counters.clear()


def dynamo_counts() -> DynamoCounts:
    """Graphs compiled, graph breaks and frames converted since the last reset."""
    counters = _counters()
    if counters is None:  # pragma: no cover
        return DynamoCounts(None, None, None)
    stats = counters.get("stats", {})
    # Breaks dynamo can trace around land in "graph_break"; fundamental ones (data-dependent
    # branching) only in "unimplemented". Both split the graph.
    breaks = sum(counters.get("graph_break", {}).values()) + sum(counters.get("unimplemented", {}).values())
    return DynamoCounts(
        graphs=int(stats.get("unique_graphs", 0)),
        graph_breaks=int(breaks),
        frames=int(counters.get("frames", {}).get("total", 0)),
    )
