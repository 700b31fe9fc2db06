"""The REF side of ``--perf-compare-ref``: git ``REF`` in a temporary worktree, and the check
that a REF-side process imported REF's code, not the working tree's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["FORBID_ROOT_ENV", "ABError", "RefCheckout", "check_imports"]

#: Set in REF-side processes: no module of the project may come from this folder (the working tree).
FORBID_ROOT_ENV: Final = "KEISEI_PERF_FORBID_ROOT"


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

    def __post_init__(self) -> None:
        self.toplevel = Path(_git(["rev-parse", "--show-toplevel"], self.project_root)).resolve()
        self.commit = _git(["rev-parse", "--verify", "--quiet", f"{self.ref}^{{commit}}"], self.project_root)

    def open(self) -> Path:
        """Create the worktree (once) and return its top folder."""
        if self.folder is None:
            parent = Path(tempfile.mkdtemp(prefix="keisei-perf-ref-"))
            folder = parent / "ref"
            _git(["worktree", "add", "--detach", str(folder), self.commit], self.toplevel)
            self.folder = folder
        return self.folder

    def close(self) -> None:
        if self.folder is None:
            return
        try:
            _git(["worktree", "remove", "--force", str(self.folder)], self.toplevel)
        except ABError:
            shutil.rmtree(self.folder, ignore_errors=True)
            subprocess.run(["git", "worktree", "prune"], cwd=self.toplevel, capture_output=True, check=False)
        shutil.rmtree(self.folder.parent, ignore_errors=True)
        self.folder = None

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


def check_imports(forbidden_root: str) -> None:
    """In a REF-side process: fail if any project module was imported from the working tree.

    Installed packages (under ``sys.prefix`` or a site-packages folder, such as a virtual
    environment inside the repository) do not count.
    """
    root = Path(forbidden_root).resolve()
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
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
