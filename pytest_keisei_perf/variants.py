"""Compile-mode variants in one benchmark: marker ``compile={"default": {}, "reduce-overhead":
{"mode": "reduce-overhead"}}``, each timed as its own mode ``compiled[name]``.

Each variant runs as its own block, eager against it, from ``torch.compiler.reset()``: dynamo's
caches, recompile counts and graph counts are that variant's alone, and its speedup comes from
its own interleaved rounds with eager. The merged result keeps every block's eager and reference
rounds, so each variant is normalised against the same pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .result import AccuracyResult, ModeResult, PerfResult
    from .settings import BenchmarkConfig

__all__ = ["CUDA_GRAPH_MODES", "cpu_notes", "fastest_line", "merge_blocks", "run_variants", "worst_check"]

#: ``torch.compile`` modes that use CUDA graphs on CUDA, and nothing of the kind on a CPU.
CUDA_GRAPH_MODES: Final = ("reduce-overhead", "max-autotune")


def run_variants(measure: Callable[[BenchmarkConfig], PerfResult], config: BenchmarkConfig) -> PerfResult:
    """``measure(block_config)`` once per variant (eager and that variant), merged."""
    blocks: dict[str, PerfResult] = {}
    for mode, kwargs in config.compiled_modes.items():
        block = dataclasses.replace(
            config, modes=tuple(m for m in config.modes if m in ("eager", "compiled")),
            compile_kwargs=kwargs, compile_variants={},
        )  # fmt: skip
        blocks[mode] = measure(block)
    return merge_blocks(blocks, config)


def merge_blocks(blocks: Mapping[str, PerfResult], config: BenchmarkConfig) -> PerfResult:
    """One result from the blocks: eager's and the reference's rounds of every block, each
    variant's compiled mode under its own name, its speedup, and every block's failures."""

    first = next(iter(blocks.values()))
    modes: dict[str, ModeResult] = {}
    eager = [b.modes["eager"] for b in blocks.values() if "eager" in b.modes]
    if eager:
        modes["eager"] = _pooled(eager)
    speedups: dict[str, tuple[float, tuple[float, float] | None]] = {}
    failures: list[str] = []
    breakdowns = {"eager": first.breakdowns["eager"]} if "eager" in first.breakdowns else {}
    for mode, block in blocks.items():
        if "compiled" in block.breakdowns:
            breakdowns[mode] = dataclasses.replace(block.breakdowns["compiled"], mode=mode)
        if "compiled" in block.modes:
            modes[mode] = dataclasses.replace(block.modes["compiled"], mode=mode)
        if block.speedup is not None:
            speedups[mode] = (block.speedup, block.speedup_ci)
        failures += [f"[{mode}] {f}" for f in block.failures]
    return dataclasses.replace(
        first,
        modes=modes,
        reference_samples_s=tuple(s for b in blocks.values() for s in b.reference_samples_s),
        compile_kwargs={
            **config.compile_kwargs,
            "variants": {m: dict(k) for m, k in config.compiled_modes.items()},
        },
        speedup=None,
        speedup_ci=None,
        speedups=speedups,
        accuracy=worst_check([b.accuracy for b in blocks.values()]),
        failures=tuple(failures),
        breakdowns=breakdowns,
    )


def _pooled(rounds: Sequence[ModeResult]) -> ModeResult:
    """Eager's rounds of every block as one mode."""
    from .stats import summarize

    samples = tuple(s for r in rounds for s in r.samples_s)
    summary = summarize(list(samples))
    p95s = [r.p95_s for r in rounds if r.p95_s is not None]
    return dataclasses.replace(
        rounds[0],
        median_s=summary.median,
        iqr_s=summary.iqr,
        samples_s=samples,
        p95_s=max(p95s, default=None),
    )


def worst_check(checks: Sequence[AccuracyResult | None]) -> AccuracyResult | None:
    """A mismatch first, then a check that did not run, then the largest error."""
    present = [c for c in checks if c is not None]
    for pick in (lambda c: c.mismatched, lambda c: not c.checked):
        found = next((c for c in present if pick(c)), None)
        if found is not None:
            return found
    return max(present, key=lambda c: c.max_abs_err, default=None)


def fastest_line(result: PerfResult) -> str | None:
    """Which compile variant is fastest, when its speedup interval lies above every other's;
    or that none is distinguishable. None for a result without variants."""
    named: Mapping[str, Any] = result.compile_kwargs.get("variants") or {}
    variants = {
        m: s
        for m, s in result.speedups.items()
        if m in named and m in result.modes and not result.modes[m].fallback
    }
    if len(variants) < 2:
        return None
    intervals = {m: ci or (ratio, ratio) for m, (ratio, ci) in variants.items()}
    best = max(variants, key=lambda m: variants[m][0])
    clear = all(intervals[best][0] > hi for m, (_, hi) in intervals.items() if m != best)
    described = ", ".join(
        f"{m} {ratio:.2f}x ({intervals[m][0]:.2f}x-{intervals[m][1]:.2f}x)"
        for m, (ratio, _) in variants.items()
    )
    if clear:
        return f"{result.benchmark_id}: fastest compile setting: {best}; speedups over eager: {described}"
    return (
        f"{result.benchmark_id}: no compile setting is distinguishably fastest (intervals overlap): "
        f"{described}"
    )


def cpu_notes(result: PerfResult) -> list[str]:
    """What a CUDA-graph mode does differently on a CPU (nothing of the kind), said once."""
    if result.device.startswith("cuda"):
        return []
    variants: Mapping[str, Any] = result.compile_kwargs.get("variants") or {}
    return [
        f"{result.benchmark_id} [{mode}]: mode={kwargs.get('mode')!r} uses CUDA graphs only on CUDA; "
        f"on {result.device} it compiles without them"
        for mode, kwargs in variants.items()
        if kwargs.get("mode") in CUDA_GRAPH_MODES
    ]
