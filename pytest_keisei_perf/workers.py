"""Fresh processes: re-invoking pytest on chosen node ids in worker mode, reading back results.

The unit of replication is the process: the spread between processes dwarfs the spread inside
one, so baselines and confirmations need new processes, not more rounds.

A worker runs under the user's configuration: the same ini file and rootdir, the ``-o``
overrides, ``-p`` plugins, conftest options and ``addopts``, minus what selects other tests,
changes the output, or runs tests in parallel (xdist is blocked). A worker either delivers a
result for every benchmark it was asked for or raises :class:`WorkerError` with its last lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from .compile_state import process_state
from .duet import describe, spawn_pinned, watched
from .result import PerfResult
from .settings import PerfSettings

__all__ = [
    "WORKER_PROGRAM",
    "WORKER_TIMEOUT_S",
    "WorkerError",
    "forwarded_args",
    "last_lines",
    "outcomes_path",
    "run_worker",
    "worker_command",
]

#: A worker that has not finished after this long is killed and the test (or update) fails.
WORKER_TIMEOUT_S: Final = 3600.0
#: Option destinations never forwarded: test selection, output, debugging, parallelism, and what
#: the worker command sets itself (ini file, rootdir).
_NOT_FORWARDED: Final = frozenset(
    {
        "keyword", "markexpr", "lf", "failedfirst", "newfirst", "last_failed_no_failures", "stepwise",
        "stepwise_skip", "stepwise_reset", "deselect", "verbose", "reportchars", "tbstyle", "xmlpath",
        "junitprefix", "collectonly", "durations", "durations_min", "maxfail", "usepdb", "usepdb_cls",
        "trace", "showlocals", "cacheclear", "cacheshow", "help", "version", "markers", "showfixtures",
        "show_fixtures_per_test", "setuponly", "setupplan", "setupshow", "basetemp", "pastebin", "debug",
        "traceconfig", "color", "code_highlight", "fulltrace", "no_header", "no_summary", "log_file",
        "inifilename", "rootdir", "numprocesses", "dist", "distload", "maxprocesses", "maxschedchunk",
        "maxworkerrestart", "tx", "rsyncdir", "rsyncignore", "px", "looponfail", "loadscopereorder",
        "testrunuid",
    }
)  # fmt: skip
#: ``-p`` values that would bring parallelism back.
_PARALLEL_PLUGINS: Final = ("xdist", "xdist.plugin", "xdist.looponfail")

#: What a worker's interpreter runs: ``python -m pytest`` exactly (``runpy``, the same
#: ``sys.argv`` and ``sys.path[0]``), then the steps of an interpreter's exit that anything can
#: observe, through the functions the interpreter itself calls (``threading._shutdown``, which
#: stops thread pools and joins non-daemon threads, then the ``atexit`` handlers), the standard
#: streams flushed, and ``os._exit``. Tearing down torch's and dynamo's modules object by object
#: is skipped: it costs a fresh process a noticeable part of its life (docs/measurements.md) and
#: nothing of the result depends on it. The program is inline, not a module of this package, so
#: that a worker in a REF checkout of this very project runs the same program whatever that
#: checkout holds. Where either function is missing (another Python), it exits as usual.
WORKER_PROGRAM: Final = """\
import atexit, os, runpy, sys, threading
sys.path[0] = os.getcwd()
try:
    runpy.run_module("pytest", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as stop:
    code = stop.code
wait_for_threads = getattr(threading, "_shutdown", None)
run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
if wait_for_threads is None or run_exit_handlers is None or not (code is None or isinstance(code, int)):
    raise SystemExit(code)
wait_for_threads()
run_exit_handlers()
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except (OSError, ValueError):
        pass
os._exit(code or 0)
"""


def outcomes_path(report: Path) -> Path:
    """Where a worker writing ``report`` puts the words of each test that failed or was skipped
    there: one process may run many tests, and its last lines speak only for the last of them."""
    return report.with_name(report.name + ".outcomes")


class WorkerError(RuntimeError):
    """A worker process failed to produce a result; the message ends with its last output lines."""


def forwarded_args(tokens: Sequence[str], actions: Mapping[str, argparse.Action]) -> list[str]:
    """The options of ``tokens`` (a command line or ``addopts``) that a worker must also get.

    ``actions`` maps option strings to argparse actions (their ``dest`` and ``nargs``);
    positional arguments are dropped (the worker is given its node ids), and so is everything
    whose destination is in :data:`_NOT_FORWARDED`, ``--perf-*`` (the worker command sets those),
    ``-o addopts=...`` (addopts are forwarded filtered) and ``-p`` of a parallelism plugin. An
    option this parser does not know is forwarded alone, as written.
    """
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            continue
        name, attached = token, None
        if token.startswith("--") and "=" in token:
            name, attached = token.split("=", 1)
        elif not token.startswith("--") and len(token) > 2 and token[:2] in actions:
            name, attached = token[:2], token[2:]
        action = actions.get(name)
        if action is None:
            out.append(token)
            continue
        values: list[str] = []
        if attached is None and action.nargs != 0:
            if action.nargs in (None, 1):
                if i < len(tokens):
                    values, i = [tokens[i]], i + 1
            else:  # '?', '*', '+': every following non-option token
                while i < len(tokens) and not tokens[i].startswith("-"):
                    values.append(tokens[i])
                    i += 1
        value = attached if attached is not None else (values[0] if values else "")
        dest = action.dest
        if dest in _NOT_FORWARDED or dest.startswith("perf_"):
            continue
        if dest == "plugins" and value.removeprefix("no:") in _PARALLEL_PLUGINS:
            continue
        if dest == "override_ini" and value.split("=", 1)[0].strip() == "addopts":
            continue
        out.append(token)
        if attached is None:
            out.extend(values)
    return out


def worker_command(
    nodeids: Sequence[str], settings: PerfSettings, report: Path, *, user_args: Sequence[str] = ()
) -> list[str]:
    """The pytest command line of one worker, carrying every setting that affects timing.

    ``user_args`` are the user's forwarded options (:func:`forwarded_args`), ini file and rootdir
    included; addopts are cleared (``-o addopts=``) because they arrive filtered in ``user_args``.
    """
    command = [sys.executable, "-c", WORKER_PROGRAM, *nodeids, "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:xdist", "-o", "addopts=", *user_args]
    command += ["-m", "", "--perf-worker", f"--perf-json={report}"]  # -m "": no marker filter
    command += [
        f"--perf-threads={settings.threads}",
        f"--perf-budget={settings.budget_s}",
        f"--perf-rounds={settings.rounds}",
        f"--perf-modes={','.join(settings.modes)}",
        f"--perf-compile-backend={settings.compile_backend}",
        f"--perf-baseline-dir={settings.baseline_dir}",
        # a worker measures one state; "both" is the parent's business
        f"--perf-compile-state={process_state(settings.compile_state)}",
    ]
    if settings.compile_mode:
        command.append(f"--perf-compile-mode={settings.compile_mode}")
    if settings.strict_compile:
        command.append("--perf-strict-compile")
    if settings.strict_accuracy:
        command.append("--perf-strict-accuracy")
    if settings.machine:
        command.append(f"--perf-machine={settings.machine}")
    return command


def user_worker_args(
    invocation_args: Sequence[str],
    addopts: Iterable[str],
    env_addopts: str,
    actions: Mapping[str, argparse.Action],
    *,
    inipath: Path | None,
    rootpath: Path,
) -> list[str]:
    """Everything of the user's configuration a worker needs, as command-line options."""
    args = ["--rootdir", str(rootpath)]
    if inipath is not None:
        args += ["-c", str(inipath)]
    args += forwarded_args([*addopts, *shlex.split(env_addopts)], actions)
    args += forwarded_args(list(invocation_args), actions)
    return args


def last_lines(text: str, lines: int = 15) -> str:
    """The end of a process's output or a test's failure text: where the error is."""
    return "\n".join(text.strip().splitlines()[-lines:])


def run_worker(
    nodeids: Sequence[str],
    settings: PerfSettings,
    *,
    cwd: Path,
    wanted: Iterable[str] | None,
    user_args: Sequence[str] = (),
    timeout_s: float = WORKER_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    others: bool = False,
    output: Callable[[str], None] | None = None,
    outcomes: dict[str, str] | None = None,
    cpus: Collection[int] | None = None,
) -> list[PerfResult]:
    """Run one fresh process over ``nodeids``; its results, one for each benchmark id in ``wanted``
    (every result when ``wanted`` is None), followed with ``others`` by the rest of its results,
    unchecked (whoever reads one of those checks it: :func:`entry_problem`). ``output`` hears
    what the process printed; ``outcomes`` gets, per node id, the words of each test that failed
    or was skipped there (:func:`outcomes_path`; nothing from a plugin too old to write them).
    ``cpus`` pins the process to those cores (:func:`.duet.spawn_pinned`). An interrupted wait
    kills the process (:func:`.duet.watched`).

    Raises :class:`WorkerError` when the process times out, writes no report, gives no result at
    all (``wanted`` None), or a wanted benchmark is missing, failed or was not timed there.
    """
    env = dict(os.environ if env is None else env)
    env.pop("PYTEST_ADDOPTS", None)  # forwarded, filtered, in user_args
    env.pop("PYTEST_XDIST_WORKER", None)
    with tempfile.TemporaryDirectory(prefix="keisei-perf-worker-") as tmp:
        report = Path(tmp) / "report.json"
        command = worker_command(nodeids, settings, report, user_args=user_args)
        try:
            proc = spawn_pinned(command, cpus, cwd=cwd, env=env)
        except OSError as exc:
            where = f" on {describe(cpus)}" if cpus is not None else ""
            raise WorkerError(f"could not start the worker process{where}: {exc}") from None
        with watched(proc):
            try:
                stdout, stderr = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                partial, _ = proc.communicate()
                said = last_lines(partial)
                raise WorkerError(f"worker process timed out after {timeout_s:g} s:\n{said}") from None
        said = stdout + stderr
        if output is not None:
            output(said)
        if outcomes is not None:
            outcomes.update(_read_outcomes(outcomes_path(report)))
        if not report.exists():
            raise WorkerError(
                f"worker process exited with {proc.returncode} and wrote no report:\n{last_lines(said)}"
            )
        data = json.loads(report.read_text(encoding="utf-8"))
    by_id = {entry.benchmark_id: entry for entry in (PerfResult.from_dict(d) for d in data["results"])}
    if not by_id and wanted is None:
        raise WorkerError(f"worker process (exit {proc.returncode}) gave no result:\n{last_lines(said)}")
    delivered = []
    checked = list(wanted) if wanted is not None else list(by_id)
    for bench in checked:
        entry = by_id.get(bench)
        if entry is None:
            raise WorkerError(
                f"worker process (exit {proc.returncode}) yielded no result for {bench}:\n{last_lines(said)}"
            )
        problem = entry_problem(entry)
        if problem:
            raise WorkerError(problem)
        delivered.append(entry)
    if others:
        delivered += [entry for bench, entry in by_id.items() if bench not in checked]
    return delivered


def _read_outcomes(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def entry_problem(entry: PerfResult) -> str | None:
    """Why a worker's result for one benchmark cannot stand for a measurement, or None."""
    if entry.failures or entry.disabled:
        why = "; ".join(entry.failures) or "it was not timed"
        return f"{entry.benchmark_id} failed in the worker process: {why}"
    return None
