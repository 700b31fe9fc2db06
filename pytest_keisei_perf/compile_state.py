"""The compile cache's state as a condition of every compiled run, and what compiling costs.

Code inductor loads from its cache need not run like code it just compiled (the docs'
"Compile state" section has the measured gap). So a compiled run is *warm* (every FX graph came from
the cache) or *cold* (none did), as inductor's counters say, and runs are compared only within
one state. ``--perf-compile-state both`` times the two side by side; the cold one appears as the
mode :data:`COLD_MODE`.

Compile economics: how long compiling took in each state, and after how many calls the saving
per call pays for it (``break_even_calls``), which is what a self-play process needs to know.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Final

import pytest

from .record import utc_now
from .result import ModeResult, PerfResult, Verdict

__all__ = [
    "COLD_MODE",
    "CompileTimes",
    "PerfCompileStateWarning",
    "break_even_calls",
    "compiled_modes",
    "describe_state",
    "measured_states",
    "merge_cold",
    "missed_cache",
    "needs_warm_rerun",
    "process_state",
    "state_gap",
    "with_economics",
]

#: The mode name of the cold-cache compiled run beside the warm one (``--perf-compile-state both``).
COLD_MODE: Final = "compiled-cold"
#: Layout version of the compile-times file.
TIMES_VERSION: Final = 1


class PerfCompileStateWarning(pytest.PytestWarning):
    """Compiled code ran at clearly different speeds from a warm and from a cold compile cache."""


def measured_states(setting: str) -> tuple[str, ...]:
    """The cache states a ``--perf-compile-state`` setting measures: ``both`` is warm and cold."""
    return ("warm", "cold") if setting == "both" else (setting,)


def process_state(setting: str) -> str:
    """The state one process measures in: ``both`` is warm in the session (cold runs elsewhere)."""
    return measured_states(setting)[0]


def missed_cache(state: str | None) -> bool:
    """Whether a compile in this state found (some of) its graphs missing from the cache."""
    return state in ("cold", "partly warm")


def describe_state(state: str | None) -> str:
    """How a verdict names a state."""
    return {
        "warm": "loaded from a warm compile cache",
        "cold": "compiled from an empty compile cache",
        "partly warm": "partly loaded from the compile cache",
    }.get(state or "", "not compiled by inductor")


def needs_warm_rerun(result: PerfResult) -> bool:
    """A run meant to be warm whose compile missed the cache (an empty or evicted cache).

    Its compile has filled the cache, so a fresh process now measures the program CI measures
    every other time.
    """
    compiled = result.modes.get("compiled")
    return compiled is not None and missed_cache(compiled.compile_cache)


def break_even_calls(compile_time_s: float | None, eager_s: float, compiled_s: float) -> float | str | None:
    """Calls after which compiling has paid for itself: compile time / (eager - compiled per call).

    ``"never"`` when compiled is not faster than eager; None when the compile time is unknown.
    """
    if compile_time_s is None or not (math.isfinite(eager_s) and math.isfinite(compiled_s)):
        return None
    saving = eager_s - compiled_s
    if saving <= 0:
        return "never"
    return compile_time_s / saving


def _condition(result: PerfResult) -> str:
    """What a compile time depends on besides the benchmark: device, settings, threads, torch."""
    import torch

    kwargs = json.dumps(dict(result.compile_kwargs), sort_keys=True, default=str)
    return f"{result.device}|{kwargs}|{result.threads}t|torch {torch.__version__}"


class CompileTimes:
    """The last cold and warm compile time of each benchmark on this machine, kept in pytest's
    cache dir, so that a warm run can still say what a cold compile costs (and the reverse).

    A file that cannot be read starts empty: these are hints for the report, never baselines.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, dict[str, Any]]] = {}
        self._changed = False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == TIMES_VERSION and isinstance(data.get("benchmarks"), dict):
                self._entries = data["benchmarks"]
        except (OSError, ValueError, AttributeError):
            pass

    def note(self, result: PerfResult) -> None:
        """Remember the compile time of each compiled mode under the state its compile ran in."""
        for mode in compiled_modes(result):
            compiled = result.modes[mode]
            if compiled.fallback or compiled.compile_time_s is None:
                continue
            if compiled.compile_cache not in ("cold", "warm"):
                continue
            self._entries.setdefault(_times_key(result, mode), {})[compiled.compile_cache] = {
                "seconds": compiled.compile_time_s,
                "condition": _condition(result),
                "when": utc_now(),
            }
            self._changed = True

    def lookup(self, result: PerfResult, state: str, mode: str = "compiled") -> float | None:
        entry = self._entries.get(_times_key(result, mode), {}).get(state)
        if entry is None or entry.get("condition") != _condition(result):
            return None
        seconds = entry.get("seconds")
        return float(seconds) if isinstance(seconds, (int, float)) else None

    def save(self) -> None:
        """Write the file, when this session measured a compile time."""
        from .files import write_json_atomic

        if not self._changed:
            return
        write_json_atomic(self.path, {"version": TIMES_VERSION, "benchmarks": self._entries})


def compiled_modes(result: PerfResult) -> list[str]:
    """Every compiled mode of a result: ``compiled``, named settings (``compiled[name]``) and
    sweep shapes; the cold row of ``--perf-compile-state both`` is its own business."""
    return [m for m in result.modes if m.startswith("compiled") and m != COLD_MODE]


def _times_key(result: PerfResult, mode: str) -> str:
    """Where a mode's compile times are kept: the benchmark id for ``compiled`` (as before named
    modes existed), ``id [mode]`` for the others."""
    return result.benchmark_id if mode == "compiled" else f"{result.benchmark_id} [{mode}]"


def _eager_of(result: PerfResult, mode: str) -> ModeResult | None:
    """The eager mode a compiled one is measured against: ``eager[shape]`` for a sweep's
    ``compiled[shape]``, else ``eager``."""
    suffix = mode.removeprefix("compiled")
    return result.modes.get(f"eager{suffix}") or result.modes.get("eager")


def with_economics(result: PerfResult, times: CompileTimes | None) -> PerfResult:
    """``result`` with cold and warm compile times and break-even call counts on every compiled
    mode (named compile settings and sweep shapes included)."""
    modes = dict(result.modes)
    for mode in compiled_modes(result):
        compiled, eager = result.modes[mode], _eager_of(result, mode)
        if compiled.fallback or compiled.compile_time_s is None:
            continue
        own = compiled.compile_cache
        seconds: dict[str, float | None] = {}
        for state in ("cold", "warm"):
            looked_up = times.lookup(result, state, mode) if times else None
            seconds[state] = compiled.compile_time_s if own == state else looked_up
        break_even: dict[str, float | str] = {}
        if eager is not None:
            for state, compile_s in seconds.items():
                calls = break_even_calls(compile_s, eager.median_s, compiled.median_s)
                if calls is not None:
                    break_even[state] = calls
        modes[mode] = dataclasses.replace(
            compiled,
            cold_compile_time_s=seconds["cold"],
            warm_compile_time_s=seconds["warm"],
            break_even_calls=break_even or None,
        )
    return dataclasses.replace(result, modes=modes)


def merge_cold(warm: PerfResult, cold: PerfResult) -> PerfResult:
    """One result with the warm run's modes and the cold run's compiled mode as :data:`COLD_MODE`.

    Each speedup is eager / compiled within its own process; ``speedups`` holds both.
    """
    cold_compiled = cold.modes.get("compiled")
    if cold_compiled is None:
        return warm
    verdicts: dict[str, Verdict] = dict(warm.verdicts)
    if "compiled" in cold.verdicts:
        verdicts[COLD_MODE] = dataclasses.replace(cold.verdicts["compiled"], mode=COLD_MODE)
    modes: dict[str, ModeResult] = dict(warm.modes)
    modes[COLD_MODE] = dataclasses.replace(cold_compiled, mode=COLD_MODE)
    speedups = dict(warm.speedups)
    if warm.speedup is not None:
        speedups["compiled"] = (warm.speedup, warm.speedup_ci)
    if cold.speedup is not None:
        speedups[COLD_MODE] = (cold.speedup, cold.speedup_ci)
    failures = (*warm.failures, *(f for f in cold.failures if f not in warm.failures))
    return dataclasses.replace(warm, modes=modes, verdicts=verdicts, speedups=speedups, failures=failures)


def state_gap(warm: PerfResult, cold: PerfResult) -> str | None:
    """A message when the warm and cold speedups' 95% intervals do not overlap, else None."""
    if warm.speedup is None or cold.speedup is None or warm.speedup_ci is None or cold.speedup_ci is None:
        return None
    (w_lo, w_hi), (c_lo, c_hi) = warm.speedup_ci, cold.speedup_ci
    if w_lo <= c_hi and c_lo <= w_hi:
        return None
    ratio = cold.speedup / warm.speedup
    if ratio > 1:
        headline = f"code loaded from the compile cache runs {ratio:.2f}x slower than freshly compiled"
    else:
        headline = f"code loaded from the compile cache runs {1 / ratio:.2f}x faster than freshly compiled"
    return (
        f"{warm.benchmark_id}: {headline} (compiled vs eager {warm.speedup:.2f}x, 95% CI "
        f"{w_lo:.2f}x-{w_hi:.2f}x, with a warm cache; {cold.speedup:.2f}x, 95% CI "
        f"{c_lo:.2f}x-{c_hi:.2f}x, from an empty cache in a fresh process)"
    )
