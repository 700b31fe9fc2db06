"""File locks that make concurrent processes take turns (POSIX ``flock``; released if one dies)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

__all__ = ["MEASUREMENT_LOCK", "exclusive_lock", "lock_beside"]

#: One per machine and user: perf sessions, xdist workers and projects measure in turn, since
#: timings taken side by side on shared cores corrupt each other.
MEASUREMENT_LOCK: Final = Path(tempfile.gettempdir()) / f"keisei-perf-measure-{os.getuid()}.lock"


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_beside(path: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on ``.<name>.lock`` next to ``path``: concurrent writers queue up."""
    return exclusive_lock(path.with_name(f".{path.name}.lock"))
