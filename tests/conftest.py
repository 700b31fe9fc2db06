"""Shared test set-up: one torch thread and a persisted inductor cache so compiled tests stay fast."""

from __future__ import annotations

import os
from pathlib import Path

# A persisted cache turns a cold inductor compile (~25 s) into a warm one (~3 s); set it before
# torch is imported anywhere so that inner pytester sessions inherit it too.
os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "torchinductor")
)

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
