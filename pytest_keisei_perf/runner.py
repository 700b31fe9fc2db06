"""One benchmark from start to finish: outputs checked, modes warmed up, rounds timed ABBA-wise.

This module knows torch and the timing engine but not pytest's collection or reporting; the
plugin hands it a callable and a :class:`BenchmarkConfig` and gets a :class:`PerfResult` back.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import gc
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from . import accuracy, measure, modes
from .devices import batch_items, benchmark_context, detect_device
from .profiling import owning_module, profile_if_asked, with_profile
from .result import AccuracyResult, ModeResult, PerfResult, benchmark_id
from .settings import BenchmarkConfig
from .stats import estimate_speedup, summarize

if TYPE_CHECKING:
    from .calls import BenchmarkCall

__all__ = ["accuracy_failures", "detect_device", "run_benchmark", "run_comparison", "time_calls"]

#: A reference round at least this long; the workload itself takes tens of microseconds.
_REFERENCE_ROUND_S = 2e-3


def _seeded(call: Callable[[], Any], seed: int = 0) -> Any:
    """Run ``call`` with the RNG seeded (sampling models repeat), leaving the caller's RNG alone."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return accuracy.snapshot(call())


def _float64_reference(fn: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Callable[[], Any] | None:
    """A thunk computing the float64 output, for modules and their bound methods (such as
    ``model.get_action_and_value``); a plain callable cannot be cast."""
    owner = getattr(fn, "__self__", None)
    if isinstance(fn, nn.Module):
        module, method = fn, None
    elif isinstance(owner, nn.Module) and isinstance(getattr(fn, "__name__", None), str):
        module, method = owner, fn.__name__
    else:
        return None

    def compute() -> Any:
        model = copy.deepcopy(module).double()
        target = model if method is None else getattr(model, method)
        args64, kwargs64 = accuracy.to_float64(args), accuracy.to_float64(dict(kwargs))
        return _seeded(lambda: target(*args64, **kwargs64))

    return compute


@contextlib.contextmanager
def _peak_memory(device: str, sink: dict[str, int | None], key: str) -> Iterator[None]:
    """Record the peak CUDA memory allocated inside the block; CPU has no honest per-mode figure.

    Garbage cycles left by earlier benchmarks may hold device memory, which the peak would count
    as this one's: a full collection frees them first.
    """
    if not device.startswith("cuda"):
        sink[key] = None
        yield
        return
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    yield
    torch.cuda.synchronize(device)
    sink[key] = int(torch.cuda.max_memory_allocated(device))


def run_benchmark(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    config: BenchmarkConfig,
    nodeid: str,
    name: str,
    device: str | None = None,
    stopwatch: measure.Stopwatch | None = None,
    progress: Callable[[str], None] | None = None,
) -> PerfResult:
    """Check, warm up and time ``fn(*args, **kwargs)`` in every configured mode.

    Threads are pinned before anything compiles; the whole run is under ``torch.inference_mode``
    unless the config says otherwise. ``progress`` hears what is happening (compiling, warming
    up, rounds done), for long benchmarks.
    """
    say = progress or (lambda _: None)
    label = benchmark_id(nodeid, name)
    device = detect_device(fn, args, kwargs, device)
    stopwatch = stopwatch or measure.Stopwatch.for_device(device)
    with benchmark_context(config):
        calls: dict[str, Callable[[], Any]] = {}
        compile_outcome: modes.CompileOutcome | None = None
        eager_call = modes.bind(fn, args, kwargs)
        if "eager" in config.modes:
            calls["eager"] = eager_call
        expected = expected_again = None
        checking = config.check_outputs and set(config.modes) == {"eager", "compiled"}
        if checking:
            expected, expected_again = _seeded(eager_call), _seeded(eager_call)
        if "compiled" in config.modes:
            say(f"compiling ({config.compile_kwargs.get('backend', 'inductor')})")
            compile_outcome = modes.compile_callable(
                fn,
                args,
                kwargs,
                compile_kwargs=config.compile_kwargs,
                strict=config.strict_compile,
                stopwatch=stopwatch,
                label=label,
            )
            calls["compiled"] = compile_outcome.call
        accuracy_result: AccuracyResult | None = None
        if checking and compile_outcome is not None and not compile_outcome.fallback:
            actual = _seeded(compile_outcome.call)
            accuracy_result = accuracy.compare_outputs(
                actual,
                expected,
                eager_again=expected_again,
                reference=_float64_reference(fn, args, kwargs),
                rtol=config.rtol,
                atol=config.atol,
            )
        timing = time_calls(
            calls, device=device, config=config, stopwatch=stopwatch, say=say, progress=progress is not None
        )
        recompiles = modes.recompiles_since(compile_outcome) if compile_outcome else None
        breakdowns = profile_if_asked(
            config, calls, {"eager": owning_module(fn)}, device=device, label=label
        )  # after the recompile count: profiling the same shapes compiles nothing
    result = eager_compiled_result(
        timing,
        compile_outcome,
        recompiles,
        accuracy_result,
        config=config,
        nodeid=nodeid,
        name=name,
        device=device,
        compile_kwargs=dict(config.compile_kwargs),
        items=config.items or batch_items(args, kwargs),
    )
    return with_profile(result, config, breakdowns)


def eager_compiled_result(
    timing: _Timing,
    compile_outcome: modes.CompileOutcome | None,
    recompiles: int | None,
    accuracy_result: AccuracyResult | None,
    *,
    config: BenchmarkConfig,
    nodeid: str,
    name: str,
    device: str,
    compile_kwargs: dict[str, Any],
    items: int | None = None,
) -> PerfResult:
    """The result of eager against compiled: each mode's rounds and compile facts, the speedup,
    and the failures (mismatch, min_speedup)."""
    samples = timing.samples
    mode_results: dict[str, ModeResult] = {}
    for mode in timing.per_round:
        if mode == measure.REFERENCE:
            continue
        compiled_facts: dict[str, Any] = {}
        if mode == "compiled" and compile_outcome is not None:
            compiled_facts = {
                "compile_time_s": compile_outcome.compile_time_s,
                "compile_cache": compile_outcome.cache,
                "compile_counters": compile_outcome.cache_counters,
                "fallback": compile_outcome.fallback,
                "fallback_error": compile_outcome.error,
                "graph_count": compile_outcome.graphs,
                "graph_breaks": compile_outcome.graph_breaks,
                "recompiles": recompiles,
            }
        mode_results[mode] = timing.mode_result(mode, **compiled_facts)
    speedup = speedup_ci = None
    if "eager" in samples and "compiled" in samples:
        estimate = estimate_speedup(samples["eager"], samples["compiled"])
        speedup, speedup_ci = estimate.ratio, estimate.ci
    return PerfResult(
        nodeid=nodeid,
        name=name,
        device=device,
        threads=config.threads,
        compile_kwargs=compile_kwargs,
        modes=mode_results,
        reference_samples_s=tuple(samples[measure.REFERENCE]),
        reference_version=measure.REFERENCE_VERSION,
        speedup=speedup,
        speedup_ci=speedup_ci,
        accuracy=accuracy_result,
        failures=(
            *_failures(benchmark_id(nodeid, name), config, accuracy_result, speedup, speedup_ci),
            # dynamo's guard failures stay until the next benchmark's compile resets them
            *(modes.training_mode_switches(benchmark_id(nodeid, name)) if recompiles else ()),
        ),
        items=items,
    )


@dataclasses.dataclass(frozen=True)
class _Timing:
    """What timing a set of calls produced: per-round samples and how each call was timed."""

    samples: dict[str, list[float]]
    per_round: dict[str, int]
    warmups: dict[str, measure.WarmupResult]
    peaks: dict[str, int | None]
    p95s: dict[str, float | None] = dataclasses.field(default_factory=dict)

    def mode_result(self, mode: str, **compiled_facts: Any) -> ModeResult:
        summary = summarize(self.samples[mode])
        return ModeResult(
            mode=mode,
            median_s=summary.median,
            iqr_s=summary.iqr,
            samples_s=tuple(self.samples[mode]),
            calls_per_round=self.per_round[mode],
            warmup_calls=self.warmups[mode].calls,
            warmup_stable=self.warmups[mode].stable,
            peak_memory_bytes=self.peaks.get(mode),
            p95_s=self.p95s.get(mode),
            **compiled_facts,
        )


def time_calls(
    calls: Mapping[str, Callable[[], Any]],
    *,
    device: str,
    config: BenchmarkConfig,
    stopwatch: measure.Stopwatch,
    say: Callable[[str], None],
    progress: bool,
    reset: Callable[[], None] | None = None,
) -> _Timing:
    """Warm every call up, plan rounds, time them ABBA-wise with the reference workload.

    ``reset()`` runs before each mode's warm-up and after every round, outside the timed region
    (a training step's snapshot restored, so every round starts from the same weights).
    """
    peaks: dict[str, int | None] = {}
    warmups: dict[str, measure.WarmupResult] = {}
    for mode, call in calls.items():
        if reset is not None:
            reset()
        say(f"warming up {mode}")
        with _peak_memory(device, peaks, mode):
            warmups[mode] = measure.warm_up(call, stopwatch, max_time_s=config.budget_s)
    reference = measure.reference_workload(device)
    reference_warmup = measure.warm_up(reference, stopwatch, max_time_s=0.5, min_batch_s=_REFERENCE_ROUND_S)
    plans = {
        mode: measure.plan_rounds(w.per_call_s, budget_s=config.budget_s, target_rounds=config.rounds)
        for mode, w in warmups.items()
    }
    rounds = min(plan.rounds for plan in plans.values())
    per_round = {mode: plan.calls_per_round for mode, plan in plans.items()}
    per_round[measure.REFERENCE] = reference_warmup.batch_calls
    say(f"timing {rounds} rounds of {', '.join(calls)} with the reference workload")

    def between_rounds(done: int, total: int) -> None:
        if reset is not None:
            reset()
        if progress:
            say(f"round {done}/{total}")

    if reset is not None:
        reset()
    samples = measure.run_schedule(
        measure.abba_schedule(list(calls), rounds),
        {**calls, measure.REFERENCE: reference},
        per_round,
        stopwatch,
        on_round=between_rounds if (progress or reset is not None) else None,
    )
    p95s = {mode: _p95(call, warmups[mode], config, stopwatch, reset) for mode, call in calls.items()}
    return _Timing(samples, per_round, warmups, peaks, p95s)


def _p95(
    call: Callable[[], Any],
    warmup: measure.WarmupResult,
    config: BenchmarkConfig,
    stopwatch: measure.Stopwatch,
    reset: Callable[[], None] | None,
) -> float | None:
    """The 95th percentile of single calls (None for calls too short to time one by one): a
    tenth of the budget, at least 20 calls and at most 200."""
    if warmup.per_call_s < measure.PER_CALL_MIN_S:
        return None
    calls = int(min(200, max(20, 0.1 * config.budget_s / warmup.per_call_s)))
    if reset is not None:
        reset()
    with measure.gc_paused():
        latencies = measure.per_call_latencies(call, stopwatch, calls=calls)
    return float(np.percentile(latencies, 95))


def run_comparison(
    call: BenchmarkCall,
    *,
    config: BenchmarkConfig,
    nodeid: str,
    progress: Callable[[str], None] | None = None,
) -> PerfResult:
    """``perf.compare``: the first variant is the reference, every other one a candidate.

    Outputs are checked against the reference's (float64 rule included where the reference is a
    module or its method); rounds of all variants alternate ABBA with the reference workload; each
    candidate's speedup is reference time / its time with Yuen's 95% interval.
    """
    assert call.variants is not None
    variants, args, kwargs, name = call.variants, call.args, call.kwargs, call.name
    say = progress or (lambda _: None)
    label = benchmark_id(nodeid, name)
    names = list(variants)
    reference_fn = variants[names[0]]
    device = detect_device(reference_fn, args, kwargs, call.device)
    stopwatch = measure.Stopwatch.for_device(device)
    with benchmark_context(config):
        calls = {variant: modes.bind(fn, args, kwargs) for variant, fn in variants.items()}
        accuracy_result, mismatches = _check_candidates(calls, call, config)
        timing = time_calls(
            calls, device=device, config=config, stopwatch=stopwatch, say=say, progress=progress is not None
        )
        modules = {variant: owning_module(fn) for variant, fn in variants.items()}
        breakdowns = profile_if_asked(config, calls, modules, device=device, label=label)
    samples = timing.samples
    problems = [f"{label}: {m}" for m in mismatches]
    if accuracy_result is not None and not accuracy_result.checked:
        problems += accuracy_failures(label, "", accuracy_result, config)
    mode_results = {variant: timing.mode_result(variant) for variant in names}
    speedups: dict[str, tuple[float, tuple[float, float] | None]] = {}
    for candidate in names[1:]:
        estimate = estimate_speedup(samples[names[0]], samples[candidate])
        speedups[candidate] = (estimate.ratio, estimate.ci)
        shortfall = speedup_shortfall(
            f"{label}: {candidate} is {estimate.ratio:.2f}x as fast as {names[0]}",
            estimate.ratio,
            estimate.ci,
            config.min_speedup,
        )
        if shortfall:
            problems.append(shortfall)
    first_candidate = speedups[names[1]]
    result = PerfResult(
        nodeid=nodeid,
        name=name,
        device=device,
        threads=config.threads,
        compile_kwargs={},
        modes=mode_results,
        reference_samples_s=tuple(samples[measure.REFERENCE]),
        reference_version=measure.REFERENCE_VERSION,
        speedup=first_candidate[0],
        speedup_ci=first_candidate[1],
        accuracy=accuracy_result,
        failures=tuple(problems),
        speedups=speedups,
        items=config.items or batch_items(args, kwargs),
    )
    return with_profile(result, config, breakdowns)


def _check_candidates(
    calls: Mapping[str, Callable[[], Any]], call: BenchmarkCall, config: BenchmarkConfig
) -> tuple[AccuracyResult | None, list[str]]:
    """Every candidate's outputs against the reference variant's: the worst check (a check
    that could not run first) and the mismatch messages."""
    if not config.check_outputs or call.variants is None:
        return None, []
    names = list(call.variants)
    expected, expected_again = _seeded(calls[names[0]]), _seeded(calls[names[0]])
    # one float64 reference for every candidate, computed at most once
    thunk = _float64_reference(call.variants[names[0]], call.args, call.kwargs)
    reference = functools.cache(thunk) if thunk is not None else None
    checked, mismatches = [], []
    for candidate in names[1:]:
        outcome = accuracy.compare_outputs(
            _seeded(calls[candidate]),
            expected,
            eager_again=expected_again,
            reference=reference,
            rtol=config.rtol,
            atol=config.atol,
        )
        checked.append(outcome)
        if outcome.mismatched:
            mismatches.append(f"{candidate} output does not match {names[0]}: {outcome.message}")
    unchecked = next((c for c in checked if not c.checked), None)
    worst = unchecked or max(checked, key=lambda c: c.max_abs_err)
    passed = not mismatches and unchecked is None
    return dataclasses.replace(worst, passed=passed, message="; ".join(mismatches)), mismatches


def accuracy_failures(
    label: str, mismatch: str, outcome: AccuracyResult | None, config: BenchmarkConfig
) -> list[str]:
    """A mismatch fails; a check that could not run fails only under ``strict_accuracy``
    (``--perf-strict-accuracy``); otherwise the report says NOT CHECKED."""
    if outcome is None:
        return []
    if outcome.mismatched:
        return [f"{label}: {mismatch}: {outcome.message}"]
    if not outcome.checked and config.strict_accuracy:
        return [
            f"{label}: outputs were NOT CHECKED: {outcome.skipped_reason} (--perf-strict-accuracy); "
            "make the call repeatable (restore what it changes between calls)"
        ]
    return []


def speedup_shortfall(
    head: str, ratio: float, ci: tuple[float, float] | None, min_speedup: float | None
) -> str | None:
    """The one ``min_speedup`` rule, for compiled against eager and for ``perf.compare``
    candidates alike: it fails when the speedup is confidently below ``min_speedup``, that is
    when the whole 95% interval lies below it (noise alone never fails it)."""
    if min_speedup is None:
        return None
    upper = ci[1] if ci is not None else ratio
    if upper >= min_speedup:
        return None
    ci_text = f" (95% CI {ci[0]:.2f}x-{ci[1]:.2f}x)" if ci is not None else ""
    return f"{head}{ci_text} is below min_speedup {min_speedup:g}x: the whole interval lies below it"


def _failures(
    label: str,
    config: BenchmarkConfig,
    accuracy_result: AccuracyResult | None,
    speedup: float | None,
    speedup_ci: tuple[float, float] | None,
) -> tuple[str, ...]:
    problems: list[str] = []
    problems += accuracy_failures(label, "compiled output does not match eager", accuracy_result, config)
    if speedup is not None:
        shortfall = speedup_shortfall(
            f"{label}: compiled speedup {speedup:.2f}x", speedup, speedup_ci, config.min_speedup
        )
        if shortfall:
            problems.append(shortfall)
    return tuple(problems)
