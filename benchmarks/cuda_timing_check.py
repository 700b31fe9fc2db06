"""CUDA timing that cannot miss the GPU: benchmarks whose device is not obvious, against CUDA events.

Three callables run Keisei's tower on the GPU without showing it in the usual place: a closure
(no tensor arguments), a dict batch, and a module whose first buffer is on the CPU. Each is
timed by the plugin's engine (``runner.run_benchmark``) and by ``torch.cuda.Event`` pairs around
the same number of calls; GPU-bound work (batch 64) must agree within 5%. For contrast, the
same calls timed without any synchronisation measure only kernel launches.

    python benchmarks/cuda_timing_check.py [--batch 64] [--tolerance 0.05]

Exit 1 when a case disagrees. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import keisei_models
from pytest_keisei_perf.runner import run_benchmark
from pytest_keisei_perf.settings import BenchmarkConfig


def cuda_event_seconds(call: Callable[[], Any], calls: int, repeats: int = 7) -> float:
    """Median per-call GPU time over ``repeats`` blocks of ``calls`` calls."""
    per_call = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(calls):
            call()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) / 1e3 / calls)
    return statistics.median(per_call)


def unsynchronised_seconds(call: Callable[[], Any], calls: int) -> float:
    """What a CPU-only stopwatch sees: launches, not the work."""
    torch.cuda.synchronize()
    begin = time.perf_counter()
    for _ in range(calls):
        call()
    elapsed = time.perf_counter() - begin
    torch.cuda.synchronize()
    return elapsed / calls


class CpuBufferFirst(nn.Module):
    """A module whose first registered tensor lives on the CPU, the work on the GPU."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.register_buffer("step", torch.zeros(1))
        self.inner = inner

    def forward(self, x: torch.Tensor) -> Any:
        return self.inner(x)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    if "resnet_tower" not in keisei_models.available():  # run from a checkout that is not installed
        from keisei_models.resnet_tower import RESNET_TOWER

        keisei_models.register(RESNET_TOWER)
    model = keisei_models.build("resnet_tower").eval().cuda()
    (obs,) = keisei_models.example_inputs("resnet_tower", batch_size=args.batch, device="cuda")
    wrapped = CpuBufferFirst(model)

    def closure() -> Any:
        return model(obs)

    def dict_step(batch: dict[str, torch.Tensor]) -> Any:
        return model(batch["obs"])

    cases: list[tuple[str, Callable[..., Any], tuple[Any, ...], str | None]] = [
        ("closure", closure, (), None),
        ("closure, device='cuda'", closure, (), "cuda:0"),
        ("dict batch", dict_step, ({"obs": obs},), None),
        ("module, CPU buffer first", wrapped, (obs,), None),
    ]
    config = BenchmarkConfig(
        modes=("eager",), threshold=0.05, alpha=0.05, rtol=None, atol=None, min_speedup=None, budget_s=1.0
    )
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, resnet_tower batch {args.batch}")
    print(f"{'case':<28} {'device':<8} {'plugin':>10} {'CUDA events':>12} {'ratio':>7} {'no sync':>10}")
    bad = 0
    with torch.inference_mode():
        for label, fn, fn_args, device in cases:
            result = run_benchmark(
                fn, fn_args, {}, config=config, nodeid="cuda_timing_check", name=label, device=device
            )
            plugin_s = result.modes["eager"].median_s
            events_s = cuda_event_seconds(lambda fn=fn, fn_args=fn_args: fn(*fn_args), calls=20)
            launch_s = unsynchronised_seconds(lambda fn=fn, fn_args=fn_args: fn(*fn_args), calls=20)
            ratio = plugin_s / events_s
            ok = abs(ratio - 1) <= args.tolerance
            bad += not ok
            print(
                f"{label:<28} {result.device:<8} {plugin_s * 1e3:>8.3f}ms {events_s * 1e3:>10.3f}ms "
                f"{ratio:>7.3f} {launch_s * 1e3:>8.3f}ms {'ok' if ok else 'DISAGREES'}"
            )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
