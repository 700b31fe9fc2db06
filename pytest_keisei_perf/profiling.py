"""``--perf-profile``: where a benchmark's time goes, and so what any optimisation could win.

After the timed rounds, each mode is called a few more times under ``torch.profiler`` (CPU, and
CUDA where the benchmark runs there). The trace goes to a file Perfetto and ``chrome://tracing``
open; the breakdown gives each submodule's share of the call (eager: every submodule's forward is
a named range), each module class's share, and the ops or kernels with the most self time.
Compiled code has no module boundaries left: it is attributed to the ops and kernels inductor
generated, and the breakdown says so instead of guessing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .breakdown import Breakdown, FocusError, Share, amdahl_line, focus_share
from .files import file_stem

if TYPE_CHECKING:
    from .result import PerfResult
    from .settings import BenchmarkConfig

__all__ = ["owning_module", "profile_if_asked", "profile_modes", "with_profile"]

#: Profiled calls per mode: enough for op counts to settle, few enough to stay a side note.
PROFILED_CALLS = 5
#: Ops and kernels kept per breakdown, by self time.
TOP_OPS = 12
_CALL = "keisei-perf.call"
_MODULE = "keisei-perf.module "
_COMPILED_GRAPH = re.compile(r"^## Call CompiledFxGraph \S+ ##$")
_MODULE_NAME = re.compile(r"^keisei-perf\.module (?P<path>\S+) \((?P<cls>[^)]+)\)$")


def owning_module(fn: Any) -> nn.Module | None:
    """The module whose submodules a call runs: ``fn`` itself, or the module a bound method
    belongs to (``model.get_action_and_value``); None for a plain callable, and for a module
    holding compiled code, whose submodules cannot take hooks without a recompile."""
    from ._compat import holds_compiled_module

    module = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    if not isinstance(module, nn.Module) or holds_compiled_module(module):
        return None
    return module


@contextlib.contextmanager
def _module_ranges(module: nn.Module) -> Iterator[None]:
    """Every submodule's forward as a named profiler range, for as long as the block runs."""
    open_ranges: dict[int, list[Any]] = defaultdict(list)
    handles = []
    for path, sub in module.named_modules():
        if sub is module:
            continue
        name = f"{_MODULE}{path} ({type(sub).__name__})"

        def enter(mod: nn.Module, _args: Any, name: str = name) -> None:
            scope = torch.profiler.record_function(name)
            scope.__enter__()
            open_ranges[id(mod)].append(scope)

        def leave(mod: nn.Module, _args: Any, _out: Any) -> None:
            if open_ranges[id(mod)]:
                open_ranges[id(mod)].pop().__exit__(None, None, None)

        handles += [sub.register_forward_pre_hook(enter), sub.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def profile_modes(
    calls: Mapping[str, Callable[[], Any]],
    *,
    modules: Mapping[str, nn.Module | None],
    device: str,
    trace_dir: Path | None,
    label: str,
    reset: Callable[[], None] | None = None,
) -> dict[str, Breakdown]:
    """Profile each mode's call outside any timed round; compiled modes first, so that no module
    hook is ever present while a compiled graph runs (dynamo would guard on it and recompile)."""
    order = sorted(calls, key=lambda mode: modules.get(mode) is not None)
    found = {}
    for mode in order:
        module = modules.get(mode)
        ranges = _module_ranges(module) if module is not None else contextlib.nullcontext()
        with ranges:
            found[mode] = _profile_one(mode, calls[mode], module, device, trace_dir, label, reset)
    return {mode: found[mode] for mode in calls}


def _profile_one(
    mode: str,
    call: Callable[[], Any],
    module: nn.Module | None,
    device: str,
    trace_dir: Path | None,
    label: str,
    reset: Callable[[], None] | None,
) -> Breakdown:
    from torch.profiler import ProfilerActivity, profile, record_function

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    if reset is not None:
        reset()
    call()  # the profiler's own first-call costs stay out of the breakdown
    sync()
    with profile(activities=activities) as prof:
        for _ in range(PROFILED_CALLS):
            if reset is not None:
                reset()
            with record_function(_CALL):
                call()
                sync()
    trace = None
    if trace_dir is not None:
        trace_dir.mkdir(parents=True, exist_ok=True)
        path = trace_dir / f"{file_stem(label)}.{file_stem(mode)}.trace.json"
        prof.export_chrome_trace(str(path))
        trace = str(path)
    return _breakdown(mode, prof, module, clock="cuda" if cuda else "cpu", trace=trace)


def _breakdown(mode: str, prof: Any, module: nn.Module | None, *, clock: str, trace: str | None) -> Breakdown:
    from torch.profiler import DeviceType

    cuda = clock == "cuda"
    events = [e for e in prof.events() if e.device_type == DeviceType.CPU]

    def spent(event: Any) -> float:
        return float(event.device_time_total if cuda else event.cpu_time_total)

    calls = [e for e in events if e.name == _CALL]
    total = sum(spent(e) for e in calls)
    if not calls or total <= 0:
        return Breakdown(mode, 0.0, clock, unattributed="the profiler recorded no time for this call")
    per_call = len(calls)
    by_path: dict[str, float] = defaultdict(float)
    by_class: dict[str, float] = defaultdict(float)
    own_by_class: dict[str, float] = defaultdict(float)
    instances: dict[str, set[str]] = defaultdict(set)
    in_call: dict[int, dict[str, float]] = {id(c): defaultdict(float) for c in calls}
    top_level = 0.0
    for event in events:
        match = _MODULE_NAME.match(event.name)
        if match is None:
            continue
        path, cls = match["path"], match["cls"]
        by_path[path] += spent(event)
        instances[cls].add(path)
        ancestors, call = _enclosing(event)
        if cls not in ancestors:
            by_class[cls] += spent(event)
            if call is not None and id(call) in in_call:
                in_call[id(call)][cls] += spent(event)
        own_by_class[cls] += spent(event)
        if ancestors:
            own_by_class[ancestors[0]] -= spent(event)  # the enclosing module's own time
        else:
            top_level += spent(event)
    ops = _top_ops(prof, cuda, total, per_call)
    return Breakdown(
        mode=mode,
        call_s=total / per_call / 1e6,
        clock=clock,
        modules=tuple(Share(p, t / total, 1) for p, t in sorted(by_path.items(), key=lambda kv: -kv[1])),
        classes=tuple(
            Share(c, t / total, len(instances[c]), *_spread(c, calls, in_call, spent))
            for c, t in sorted(by_class.items(), key=lambda kv: -kv[1])
        ),
        classes_self=tuple(
            Share(c, max(t, 0.0) / total, len(instances[c]))
            for c, t in sorted(own_by_class.items(), key=lambda kv: -kv[1])
        ),
        ops=ops,
        unattributed=_unattributed(mode, module, by_path, 1 - top_level / total, cuda),
        trace=trace,
    )


def _spread(
    cls: str, calls: list[Any], in_call: dict[int, dict[str, float]], spent: Callable[[Any], float]
) -> tuple[float | None, float | None]:
    """The class's lowest and highest share in one profiled call."""
    shares = [in_call[id(c)].get(cls, 0.0) / spent(c) for c in calls if spent(c) > 0]
    return (min(shares), max(shares)) if shares else (None, None)


def _enclosing(event: Any) -> tuple[list[str], Any | None]:
    """The classes of the module ranges around ``event`` (nearest first) and the profiled call
    (``keisei-perf.call`` range) it ran in, in one walk up its parents."""
    classes, call = [], None
    parent = event.cpu_parent
    while parent is not None:
        match = _MODULE_NAME.match(parent.name)
        if match is not None:
            classes.append(match["cls"])
        elif parent.name == _CALL:
            call = parent
        parent = parent.cpu_parent
    return classes, call


def _top_ops(prof: Any, cuda: bool, total: float, per_call: int) -> tuple[Share, ...]:
    """Ops (CPU) or kernels (CUDA) by self time; on CUDA only device-side events count, so a
    kernel and the op that launched it are not counted twice."""
    from torch.profiler import DeviceType

    self_times: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for avg in prof.key_averages():
        if avg.key == _CALL or avg.key.startswith(_MODULE):
            continue
        if cuda:
            if getattr(avg, "device_type", None) != DeviceType.CUDA:
                continue
            self_time = float(avg.self_device_time_total)
        else:
            self_time = float(avg.self_cpu_time_total)
        if self_time > 0:
            name = (
                "inductor-generated code (## Call CompiledFxGraph ##)"
                if _COMPILED_GRAPH.match(avg.key)
                else avg.key
            )
            self_times[name] += self_time  # compiled graphs (forward, backward) share one name
            counts[name] += avg.count / per_call
    rows = sorted(self_times, key=lambda name: -self_times[name])[:TOP_OPS]
    return tuple(Share(name, self_times[name] / total, counts[name]) for name in rows)


def _unattributed(
    mode: str, module: nn.Module | None, by_path: Mapping[str, float], outside: float, cuda: bool
) -> str:
    if module is None and mode.startswith("compiled"):
        generated = (
            "Triton kernels, named after the ops inductor fused into them"
            if cuda
            else "inductor's C++ kernels, which the CPU profiler does not name: their time is the "
            "self time of '## Call CompiledFxGraph ... ##'"
        )
        return f"{mode}: no module boundaries survive compilation; time is attributed to ops and {generated}"
    if module is None:
        return f"{mode}: not an nn.Module or a method of one, so the breakdown is by op only"
    if not by_path:
        return f"{mode}: no submodule ran inside the call; the breakdown is by op only"
    return (
        f"{outside:.1%} of the call ran outside every submodule: the model's own forward code, the "
        "caller, and in a training step the backward pass and optimizer (autograd runs them "
        "outside module calls; they are in the ops)"
    )


def profile_if_asked(
    config: BenchmarkConfig,
    calls: Mapping[str, Callable[[], Any]],
    modules: Mapping[str, nn.Module | None],
    *,
    device: str,
    label: str,
    reset: Callable[[], None] | None = None,
) -> dict[str, Breakdown]:
    """Each mode's breakdown when the config asks for a profile (none otherwise); called after
    the timed rounds, inside the benchmark's thread and inference-mode context."""
    if not config.profile:
        return {}
    trace_dir = config.profile_dir
    return profile_modes(calls, modules=modules, device=device, trace_dir=trace_dir, label=label, reset=reset)


def with_profile(
    result: PerfResult, config: BenchmarkConfig, breakdowns: Mapping[str, Breakdown]
) -> PerfResult:
    """``result`` with its breakdowns and, for a ``focus``, the Amdahl bound on the first mode
    with modules (eager, or ``perf.compare``'s first variant) beside the candidates' measured
    gains; a focus naming no part of the model fails the benchmark, saying what it has."""
    if not breakdowns:
        return result
    breakdowns = {
        mode: dataclasses.replace(b, profiled_vs_timed=b.call_s / result.modes[mode].median_s)
        if mode in result.modes and result.modes[mode].median_s > 0 and b.call_s > 0
        else b
        for mode, b in breakdowns.items()
    }
    bound, failures = None, result.failures
    if config.focus:
        base = next((m for m, b in breakdowns.items() if b.classes), next(iter(breakdowns)))
        try:
            part = focus_share(breakdowns[base], config.focus)
        except FocusError as exc:
            failures = (*failures, f"{result.benchmark_id}: {exc}")
        else:
            gains = {name: ratio for name, (ratio, _) in result.speedups.items()}
            bound = amdahl_line(part, base, config.focus, gains)
    return dataclasses.replace(result, breakdowns=dict(breakdowns), bound=bound, failures=failures)
