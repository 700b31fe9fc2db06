"""``keisei::squeeze_excite``: squeeze-excitation as one ``torch.library`` operator.

Pool, the two small linear layers, ReLU, sigmoid and the channel scale (plus the shift of the
scale+shift block) run as one operator. ``torch.compile`` sees one opaque op (``register_fake``)
and training works through ``register_autograd``. The CPU kernel is C++ (``_se_kernel.cpp``, built
on first use with ``torch.utils.cpp_extension``); the CUDA kernel is Triton (``_se_triton.py``).
The composite :func:`squeeze_excite_reference` is the definition both must match.
"""

from __future__ import annotations

import functools
import hashlib
import platform
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FusedKernelUnavailableError",
    "build_cpu_kernel",
    "squeeze_excite",
    "squeeze_excite_reference",
]

_KERNEL_SOURCE = Path(__file__).with_name("_se_kernel.cpp")


class FusedKernelUnavailableError(RuntimeError):
    """The fused operator has no kernel it can run here (no C++ compiler, no triton)."""


def squeeze_excite_reference(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, scale_shift: bool = False
) -> Tensor:
    """The composite definition: ``x * sigmoid(z)`` (``+ shift`` when ``scale_shift``), with
    ``z = w2 @ relu(w1 @ mean_hw(x) + b1) + b2``."""
    z = F.linear(F.relu(F.linear(x.mean(dim=(2, 3)), w1, b1)), w2, b2)
    if scale_shift:
        scale, shift = z.chunk(2, dim=1)
        return x * torch.sigmoid(scale)[:, :, None, None] + shift[:, :, None, None]
    return x * torch.sigmoid(z)[:, :, None, None]


def _cpu_flags() -> str:
    """The CPU's feature flags: the kernel is built with ``-march=native``, so a build belongs to
    one kind of CPU and its cache name says which."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


@functools.cache
def build_cpu_kernel() -> None:
    """Compile and load the C++ kernel once per process (cached on disk by torch across
    processes); a build that cannot run says why, naming the compiler's complaint."""
    from torch.utils import cpp_extension

    source = _KERNEL_SOURCE.read_bytes()
    digest = hashlib.sha256(source + _cpu_flags().encode() + torch.__version__.encode()).hexdigest()[:12]
    try:
        cpp_extension.load(
            name=f"keisei_se_cpu_{digest}",
            sources=[str(_KERNEL_SOURCE)],
            extra_cflags=["-O3", "-march=native", "-fopenmp-simd"],
            is_python_module=False,
            verbose=False,
        )
    except (RuntimeError, OSError, ImportError) as exc:
        raise FusedKernelUnavailableError(
            "keisei::squeeze_excite cannot build its CPU kernel (it needs a C++ compiler and ninja, "
            f"as torch.utils.cpp_extension does): {exc}"
        ) from exc


@torch.library.custom_op("keisei::squeeze_excite", mutates_args=())
def squeeze_excite(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, scale_shift: bool) -> Tensor:
    """Squeeze-excitation of ``x [B, C, H, W]`` in one pass per sample; ``w1 [hidden, C]``,
    ``w2 [C or 2C, hidden]`` as in :func:`squeeze_excite_reference`."""
    build_cpu_kernel()
    out: Tensor = torch.ops.keisei_se_cpu.forward(x, w1, b1, w2, b2, scale_shift)
    return out


@squeeze_excite.register_kernel("cuda")
def _squeeze_excite_cuda(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, scale_shift: bool
) -> Tensor:
    try:
        from ._se_triton import launch
    except ImportError as exc:
        raise FusedKernelUnavailableError(
            f"keisei::squeeze_excite on CUDA is a Triton kernel, and triton cannot be imported: {exc}"
        ) from exc
    return launch(x, w1, b1, w2, b2, scale_shift)


@squeeze_excite.register_fake
def _squeeze_excite_fake(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, scale_shift: bool
) -> Tensor:
    torch._check(x.dim() == 4, lambda: f"squeeze_excite: x must be [B, C, H, W], got {tuple(x.shape)}")
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w1, b1, w2, b2, scale_shift = inputs
    ctx.save_for_backward(x, w1, b1, w2, b2)
    ctx.scale_shift = scale_shift


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    """The block's gradients from ``x`` and the weights alone: the pooled vector, hidden layer
    and gate are recomputed (``[B, C]``-sized), so the forward keeps nothing extra."""
    x, w1, b1, w2, b2 = ctx.saved_tensors
    channels, plane = x.shape[1], x.shape[2] * x.shape[3]
    compute = torch.promote_types(x.dtype, w1.dtype)
    xc, gc = x.to(compute), grad.to(compute)
    pooled = xc.mean(dim=(2, 3))
    pre = F.linear(pooled, w1, b1)
    hidden = F.relu(pre)
    z = F.linear(hidden, w2, b2)
    gate = torch.sigmoid(z[:, :channels])
    d_scale = (gc * xc).sum(dim=(2, 3)) * gate * (1 - gate)
    dz = torch.cat([d_scale, gc.sum(dim=(2, 3))], dim=1) if ctx.scale_shift else d_scale
    d_pre = (dz @ w2) * (pre > 0)
    d_pooled = d_pre @ w1
    dx = gc * gate[:, :, None, None] + (d_pooled / plane)[:, :, None, None]
    return dx.to(x.dtype), d_pre.T @ pooled, d_pre.sum(0), dz.T @ hidden, dz.sum(0), None


squeeze_excite.register_autograd(_backward, setup_context=_setup_context)
