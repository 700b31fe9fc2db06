"""Duet pairs (``--perf-ab-schedule duet``): the cores each side gets, the pin a fresh process
and its threads carry, both sides truly at once, (one real A/B session in duet pairs is in test_ab)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from pytest_keisei_perf import ab, duet
from pytest_keisei_perf.result import ModeResult, PerfResult
from pytest_keisei_perf.settings import PerfSettings

CAN_PIN = hasattr(os, "sched_setaffinity")
pinning = pytest.mark.skipif(not CAN_PIN, reason="this platform cannot pin processes to cores")


def test_the_two_sides_get_disjoint_cores_from_the_end() -> None:
    assert duet.duet_cores(1, available={0, 1}) == (frozenset({0}), frozenset({1}))
    assert duet.duet_cores(2, available=range(8)) == (frozenset({4, 5}), frozenset({6, 7}))


#: Two physical cores with two hardware threads each, numbered the two ways kernels number them.
ADJACENT_SIBLINGS = {0: (0, 0), 1: (0, 0), 2: (0, 1), 3: (0, 1)}
SPLIT_SIBLINGS = {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)}


@pytest.mark.parametrize(
    ("topology", "threads", "expected"),
    [
        (ADJACENT_SIBLINGS, 1, ({0}, {2})),  # not {2} and {3}: one core's two threads
        (ADJACENT_SIBLINGS, 2, ({0, 1}, {2, 3})),
        (SPLIT_SIBLINGS, 1, ({0}, {1})),
        (SPLIT_SIBLINGS, 2, ({0, 2}, {1, 3})),  # not {0, 1} and {2, 3}: both cores on both sides
    ],
)
def test_the_two_sides_get_separate_physical_cores_where_threads_are_siblings(
    topology: dict[int, tuple[int, int]], threads: int, expected: tuple[set[int], set[int]]
) -> None:
    assert duet.duet_cores(threads, available=range(4), topology=topology) == tuple(map(frozenset, expected))


def test_too_few_physical_cores_still_gives_two_sides_of_hardware_threads() -> None:
    one_core = {0: (0, 0), 1: (0, 0)}
    assert duet.duet_cores(1, available={0, 1}, topology=one_core) == (frozenset({0}), frozenset({1}))


def test_physical_cores_come_from_the_kernels_topology_files(tmp_path: Path) -> None:
    for cpu, (package, core) in SPLIT_SIBLINGS.items():
        folder = tmp_path / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text(f"{package}\n")
        (folder / "core_id").write_text(f"{core}\n")
    assert duet.physical_cores(range(4), root=tmp_path) == SPLIT_SIBLINGS
    assert duet.physical_cores(range(5), root=tmp_path) is None  # cpu4 unknown: no topology at all


@pytest.mark.parametrize(("threads", "cores"), [(1, {0}), (2, {0, 1, 2})])
def test_too_few_cores_for_two_sides_says_why(threads: int, cores: set[int]) -> None:
    why = duet.duet_cores(threads, available=cores)
    assert isinstance(why, str)
    assert f"{len(cores)} core(s) available" in why
    assert f"--perf-threads {threads}" in why


@pinning
def test_a_pinned_process_and_the_threads_it_starts_stay_on_its_cores(tmp_path: Path) -> None:
    mine = sorted(os.sched_getaffinity(0))
    target = {mine[-1]}
    script = (
        "import os, threading\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))\n"
        "t.start(); t.join()\n"
        "print(sorted(os.sched_getaffinity(0)), seen[0])\n"
    )
    proc = duet.spawn_pinned([sys.executable, "-c", script], target, cwd=tmp_path, env=os.environ)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == f"{sorted(target)} {sorted(target)}"  # the process, then its new thread


def test_an_unpinned_process_keeps_every_core(tmp_path: Path) -> None:
    script = "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else -1)"
    proc = duet.spawn_pinned([sys.executable, "-c", script], None, cwd=tmp_path, env=os.environ)
    out, _ = proc.communicate(timeout=60)
    expected = len(os.sched_getaffinity(0)) if CAN_PIN else -1
    assert int(out) == expected


def test_run_together_runs_the_jobs_at_the_same_time() -> None:
    """Each job waits for the other at a barrier: run one after the other, they would time out."""
    barrier = threading.Barrier(2, timeout=10)

    def job(value: int) -> int:
        barrier.wait()
        return value

    assert duet.run_together([lambda: job(1), lambda: job(2)]) == [1, 2]


def test_when_one_side_fails_the_other_still_finishes_and_the_error_is_raised() -> None:
    finished = threading.Event()

    def fails() -> None:
        raise RuntimeError("REF broke")

    def slow() -> None:
        threading.Event().wait(0.2)
        finished.set()

    with pytest.raises(RuntimeError, match="REF broke"):
        duet.run_together([fails, slow])
    assert finished.is_set()


SLEEPER = (sys.executable, "-c", "import time; time.sleep(120)")


def test_a_process_whose_waiter_is_interrupted_is_killed_and_reaped(tmp_path: Path) -> None:
    proc = duet.spawn_pinned(SLEEPER, None, cwd=tmp_path, env=os.environ)
    with pytest.raises(KeyboardInterrupt), duet.watched(proc):
        raise KeyboardInterrupt("signal 15")
    assert proc.returncode is not None  # reaped
    assert proc.returncode < 0  # killed by a signal


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT as Python sets it up (KeyboardInterrupt, not blocked in this thread), whatever the
    process it runs in did to it before, put back afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("to", ["process", "a waiting thread"])
@pytest.mark.usefixtures("sigint_raises")
def test_an_interrupted_duet_leaves_no_process_running(tmp_path: Path, to: str) -> None:
    """SIGTERM in the session reaches only the main thread; the two sides' processes are waited
    for in threads, and once ran on after the session had ended. The kernel may also hand the
    signal to one of those threads, which only flags it for the main thread: the main thread's
    wait must still come back to act on it."""
    started: list[subprocess.Popen[str]] = []
    waiters: list[int] = []

    def side() -> None:
        waiters.append(threading.get_ident())
        proc = duet.spawn_pinned(SLEEPER, None, cwd=tmp_path, env=os.environ)
        started.append(proc)
        with duet.watched(proc):
            proc.communicate()

    def interrupt_when_both_run() -> None:
        deadline = time.monotonic() + 60
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        if to == "process":
            os.kill(os.getpid(), signal.SIGINT)  # a real signal: it wakes the main thread's wait
        else:
            signal.pthread_kill(waiters[0], signal.SIGINT)

    threading.Thread(target=interrupt_when_both_run, daemon=True).start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        duet.run_together([side, side])
    assert len(started) == 2
    assert [proc.poll() for proc in started] == [-signal.SIGKILL] * 2
    assert time.monotonic() - began < 60  # not the sleepers' 120 s


def _result(seconds: float) -> PerfResult:
    samples = (seconds,) * 5
    return PerfResult(
        nodeid="t.py::test_x", name="", device="cpu", threads=1, compile_kwargs={},
        modes={"eager": ModeResult("eager", seconds, 0.0, samples, 1, 1, True)},
        reference_samples_s=(1e-3,) * 5,
    )  # fmt: skip


def test_duet_pairs_run_each_pair_at_once_and_swap_the_cores() -> None:
    """Every pair (and the warm-up) starts both sides together, A on one core set and B on the
    other, swapped in every other pair; the message says the pairs were duets."""
    barrier = threading.Barrier(2, timeout=10)
    calls: list[tuple[str, frozenset[int]]] = []
    said: list[str] = []

    def side(name: str, seconds: float) -> ab.Side:
        def run(cpus: Collection[int] | None) -> list[PerfResult]:
            assert cpus is not None
            calls.append((name, frozenset(cpus)))
            barrier.wait()  # both sides of the pair are running
            return [_result(seconds)]

        return run

    plan = ab.PairPlan(pairs=3, max_pairs=3, threshold=0.05, alpha=0.05)
    cores = (frozenset({0}), frozenset({1}))
    gathered = ab.gather_pairs(
        "t.py::test_x", lambda _: plan, run_a=side("a", 1e-3), run_b=side("b", 2e-3), say=said.append,
        cores=cores,
    )  # fmt: skip
    assert gathered.duet
    assert len(gathered.pairs["t.py::test_x"].a) == 3
    by_pair = [dict(calls[i : i + 2]) for i in range(0, len(calls), 2)]  # warm-up, then 3 pairs
    assert by_pair == [
        {"a": cores[0], "b": cores[1]},
        {"a": cores[0], "b": cores[1]},
        {"a": cores[1], "b": cores[0]},
        {"a": cores[0], "b": cores[1]},
    ]
    assert "keisei-perf: A/B t.py::test_x: pair 2/3 (A on cpu 1 with B on cpu 0)" in said
    verdicts, failures = ab.verdicts_for(
        "t.py::test_x", gathered.pairs["t.py::test_x"], ["eager"], plan, ref="HEAD",
        bh=lambda p: (p < 0.05, 1), duet=True,
    )  # fmt: skip
    assert verdicts["eager"].status == "regression"
    assert "paired over 3 duet pairs" in failures[0]


def _role(schedule: str, threads: int) -> tuple[ab.ABRole, list[str]]:
    said: list[str] = []
    session = types.SimpleNamespace(
        settings=PerfSettings(compare_ref="HEAD", ab_schedule=schedule, threads=threads), say=said.append
    )
    return ab.ABRole(session), said  # type: ignore[arg-type]


def test_duet_is_the_default_and_sequential_asks_for_no_cores() -> None:
    assert PerfSettings().ab_schedule == "duet"
    role, said = _role("sequential", 1)
    assert role._duet_cores() is None
    assert said == []


def test_a_duet_the_machine_cannot_run_falls_back_to_sequential_pairs_with_a_note() -> None:
    role, said = _role("duet", 4096)
    assert role._duet_cores() is None
    (note,) = said
    assert note.startswith("keisei-perf: A/B: sequential pairs instead of a duet: ")
    assert "--perf-threads 4096" in note or "cannot pin" in note
