"""Files written whole or not at all: JSON and text through a temporary file and ``os.replace``.

Storage (baselines, history, compile times) and presentation (reports, pages) both write files;
they share these writers, so storage never imports presentation.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["file_stem", "write_json_atomic", "write_problem", "write_text_atomic"]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as sorted, indented JSON via a temporary file and ``os.replace``.

    A crash or a concurrent reader never sees a half-written file.
    """
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False, default=_fallback) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fallback(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def write_problem(path: Path, *, is_dir: bool) -> str | None:
    """Why ``path`` (a file, or a folder when ``is_dir``) cannot be written, or None."""
    if path.exists():
        if is_dir and not path.is_dir():
            return "is a file, not a folder"
        if not is_dir and path.is_dir():
            return "is a folder, not a file"
        folder = path if is_dir else path.parent
    else:
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            return f"cannot be created: {folder} is a file"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot be written: {folder} is not writable"
    return None


def file_stem(benchmark_id: str) -> str:
    """A file-name-safe, still readable version of a benchmark id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", benchmark_id).strip("_")[:150] or "benchmark"
