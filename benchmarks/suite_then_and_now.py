"""Time today's code on the tests an older commit had: the suite-speed goal of issue 17 was set
for the tests of its day, and the suite has grown since.

    python benchmarks/suite_then_and_now.py 85a5d8c --ids benchmarks/results/suite_then_ids.txt

Collects the test functions of ``commit`` in a throwaway git worktree (that commit's own code),
maps them to today's node ids by function name (every parametrisation today has; the tests
renamed since are listed in ``RENAMED``), writes the ids, and runs them with the README's test
command (without the cache plugin, as measured), serially, printing pytest's summary and wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Tests of 2026-11-27 found today under another name (same subject, same assertions or more).
RENAMED = {
    "tests/test_ab.py::test_an_unknown_ref_is_a_usage_error": (
        "tests/test_ref_side.py::test_an_unknown_ref_says_it_is_not_in_this_clone"
    ),
    "tests/test_cli.py::test_prune_drops_entries_of_tests_that_are_gone": (
        "tests/test_cli.py::test_prune_lists_by_default_and_drops_only_with_apply"
    ),
    "tests/test_compile_state.py::test_a_baseline_of_another_state_is_named_at_the_end": (
        "tests/test_gate.py::test_a_baseline_of_another_compile_state_is_named_at_the_end"
    ),
    "tests/test_trust.py::test_a_worker_that_yields_no_result_fails_the_confirmation": (
        "tests/test_trust.py::test_a_fresh_process_that_yields_no_result_fails_the_test"
    ),
}


def collected(cwd: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=cwd, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line.strip() for line in out.splitlines() if "::" in line]


def function(nodeid: str) -> str:
    return re.sub(r"\[.*$", "", nodeid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit")
    parser.add_argument("--ids", type=Path, required=True, help="where to write the selected node ids")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "then"
        subprocess.run(["git", "worktree", "add", "-q", str(tree), args.commit], cwd=ROOT, check=True)
        try:
            then = {function(n) for n in collected(tree)}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
    wanted = {RENAMED.get(f, f) for f in then}
    now = collected(ROOT)
    gone = sorted(wanted - {function(n) for n in now})
    selected = [n for n in now if function(n) in wanted]
    args.ids.write_text("\n".join(selected) + "\n")
    print(f"{args.commit}: {len(then)} test functions; today {len(selected)} node ids of them", flush=True)
    if gone:
        print("not found today:", *gone, sep="\n  ", flush=True)
    env = {**os.environ, "KEISEI_PERF_TEST_EXTRAS": "required"}
    start = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-rs", "-q", "-p", "no:cacheprovider", *selected]
    proc = subprocess.run(command, cwd=ROOT, env=env, check=False)
    print(f"wall {time.perf_counter() - start:.1f} s, exit {proc.returncode}")
    raise SystemExit(proc.returncode)


if __name__ == "__main__":
    main()
