"""The ``perf`` fixture's object: it checks what the test asked for and hands it on."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from .calls import BenchmarkCall
from .perf_warnings import PerfDeprecationWarning
from .session import CONFIG_KEY

if TYPE_CHECKING:
    from .result import PerfResult

__all__ = ["MIN_SPEEDUP_CHANGED", "PerfFixture"]

MIN_SPEEDUP_CHANGED = PerfDeprecationWarning(
    "keisei-perf: min_speedup in perf.compare() now means what it means for compiled: it fails when a "
    "candidate's whole 95% interval lies below it (it used to need the whole interval above it); "
    "to require a candidate to be confidently faster, assert on result.speedups[name][1][0]"
)


class PerfFixture:
    """The ``perf`` fixture: ``perf.benchmark(fn, *args, name="", **kwargs) -> PerfResult``."""

    def __init__(self, item: pytest.Item, run: Callable[[pytest.Item, BenchmarkCall], PerfResult]) -> None:
        self._item = item
        self._run = run
        self._names: set[str] = set()
        #: Results of this test's benchmarks, in call order.
        self.results: list[PerfResult] = []

    def _fail(self, message: str) -> NoReturn:
        pytest.fail(f"{self._item.nodeid}: {message}", pytrace=False)

    def _claim(self, name: object, what: str) -> None:
        """Each benchmark of a test needs a distinct name (its id)."""
        if not isinstance(name, str):
            self._fail(f"benchmark name must be a string, got {name!r}")
        if name in self._names:
            named = f"name {name!r}" if name else "no name"
            self._fail(
                f"a second benchmark with {named}; give each {what} call in a test a distinct name=..."
            )
        self._names.add(str(name))

    def _device(self, device: Any, what: str) -> str | None:
        if device is None:
            return None
        import torch

        try:
            torch.device(device)
        except (RuntimeError, TypeError) as exc:
            self._fail(f"{what}(device={device!r}) is not a torch device: {exc}")
        return str(device)

    def _record(self, call: BenchmarkCall) -> PerfResult:
        result = self._run(self._item, call)
        self.results.append(result)
        return result

    def benchmark(
        self, fn: Callable[..., Any], *args: Any, name: str = "", device: Any = None, **kwargs: Any
    ) -> PerfResult:
        """Warm up, time every mode, check compiled against eager, and gate against the baseline.

        ``fn`` is an ``nn.Module`` or any callable, called as ``fn(*args, **kwargs)``. Several
        benchmarks in one test need distinct ``name`` values. ``device`` (``"cuda"``,
        ``"cuda:1"``, a ``torch.device``) says where the work runs when the arguments do not show
        it (a closure); otherwise it is read off the tensors and module parameters. A
        regression, a speedup below ``min_speedup`` or an output mismatch fails the test with a
        message naming the numbers.
        """
        if not callable(fn):
            self._fail(f"perf.benchmark() needs a callable, got {type(fn).__name__}")
        self._claim(name, "perf.benchmark()")
        where = self._device(device, "perf.benchmark")
        return self._record(BenchmarkCall(fn, args, kwargs, name=name, device=where))

    def compare(
        self,
        variants: Mapping[str, Callable[..., Any]],
        *args: Any,
        name: str = "",
        device: Any = None,
        **kwargs: Any,
    ) -> PerfResult:
        """Time ``variants`` (an ordered mapping of name -> callable) against each other.

        The first variant is the reference, each later one a candidate: rounds alternate ABBA
        with the reference workload, every candidate's outputs are checked against the
        reference's with the usual tolerance rules, and ``result.speedups[candidate]`` is
        reference time / candidate time with a 95% interval. The marker's ``min_speedup`` fails a
        candidate whose whole interval lies below it, as for compiled. Each variant is a mode
        of the result: it is gated against its baseline like eager and compiled are.
        """
        if not isinstance(variants, Mapping) or len(variants) < 2:
            self._fail(f"perf.compare() needs a mapping of at least two named callables, got {variants!r}")
        bad = [str(k) for k, v in variants.items() if not isinstance(k, str) or not k or not callable(v)]
        if bad:
            self._fail(f"perf.compare(): variant(s) {', '.join(bad)} need a non-empty name and a callable")
        self._claim(name, "perf.compare()")
        where = self._device(device, "perf.compare")
        marker = self._item.stash.get(CONFIG_KEY, None)
        if marker is not None and marker.min_speedup is not None:
            warnings.warn(MIN_SPEEDUP_CHANGED, stacklevel=2)
        first = next(iter(variants.values()))
        return self._record(
            BenchmarkCall(first, args, kwargs, name=name, device=where, variants=dict(variants))
        )

    def train_step(
        self,
        step: Callable[..., Any],
        model: Any,
        *batch: Any,
        state: Any = (),
        name: str = "",
        device: Any = None,
        compile_step: bool = False,
        amp: Any = None,
    ) -> PerfResult:
        """Time a training step ``step(model, *batch)`` in eager and compiled modes.

        ``step`` is your own step (zero_grad, forward, loss, backward, optimizer step); it gets
        ``model`` in eager mode and ``torch.compile(model)`` in compiled mode (with
        ``compile_step=True`` the whole step is compiled instead). ``state`` holds what the step
        changes besides the model: optimizers, GradScalers, LR schedulers. The model, the state
        and the RNG are snapshotted and restored before each mode and round, so every mode times
        steps from the same weights; compiled is checked against eager after one step from the
        snapshot (return value, every gradient, every parameter and buffer). ``amp``
        (``torch.bfloat16`` or ``torch.float16``) runs each step under ``torch.autocast``.
        """
        import torch
        from torch import nn

        from .training import AMP_DTYPES, TrainStep, state_problem

        if not callable(step):
            self._fail(f"perf.train_step() needs a callable step, got {type(step).__name__}")
        if not isinstance(model, nn.Module):
            self._fail(f"perf.train_step() needs an nn.Module as the model, got {type(model).__name__}")
        states = tuple(state) if isinstance(state, (tuple, list)) else (state,)
        problem = state_problem(states)
        if problem:
            self._fail(f"perf.train_step(state=...): {problem}")
        if amp is not None and amp not in AMP_DTYPES:
            self._fail(f"perf.train_step(amp={amp!r}): use torch.bfloat16, torch.float16 or None")
        if not isinstance(compile_step, bool):
            self._fail(f"perf.train_step(compile_step={compile_step!r}) must be True or False")
        self._claim(name, "perf.train_step()")
        where = self._device(device, "perf.train_step")
        if amp is torch.float16 and (where or "").startswith("cpu"):
            self._fail("perf.train_step(amp=torch.float16) needs CUDA; on a CPU use torch.bfloat16")
        train = TrainStep(step, model, batch, states, compile_step=compile_step, amp=amp)
        return self._record(BenchmarkCall(step, batch, {}, name=name, device=where, train=train))

    def sweep(
        self, fn: Callable[..., Any], inputs: Mapping[str, Any], *, name: str = "", device: Any = None
    ) -> PerfResult:
        """Run one compiled ``fn`` over several shapes: ``inputs`` maps a label to a tuple of
        arguments (``{"b1": (x1,), "b64": (x64,)}``).

        Each shape becomes the modes ``eager[label]`` and ``compiled[label]``; the first compiled
        call per shape is timed as its compile (or recompile) latency, and the graphs it added are
        counted. Marker ``max_recompiles=N`` fails more recompiles than that, naming the shapes and
        dynamo's reason; ``dynamic`` comes from the marker's ``compile=`` settings.
        """
        if not callable(fn):
            self._fail(f"perf.sweep() needs a callable, got {type(fn).__name__}")
        if not isinstance(inputs, Mapping) or not inputs:
            self._fail(f"perf.sweep() needs a non-empty mapping of label -> argument tuple, got {inputs!r}")
        bad = [repr(k) for k, v in inputs.items() if not isinstance(k, str) or not k or "]" in k]
        if bad:
            self._fail(f"perf.sweep(): input labels {', '.join(bad)} must be non-empty strings without ']'")
        shapes = {k: v if isinstance(v, tuple) else (v,) for k, v in inputs.items()}
        self._claim(name, "perf.sweep()")
        where = self._device(device, "perf.sweep")
        first = next(iter(shapes.values()))
        return self._record(BenchmarkCall(fn, first, {}, name=name, device=where, sweep=shapes))
