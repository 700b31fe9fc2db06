"""The timing engine's logic, driven by a fake clock: no real time is asserted."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from pytest_keisei_perf import measure, runner
from pytest_keisei_perf.measure import REFERENCE, Stopwatch, abba_schedule, plan_rounds, run_schedule, warm_up


class FakeClock:
    """A clock that only moves when the code under test says a call took time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def cost(self, seconds: float) -> None:
        self.now += seconds


def test_stopwatch_times_n_calls_and_syncs_at_both_ends() -> None:
    clock = FakeClock()
    events: list[str] = []
    watch = Stopwatch(clock=clock, sync=lambda: events.append("sync"))

    def call() -> None:
        events.append("call")
        clock.cost(0.25)

    assert watch.time_calls(call, 4) == pytest.approx(1.0)
    assert events == ["sync", "call", "call", "call", "call", "sync"]


def test_warm_up_grows_batches_until_a_batch_is_long_enough() -> None:
    clock = FakeClock()
    result = warm_up(lambda: clock.cost(1e-6), Stopwatch(clock=clock), max_time_s=10.0, min_batch_s=1e-3)
    assert result.stable
    assert result.batch_calls >= 1000  # 1000 x 1 us reaches the 1 ms batch
    assert result.per_call_s == pytest.approx(1e-6)


def test_warm_up_waits_until_timings_settle() -> None:
    clock = FakeClock()
    costs = iter([0.5, 0.3, 0.2, 0.12, 0.1] + [0.01] * 100)
    calls = []

    def call() -> None:
        calls.append(1)
        clock.cost(next(costs))

    result = warm_up(call, Stopwatch(clock=clock), max_time_s=100.0, min_batch_s=1e-3)
    assert result.stable
    assert result.per_call_s == pytest.approx(0.01)
    assert result.calls == 5 + measure.WARMUP_WINDOW  # the slow phase, then a stable window


def test_warm_up_gives_up_at_its_time_limit() -> None:
    clock = FakeClock()
    costs = iter([0.1, 0.2] * 1000)  # never settles

    result = warm_up(
        lambda: clock.cost(next(costs)), Stopwatch(clock=clock), max_time_s=1.0, min_batch_s=1e-3
    )
    assert not result.stable
    assert 1.0 <= clock.now <= 1.3


@pytest.mark.parametrize(
    ("per_call", "budget", "target", "expected"),
    [
        (1e-6, 2.0, 20, measure.RoundPlan(rounds=20, calls_per_round=100_000)),  # 0.1 s rounds
        (1e-3, 2.0, 20, measure.RoundPlan(rounds=20, calls_per_round=100)),
        (0.8, 2.0, 20, measure.RoundPlan(rounds=5, calls_per_round=1)),  # slow model: floor of 5 rounds
        (1e-9, 1e-3, 20, measure.RoundPlan(rounds=5, calls_per_round=1_000_000)),  # >= 1 ms rounds, >= 5
    ],
)
def test_plan_rounds(per_call: float, budget: float, target: int, expected: measure.RoundPlan) -> None:
    assert plan_rounds(per_call, budget_s=budget, target_rounds=target) == expected


def test_abba_schedule_alternates_and_interleaves_the_reference() -> None:
    assert abba_schedule(["eager", "compiled"], 4) == [
        "eager", "compiled", REFERENCE,
        "compiled", "eager", REFERENCE,
        "eager", "compiled", REFERENCE,
        "compiled", "eager", REFERENCE,
    ]  # fmt: skip
    assert abba_schedule(["eager"], 2, reference=False) == ["eager", "eager"]


def test_run_schedule_records_per_call_times_in_order_with_gc_paused() -> None:
    clock = FakeClock()
    order: list[str] = []
    gc_states: list[bool] = []

    def make(name: str, cost: float):  # type: ignore[no-untyped-def]
        def call() -> None:
            order.append(name)
            gc_states.append(gc.isenabled())
            clock.cost(cost)

        return call

    calls = {"eager": make("e", 2e-3), "compiled": make("c", 1e-3), REFERENCE: make("r", 1e-4)}
    samples = run_schedule(
        abba_schedule(["eager", "compiled"], 2),
        calls,
        {"eager": 1, "compiled": 2, REFERENCE: 3},
        Stopwatch(clock=clock),
    )
    assert order == ["e", "c", "c", "r", "r", "r", "c", "c", "e", "r", "r", "r"]
    assert samples["eager"] == pytest.approx([2e-3, 2e-3])
    assert samples["compiled"] == pytest.approx([1e-3, 1e-3])
    assert samples[REFERENCE] == pytest.approx([1e-4, 1e-4])
    assert not any(gc_states)
    assert gc.isenabled()


class _Cycle:
    """An object that only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collections_seen() -> Iterator[list[int]]:
    """The generation of every garbage collection from here on; no automatic ones meanwhile."""
    generations: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    was_enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(seen)
    try:
        yield generations
    finally:
        gc.callbacks.remove(seen)
        if was_enabled:
            gc.enable()


def test_gc_paused_frees_fresh_garbage_without_rescanning_old_objects(collections_seen: list[int]) -> None:
    garbage = weakref.ref(_Cycle())
    assert garbage() is not None
    with measure.gc_paused():
        assert garbage() is None
        assert collections_seen == [1]  # the young generations, not all of torch again
    assert not gc.isenabled()  # the state it found (the fixture disabled it)


def test_peak_cuda_memory_is_read_after_a_full_collection(
    monkeypatch: pytest.MonkeyPatch, collections_seen: list[int]
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(f"sync {device}"))
    reset = lambda device=None: calls.append(f"reset after {collections_seen}")  # noqa: E731
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 4096)
    garbage = weakref.ref(_Cycle())  # as if an earlier benchmark left a cycle holding device memory
    peaks: dict[str, int | None] = {}
    with runner._peak_memory("cuda:0", peaks, "eager"):
        assert garbage() is None
        calls.append("body")
    assert calls == ["sync cuda:0", "reset after [2]", "body", "sync cuda:0"]
    assert peaks == {"eager": 4096}
    with runner._peak_memory("cpu", peaks, "compiled"):
        pass
    assert peaks["compiled"] is None
    assert collections_seen == [2]  # none on the CPU


def test_pinned_threads_restores_the_previous_count() -> None:
    before = torch.get_num_threads()
    with measure.pinned_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), measure.pinned_threads(2):
        raise KeyError
    assert torch.get_num_threads() == before


def test_stopwatch_syncs_every_cuda_device_once_cuda_is_initialised() -> None:
    """A closure or a dict batch on the GPU is timed right even when read as a CPU benchmark."""
    assert Stopwatch.for_device("cuda:0").sync is measure.synchronize_cuda
    cpu = Stopwatch.for_device("cpu")
    if torch.cuda.is_initialized():  # pragma: no cover - GPU machines
        assert cpu.sync is measure.synchronize_cuda
    else:
        assert cpu.sync is measure.synchronize_cuda_if_initialized
        cpu.synchronize()  # no CUDA here: a cheap no-op that must not initialise it
        assert not torch.cuda.is_initialized()


def test_reference_workload_is_deterministic() -> None:
    workload = measure.reference_workload()
    assert torch.equal(workload(), measure.reference_workload()())  # type: ignore[arg-type]
