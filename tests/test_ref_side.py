"""The REF side of ``--perf-compare-ref`` when REF is not what the working tree expects: a test
that fails there is an error, never a "new benchmark"; an unknown or unreachable ref says why; a
killed session's checkout does not outlive it. Real git repositories and real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pytest_keisei_perf import worktree

FAST = ("--perf-budget=0.02", "--perf-rounds=5", "--perf-modes=eager", "-p", "no:cacheprovider")

TEST = """
import pytest

@pytest.mark.perf
def test_work(perf):
{body}    perf.benchmark(lambda: sum(range(2000)))
"""


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def _commit(pytester: pytest.Pytester, body: str) -> None:
    """A project whose committed perf test has ``body`` before its benchmark; the working tree's
    test is the plain one, uncommitted."""
    (pytester.path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (pytester.path / "tests").mkdir()
    test = pytester.path / "tests" / "test_w.py"
    test.write_text(TEST.format(body=body))
    _git(pytester.path, "init", "-q")
    _git(pytester.path, "add", "-A")
    _git(pytester.path, "commit", "-q", "-m", "base")
    test.write_text(TEST.format(body=""))


def _worktrees(path: Path) -> list[str]:
    return [line for line in _git(path, "worktree", "list").splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("    import no_such_module_at_ref\n", "*ModuleNotFoundError*no_such_module_at_ref*"),
        ("    raise RuntimeError('broken at base')\n", "*RuntimeError: broken at base*"),
        ("    pytest.skip('not at base')\n", "*1 skipped*"),
    ],
    ids=["import-error", "raises", "skipped"],
)
def test_a_test_that_fails_at_ref_is_an_error_not_a_new_benchmark(
    pytester: pytest.Pytester, body: str, said: str
) -> None:
    _commit(pytester, body)
    result = pytester.runpytest_subprocess(
        *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2", "--perf-require-baseline"
    )
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    assert "new benchmark" not in out
    result.stdout.fnmatch_lines(
        ["*A/B against HEAD failed: the test exists at HEAD, but its process there failed*", said]
    )


def test_a_test_absent_from_a_file_at_ref_is_new_as_collected_there(pytester: pytest.Pytester) -> None:
    _commit(pytester, "")
    test = pytester.path / "tests" / "test_w.py"
    test.write_text(test.read_text() + TEST.format(body="").replace("test_work(", "test_added("))
    result = pytester.runpytest_subprocess(
        *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2", "tests/test_w.py::test_added"
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_added: new benchmark: it does not exist at HEAD; nothing to compare"])


def test_an_ini_file_only_in_the_working_tree_leaves_ref_its_own_configuration(
    pytester: pytest.Pytester,
) -> None:
    _commit(pytester, "")
    (pytester.path / "pytest.ini").write_text("[pytest]\nperf_threshold = 10\n")  # not committed
    result = pytester.runpytest_subprocess(*FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, out
    result.stdout.fnmatch_lines(
        [
            "*pytest.ini does not exist at HEAD; REF runs under its own configuration*",
            "*test_work [[]eager[]]: A/B against HEAD: median * vs * at HEAD*",
        ]
    )


def test_an_unknown_ref_says_it_is_not_in_this_clone(pytester: pytest.Pytester) -> None:
    _commit(pytester, "")
    result = pytester.runpytest_subprocess(*FAST, "--perf-compare-ref=no-such-branch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--perf-compare-ref no-such-branch: 'no-such-branch' is not a commit in this clone"]
    )


def test_a_shallow_clone_is_told_how_to_fetch_the_base(pytester: pytest.Pytester, tmp_path: Path) -> None:
    _commit(pytester, "")
    _git(pytester.path, "commit", "-q", "--allow-empty", "-m", "second")
    shallow = tmp_path / "shallow"
    _git(tmp_path, "clone", "-q", "--depth", "1", pytester.path.as_uri(), str(shallow))
    with pytest.raises(worktree.ABError, match=r"shallow clone.*fetch-depth: 0.*git fetch origin HEAD~1"):
        worktree.RefCheckout("HEAD~1", shallow)


def test_sigterm_removes_the_ref_checkout(pytester: pytest.Pytester) -> None:
    _commit(pytester, "    import time; time.sleep(60)\n")
    before = set(Path(tempfile.gettempdir()).glob("keisei-perf-ref-*"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(_worktrees(pytester.path)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert len(_worktrees(pytester.path)) == 2, "the A/B run never made its REF checkout"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert len(_worktrees(pytester.path)) == 1, out
    assert set(Path(tempfile.gettempdir()).glob("keisei-perf-ref-*")) <= before


def test_a_checkout_whose_session_died_is_swept_at_the_next_start(pytester: pytest.Pytester) -> None:
    _commit(pytester, "")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    assert dead.stdout.strip().isdigit()
    parent = pytester.path / "keisei-perf-ref-dead"
    parent.mkdir()
    (parent / "owner.pid").write_text(dead.stdout.strip())
    _git(pytester.path, "worktree", "add", "--detach", str(parent / "ref"), "HEAD")
    alive = pytester.path / "keisei-perf-ref-alive"
    alive.mkdir()
    (alive / "owner.pid").write_text(str(os.getpid()))
    _git(pytester.path, "worktree", "add", "--detach", str(alive / "ref"), "HEAD")
    assert len(_worktrees(pytester.path)) == 3

    removed = worktree.sweep_stale_checkouts(pytester.path)

    assert [p.parent.name for p in removed] == ["keisei-perf-ref-dead"]
    assert not parent.exists()
    assert alive.exists()
    assert len(_worktrees(pytester.path)) == 2
