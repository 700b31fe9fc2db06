"""Where a benchmark's work runs, and the context every call of it runs in.

Torch only: a smoke run (``--perf-disable``) uses this without the statistics or the timing engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from . import _compat
from .measure import pinned_threads
from .settings import BenchmarkConfig

__all__ = ["batch_items", "benchmark_context", "detect_device"]


def _tensors(value: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """Tensors in ``value``, looking into tuples, lists, dicts and dataclasses a few levels deep."""
    if isinstance(value, torch.Tensor):
        yield value
    elif depth < 4 and isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item, depth + 1)
    elif depth < 4 and isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors(item, depth + 1)
    elif depth < 4 and dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _tensors(getattr(value, f.name, None), depth + 1)


def detect_device(
    fn: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], explicit: str | None = None
) -> str:
    """Where the work runs: ``explicit`` when given (``perf.benchmark(..., device=...)``), else
    the first CUDA device among the tensor arguments (also inside dicts, lists and dataclasses)
    and every parameter and buffer of the module (or of the module a bound method belongs to)."""
    if explicit is not None:
        device = torch.device(explicit)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return str(device)
    owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    module_tensors: Iterator[torch.Tensor] = (
        itertools.chain(owner.parameters(), owner.buffers()) if isinstance(owner, nn.Module) else iter(())
    )
    for tensor in itertools.chain(_tensors(args), _tensors(dict(kwargs)), module_tensors):
        if tensor.device.type == "cuda":
            return str(tensor.device)
    return "cpu"


@contextlib.contextmanager
def benchmark_context(config: BenchmarkConfig) -> Iterator[None]:
    """Pinned threads (set before anything compiles) and, by default, inference mode."""
    grad_mode = torch.inference_mode() if config.inference_mode else contextlib.nullcontext()
    with pinned_threads(config.threads), grad_mode, _compat.quiet_structured_trace():
        yield


def batch_items(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int | None:
    """Samples per call, for throughput: the leading dimension of the first tensor argument
    (looking into containers as :func:`detect_device` does); None without one."""
    for tensor in itertools.chain(_tensors(args), _tensors(dict(kwargs))):
        if tensor.dim() > 0:
            return int(tensor.shape[0])
    return None
