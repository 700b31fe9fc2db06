"""One benchmark as the fixture asked for it: what to call, with what, under which name.

Roles measure a :class:`BenchmarkCall` in this process, smoke-run it, or hand its test to fresh
processes; the fixture only validates and builds it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import PerfResult
    from .settings import BenchmarkConfig
    from .training import TrainStep

__all__ = ["BenchmarkCall"]


@dataclass(frozen=True)
class BenchmarkCall:
    """``perf.benchmark(fn, *args, name=, device=, **kwargs)``, ``perf.compare(variants, ...)``
    or ``perf.train_step(step, model, *batch, ...)``.

    With ``variants`` the variants are timed against each other and ``fn`` is the first; with
    ``train`` each call is one training step and ``fn`` is the user's step.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    name: str = ""
    device: str | None = None
    variants: Mapping[str, Callable[..., Any]] | None = field(default=None)
    train: TrainStep | None = None
    #: ``perf.sweep``: each shape's label and arguments, called on one compiled object.
    sweep: Mapping[str, tuple[Any, ...]] | None = None

    @property
    def order(self) -> list[str]:
        """The modes this call's variants run as, in order (empty for eager against compiled)."""
        return list(self.variants or ())

    def measure_here(
        self, config: BenchmarkConfig, nodeid: str, progress: Callable[[str], None] | None = None
    ) -> PerfResult:
        """Time every mode in this process."""
        from .runner import run_benchmark, run_comparison

        common: dict[str, Any] = {
            "config": config, "nodeid": nodeid, "name": self.name, "device": self.device, "progress": progress
        }  # fmt: skip
        if config.compile_variants and "compiled" in config.modes and not (self.variants or self.sweep):
            from .variants import run_variants

            return run_variants(lambda block: self.measure_here(block, nodeid, progress), config)
        if self.train is not None:
            from .training import run_train_step

            return run_train_step(self.train, **common)
        if self.sweep is not None:
            from .sweep import run_sweep

            return run_sweep(self.fn, self.sweep, **common)
        if self.variants:
            return run_comparison(self, config=config, nodeid=nodeid, progress=progress)
        return run_benchmark(self.fn, self.args, dict(self.kwargs), **common)

    def smoke(self, config: BenchmarkConfig, nodeid: str, test_id: str) -> PerfResult:
        """Call each callable once per mode, untimed: the test runs, nothing is measured."""
        from .smoke import call_once_per_mode, smoke_result

        if self.train is not None:
            from .training import smoke_step

            device = smoke_step(self.train, config, self.device)
        elif self.sweep is not None:
            for args in self.sweep.values():
                device = call_once_per_mode(self.fn, args, {}, config, self.device)
        else:
            for fn in self.variants.values() if self.variants else [self.fn]:
                device = call_once_per_mode(fn, self.args, self.kwargs, config, self.device)
        return dataclasses.replace(smoke_result(config, nodeid, self.name, device), test_id=test_id)
