"""The fused squeeze-excitation operator alone, against the composite block (not a test: it
prints times and ratios with intervals).

For each batch size it times, in one process, ``squeeze_excite_reference`` (the composite: mean,
two linear layers, sigmoid, scale and shift), the same compiled by inductor, and
``keisei::squeeze_excite``, through the plugin's runner (``perf.compare`` semantics: ABBA rounds,
Yuen's interval). Run: ``python benchmarks/se_operator.py --device cpu`` (``cuda`` times the
Triton kernel). Shapes are the SE-ResNet's: 256 channels, hidden 16, scale and shift, 9x9.
"""

from __future__ import annotations

import argparse
import json

import torch

from keisei_models.fused_se import squeeze_excite, squeeze_excite_reference
from pytest_keisei_perf.calls import BenchmarkCall
from pytest_keisei_perf.runner import run_comparison
from pytest_keisei_perf.settings import BenchmarkConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,16,256")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--budget", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = BenchmarkConfig(
        modes=("eager",),
        threshold=0.05,
        alpha=0.05,
        rtol=1e-5,
        atol=1e-5,
        min_speedup=None,
        budget_s=args.budget,
    )
    compiled = torch.compile(squeeze_excite_reference)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        g = torch.Generator().manual_seed(batch)
        c, h = args.channels, args.hidden
        shapes = ((batch, c, 9, 9), (h, c), (h,), (2 * c, h), (2 * c,))
        operands = tuple(torch.randn(*s, generator=g).to(args.device) for s in shapes)
        variants = {"composite": squeeze_excite_reference, "inductor": compiled, "fused op": squeeze_excite}
        call = BenchmarkCall(
            squeeze_excite_reference,
            (*operands, True),
            {},
            name=f"b{batch}",
            device=args.device,
            variants=variants,
        )
        result = run_comparison(call, config=config, nodeid="benchmarks/se_operator.py")
        medians = {m: r.median_s * 1e6 for m, r in result.modes.items()}
        row = {"batch": batch, "median_us": medians, "speedup_vs_composite": dict(result.speedups)}
        rows.append(row)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
