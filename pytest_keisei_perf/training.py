"""Training steps as benchmarks: ``perf.train_step(step, model, *batch, state=(optimizer, scaler))``.

A step changes what it runs on: the weights, the optimizer's moments, BatchNorm's statistics,
the GradScaler's scale, the RNG. So the model, every ``state`` object and the RNG are
snapshotted once, and restored before each mode and at the end; timed rounds restart from the
state one eager step later (an optimizer's state exists then, as in a training loop), in place
for optimizers, so a compiled step does not recompile every round. Every mode times
steps from the same weights, and the benchmark leaves them as it found them.

Compiled is checked against eager after one step from the snapshot each: the step's return
value, every parameter's gradient, every parameter and buffer after the optimizer step. Two
eager steps from the snapshot that differ mean something the step changes is not snapshotted;
the check then did not run, and says so (never a pass).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeGuard, runtime_checkable

import torch
from torch import nn

from . import accuracy
from .result import AccuracyResult

if TYPE_CHECKING:
    from .result import PerfResult
    from .settings import BenchmarkConfig

__all__ = [
    "AMP_DTYPES",
    "Snapshot",
    "Stateful",
    "TrainStep",
    "run_train_step",
    "smoke_step",
    "state_problem",
    "unchecked_reason",
]

#: ``amp=`` values and how results name them.
AMP_DTYPES: Final = {torch.bfloat16: "bfloat16", torch.float16: "float16"}


@runtime_checkable
class Stateful(Protocol):
    """What ``state=`` holds: optimizers, GradScalers, LR schedulers."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state_dict: Any) -> Any: ...


def state_problem(state: Sequence[Any]) -> str | None:
    """Why ``state`` cannot be snapshotted, naming the culprit, or None."""
    for index, obj in enumerate(state):
        if isinstance(obj, nn.Module):
            return f"state[{index}] is a module ({type(obj).__name__}); pass it as the model or leave it out"
        if not isinstance(obj, Stateful):
            return f"state[{index}] ({type(obj).__name__}) has no state_dict()/load_state_dict() to snapshot"
    return None


class Snapshot:
    """The model's and every state object's ``state_dict``, and the RNG state, taken once."""

    def __init__(self, model: nn.Module, state: Sequence[Stateful]) -> None:
        self._model = model
        self._state = list(state)
        self._model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._states = [copy.deepcopy(obj.state_dict()) for obj in self._state]
        self._training = model.training
        self._cpu_rng = torch.get_rng_state()
        self._cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        """Everything back as it was; parameters keep their identity (optimizers and compiled
        models still hold them) and gradients are cleared."""
        with torch.no_grad():
            self._model.load_state_dict(self._model_state)
        for param in self._model.parameters():
            param.grad = None
        for obj, saved in zip(self._state, self._states, strict=True):
            # an optimizer in place: a compiled step guards on its state tensors, and
            # load_state_dict would make new ones (a recompile in every timed round)
            if not (isinstance(obj, torch.optim.Optimizer) and _optimizer_restored_in_place(obj, saved)):
                obj.load_state_dict(copy.deepcopy(saved))
        self._model.train(self._training)
        torch.set_rng_state(self._cpu_rng)
        if self._cuda_rng is not None:
            torch.cuda.set_rng_state_all(self._cuda_rng)


def _same_layout(live: Any, saved: torch.Tensor) -> TypeGuard[torch.Tensor]:
    """Whether ``saved`` can be copied into ``live`` in place."""
    return isinstance(live, torch.Tensor) and (live.shape, live.dtype, live.device) == (
        saved.shape,
        saved.dtype,
        saved.device,
    )


def _optimizer_restored_in_place(optimizer: torch.optim.Optimizer, saved: Any) -> bool:
    """An optimizer's state tensors copied into, and its hyperparameters assigned (an LR
    scheduler changes ``lr`` every step); False, with nothing changed, where the state has
    another layout (no state yet on one side, another parameter set)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_state, saved_groups = saved["state"], saved["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        return False
    if set(saved_state) != {i for i, p in enumerate(params) if p in optimizer.state}:
        return False
    for index, entry in saved_state.items():
        live = optimizer.state[params[index]]
        if set(live) != set(entry):
            return False
        if any(isinstance(v, torch.Tensor) and not _same_layout(live[k], v) for k, v in entry.items()):
            return False
    with torch.no_grad():
        for index, entry in saved_state.items():
            live = optimizer.state[params[index]]
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    live[key].copy_(value)
                else:
                    live[key] = copy.deepcopy(value)
        for group, saved_group in zip(optimizer.param_groups, saved_groups, strict=True):
            for key, value in saved_group.items():
                if key == "params":
                    continue
                held = group.get(key)
                if isinstance(value, torch.Tensor) and _same_layout(held, value):  # a tensor lr
                    held.copy_(value)
                else:
                    group[key] = copy.deepcopy(value)
    return True


@dataclass(frozen=True)
class TrainStep:
    """A user's ``step(model, *batch)`` on ``model``, with what it changes besides the model."""

    step: Callable[..., Any]
    model: nn.Module
    batch: tuple[Any, ...]
    state: tuple[Stateful, ...] = ()
    #: Compile the whole step (``torch.compile(step)``) instead of the model (Keisei's way).
    compile_step: bool = False
    #: Run each step under ``torch.autocast`` with this dtype (None: the model's own, if any).
    amp: torch.dtype | None = None

    @property
    def identity(self) -> dict[str, str]:
        """What makes this step another measurement: recorded beside the compile settings."""
        facts = {"train_step": "step" if self.compile_step else "model"}
        if self.amp is not None:
            facts["amp"] = AMP_DTYPES[self.amp]
        return facts

    @property
    def items(self) -> int | None:
        """Samples per step: the leading dimension of the first tensor in the batch."""
        from .devices import batch_items

        return batch_items(self.batch, {})

    @contextlib.contextmanager
    def _autocast(self, device: str) -> Iterator[None]:
        if self.amp is None:
            yield
            return
        with torch.autocast(device_type=torch.device(device).type, dtype=self.amp):
            yield

    def call(self, target: Callable[..., Any], device: str) -> Callable[[], Any]:
        """One step as a zero-argument call: ``step(target, *batch)``, or with ``compile_step``
        ``target(model, *batch)`` (``target`` is then the step or its compiled twin)."""
        step, model, batch = self.step, self.model, self.batch

        def run() -> Any:
            with self._autocast(device):
                if self.compile_step:
                    return target(model, *batch)
                return step(target, *batch)

        return run

    def compile_target(self) -> Callable[..., Any]:
        """What ``torch.compile`` compiles."""
        return self.step if self.compile_step else self.model

    def outcome(self, returned: Any) -> dict[str, Any]:
        """What one step left behind, for the compiled-against-eager check."""
        named = dict(self.model.named_parameters())
        return {
            "returned": accuracy.snapshot(returned),
            "grad": {k: p.grad.detach().clone() for k, p in named.items() if p.grad is not None},
            "param": {k: p.detach().clone() for k, p in named.items()},
            "buffer": {k: b.detach().clone() for k, b in self.model.named_buffers()},
        }


def unchecked_reason(result: AccuracyResult, state: Sequence[Any]) -> AccuracyResult:
    """A skipped check of a training step says what to snapshot."""
    if result.checked:
        return result
    hint = (
        "two eager steps from the same snapshot differ: the step changes something that is not "
        "snapshotted; pass it in state= (optimizers, GradScalers, LR schedulers)"
        if not state
        else "two eager steps from the same snapshot differ: the step changes something beyond the "
        "model and state= (a global, an object it closes over), or it is not deterministic"
    )
    return dataclasses.replace(result, skipped_reason=f"{hint} ({result.skipped_reason})")


def run_train_step(
    train: TrainStep,
    *,
    config: BenchmarkConfig,
    nodeid: str,
    name: str,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PerfResult:
    """Check compiled against eager after one step each from the snapshot, then time steps in
    every mode, every round from the state one eager step after it (:func:`_after_one_step`);
    the model and state are left as they were."""
    from . import measure, modes
    from .devices import benchmark_context, detect_device
    from .profiling import profile_if_asked, with_profile
    from .result import benchmark_id
    from .runner import eager_compiled_result, time_calls

    say = progress or (lambda _: None)
    label = benchmark_id(nodeid, name)
    device = detect_device(train.model, train.batch, {}, device)
    stopwatch = measure.Stopwatch.for_device(device)
    config = dataclasses.replace(config, inference_mode=False)  # a step needs autograd
    rtol, atol = config.rtol, config.atol
    if train.amp is not None and rtol is None and atol is None:
        rtol, atol = accuracy.DEFAULT_TOLERANCES[train.amp]  # compute in the autocast dtype
    snapshot = Snapshot(train.model, train.state)
    eager = train.call(train.compile_target(), device)
    try:
        with benchmark_context(config):
            calls: dict[str, Callable[[], Any]] = {"eager": eager} if "eager" in config.modes else {}
            checking = config.check_outputs and set(config.modes) == {"eager", "compiled"}
            expected = again = None
            if checking:
                snapshot.restore()
                expected = train.outcome(eager())
                snapshot.restore()
                again = train.outcome(eager())
            outcome: modes.CompileOutcome | None = None
            if "compiled" in config.modes:
                snapshot.restore()
                say(f"compiling the {'step' if train.compile_step else 'model'}")
                outcome = modes.compile_callable(
                    train.compile_target(), (), {}, compile_kwargs=config.compile_kwargs,
                    strict=config.strict_compile, stopwatch=stopwatch, label=label,
                    call_with=lambda target: train.call(target, device),
                )  # fmt: skip
                calls["compiled"] = outcome.call
            checked: AccuracyResult | None = None
            if checking and outcome is not None and not outcome.fallback:
                actual = train.outcome(outcome.first_output)  # the compiling call was one step
                compared = accuracy.compare_outputs(
                    actual, expected, eager_again=again, rtol=rtol, atol=atol, cosine=train.amp is not None
                )
                checked = unchecked_reason(compared, train.state)
            rounds_from = _after_one_step(snapshot, eager, train)
            timing = time_calls(
                calls, device=device, config=config, stopwatch=stopwatch, say=say,
                progress=progress is not None, reset=rounds_from.restore,
            )  # fmt: skip
            recompiles = modes.recompiles_since(outcome) if outcome else None
            # module ranges cover the forward; backward runs in autograd's engine, seen by op
            breakdowns = profile_if_asked(
                config, calls, {"eager": train.model}, device=device, label=label, reset=rounds_from.restore
            )
    finally:
        snapshot.restore()
    result = eager_compiled_result(
        timing,
        outcome,
        recompiles,
        checked,
        config=config,
        nodeid=nodeid,
        name=name,
        device=device,
        compile_kwargs={**config.compile_kwargs, **train.identity},
        items=config.items or train.items,
    )
    return with_profile(result, config, breakdowns)


def _after_one_step(snapshot: Snapshot, eager: Callable[[], Any], train: TrainStep) -> Snapshot:
    """Where timed rounds start: one eager step from ``snapshot``.

    An optimizer makes its state on its first step; rounds restored to "no state" would time
    that allocation every round, and a compiled step would recompile for the new state tensors.
    Steps after the first are what a training loop runs.
    """
    snapshot.restore()
    eager()
    return Snapshot(train.model, train.state)


def smoke_step(train: TrainStep, config: BenchmarkConfig, device: str | None) -> str:
    """One step per mode, untimed and uncompiled; the model and state are left as they were.
    Returns where the step ran."""
    from .devices import benchmark_context, detect_device

    where = detect_device(train.model, train.batch, {}, device)
    snapshot = Snapshot(train.model, train.state)
    try:
        with benchmark_context(dataclasses.replace(config, inference_mode=False)):
            for _ in config.modes:
                train.call(train.compile_target(), where)()
    finally:
        snapshot.restore()
    return where
