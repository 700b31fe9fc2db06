"""``--perf-compile-state both`` through the plugin on a GPU (run by hand on a CUDA machine):
Keisei's tower at batch 1, the state the H100 finding is about.

    PYTHONPATH=$PWD pytest -p pytest_keisei_perf.plugin benchmarks/gpu/test_gpu_compile_state.py \
        -v --perf-compile-state both --perf-json both.json
"""

from __future__ import annotations

import pytest
import torch

import keisei_models
from keisei_models.resnet_tower import RESNET_TOWER

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.perf(atol=1e-4)
def test_tower_batch1_both_states(perf) -> None:  # type: ignore[no-untyped-def]
    if "resnet_tower" not in keisei_models.available():  # a source checkout has no entry points
        keisei_models.register(RESNET_TOWER)
    model = keisei_models.build("resnet_tower").eval().cuda()
    (x,) = keisei_models.example_inputs("resnet_tower", batch_size=1, device="cuda")
    perf.benchmark(model, x)
