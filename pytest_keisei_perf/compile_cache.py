"""Where inductor keeps compiled artefacts between runs.

A cold inductor compile of Keisei's tower takes ~20 s here and a warm one ~2 s, so by default
the plugin points ``TORCHINDUCTOR_CACHE_DIR`` at a folder under pytest's cache dir that CI can
keep between runs. The folder is keyed by torch version and thread count: a torch upgrade or a
thread-count change starts a new folder instead of reusing artefacts built for another setup.
A ``TORCHINDUCTOR_CACHE_DIR`` the user set always wins (inductor itself writes its default into
that variable once it has compiled anything; that value does not count as the user's choice).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Final

from . import _compat

__all__ = ["CACHE_ENV", "CompileCache", "default_cache_dir", "resolve_cache_dir"]

CACHE_ENV: Final = "TORCHINDUCTOR_CACHE_DIR"
#: Triton's own kernel cache; inductor puts it under its folder unless this is set.
TRITON_CACHE_ENV: Final = "TRITON_CACHE_DIR"
#: ``--perf-compile-cache`` value that leaves torch's own default in place.
TORCH_DEFAULT: Final = "torch"


def default_cache_dir(pytest_cache_dir: Path, threads: int) -> Path:
    """``<pytest cache>/keisei-perf/inductor/torch-<version>-<N>t``."""
    import torch

    version = re.sub(r"[^A-Za-z0-9.]+", "_", torch.__version__)
    return pytest_cache_dir / "keisei-perf" / "inductor" / f"torch-{version}-{threads}t"


def resolve_cache_dir(option: str | None, pytest_cache_dir: Path, threads: int) -> tuple[Path | None, str]:
    """The folder to use and where the choice came from; ``None`` leaves torch's default."""
    if option == TORCH_DEFAULT:
        return None, "--perf-compile-cache=torch"
    if option:
        return Path(option).expanduser().resolve(), "--perf-compile-cache"
    chosen = os.environ.get(CACHE_ENV)
    if chosen and not _compat.is_torch_default_cache_dir(chosen):
        return Path(chosen), f"${CACHE_ENV}"
    return default_cache_dir(pytest_cache_dir, threads), "default"


class CompileCache:
    """Sets ``TORCHINDUCTOR_CACHE_DIR`` for the session (fresh worker processes inherit it) and
    puts the previous value back afterwards. :meth:`empty` makes a cold one."""

    def __init__(self, directory: Path | None, source: str, *, temporary: bool = False) -> None:
        self.directory = directory
        self.source = source
        self._temporary = temporary
        self._previous: dict[str, str | None] = {}
        self._active = False
        self._renewals = 0

    @classmethod
    def empty(cls) -> CompileCache:
        """A new empty folder for inductor's and Triton's caches, removed afterwards: every
        compile in this process is a cold one (``--perf-compile-state cold``)."""
        directory = Path(tempfile.mkdtemp(prefix="keisei-perf-cold-cache-"))
        return cls(directory, "empty, for a cold compile", temporary=True)

    def activate(self) -> None:
        if self.directory is None:
            return
        variables = {CACHE_ENV: str(self.directory)}
        if self._temporary:  # a set TRITON_CACHE_DIR would serve kernels compiled before
            variables[TRITON_CACHE_ENV] = str(self.directory / "triton")
        self._previous = {name: os.environ.get(name) for name in variables}
        # no mkdir: inductor creates the folder when it first compiles, so sessions that never
        # compile leave no trace on disk
        os.environ.update(variables)
        self._active = True

    def renew(self) -> None:
        """A cold cache only: point inductor and Triton at a new empty subfolder, so the next
        compile in this process is cold too (several benchmarks of one model in one test would
        otherwise find each other's artefacts)."""
        if not (self._temporary and self._active and self.directory is not None):
            return
        self._renewals += 1
        fresh = self.directory / f"benchmark-{self._renewals}"
        os.environ.update({CACHE_ENV: str(fresh), TRITON_CACHE_ENV: str(fresh / "triton")})

    def deactivate(self) -> None:
        if not self._active:
            return
        for name, previous in self._previous.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
        if self._temporary and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._active = False

    def describe(self) -> str:
        if self.directory is None:
            return "torch's default"
        return f"{self.directory} ({self.source})"
