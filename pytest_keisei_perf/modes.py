"""The two ways a benchmark runs: eager as given, and through ``torch.compile``.

Compiling is lazy in torch, so the first call is where it happens and where it fails; that call
is timed as the compile time. A failure falls back to eager (``fallback=True`` and a
:class:`PerfCompileFallbackWarning`) unless compile is strict.
"""

from __future__ import annotations

import functools
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pytest
import torch

from . import _compat
from .measure import Stopwatch
from .result import CacheState

__all__ = [
    "CompileOutcome",
    "PerfCompileError",
    "PerfCompileFallbackWarning",
    "bind",
    "compile_callable",
    "recompiles_since",
]


class PerfCompileFallbackWarning(pytest.PytestWarning):
    """``torch.compile`` failed for a benchmark, which was then timed in eager mode instead.

    The compiled columns of that benchmark show eager's numbers. Fix the model or the compile
    settings, or pass ``--perf-strict-compile`` to make the failure fail the test.
    """


class PerfCompileError(RuntimeError):
    """``torch.compile`` failed and compile is strict."""


@dataclass(frozen=True)
class CompileOutcome:
    """The callable to time in compiled mode and what compiling it cost."""

    call: Callable[[], Any]
    compile_time_s: float
    fallback: bool
    error: str | None
    graphs: int | None
    graph_breaks: int | None
    frames_after_compile: int | None
    #: ``warm`` / ``cold`` / ``partly warm``: whether inductor's FX-graph cache served the compile.
    cache: CacheState | None = None
    #: Inductor's cache counters for this compile (:func:`_compat.compile_cache_counters`).
    cache_counters: Mapping[str, int] | None = None
    #: What the first (compiling) call returned, detached.
    first_output: Any = None


def compile_callable(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    compile_kwargs: Mapping[str, Any],
    strict: bool,
    stopwatch: Stopwatch,
    label: str,
    call_with: Callable[[Callable[..., Any]], Callable[[], Any]] | None = None,
) -> CompileOutcome:
    """Compile ``fn`` and make its first call; on failure fall back to eager or raise.

    ``call_with(compiled)`` makes the zero-argument call to time (a training step calls the
    compiled model inside the user's step); by default ``compiled(*args, **kwargs)``.
    ``torch.compiler.reset()`` first, so compiled state from an earlier benchmark can neither
    leak into this one nor be counted in its graph numbers.
    """
    make_call = call_with or (lambda target: bind(target, args, kwargs))
    torch.compiler.reset()
    _compat.reset_dynamo_counters()
    start = time.perf_counter()
    try:
        compiled = torch.compile(fn, **compile_kwargs)
        call = make_call(compiled)
        stopwatch.synchronize()
        first = call()
        stopwatch.synchronize()
    except Exception as exc:  # any compile failure: the user's backend may raise anything
        elapsed = time.perf_counter() - start
        message = f"{type(exc).__name__}: {_one_line(exc)}"
        torch.compiler.reset()
        if strict:
            raise PerfCompileError(f"{label}: torch.compile failed ({message})") from exc
        warnings.warn(
            PerfCompileFallbackWarning(f"{label}: torch.compile failed, timing eager instead: {message}"),
            stacklevel=2,
        )
        return CompileOutcome(
            call=make_call(fn),
            compile_time_s=elapsed,
            fallback=True,
            error=message,
            graphs=None,
            graph_breaks=None,
            frames_after_compile=None,
        )
    elapsed = time.perf_counter() - start
    counts = _compat.dynamo_counts()
    cache_counters = _compat.compile_cache_counters()
    return CompileOutcome(
        call=call,
        compile_time_s=elapsed,
        fallback=False,
        error=None,
        graphs=counts.graphs,
        graph_breaks=counts.graph_breaks,
        frames_after_compile=counts.frames,
        cache=_compat.compile_cache_state(cache_counters),
        cache_counters=cache_counters,
        first_output=_detached(first),
    )


def _detached(value: Any) -> Any:
    """Detached copies of the tensors in ``value`` (CUDA-graph outputs are overwritten)."""
    from .accuracy import snapshot

    return snapshot(value)


def recompiles_since(outcome: CompileOutcome) -> int | None:
    """Frames dynamo converted after the first compiled call: recompiles in steady state."""
    if outcome.frames_after_compile is None:
        return None
    frames = _compat.dynamo_counts().frames
    return None if frames is None else frames - outcome.frames_after_compile


_TRAINING_GUARD: Final = re.compile(r"(?P<module>\S+)\.training == (?P<compiled>True|False)")


def training_mode_switches(label: str) -> list[str]:
    """What dynamo recompiled for because a module was called in another train/eval state than
    the one it was compiled in (its ``training`` guard failed), one line per module."""
    seen: dict[str, str] = {}
    for reason in _compat.recompile_reasons():
        match = _TRAINING_GUARD.search(reason)
        if match:
            seen.setdefault(match["module"], match["compiled"])
    return [
        f"{label}: {module} was compiled with training={compiled} and called with "
        f"training={compiled != 'True'}; dynamo recompiled for it and the timings mix two graphs "
        "(compiling bakes in BatchNorm's training flag: compile one model per mode)"
        for module, compiled in seen.items()
    ]


def bind(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Callable[[], Any]:
    """A zero-argument call with the least overhead: ``fn`` itself when there are no arguments."""
    if not args and not kwargs:
        return fn
    return functools.partial(fn, *args, **kwargs)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return (text[: limit - 3] + "...") if len(text) > limit else (text or "(no message)")
