"""The REF side's processes of ``--perf-compare-ref``: one test run at REF, and the rule that
tells a test absent at REF ("new benchmark") from one that failed there.

"New" is decided by collecting the test's file at REF, never read from a failed process: a REF
whose test module does not import, whose test raises or is skipped, or whose plugin is too old
for this one's worker options is an error that shows REF's last output lines.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .result import PerfResult
from .workers import WorkerError, run_worker
from .worktree import ABError, RefCheckout

__all__ = ["RefSideArgs", "collected_at_ref", "run_ref_worker"]

_COLLECT_TIMEOUT_S = 600.0


class RefSideArgs:
    """The user's forwarded options with working-tree paths mapped into the REF checkout.

    An ini file (``-c``) that does not exist at REF is dropped, so the REF side runs under REF's
    own configuration; ``dropped`` names it, for the session to say so.
    """

    def __init__(self, user_args: Sequence[str], checkout: RefCheckout) -> None:
        self.args: list[str] = []
        self.dropped: list[str] = []
        tokens = list(user_args)
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token == "-c" and i + 1 < len(tokens):
                mapped = _map_arg(tokens[i + 1], checkout)
                if Path(mapped).exists():
                    self.args += [token, mapped]
                else:
                    self.dropped.append(tokens[i + 1])
                i += 2
                continue
            self.args.append(_map_arg(token, checkout))
            i += 1


def _map_arg(arg: str, checkout: RefCheckout) -> str:
    """Paths of the working tree (rootdir, ini file) point into the REF checkout instead."""
    try:
        path = Path(arg)
        if path.is_absolute() and path.resolve().is_relative_to(checkout.toplevel):
            return str(checkout.mapped(path))
    except (OSError, ValueError):
        pass
    return arg


def run_ref_worker(
    checkout: RefCheckout,
    test_path: Path,
    nodeid_rest: str,
    *,
    settings: Any,
    ref_args: RefSideArgs,
    invocation_dir: Path,
) -> list[PerfResult] | None:
    """One REF-side process over one test: its results, or None when the test does not exist at
    REF. Raises :class:`ABError` when it exists there but gave no result."""
    target = checkout.mapped(test_path)
    if not target.exists():
        return None
    inside = invocation_dir.resolve().is_relative_to(checkout.toplevel)
    cwd = checkout.mapped(invocation_dir) if inside else invocation_dir
    try:
        return run_worker(
            [f"{target}{nodeid_rest}"],
            settings,
            cwd=cwd,
            wanted=None,
            user_args=ref_args.args,
            env=checkout.env(),
        )
    except WorkerError as exc:
        failure = str(exc)
    if not collected_at_ref(checkout, target, nodeid_rest, ref_args=ref_args, cwd=cwd):
        return None
    note = _old_plugin_note(failure, checkout, cwd)
    raise ABError(f"the test exists at {checkout.ref}, but its process there failed: {failure}{note}")


def collected_at_ref(
    checkout: RefCheckout, target: Path, nodeid_rest: str, *, ref_args: RefSideArgs, cwd: Path
) -> bool:
    """Whether collecting ``target`` at REF yields the test ``nodeid_rest`` (``::name[param]``).

    Raises :class:`ABError`, with REF's last lines, when the file cannot be collected there: then
    nobody can tell whether the test exists.
    """
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:xdist", "-o", "addopts=", *ref_args.args, "-m", "", str(target)]
    try:
        proc = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, check=False,
            timeout=_COLLECT_TIMEOUT_S, env=checkout.env(),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ABError(f"collecting {target.name} at {checkout.ref} timed out") from None
    if proc.returncode == 5:  # no tests collected
        return False
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        code = proc.returncode
        raise ABError(f"{target.name} cannot be collected at {checkout.ref} (exit {code}):\n{tail}")
    wanted = nodeid_rest.removeprefix("::")
    for line in proc.stdout.splitlines():
        path, sep, name = line.strip().partition("::")
        if sep and name == wanted and path.endswith(target.name):
            return True
    return False


def _old_plugin_note(failure: str, checkout: RefCheckout, cwd: Path) -> str:
    """When REF's own plugin rejected this version's worker options: say so, with both versions."""
    if "unrecognized arguments: --perf" not in failure and "no such option: --perf" not in failure:
        return ""
    probe = "import pytest_keisei_perf as p; print(getattr(p, '__version__', 'unknown'), p.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=False,
        timeout=120, env=checkout.env(),
    )  # fmt: skip
    found = proc.stdout.strip() or "unknown"
    return (
        f"\nThe REF side imports its own pytest-keisei-perf ({found}), which does not know the "
        f"options that this one ({__version__}) gives its workers: it is too old to serve as the "
        "REF side. Compare "
        "against a REF whose plugin is this version or newer, or keep the plugin out of the REF's "
        "import path (install it, and leave its folder out of perf_import_roots)."
    )
