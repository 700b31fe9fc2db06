"""The project's own perf suite: Keisei's default tower and its current SE-ResNet, in eager and
compiled modes: inference at self-play and training batch sizes, and the training step.

Run with ``pytest -m perf``; re-baseline with ``pytest -m perf --perf-update-baseline``. Budgets
are sized to keep the whole suite to a few minutes with a warm compile cache (docs/measurements.md has the
numbers).

``KEISEI_PERF_DEVICE=cuda`` runs the same suite on a GPU (its baselines key on the GPU model).
"""

from __future__ import annotations

import os

import pytest
import torch

import keisei_models
from keisei_models import ActorCriticBase

ARCH = "resnet_tower"
SE_ARCH = "se_resnet_small"
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


@pytest.mark.perf(budget=1.0, focus="SqueezeExcitation")
def test_fused_se_vs_plain_batch16(perf) -> None:  # type: ignore[no-untyped-def]
    """Keisei's plan asks whether a fused squeeze-excitation block pays, here and now. The
    candidate is ``keisei::squeeze_excite`` ("fused op"; the earlier "fused" mode, the plain
    block in fewer kernels, is what the stored baselines hold and is not compared with it)."""
    plain = keisei_models.build(ARCH, seed=0, se_impl="plain").eval().to(DEVICE)
    fused = keisei_models.build(ARCH, seed=0, se_impl="fused").eval().to(DEVICE)
    # the plugin fails the test if fused outputs differ from plain beyond float32 tolerance
    perf.compare({"plain": plain, "fused op": fused}, *_inputs(16))


@pytest.fixture(scope="module")
def se_rollout() -> torch.nn.Module:
    """Keisei's current network as self-play runs it: eval mode, BatchNorm statistics frozen."""
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"KEISEI_PERF_DEVICE={DEVICE} but torch sees no CUDA device")
    return keisei_models.build(SE_ARCH, seed=0).eval().to(DEVICE)


@pytest.mark.perf(budget=1.0, threshold=0.2)
def test_se_rollout_batch1(perf, se_rollout: torch.nn.Module) -> None:  # type: ignore[no-untyped-def]
    """Self-play inference, one position at a time."""
    perf.benchmark(se_rollout, *keisei_models.example_inputs(SE_ARCH, batch_size=1, device=DEVICE))


@pytest.mark.perf(budget=1.0)
def test_se_rollout_batch64(perf, se_rollout: torch.nn.Module) -> None:  # type: ignore[no-untyped-def]
    """Batched self-play inference (many games at once)."""
    perf.benchmark(se_rollout, *keisei_models.example_inputs(SE_ARCH, batch_size=64, device=DEVICE))


# Under bfloat16 autocast, compiled and eager round differently through 10 blocks of backward:
# gradients differ by a few hundredths (docs/measurements.md), so the check
# runs at a tolerance that still catches a wrong gradient (a doubled one, a NaN).
@pytest.mark.perf(budget=1.5, rtol=0.1, atol=0.1)
def test_se_train_step_batch16(perf) -> None:  # type: ignore[no-untyped-def]
    """Keisei's hot path: one PPO mini-batch update (forward, loss, backward, AdamW) under AMP:
    bfloat16 autocast on a CPU, float16 with a GradScaler on CUDA."""
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"KEISEI_PERF_DEVICE={DEVICE} but torch sees no CUDA device")
    model = keisei_models.build(SE_ARCH, seed=0).train().to(DEVICE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cuda = DEVICE.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    batch = keisei_models.example_training_batch(16, device=DEVICE)

    def step(net, obs, legal, target, value_class, score):  # type: ignore[no-untyped-def]
        optimizer.zero_grad(set_to_none=True)
        loss = keisei_models.training_loss(net(obs), legal, target, value_class, score)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    amp = torch.float16 if cuda else torch.bfloat16
    perf.train_step(step, model, *batch.tensors, state=(optimizer, scaler), amp=amp)


@pytest.mark.perf(
    budget=1.0,
    compile={
        "default": {},
        "reduce-overhead": {"mode": "reduce-overhead"},
        "max-autotune": {"mode": "max-autotune-no-cudagraphs"},
    },
)
def test_se_rollout_compile_modes_batch16(perf, se_rollout: torch.nn.Module) -> None:  # type: ignore[no-untyped-def]
    """Keisei's compile-mode matrix: which torch.compile mode pays for batched inference."""
    perf.benchmark(se_rollout, *keisei_models.example_inputs(SE_ARCH, batch_size=16, device=DEVICE))


# With dynamic=True, inductor's convolution still guards the batch at 2..15 on this torch (2.13):
# one recompile between batch 4 and 16 is what dynamo does; more would be a storm.
@pytest.mark.perf(budget=0.5, compile={"dynamic": True}, max_recompiles=1)
def test_se_rollout_batch_sweep(perf, se_rollout: torch.nn.Module) -> None:  # type: ignore[no-untyped-def]
    """League play's variable batch sizes on one compiled model: no recompilation storm."""
    perf.sweep(
        se_rollout,
        {f"b{n}": keisei_models.example_inputs(SE_ARCH, batch_size=n, device=DEVICE) for n in (4, 16, 64)},
    )
