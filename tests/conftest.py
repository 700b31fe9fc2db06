"""Shared test set-up: one torch thread, dynamo preloaded for in-process pytester sessions.

The inductor cache needs nothing here: the plugin itself persists it under .pytest_cache (see
pytest_keisei_perf.compile_cache), and inner sessions inherit that folder.
"""

from __future__ import annotations

import torch

# One thread: on a loaded 2-core runner two threads made a forward pass ~50x slower.
torch.set_num_threads(1)


def _preload_compile_stack() -> None:
    """Import dynamo's lazily loaded modules once, in the outer process.

    In-process pytester runs snapshot ``sys.modules`` and drop modules imported during the inner
    run; torch registers C++ operator libraries on import, which cannot happen twice.
    """
    import importlib

    torch.compile(lambda x: x + 1, backend="eager")(torch.ones(1))
    importlib.import_module("torch._inductor.test_operators")
    torch.compiler.reset()


_preload_compile_stack()
