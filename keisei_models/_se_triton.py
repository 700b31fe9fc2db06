"""The CUDA kernel of ``keisei::squeeze_excite``: one Triton program per sample.

A program loads its sample's ``[C, H*W]`` plane once, pools it, runs the two small linear layers
in registers, and writes the scaled (and shifted) plane: one read and one write of ``x``. Under
``TRITON_INTERPRET=1`` the same kernel runs on CPU tensors, which is how it is tested without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["launch"]


@triton.jit
def _squeeze_excite_kernel(  # type: ignore[no-untyped-def]  # triton reads the annotations
    x_ptr,
    y_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    channels,
    plane,
    hidden,
    SCALE_SHIFT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    n = tl.program_id(0)
    c = tl.arange(0, BLOCK_C)
    p = tl.arange(0, BLOCK_P)
    h = tl.arange(0, BLOCK_H)
    c_ok, p_ok, h_ok = c < channels, p < plane, h < hidden
    offsets = n * channels * plane + c[:, None] * plane + p[None, :]
    both_ok = c_ok[:, None] & p_ok[None, :]
    x = tl.load(x_ptr + offsets, mask=both_ok, other=0.0).to(tl.float32)
    pooled = tl.sum(x, axis=1) / plane
    w1 = tl.load(w1_ptr + h[:, None] * channels + c[None, :], mask=h_ok[:, None] & c_ok[None, :], other=0.0)
    act = tl.sum(w1.to(tl.float32) * pooled[None, :], axis=1) + tl.load(b1_ptr + h, mask=h_ok, other=0.0)
    act = tl.maximum(act, 0.0)
    w2_ok = c_ok[:, None] & h_ok[None, :]
    w2 = tl.load(w2_ptr + c[:, None] * hidden + h[None, :], mask=w2_ok, other=0.0)
    z = tl.sum(w2.to(tl.float32) * act[None, :], axis=1) + tl.load(b2_ptr + c, mask=c_ok, other=0.0)
    out = x * tl.sigmoid(z)[:, None]
    if SCALE_SHIFT:
        w2s = tl.load(w2_ptr + (c[:, None] + channels) * hidden + h[None, :], mask=w2_ok, other=0.0)
        shift = tl.sum(w2s.to(tl.float32) * act[None, :], axis=1)
        out = out + (shift + tl.load(b2_ptr + channels + c, mask=c_ok, other=0.0))[:, None]
    tl.store(y_ptr + offsets, out.to(y_ptr.dtype.element_ty), mask=both_ok)


def launch(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, scale_shift: bool) -> Tensor:
    """Run the kernel over ``x [B, C, H, W]`` (weights as in ``squeeze_excite_reference``)."""
    x = x.contiguous()
    batch, channels, plane, hidden = x.shape[0], x.shape[1], x.shape[2] * x.shape[3], w1.shape[0]
    weights = [t.to(torch.float32).contiguous() for t in (w1, b1, w2, b2)]
    y = torch.empty_like(x)
    kernel = getattr(torch.library, "wrap_triton", lambda k: k)(_squeeze_excite_kernel)
    kernel[(batch,)](
        x,
        y,
        *weights,
        channels,
        plane,
        hidden,
        SCALE_SHIFT=scale_shift,
        BLOCK_C=triton.next_power_of_2(channels),
        BLOCK_P=triton.next_power_of_2(plane),
        BLOCK_H=triton.next_power_of_2(hidden),
    )
    return y
