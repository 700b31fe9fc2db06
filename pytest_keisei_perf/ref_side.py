"""The REF side's processes of ``--perf-compare-ref``: the whole selection run at REF in one
process, and the rule that tells a test absent at REF ("new benchmark") from one that failed there.

"New" is decided by collecting the test's file at REF, never read from a failed process: a REF
whose test module does not import, whose test raises or is skipped, or whose plugin is too old
for this one's worker options is an error. It quotes that test's own words from the REF process
(:func:`.workers.outcomes_path`): the process runs the whole selection, and its last lines speak
for whichever test ran last.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .result import PerfResult
from .workers import WorkerError, last_lines, run_worker
from .worktree import ABError, RefCheckout

__all__ = ["RefSelection", "RefSideArgs", "collected_at_ref"]

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


class RefSelection:
    """The REF side of one A/B session: which selected tests exist at REF (collected there once,
    file by file), and one REF process over all of them per run.

    ``problems`` names, per working-tree node id, a test whose file cannot be collected at REF
    (then nobody can tell whether the test exists there) or whose REF process gave no result.
    """

    def __init__(
        self,
        checkout: RefCheckout,
        nodeids: Sequence[str],
        *,
        rootpath: Path,
        settings: Any,
        ref_args: RefSideArgs,
        invocation_dir: Path,
    ) -> None:
        self.checkout = checkout
        self.settings = settings
        self.ref_args = ref_args
        inside = invocation_dir.resolve().is_relative_to(checkout.toplevel)
        self.cwd = checkout.mapped(invocation_dir) if inside else invocation_dir
        self.problems: dict[str, str] = {}
        #: working-tree node id -> REF-side target, for the tests REF has
        self.present: dict[str, str] = {}
        names: dict[Path, set[str] | str] = {}
        for nodeid in nodeids:
            path_part, sep, rest = nodeid.partition("::")
            target = checkout.mapped(rootpath / path_part)
            if not target.exists():
                continue
            if target not in names:
                try:
                    names[target] = collected_at_ref(checkout, target, ref_args=ref_args, cwd=self.cwd)
                except ABError as exc:
                    names[target] = str(exc)
            found = names[target]
            if isinstance(found, str):
                self.problems[nodeid] = found
            elif rest.removeprefix("::") in found:
                self.present[nodeid] = f"{target}{sep}{rest}"

    def run(self, cpus: Collection[int] | None = None) -> list[PerfResult] | None:
        """One REF process over every test REF has (None when it has none), pinned to ``cpus``
        when given. A test that exists at REF but gave no result there goes into ``problems``
        with its own words from there (REF's last lines when its plugin is too old to hand them
        back)."""
        if not self.present:
            return None
        output: list[str] = []
        outcomes: dict[str, str] = {}
        try:
            results = run_worker(
                list(self.present.values()), self.settings, cwd=self.cwd, wanted=(), others=True,
                user_args=self.ref_args.args, env=self.checkout.env(), output=output.append,
                outcomes=outcomes, cpus=cpus,
            )  # fmt: skip
        except WorkerError as exc:
            note = _old_plugin_note(str(exc), self.checkout, self.cwd)
            raise ABError(f"the REF side's process failed: {exc}{note}") from None
        gave = {r.nodeid for r in results}
        tail = last_lines("".join(output))
        for nodeid in self.present:
            if not any(_same_test(nodeid, other) for other in gave):
                said = next((words for at_ref, words in outcomes.items() if _same_test(nodeid, at_ref)), None)
                self.problems.setdefault(
                    nodeid,
                    f"the test exists at {self.checkout.ref}, but its process there failed: it gave no "
                    "result for it: " + (said or f"its last lines:\n{tail}"),
                )
        return results


def _same_test(nodeid: str, at_ref: str) -> bool:
    """Whether REF's node id names this test (REF may see it from another rootdir)."""
    return nodeid == at_ref or nodeid.endswith("/" + at_ref) or at_ref.endswith("/" + nodeid)


def collected_at_ref(checkout: RefCheckout, target: Path, *, ref_args: RefSideArgs, cwd: Path) -> set[str]:
    """The tests of the file ``target`` as collected at REF (``name[param]`` after ``::``).

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
        return set()
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        code = proc.returncode
        raise ABError(f"{target.name} cannot be collected at {checkout.ref} (exit {code}):\n{tail}")
    found = set()
    for line in proc.stdout.splitlines():
        path, sep, name = line.strip().partition("::")
        if sep and path.endswith(target.name):
            found.add(name)
    return found


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
