"""Duet pairs for ``--perf-compare-ref``: REF and the working tree timed at the same time, each
pinned to its own cores, so that both meet the same interference (Bulej et al., ICPE 2020).

Sequential pairs run A, then B: whatever the machine does in between (another tenant, a
frequency change) lands on one side only. In a duet both sides run through the same seconds;
the cores swap between pairs, so a faster core favours neither side. Pinning needs
``os.sched_setaffinity`` (Linux) and two disjoint sets of ``--perf-threads`` cores; elsewhere
the A/B falls back to sequential pairs and says why (:func:`duet_cores`).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeVar

__all__ = [
    "Cores",
    "describe",
    "duet_cores",
    "physical_cores",
    "run_together",
    "spawn_pinned",
    "stop_live_processes",
    "watched",
]

#: The cores of side A and of side B in the first pair (swapped in every other pair).
Cores = tuple[frozenset[int], frozenset[int]]

T = TypeVar("T")


def duet_cores(
    threads: int,
    available: Collection[int] | None = None,
    topology: Mapping[int, Hashable] | None = None,
) -> Cores | str:
    """Two disjoint sets of ``threads`` cores for a duet, or why this machine cannot run one.

    The sets come from the end of the cores this process may use, leaving the first ones (where
    the system tends to run its own work) to everything else when there are more than enough.
    Where ``topology`` (each CPU's physical core; read from the kernel when ``available`` is
    not given) shows SMT siblings, the two sides get separate physical cores when there are
    enough: two hardware threads of one core share its execution units, so each side would time
    the other's work as well as its own.
    """
    if available is None:
        getter = getattr(os, "sched_getaffinity", None)
        if getter is None or not hasattr(os, "sched_setaffinity"):
            return "this platform cannot pin a process to cores (no os.sched_setaffinity)"
        available = getter(0)
        if topology is None:
            topology = physical_cores(available)
    cores = sorted(available)
    if len(cores) < 2 * threads:
        return (
            f"{len(cores)} core(s) available to this process and --perf-threads {threads}: a duet "
            f"needs two separate sets of {threads}"
        )
    if topology is not None:
        separate = _on_separate_physical_cores(cores, threads, topology)
        if separate is not None:
            return separate
    chosen = cores[len(cores) - 2 * threads :]
    return frozenset(chosen[:threads]), frozenset(chosen[threads:])


def _on_separate_physical_cores(
    cores: Sequence[int], threads: int, topology: Mapping[int, Hashable]
) -> Cores | None:
    """Side B from the last physical cores, side A from the ones before, whole physical cores
    each; None when the physical cores run out first."""
    groups: dict[Hashable, list[int]] = {}
    for cpu in cores:  # sorted, so the groups come in the order of their first CPU
        groups.setdefault(topology.get(cpu, ("cpu", cpu)), []).append(cpu)
    remaining = list(groups.values())
    sides: list[frozenset[int]] = []
    for _ in range(2):
        taken: list[int] = []
        while len(taken) < threads and remaining:
            taken += remaining.pop()
        if len(taken) < threads:
            return None
        sides.append(frozenset(sorted(taken)[:threads]))
    side_b, side_a = sides
    return side_a, side_b


def physical_cores(
    cpus: Collection[int], root: Path = Path("/sys/devices/system/cpu")
) -> dict[int, tuple[int, int]] | None:
    """Each CPU's (package, core) from the kernel's topology files (Linux), or None where they
    cannot be read."""
    found: dict[int, tuple[int, int]] = {}
    for cpu in cpus:
        folder = root / f"cpu{cpu}" / "topology"
        try:
            found[cpu] = (
                int((folder / "physical_package_id").read_text()),
                int((folder / "core_id").read_text()),
            )
        except (OSError, ValueError):
            return None
    return found


def describe(cores: Collection[int]) -> str:
    """``cpu 3`` or ``cpus 2,3``: where a side ran, for the terminal."""
    ordered = sorted(cores)
    return f"cpu{'s' if len(ordered) > 1 else ''} {','.join(map(str, ordered))}"


def spawn_pinned(
    command: Sequence[str], cpus: Collection[int] | None, *, cwd: Path, env: Mapping[str, str]
) -> subprocess.Popen[str]:
    """Start ``command`` with its output captured, pinned to ``cpus`` when given.

    The pin is set from here right after the start, on the new process's only thread (the
    interpreter starts none before it runs the command), so every thread it creates later, torch's
    pools included, inherits it; ``preexec_fn`` would do the same but is unsafe with threads, and a
    duet starts its two processes from two threads.
    """
    proc = subprocess.Popen(
        list(command), cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if cpus is not None:
        try:
            os.sched_setaffinity(proc.pid, set(cpus))
        except ProcessLookupError:
            pass  # it has already exited: its report (or lack of one) tells what happened
        except OSError:
            proc.kill()
            proc.communicate()
            raise
    return proc


#: Processes being waited for (:func:`watched`).
_live: set[subprocess.Popen[str]] = set()
_live_lock = threading.Lock()


@contextmanager
def watched(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``proc`` while the block waits for it: a process whose waiter is interrupted (SIGTERM or
    Ctrl-C in the session) is killed, not left running on its own, and until the block ends
    :func:`stop_live_processes` can reach it from another thread."""
    with _live_lock:
        _live.add(proc)
    try:
        yield proc
    except BaseException:
        _kill(proc)
        proc.wait()  # a killed process is reaped at once, not left a zombie until the session ends
        raise
    finally:
        with _live_lock:
            _live.discard(proc)


def stop_live_processes() -> None:
    """Kill every watched process (:func:`watched`) that is still being waited for: the
    waiters are threads that no signal reaches, and their processes must not outlive the session."""
    with _live_lock:
        running = list(_live)
    for proc in running:
        _kill(proc)


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()


#: How often the main thread looks up from waiting for a duet. A signal that the kernel hands
#: to one of the waiting threads only sets a flag for the main thread, whose handler runs when
#: the main thread next returns to the interpreter: an untimed wait would hold it until both
#: processes ended.
_SIGNAL_POLL_S: Final = 0.2


def run_together(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``jobs`` at the same time, each in its own thread; their results in order. When one
    raises, the others still finish (no process is left behind) and the first error is raised.
    When the waiting itself is interrupted, the jobs' processes are stopped
    (:func:`stop_live_processes`) before the interruption goes on."""
    pool = ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="keisei-perf-duet")
    try:
        futures = [pool.submit(job) for job in jobs]
        while wait(futures, timeout=_SIGNAL_POLL_S).not_done:
            pass
    except BaseException:
        stop_live_processes()
        raise
    finally:
        pool.shutdown(wait=True)
    return [future.result() for future in futures]
