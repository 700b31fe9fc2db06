"""Shape sweeps: ``perf.sweep(fn, {"b1": (x1,), "b64": (x64,)})`` runs one compiled object over
every shape, as league play does with variable batch sizes.

Each shape is its own pair of modes, ``eager[label]`` and ``compiled[label]``, timed ABBA-wise
together. The first compiled call per shape is timed apart (its compile or recompile latency),
and the graphs it added are counted: a shape that compiled a new graph recompiled, and dynamo's
recorded reason says why. Marker ``max_recompiles=N`` fails a storm.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from . import _compat, accuracy, measure, modes
from .devices import benchmark_context, detect_device
from .result import benchmark_id

if TYPE_CHECKING:
    from .result import AccuracyResult, PerfResult
    from .settings import BenchmarkConfig

__all__ = ["ShapeCompile", "run_sweep", "storm_failure"]


@dataclasses.dataclass(frozen=True)
class ShapeCompile:
    """What one shape's first compiled call did: its latency and the graphs it added."""

    label: str
    first_call_s: float
    new_graphs: int


def storm_failure(
    label: str, shapes: list[ShapeCompile], reasons: list[str], limit: int | None, dynamic: object = None
) -> str | None:
    """The failure of a recompile storm: more recompiles than ``max_recompiles`` allows, naming
    the shapes that recompiled and dynamo's reasons. The first shape's compile is no recompile."""
    if limit is None:
        return None
    recompiled = [s for s in shapes[1:] if s.new_graphs > 0]
    total = sum(s.new_graphs for s in recompiled)
    if total <= limit:
        return None
    distinct = list(dict.fromkeys(reasons))
    why = "; ".join(distinct[:3]) + (f"; and {len(distinct) - 3} more" if len(distinct) > 3 else "")
    hint = (
        "dynamic=True still guards sizes (0 and 1 are specialised, some kernels guard a range; "
        "dynamo's reason above names the guard): split the sweep there, or pad to one side of it"
        if dynamic is True
        else "consider compile={'dynamic': True}, or padding to fewer shapes"
    )
    return (
        f"{label}: {total} recompile(s) over the sweep, more than max_recompiles={limit}: shapes "
        f"{', '.join(s.label for s in recompiled)} compiled new graphs (dynamo: "
        f"{why or 'no reason recorded'}); {hint}"
    )


def run_sweep(
    fn: Callable[..., Any],
    inputs: Mapping[str, tuple[Any, ...]],
    *,
    config: BenchmarkConfig,
    nodeid: str,
    name: str,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PerfResult:
    """Compile ``fn`` once, call it on every shape in order (first calls timed), check each
    shape's output against eager, then time every shape in both modes."""
    from .profiling import owning_module, profile_if_asked, with_profile
    from .runner import time_calls

    say = progress or (lambda _: None)
    label = benchmark_id(nodeid, name)
    first_args = next(iter(inputs.values()))
    device = detect_device(fn, first_args, {}, device)
    stopwatch = measure.Stopwatch.for_device(device)
    calls: dict[str, Callable[[], Any]] = {}
    shapes: list[ShapeCompile] = []
    checks: list[AccuracyResult] = []
    with benchmark_context(config):
        for shape, args in inputs.items():
            if "eager" in config.modes:
                calls[f"eager[{shape}]"] = modes.bind(fn, args, {})
        compiled = None
        if "compiled" in config.modes:
            torch.compiler.reset()
            _compat.reset_dynamo_counters()
            compiled = torch.compile(fn, **config.compile_kwargs)
            for shape, args in inputs.items():
                say(f"first compiled call at {shape}")
                before = _compat.dynamo_counts().graphs or 0
                stopwatch.synchronize()
                start = time.perf_counter()
                try:
                    actual = accuracy.snapshot(compiled(*args))
                except Exception as exc:  # any compile failure: a sweep has no eager fallback
                    raise modes.PerfCompileError(
                        f"{label}: torch.compile failed at shape {shape}: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:300]}"
                    ) from exc
                stopwatch.synchronize()
                elapsed = time.perf_counter() - start
                shapes.append(ShapeCompile(shape, elapsed, (_compat.dynamo_counts().graphs or 0) - before))
                calls[f"compiled[{shape}]"] = modes.bind(compiled, args, {})
                if config.check_outputs and "eager" in config.modes:
                    eager = calls[f"eager[{shape}]"]
                    checks.append(
                        accuracy.compare_outputs(
                            actual,
                            accuracy.snapshot(eager()),
                            eager_again=accuracy.snapshot(eager()),
                            rtol=config.rtol,
                            atol=config.atol,
                        )
                    )
        reasons = _compat.recompile_reasons()
        timing = time_calls(
            calls, device=device, config=config, stopwatch=stopwatch, say=say, progress=progress is not None
        )
        steady = _compat.dynamo_counts().graphs
        module = owning_module(fn)
        eager_modules = {mode: module for mode in calls if mode.startswith("eager")}
        breakdowns = profile_if_asked(config, calls, eager_modules, device=device, label=label)
    result = _result(
        timing, shapes, checks, reasons, steady, inputs,
        config=config, nodeid=nodeid, name=name, device=device, label=label,
    )  # fmt: skip
    return with_profile(result, config, breakdowns)


def _result(
    timing: Any,
    shapes: list[ShapeCompile],
    checks: list[AccuracyResult],
    reasons: list[str],
    graphs_after: int | None,
    inputs: Mapping[str, tuple[Any, ...]],
    *,
    config: BenchmarkConfig,
    nodeid: str,
    name: str,
    device: str,
    label: str,
) -> PerfResult:
    from .result import PerfResult
    from .runner import accuracy_failures
    from .stats import estimate_speedup
    from .variants import worst_check

    by_shape = {s.label: s for s in shapes}
    mode_results = {}
    for mode in timing.per_round:
        if mode == measure.REFERENCE:
            continue
        facts: dict[str, Any] = {}
        shape = by_shape.get(mode[len("compiled[") : -1]) if mode.startswith("compiled[") else None
        if shape is not None:
            recompiled = shape.new_graphs if shape is not shapes[0] else 0
            facts = {
                "compile_time_s": shape.first_call_s,
                "recompiles": recompiled,
                "graph_count": graphs_after,
            }
        mode_results[mode] = timing.mode_result(mode, **facts)
    speedups = {}
    for key in inputs:
        eager, compiled = f"eager[{key}]", f"compiled[{key}]"
        if eager in timing.samples and compiled in timing.samples:
            estimate = estimate_speedup(timing.samples[eager], timing.samples[compiled])
            speedups[compiled] = (estimate.ratio, estimate.ci)
    checked = worst_check(checks)
    failures = accuracy_failures(label, "compiled output does not match eager", checked, config)
    storm = storm_failure(label, shapes, reasons, config.max_recompiles, config.compile_kwargs.get("dynamic"))
    return PerfResult(
        nodeid=nodeid,
        name=name,
        device=device,
        threads=config.threads,
        compile_kwargs={**config.compile_kwargs, "sweep": ",".join(inputs)},
        modes=mode_results,
        reference_samples_s=tuple(timing.samples[measure.REFERENCE]),
        reference_version=measure.REFERENCE_VERSION,
        accuracy=checked,
        failures=(*failures, *([storm] if storm else [])),
        speedups=speedups,
    )
