"""Do the plugin's medians agree with torch's own timers? (Not a test: it prints ratios.)

For each batch size it times Keisei's tower in eager mode three ways in one process: the plugin's
runner (ABBA rounds, device sync per round), ``torch.utils.benchmark.Timer.blocked_autorange``
and, on CUDA, CUDA events around each call. Run: ``python benchmarks/timer_agreement.py --device
cuda`` (or ``cpu``); CUDA also reports the peak memory the plugin recorded.
"""

from __future__ import annotations

import argparse
import functools
import statistics

import torch
import torch.utils.benchmark as tb

import keisei_models
from pytest_keisei_perf.runner import run_benchmark
from pytest_keisei_perf.settings import BenchmarkConfig


def cuda_event_median_s(call: object, n: int = 50) -> float:
    times = []
    for _ in range(n):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()  # type: ignore[operator]
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="resnet_tower")
    parser.add_argument("--batches", default="1,64")
    opts = parser.parse_args()
    model = keisei_models.build(opts.arch).eval().to(opts.device)
    config = BenchmarkConfig(
        modes=("eager",), threshold=0.05, alpha=0.05, rtol=None, atol=None, min_speedup=None, budget_s=2.0
    )
    for batch in (int(b) for b in opts.batches.split(",")):
        (x,) = keisei_models.example_inputs(opts.arch, batch_size=batch, device=opts.device)
        result = run_benchmark(model, (x,), {}, config=config, nodeid=f"b{batch}", name="")
        ours = result.modes["eager"].median_s
        with torch.inference_mode():
            timer = tb.Timer("model(x)", globals={"model": model, "x": x}, num_threads=1)
            theirs = timer.blocked_autorange(min_run_time=2.0).median
            line = (
                f"{opts.arch} b{batch} on {opts.device}: plugin {ours * 1e3:.3f} ms, "
                f"Timer {theirs * 1e3:.3f} ms (ratio {ours / theirs:.3f})"
            )
            if opts.device.startswith("cuda"):
                events = cuda_event_median_s(functools.partial(model, x))
                peak = result.modes["eager"].peak_memory_bytes or 0
                line += f", CUDA events {events * 1e3:.3f} ms (ratio {ours / events:.3f})"
                line += f", peak {peak / 2**20:.0f} MiB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
