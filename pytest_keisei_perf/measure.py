"""The timing engine: pinned threads, warm-up that waits for stability, calibrated rounds,
ABBA interleaving of modes with a reference workload, and device synchronisation.

Only the call and the clock sit inside a timed round. The clock and the device sync are
injected (:class:`Stopwatch`) so the scheduling logic is tested with a fake clock.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Final

import torch

from .settings import MIN_ROUNDS

__all__ = [
    "REFERENCE",
    "RoundPlan",
    "Stopwatch",
    "WarmupResult",
    "abba_schedule",
    "gc_paused",
    "pinned_threads",
    "plan_rounds",
    "reference_workload",
    "run_schedule",
    "synchronize_cuda",
    "warm_up",
]

#: Schedule entry for the fixed reference workload that tracks machine speed.
REFERENCE = "reference"
#: Version of :func:`reference_workload`, stored with every run; runs of other versions do not compare.
REFERENCE_VERSION: Final = 2
#: A round at least this long makes perf_counter's overhead (~50 ns) negligible (< 0.01%).
MIN_ROUND_S = 1e-3
#: Warm-up is stable once the last WINDOW batches vary by less than this coefficient of variation.
WARMUP_CV = 0.05
WARMUP_WINDOW = 3


@dataclass(frozen=True)
class Stopwatch:
    """A clock in seconds plus the device sync that must run before reading it."""

    clock: Callable[[], float] = time.perf_counter
    sync: Callable[[], None] | None = None

    def synchronize(self) -> None:
        """Wait for queued device work, where there is a device to wait for."""
        if self.sync is not None:
            self.sync()

    def _round_sync(self) -> Callable[[], None] | None:
        """The sync one round needs, decided before its clock starts: "every device once CUDA is
        initialised" becomes the sync itself or nothing, so no check sits inside the round."""
        if self.sync is synchronize_cuda_if_initialized:
            return synchronize_cuda if torch.cuda.is_initialized() else None
        return self.sync

    def time_calls(self, call: Callable[[], object], n: int) -> float:
        """Seconds for ``n`` back-to-back calls, synchronising the device at both ends."""
        sync, clock = self._round_sync(), self.clock
        if sync is not None:
            sync()
        start = clock()
        for _ in repeat(None, n):
            call()
        if sync is not None:
            sync()
        return clock() - start

    @classmethod
    def for_device(cls, device: str) -> Stopwatch:
        """perf_counter, plus a sync of every CUDA device whenever CUDA is initialised.

        Synchronising once per round (not per call) keeps the GPU pipeline full as in real use,
        while still charging the round for all the work it queued. It does not rely on knowing
        the benchmark's device: a closure, a dict batch or a module whose first parameter sits
        on the CPU still queue GPU work, and only a sync of every device charges it.
        """
        if device.startswith("cuda") or torch.cuda.is_initialized():
            return cls(sync=synchronize_cuda)
        return cls(sync=synchronize_cuda_if_initialized)


#: Calls shorter than this are timed in rounds only: one clock read per call would weigh on them.
PER_CALL_MIN_S: Final = 20e-6


def per_call_latencies(call: Callable[[], object], stopwatch: Stopwatch, *, calls: int) -> list[float]:
    """Seconds of each of ``calls`` single calls: CUDA events around each call when CUDA is in
    use (the device's own clock, no host sync inside), else the clock around each call."""
    sync = stopwatch._round_sync()
    if sync is not None and torch.cuda.is_initialized():
        sync()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(calls)
        ]
        for begin, finish in events:
            begin.record()
            call()
            finish.record()
        sync()
        return [begin.elapsed_time(finish) / 1000.0 for begin, finish in events]
    clock, out = stopwatch.clock, []
    for _ in repeat(None, calls):
        start = clock()
        call()
        out.append(clock() - start)
    return out


def synchronize_cuda() -> None:
    """Wait for the queued work of every CUDA device (not only the current one)."""
    for index in range(torch.cuda.device_count()):
        torch.cuda.synchronize(index)


def synchronize_cuda_if_initialized() -> None:
    """:func:`synchronize_cuda` once CUDA is initialised (a CPU benchmark pays one check)."""
    if torch.cuda.is_initialized():
        synchronize_cuda()


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """Run torch (and its OpenMP/MKL pools) on ``n`` threads, restoring the old count after.

    One pinned thread by default: more threads than a loaded runner's free cores make timings
    collapse. It must be set before compiling, since inductor bakes the count into CPU kernels.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector out of timed rounds; restore its previous state.

    What set-up and warm-up left behind is collected first, from the young generations only:
    that is where fresh garbage lives, and a full collection would rescan every long-lived object
    (all of torch, and dynamo and inductor once loaded) before every timed phase, a cost a
    session pays per benchmark (docs/measurements.md). The oldest generation is collected as
    usual between benchmarks, and in full where device memory is measured (``runner``).
    """
    was_enabled = gc.isenabled()
    gc.collect(1)
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class WarmupResult:
    """How warm-up ended: calls made, per-call time of the last batches, and whether it settled."""

    calls: int
    batch_calls: int
    per_call_s: float
    stable: bool


def warm_up(
    call: Callable[[], object],
    stopwatch: Stopwatch,
    *,
    max_time_s: float,
    min_batch_s: float = MIN_ROUND_S,
    window: int = WARMUP_WINDOW,
    cv_target: float = WARMUP_CV,
) -> WarmupResult:
    """Call until timings settle, growing the batch so one batch lasts at least ``min_batch_s``.

    Batches double until long enough to time reliably (which also calibrates the per-call
    cost), then repeat until the last ``window`` batches have a coefficient of variation below
    ``cv_target``, or until ``max_time_s`` is spent (then ``stable`` is False). At least
    ``window`` batches are always taken, so a lazy first call (allocation, autotuning) never
    counts as the steady state.
    """
    batch, calls, spent = 1, 0, 0.0
    per_call: list[float] = []
    while True:
        elapsed = stopwatch.time_calls(call, batch)
        calls += batch
        spent += elapsed
        if elapsed < min_batch_s and spent < max_time_s:
            # Too short to time well: grow the batch towards min_batch_s, at least doubling.
            batch = max(batch * 2, math.ceil(batch * min_batch_s / max(elapsed, 1e-9)))
            per_call.clear()
            continue
        per_call.append(elapsed / batch)
        recent = per_call[-window:]
        if len(recent) == window:
            mean = statistics.fmean(recent)
            cv = statistics.pstdev(recent) / mean if mean > 0 else 0.0
            if cv < cv_target:
                return WarmupResult(calls, batch, statistics.median(recent), stable=True)
        if spent >= max_time_s and len(per_call) >= 1:
            return WarmupResult(calls, batch, statistics.median(recent), stable=False)


@dataclass(frozen=True)
class RoundPlan:
    """How many rounds, and how many calls in each, one mode gets."""

    rounds: int
    calls_per_round: int


def plan_rounds(
    per_call_s: float, *, budget_s: float, target_rounds: int, min_rounds: int = MIN_ROUNDS
) -> RoundPlan:
    """Split ``budget_s`` into ``target_rounds`` rounds of whole calls, each >= ``MIN_ROUND_S``.

    A call too slow for the budget still gets ``min_rounds`` single-call rounds: fewer would give
    no spread to test against, so the budget is exceeded rather than the statistics starved.
    """
    per_call_s = max(per_call_s, 1e-9)
    round_s = max(MIN_ROUND_S, budget_s / target_rounds)
    calls = max(1, round(round_s / per_call_s))
    # rounding the call count moves a round by up to half a call: count rounds to the nearest
    # whole one, or the target would turn on which way that rounding fell
    fits = math.floor(budget_s / (calls * per_call_s) + 0.5)
    rounds = min(target_rounds, max(min_rounds, fits))
    return RoundPlan(rounds=rounds, calls_per_round=calls)


def abba_schedule(modes: Sequence[str], rounds: int, *, reference: bool = True) -> list[str]:
    """The order of timed rounds: modes alternate ABBA-wise, the reference runs once per pair.

    Alternating the order cancels linear drift between the modes (eager and compiled see the
    same machine), which narrows the speedup estimate.
    """
    schedule: list[str] = []
    for i in range(rounds):
        schedule.extend(modes if i % 2 == 0 else reversed(modes))
        if reference:
            schedule.append(REFERENCE)
    return schedule


def run_schedule(
    schedule: Sequence[str],
    calls: Mapping[str, Callable[[], object]],
    calls_per_round: Mapping[str, int],
    stopwatch: Stopwatch,
    on_round: Callable[[int, int], None] | None = None,
) -> dict[str, list[float]]:
    """Time every round in ``schedule``; per-call seconds of each round, by schedule entry.

    ``on_round(done, total)`` runs between rounds, outside the timed region (progress lines).
    """
    samples: dict[str, list[float]] = {key: [] for key in calls}
    with gc_paused():
        for done, key in enumerate(schedule, 1):
            n = calls_per_round[key]
            samples[key].append(stopwatch.time_calls(calls[key], n) / n)
            if on_round is not None:
                on_round(done, len(schedule))
    return samples


def reference_workload(device: str = "cpu") -> Callable[[], object]:
    """A fixed mix of three small workloads, timed beside each benchmark to track machine speed.

    Dispatcher-bound tiny ops (10 x a 16-channel conv and a 64x64 matmul), a 64-channel 3x3 conv
    on a 9x9 board and 256x256 matmuls, each about a third of its time: a mix that moves with the
    machine the way small and large models both do, so dividing by it cuts the between-process
    spread of their times (docs/measurements.md and the gate explanation have the measurements). Bump
    :data:`REFERENCE_VERSION` whenever this changes: ratios to another workload do not compare.
    It runs on the benchmark's device, so on a GPU it tracks the GPU and the launch path.
    """
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    small_image, small_weight, small_matrix = randn(1, 16, 9, 9), randn(16, 16, 3, 3), randn(64, 64)
    board, board_weight, matrix = randn(8, 64, 9, 9), randn(64, 64, 3, 3), randn(256, 256)
    conv2d = torch.nn.functional.conv2d

    def workload() -> object:
        with torch.inference_mode():
            total = conv2d(board, board_weight, padding=1).sum()
            total += (matrix @ matrix).sum() + (matrix @ matrix).sum()
            for _ in range(10):
                total += conv2d(small_image, small_weight, padding=1).sum()
                total += (small_matrix @ small_matrix).sum()
            return total

    return workload
