"""``keisei-perf prune``'s collection: the perf tests' ids exactly as the plugin computes them.

pytest's ``--collect-only -q`` prints rootdir-relative node ids, which differ from the stored ids
in a monorepo (ids are relative to the test file's project root) and which a parametrised id
with a space made impossible to parse. Loaded with ``-p`` into a ``--collect-only`` run, this
writes the selected perf tests' ids, one per line, to the file named by :data:`IDS_FILE_ENV`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import pytest

from .files import write_text_atomic
from .ids import stable_test_id

__all__ = ["IDS_FILE_ENV"]

IDS_FILE_ENV: Final = "KEISEI_PERF_IDS_FILE"


def pytest_collection_finish(session: pytest.Session) -> None:
    target = os.environ.get(IDS_FILE_ENV)
    if not target:
        return
    ids = [
        stable_test_id(item.nodeid, item.path, session.config.rootpath)
        for item in session.items
        if item.get_closest_marker("perf") is not None
    ]
    write_text_atomic(Path(target), "".join(f"{test_id}\n" for test_id in ids))
