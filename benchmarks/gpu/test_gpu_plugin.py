"""GPU checks through the plugin itself (run by hand on a CUDA machine, not part of the suite):
a closure told its device, a dict batch found in a dict, and the machine key with the GPU facts.

    pytest -p pytest_keisei_perf.plugin benchmarks/gpu/test_gpu_plugin.py -v
"""

from __future__ import annotations

import pytest
import torch

import keisei_models
from keisei_models.resnet_tower import RESNET_TOWER_TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    if "resnet_tower_tiny" not in keisei_models.available():
        keisei_models.register(RESNET_TOWER_TINY)
    return keisei_models.build("resnet_tower_tiny").eval().cuda()


# inductor's CUDA kernels differ from eager by ~2e-5 here, and a closure has no module to cast to
# float64 for the reference rule, so the absolute tolerance is set for the GPU
@pytest.mark.perf(atol=1e-4)
def test_closure_with_device(perf, tiny: torch.nn.Module) -> None:  # type: ignore[no-untyped-def]
    (x,) = keisei_models.example_inputs("resnet_tower_tiny", batch_size=64, device="cuda")
    result = perf.benchmark(lambda: tiny(x), device="cuda")
    assert result.device.startswith("cuda")
    assert result.modes["eager"].peak_memory_bytes


@pytest.mark.perf(atol=1e-4)
def test_dict_batch_is_found(perf, tiny: torch.nn.Module) -> None:  # type: ignore[no-untyped-def]
    (x,) = keisei_models.example_inputs("resnet_tower_tiny", batch_size=64, device="cuda")
    result = perf.benchmark(lambda batch: tiny(batch["obs"]), {"obs": x})
    assert result.device == "cuda:0"
