"""The project's own perf suite: Keisei's default tower in eager and compiled modes.

Run with ``pytest -m perf``; re-baseline with ``pytest -m perf --perf-update-baseline``. On these
2-core CPUs the full tower costs ~25 ms per call at batch 1 and ~0.8 s at batch 64 (one
thread), so budgets are sized to keep the whole suite to a few minutes with a warm compile
cache.

``KEISEI_PERF_DEVICE=cuda`` runs the same suite on a GPU (its baselines key on the GPU model).
"""

from __future__ import annotations

import os

import pytest
import torch

import keisei_models
from keisei_models import ActorCriticBase

ARCH = "resnet_tower"
DEVICE = os.environ.get("KEISEI_PERF_DEVICE", "cpu")


@pytest.fixture(scope="module")
def tower() -> ActorCriticBase:
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"KEISEI_PERF_DEVICE={DEVICE} but torch sees no CUDA device")
    model = keisei_models.build(ARCH, seed=0).eval().to(DEVICE)
    assert isinstance(model, ActorCriticBase)
    return model


def _inputs(batch_size: int) -> tuple[torch.Tensor, ...]:
    return keisei_models.example_inputs(ARCH, batch_size=batch_size, device=DEVICE)


# Compiled batch 1 has read 26-38 ms per call across processes on these CPUs (detectable effects
# of 12-40%); a 5% threshold false-alarmed once when the baseline drew mostly fast runs.
@pytest.mark.perf(budget=1.0, threshold=0.2)
def test_forward_batch1(perf, tower: ActorCriticBase) -> None:  # type: ignore[no-untyped-def]
    """Self-play inference. torch.compile is known to be SLOWER here on these CPUs (~0.6-0.8x)."""
    result = perf.benchmark(tower, *_inputs(1))
    assert result.accuracy is None or result.accuracy.passed


@pytest.mark.perf(budget=1.0)
def test_forward_batch64(perf, tower: ActorCriticBase) -> None:  # type: ignore[no-untyped-def]
    """Training minibatch: the case torch.compile is meant to speed up."""
    perf.benchmark(tower, *_inputs(64))


@pytest.mark.perf(budget=1.0)
def test_action_methods_batch16(perf, tower: ActorCriticBase) -> None:  # type: ignore[no-untyped-def]
    """PPO's two action methods; each has one data-dependent graph break (the empty-mask check)."""
    (obs,) = _inputs(16)
    mask = keisei_models.example_legal_mask(ARCH, batch_size=16).to(DEVICE)
    actions = mask.to(torch.int8).argmax(dim=-1)
    perf.benchmark(tower.get_action_and_value, obs, mask, True, name="get_action_and_value")
    perf.benchmark(tower.evaluate_actions, obs, actions, mask, name="evaluate_actions")


@pytest.mark.perf(budget=1.0)
def test_fused_se_vs_plain_batch16(perf) -> None:  # type: ignore[no-untyped-def]
    """Keisei's plan asks whether a fused squeeze-excitation block pays, here and now."""
    plain = keisei_models.build(ARCH, seed=0, se_impl="plain").eval().to(DEVICE)
    fused = keisei_models.build(ARCH, seed=0, se_impl="fused").eval().to(DEVICE)
    # the plugin fails the test if fused outputs differ from plain beyond float32 tolerance
    perf.compare({"plain": plain, "fused": fused}, *_inputs(16))
