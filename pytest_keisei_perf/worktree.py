"""The REF side of ``--perf-compare-ref``: git ``REF`` in a temporary worktree, and the check
that a REF-side process imported REF's code, not the working tree's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

__all__ = ["FORBID_ROOT_ENV", "ABError", "RefCheckout", "check_imports", "sweep_stale_checkouts"]

#: Set in REF-side processes: no module of the project may come from this folder (the working tree).
FORBID_ROOT_ENV: Final = "KEISEI_PERF_FORBID_ROOT"
#: Prefix of the temporary folders that hold REF checkouts; each holds its owner's pid.
_FOLDER_PREFIX: Final = "keisei-perf-ref-"
_OWNER_FILE: Final = "owner.pid"
_UNOWNED_GRACE_S: Final = 24 * 3600.0


class ABError(RuntimeError):
    """The A/B comparison cannot run as asked (unknown ref, no git, wrong imports)."""


def _git(args: Sequence[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ABError(f"git {' '.join(args)} failed: {exc}") from None
    if proc.returncode != 0:
        raise ABError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


@dataclass
class RefCheckout:
    """``REF`` checked out in a temporary worktree of the repository holding ``project_root``."""

    ref: str
    project_root: Path
    import_roots: Sequence[str] = ()
    toplevel: Path = field(init=False)
    commit: str = field(init=False)
    folder: Path | None = field(init=False, default=None)

    _previous_sigterm: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.toplevel = Path(_git(["rev-parse", "--show-toplevel"], self.project_root)).resolve()
        try:
            self.commit = _git(["rev-parse", "--verify", "--quiet", f"{self.ref}^{{commit}}"], self.toplevel)
        except ABError:
            raise ABError(self._unknown_ref()) from None

    def _unknown_ref(self) -> str:
        """Why ``ref`` names no commit here, and for a shallow clone how to get the history."""
        message = f"{self.ref!r} is not a commit in this clone"
        try:
            shallow = _git(["rev-parse", "--is-shallow-repository"], self.toplevel) == "true"
        except ABError:
            shallow = False
        if shallow:
            message += (
                " (it is a shallow clone, which holds only the newest commit(s): with "
                "actions/checkout set fetch-depth: 0, or fetch the base first, for example "
                f"git fetch origin {self.ref})"
            )
        return message

    def open(self) -> Path:
        """Create the worktree (once) and return its top folder; checkouts that dead sessions
        left behind are swept first, and SIGTERM now cleans up as SIGINT does."""
        if self.folder is None:
            sweep_stale_checkouts(self.toplevel)
            # before the checkout exists: a SIGTERM while git makes it must not leave it behind
            self._catch_sigterm()
            try:
                parent = Path(tempfile.mkdtemp(prefix=_FOLDER_PREFIX))
                self.folder = parent / "ref"
                (parent / _OWNER_FILE).write_text(str(os.getpid()), encoding="utf-8")
                _git(["worktree", "add", "--detach", str(self.folder), self.commit], self.toplevel)
            except BaseException:  # a failed or interrupted checkout is removed, half made or not
                self.close()
                raise
        return self.folder

    def close(self) -> None:
        """Remove the checkout, if any, and give SIGTERM back, whether or not one was made."""
        if self.folder is not None:
            try:
                _git(["worktree", "remove", "--force", str(self.folder)], self.toplevel)
            except ABError:
                shutil.rmtree(self.folder, ignore_errors=True)
                subprocess.run(
                    ["git", "worktree", "prune"], cwd=self.toplevel, capture_output=True, check=False
                )
            shutil.rmtree(self.folder.parent, ignore_errors=True)
            self.folder = None
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _catch_sigterm(self) -> None:
        """SIGTERM (a CI job cancelled) becomes KeyboardInterrupt, which pytest turns into an
        orderly end whose session-finish hook closes this checkout. Only where nobody else
        handles SIGTERM, and only from the main thread (where signals can be set)."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._previous_sigterm = signal.signal(signal.SIGTERM, interrupt)

    def mapped(self, path: Path) -> Path:
        """Where ``path`` (inside the working tree) lies in the REF checkout."""
        return self.open() / path.resolve().relative_to(self.toplevel)

    def python_path(self) -> list[str]:
        """Import roots of the REF side, first on ``PYTHONPATH``."""
        root = self.mapped(self.project_root)
        roots = [root / r for r in self.import_roots] if self.import_roots else [root, root / "src"]
        return [str(r) for r in roots if r.is_dir()]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([*self.python_path(), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        env[FORBID_ROOT_ENV] = str(self.toplevel)
        return env


def sweep_stale_checkouts(toplevel: Path) -> list[Path]:
    """Remove REF checkouts of ``toplevel`` whose owning process is gone (a session killed
    outright), then let git prune their registrations; the folders removed."""
    removed = []
    listing = subprocess.run(
        ["git", "worktree", "list", "--porcelain"], cwd=toplevel, capture_output=True, text=True, check=False
    ).stdout
    for line in listing.splitlines():
        if not line.startswith("worktree "):
            continue
        folder = Path(line.removeprefix("worktree "))
        parent = folder.parent
        if not parent.name.startswith(_FOLDER_PREFIX) or _owner_alive(parent / _OWNER_FILE):
            continue
        shutil.rmtree(parent, ignore_errors=True)
        removed.append(folder)
    subprocess.run(["git", "worktree", "prune"], cwd=toplevel, capture_output=True, check=False)
    return removed


def _owner_alive(owner_file: Path) -> bool:
    """Whether the session that made this checkout may still use it. A checkout with no owner
    recorded (an older version made it) counts as alive for a day."""
    try:
        pid = int(owner_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        try:
            return time.time() - owner_file.parent.stat().st_mtime < _UNOWNED_GRACE_S
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Where torch.compile writes the code it generates and then imports (inductor's and Triton's
#: caches; :mod:`.compile_cache` sets the first).
_GENERATED_CODE_ENV: Final = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def check_imports(forbidden_root: str) -> None:
    """In a REF-side process: fail if any project module was imported from the working tree.

    Installed packages (under ``sys.prefix`` or a site-packages folder, such as a virtual
    environment inside the repository) do not count, and neither do the kernels torch.compile
    loads from its caches: both sides share the compile cache on purpose, and its default
    folder lies under the working tree's ``.pytest_cache``.
    """
    root = Path(forbidden_root).resolve()
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    caches = {Path(d).resolve() for d in map(os.environ.get, _GENERATED_CODE_ENV) if d}
    prefixes |= {c for c in caches if c != root and c not in root.parents}  # never the whole tree
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if "site-packages" in path.parts or any(p in path.parents for p in prefixes):
            continue
        if root in path.parents:
            raise ABError(
                f"the REF side imported {name} from the working tree ({path}), not from the REF "
                "checkout; put the package's folder on the import path with the ini option "
                "perf_import_roots (paths relative to the project root), or uninstall the "
                "editable install that shadows it"
            )
