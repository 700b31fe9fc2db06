"""Where a benchmark's time went (``--perf-profile``), as data: shares of a profiled call by
submodule, module class and op, and the Amdahl bound a ``focus`` part puts on replacing it.

Kept free of torch so reports and the CLI read breakdowns without importing it; the profiling
itself is :mod:`.profiling`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .result import PerfResult

__all__ = [
    "Breakdown",
    "FocusError",
    "Share",
    "amdahl_line",
    "breakdown_lines",
    "breakdown_markdown",
    "focus_share",
]

_SHARE_FIELDS: Final = ("modules", "classes", "classes_self", "ops")


class FocusError(ValueError):
    """``focus=`` names no part of the profiled model."""


@dataclass(frozen=True)
class Share:
    """A module path, module class or op, and its share of the profiled call time."""

    name: str
    share: float
    #: Instances of a class (outermost ones), or calls of an op per profiled call.
    count: float = 1
    #: The lowest and highest share in any one profiled call (module classes), for the spread.
    low: float | None = None
    high: float | None = None

    @property
    def spread(self) -> str:
        """`` (5.8-6.4% over the profiled calls)``, or nothing where unknown."""
        if self.low is None or self.high is None:
            return ""
        return f" ({self.low:.1%}-{self.high:.1%} over the profiled calls)"


@dataclass(frozen=True)
class Breakdown:
    """One mode's profile: shares are inclusive (a block's share contains its SE's)."""

    mode: str
    #: Profiled time per call, profiler overhead included (never compare it with the medians).
    call_s: float
    #: ``cpu`` or ``cuda``: whose clock the shares are of.
    clock: str
    modules: tuple[Share, ...] = ()
    classes: tuple[Share, ...] = ()
    #: Each class's own time, its nested submodules' taken out: these shares do not overlap, and
    #: with the time outside every submodule they add up to the call (the plot's stacked bar).
    classes_self: tuple[Share, ...] = ()
    ops: tuple[Share, ...] = ()
    #: What the breakdown cannot attribute, said in words ("" when everything is attributed).
    unattributed: str = ""
    trace: str | None = None
    #: Profiled time per call over the timed median: the profiler's own per-op cost. Far above 1,
    #: shares lean towards parts made of many short ops, and the bound is approximate.
    profiled_vs_timed: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "call_s": self.call_s, "clock": self.clock, "unattributed": self.unattributed,
            "trace": self.trace, "profiled_vs_timed": self.profiled_vs_timed,
            **{key: [vars(s) for s in getattr(self, key)] for key in _SHARE_FIELDS},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Breakdown:
        shares = {key: tuple(Share(**s) for s in data.get(key, ())) for key in _SHARE_FIELDS}
        return cls(
            mode=str(data["mode"]), call_s=float(data["call_s"]), clock=str(data["clock"]),
            unattributed=str(data.get("unattributed", "")), trace=data.get("trace"),
            profiled_vs_timed=data.get("profiled_vs_timed"), **shares,
        )  # fmt: skip


def focus_share(breakdown: Breakdown, part: str) -> Share:
    """The share of ``part``: a module class name, or a module path (``blocks.3.se``).

    Raises:
        FocusError: ``part`` names neither, with what the profile does have.
    """
    for share in (*breakdown.classes, *breakdown.modules):
        if share.name == part:
            return share
    if not breakdown.classes:
        raise FocusError(
            f"focus={part!r}: {breakdown.mode} has no submodules to attribute by ({breakdown.unattributed})"
        )
    known = ", ".join(s.name for s in breakdown.classes)
    raise FocusError(
        f"focus={part!r} names no submodule class or path of the profiled model; its classes: {known}"
    )


def amdahl_line(part: Share, mode: str, focus: str, gains: Mapping[str, float] | None = None) -> str:
    """``SqueezeExcitation is 6.1% of eager time here; a perfect replacement saves at most 6.1%
    (Amdahl: at most 1.065x)``, with each measured gain beside it."""
    count = f" ({part.count:g}x)" if part.count > 1 else ""
    bound = 1 / (1 - part.share) if part.share < 1 else float("inf")
    line = (
        f"{focus}{count} is {part.share:.1%}{part.spread} of {mode} time here; a perfect replacement "
        f"saves at most {part.share:.1%} (Amdahl: at most {bound:.3g}x)"
    )
    for name, ratio in (gains or {}).items():
        line += f"; {name} measured {ratio:.3g}x (saves {1 - 1 / ratio:.1%})"
        if ratio > bound * 1.02:
            line += (
                ", beyond the bound: it changed more than the focus part, or the profiler's "
                "per-op cost skewed the shares"
            )
    return line


#: Profiled over timed time above which the breakdown says its shares are skewed.
SKEW_WARNING: Final = 1.3


def skew_note(b: Breakdown) -> str:
    """What the profiler's own cost did to this breakdown, when it did much."""
    if b.profiled_vs_timed is None or b.profiled_vs_timed < SKEW_WARNING:
        return ""
    return (
        f"the profiled call took {b.profiled_vs_timed:.2g}x the timed median: the profiler's per-op "
        "cost weighs parts made of many short ops more, so these shares are approximate"
    )


def _shares_text(shares: tuple[Share, ...], limit: int, *, counted: bool) -> str:
    cells = [
        f"{s.name}{f' {s.count:g}x' if counted and s.count > 1 else ''} {s.share:.1%}" for s in shares[:limit]
    ]
    return " | ".join(cells) or "-"


def breakdown_lines(results: Sequence[PerfResult], *, classes: int = 8, ops: int = 6) -> list[str]:
    """The terminal's "where the time goes" section: per benchmark and mode, the shares by module
    class and the top ops, what could not be attributed, the trace, and any focus bound."""
    profiled = [r for r in results if r.breakdowns]
    if not profiled:
        return []
    lines = [
        "keisei-perf: where the time goes (shares of a profiled call; a class's share includes "
        "its submodules)"
    ]
    for result in profiled:
        for mode, b in result.breakdowns.items():
            lines.append(
                f"  {result.benchmark_id} [{mode}]: {b.call_s * 1e3:.3g} ms per profiled call ({b.clock})"
            )
            if b.classes:
                lines.append(f"    by module class: {_shares_text(b.classes, classes, counted=True)}")
            lines.append(f"    top ops by self time: {_shares_text(b.ops, ops, counted=False)}")
            lines += [f"    {note}" for note in (b.unattributed, skew_note(b)) if note]
            if b.trace:
                lines.append(f"    trace: {b.trace}")
        if result.bound:
            lines.append(f"  {result.benchmark_id}: {result.bound}")
    return lines


def breakdown_markdown(results: Sequence[PerfResult], *, classes: int = 10, ops: int = 8) -> str:
    """The Markdown summary's section: one table of module classes per benchmark and mode (share
    with submodules, and own share), the top ops, and any focus bound."""
    profiled = [r for r in results if r.breakdowns]
    if not profiled:
        return ""
    out = ["", "#### Where the time goes", ""]
    for result in profiled:
        for mode, b in result.breakdowns.items():
            out += [
                f"`{result.benchmark_id}` [{mode}], {b.call_s * 1e3:.3g} ms per profiled call ({b.clock})",
                "",
            ]
            own = {s.name: s.share for s in b.classes_self}
            if b.classes:
                out += ["| module class | instances | share | own share |", "|---|---:|---:|---:|"]
                out += [
                    f"| {s.name} | {s.count:g} | {s.share:.1%} | {own.get(s.name, 0.0):.1%} |"
                    for s in b.classes[:classes]
                ]
                out.append("")
            out.append(f"Top ops by self time: {_shares_text(b.ops, ops, counted=False)}")
            out += [f"\n_{note}_" for note in (b.unattributed, skew_note(b)) if note]
            out.append("")
        if result.bound:
            out += [f"**Bound:** {result.bound}", ""]
    return "\n".join(out)
