"""``--perf-disable`` and a baseline update's first pass: each call runs once per mode, untimed.

It needs neither the statistics nor the reference workload, and imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .devices import benchmark_context, detect_device
from .modes import bind
from .result import PerfResult
from .settings import BenchmarkConfig

__all__ = ["call_once_per_mode", "smoke_result"]


def call_once_per_mode(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    config: BenchmarkConfig,
    device: str | None,
) -> str:
    """``--perf-disable``: call once per mode, untimed, without compiling; where it ran."""
    call = bind(fn, args, kwargs)
    with benchmark_context(config):
        for _ in config.modes:
            call()
    return detect_device(fn, args, kwargs, device)


def smoke_result(config: BenchmarkConfig, nodeid: str, name: str, device: str) -> PerfResult:
    """What a smoke run reports: the benchmark ran, nothing was timed."""
    return PerfResult(
        nodeid=nodeid,
        name=name,
        device=device,
        threads=config.threads,
        compile_kwargs=dict(config.compile_kwargs),
        modes={},
        disabled=True,
    )
