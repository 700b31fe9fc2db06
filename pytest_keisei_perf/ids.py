"""Benchmark ids that do not depend on how pytest was invoked.

pytest's node ids are relative to the rootdir, and pytest picks the rootdir from the command
line: ``--perf-baseline-dir /ci/baselines`` (a separate argument, a folder outside the project)
once moved it to ``/ci`` and every id gained a ``proj/`` prefix, so nothing matched the stored
baselines. Here the test file's path is taken relative to its *project root* instead: the
nearest folder above it holding a project or pytest configuration file or ``.git``. Inside an
ordinary project that is the rootdir pytest would pick anyway, so existing baseline ids stay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["PROJECT_MARKERS", "project_root", "stable_test_id"]

#: Files or folders that mark a project's root.
PROJECT_MARKERS: Final = (
    "pyproject.toml",
    "pytest.ini",
    ".pytest.ini",
    "tox.ini",
    "setup.cfg",
    "setup.py",
    ".git",
)


def project_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` that holds one of :data:`PROJECT_MARKERS`."""
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return None


def stable_test_id(nodeid: str, path: Path, rootpath: Path) -> str:
    """``nodeid`` with its file part re-expressed relative to the test file's project root.

    ``path`` is the test file (``item.path``); ``rootpath`` the fallback when no project root is
    found above it. Ids of items that are not under their file's folder are returned unchanged.
    """
    _, sep, rest = nodeid.partition("::")
    root = project_root(path.resolve().parent) or rootpath.resolve()
    try:
        relative = path.resolve().relative_to(root).as_posix()
    except ValueError:
        return nodeid
    return f"{relative}{sep}{rest}" if sep else relative
