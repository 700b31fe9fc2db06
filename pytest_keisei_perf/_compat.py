"""Every private torch API the plugin touches, behind small functions with a fallback.

Dynamo's counters are the only source of graph, graph-break and recompile counts, and
inductor's of its cache hits and misses; they are private and have moved between releases, so when
they are missing the counts read ``None`` ("not known") instead of breaking a benchmark.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import CacheState

__all__ = [
    "DynamoCounts",
    "compile_cache_counters",
    "compile_cache_state",
    "dynamo_counts",
    "holds_compiled_module",
    "is_torch_default_cache_dir",
    "quiet_structured_trace",
    "recompile_reasons",
    "reset_dynamo_counters",
    "torch_default_cache_dir",
]

#: torch's structured-trace logger (private name): it logs every compile step at DEBUG.
_TRACE_LOGGER = "torch.__trace"


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


def recompile_reasons() -> list[str]:
    """Dynamo's recorded reasons for every recompile since the last reset (the guard that
    failed, as ``guard_failures`` keeps them); empty where this torch does not record them."""
    try:
        from torch._dynamo.utils import guard_failures
    except ImportError:  # pragma: no cover - moved in another torch release
        return []
    return [str(reason) for reasons in list(guard_failures.values()) for reason in reasons]


def compile_cache_counters() -> dict[str, int]:
    """Inductor's and AOT-autograd's cache counters since the last reset, e.g.
    ``inductor.fxgraph_cache_hit``, ``aot_autograd.autograd_cache_miss``,
    ``inductor.async_compile_cache_hit``, ``inductor.triton_bundler_read_and_emit_kernel``.

    Every counter whose name speaks of a cache, the Triton bundler or autotuning is taken as torch
    names it, so counters a newer torch adds are recorded too.
    """
    counters = _counters()
    if counters is None:  # pragma: no cover
        return {}
    return {
        f"{group}.{name}": int(value)
        for group in ("inductor", "aot_autograd")
        for name, value in sorted(counters.get(group, {}).items())
        if value and any(word in name for word in ("cache", "bundler", "autotune"))
    }


def compile_cache_state(counts: dict[str, int] | None = None) -> CacheState | None:
    """``warm`` (every FX graph served by inductor's cache), ``cold`` (none), ``partly warm``, or
    None when no inductor graph was compiled (eager/aot_eager backends, caches bypassed)."""
    counts = compile_cache_counters() if counts is None else counts
    hits = counts.get("inductor.fxgraph_cache_hit", 0)
    misses = counts.get("inductor.fxgraph_cache_miss", 0)
    if hits + misses == 0:
        return None
    if misses == 0:
        return "warm"
    return "cold" if hits == 0 else "partly warm"


@contextlib.contextmanager
def quiet_structured_trace() -> Iterator[None]:
    """Keep torch's structured-trace records out of pytest's log capture while a benchmark runs.

    Otherwise a failing perf test's report ends in hundreds of ``DEBUG torch.__trace`` lines.
    Handlers torch attaches to that logger itself (``TORCH_TRACE``) still get every record.
    """
    logger = logging.getLogger(_TRACE_LOGGER)
    previous = logger.propagate
    logger.propagate = False
    try:
        yield
    finally:
        logger.propagate = previous


def is_torch_default_cache_dir(path: str) -> bool:
    """Whether ``path`` is inductor's default folder (:func:`torch_default_cache_dir`)."""
    return os.path.abspath(path) == os.path.abspath(torch_default_cache_dir())


def torch_default_cache_dir() -> str:
    """The folder inductor uses when ``TORCHINDUCTOR_CACHE_DIR`` is unset.

    Inductor writes this default *into* the environment variable the first time it needs a
    folder, so an equal value does not mean the user chose it. Inductor's own answer is used
    when it is loaded; before that, its rule is followed here, because importing
    ``torch._inductor`` imports dynamo, and an eager-only process must not pay for that.
    """
    if "torch._inductor" in sys.modules:
        try:
            from torch._inductor.runtime.cache_dir_utils import default_cache_dir
        except ImportError:  # pragma: no cover - moved in another torch release
            pass
        else:
            return str(default_cache_dir())
    import getpass
    import re
    import tempfile

    try:
        user = getpass.getuser()
    except (KeyError, ModuleNotFoundError, OSError):
        user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
    return os.path.join(tempfile.gettempdir(), "torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", user))


def holds_compiled_module(module: Any) -> bool:
    """Whether ``module`` is, or contains, a ``torch.compile``d module (dynamo's private
    ``OptimizedModule``): hooks added to it would make dynamo recompile. Unknown: True, the
    safe answer.

    Without dynamo imported nothing can have been compiled, and importing it only to ask would
    make every eager benchmark of a module pay for it (docs/measurements.md).
    """
    if "torch._dynamo" not in sys.modules:
        return False
    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except ImportError:
        return True
    return any(isinstance(m, OptimizedModule) for m in module.modules())
