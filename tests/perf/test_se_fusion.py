"""Keisei's plan, phase 4: does a fused squeeze-excitation operator pay?

Each benchmark profiles the plain SE-ResNet (``focus="ScaleShiftSE"``: SE's share of the time and
so the most any SE replacement can save) and times, against it, ``torch.compile`` of the plain
network (inductor's own fusion) and the network with ``keisei::squeeze_excite``: forward at batch
1 (self-play) and at a training batch, and the training step (forward and backward). The docs
states the results with their intervals.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import keisei_models

ARCH = "se_resnet_small"
DEVICE = os.environ.get("KEISEI_PERF_DEVICE", "cpu")
TRAIN_BATCH = 16


def _variants() -> dict[str, nn.Module]:
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"KEISEI_PERF_DEVICE={DEVICE} but torch sees no CUDA device")
    plain = keisei_models.build(ARCH, seed=0).to(DEVICE)
    fused = keisei_models.build(ARCH, seed=0, se_impl="fused").to(DEVICE)
    fused.load_state_dict(plain.state_dict())
    return {"plain": plain, "fused": fused}


def _obs(batch: int) -> torch.Tensor:
    return keisei_models.example_training_batch(batch, device=DEVICE).observations


class TrainStep(nn.Module):
    """One training step (zeroed gradients, forward, loss, backward) as a module, so that the
    profile attributes its forward to the network's submodules; the backward is in the ops."""

    def __init__(self, model: nn.Module, params: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._params = [params]  # the plain network's parameters, outside the module tree

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        self._params[0].zero_grad(set_to_none=True)
        out = self.model(obs)
        loss = out.policy_logits.square().mean() + out.value_logits.square().mean() + out.score_lead.mean()
        loss.backward()
        return loss.detach()


@pytest.mark.perf(budget=1.0, focus="ScaleShiftSE", threshold=0.2)
@pytest.mark.parametrize("batch", [1, TRAIN_BATCH])
def test_se_fusion_forward(perf, batch: int) -> None:  # type: ignore[no-untyped-def]
    models = {name: m.eval() for name, m in _variants().items()}
    variants = {
        "plain": models["plain"],
        "compiled": torch.compile(models["plain"]),
        "fused": models["fused"],
    }
    perf.compare(variants, _obs(batch))


@pytest.mark.perf(budget=1.5, focus="ScaleShiftSE", inference_mode=False, rtol=1e-3, atol=1e-4)
def test_se_fusion_train_step(perf) -> None:  # type: ignore[no-untyped-def]
    models = {name: m.train() for name, m in _variants().items()}
    plain, fused = models["plain"], models["fused"]
    steps = {
        "plain": TrainStep(plain, plain),
        "compiled": TrainStep(torch.compile(plain), plain),
        "fused": TrainStep(fused, fused),
    }
    perf.compare(steps, _obs(TRAIN_BATCH))
