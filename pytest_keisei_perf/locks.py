"""File locks that make concurrent processes take turns, on every platform.

``filelock`` (a dependency of torch) uses ``flock`` on POSIX, so a lock is released when its
holder dies, and ``msvcrt`` locking on Windows; this module never imports ``fcntl`` itself, so
the autoloaded plugin cannot break pytest where ``fcntl`` does not exist.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

__all__ = ["MEASUREMENT_LOCK", "exclusive_lock", "lock_beside"]


def _user_tag() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name on this platform or in this container
        return "user"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", user) or "user"


#: One per machine and user: perf sessions, xdist workers and projects measure in turn, since
#: timings taken side by side on shared cores corrupt each other.
MEASUREMENT_LOCK: Final = Path(tempfile.gettempdir()) / f"keisei-perf-measure-{_user_tag()}.lock"


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the block; ``on_wait()``
    runs once when another process holds it (to say that this one waits)."""
    from filelock import FileLock, Timeout  # imported when a lock is first taken, not with the plugin

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def lock_beside(path: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on ``.<name>.lock`` next to ``path``: concurrent writers queue up."""
    return exclusive_lock(path.with_name(f".{path.name}.lock"))
