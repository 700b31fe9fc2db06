"""The REF side of ``--perf-compare-ref`` when REF is not what the working tree expects: a test
that fails there is an error, never a "new benchmark"; an unknown or unreachable ref says why; a
killed session's checkout does not outlive it. Real git repositories and real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
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


def _commit(root: Path, bodies: Mapping[str, str]) -> None:
    """A project whose committed perf test ``tests/test_<name>.py`` has ``bodies[name]`` before
    its benchmark; the working tree's tests are the plain ones, uncommitted."""
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "tests").mkdir()
    for name, body in bodies.items():
        (root / "tests" / f"test_{name}.py").write_text(TEST.format(body=body))
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")
    for name in bodies:
        (root / "tests" / f"test_{name}.py").write_text(TEST.format(body=""))


def _worktrees(path: Path) -> list[str]:
    return [line for line in _git(path, "worktree", "list").splitlines() if line.strip()]


BROKEN_AT_REF = {
    "import": "    import no_such_module_at_ref\n",
    "raises": "    raise RuntimeError('broken at base')\n",
    "skipped": "    pytest.skip('not at base')\n",
}


@pytest.fixture(scope="module")
def ref_unlike_the_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    """One A/B session over a project whose REF differs from the working tree in every way these
    tests need (one run of REF and working tree per pair for all of them): three tests that fail,
    raise or skip at REF, a test added to a file REF has, and a pytest.ini only in the tree.
    Its exit code and output."""
    root = tmp_path_factory.mktemp("ref-side")
    _commit(root, {**BROKEN_AT_REF, "w": ""})
    added = TEST.format(body="").replace("test_work(", "test_added(")
    (root / "tests" / "test_w.py").write_text(TEST.format(body="") + added)
    (root / "pytest.ini").write_text("[pytest]\nperf_threshold = 10\n")  # not committed
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2"],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("import", "*ModuleNotFoundError*no_such_module_at_ref*"),
        ("raises", "*RuntimeError: broken at base*"),
        ("skipped", "*skipped there: Skipped: not at base"),
    ],
)
def test_a_test_that_fails_at_ref_is_an_error_not_a_new_benchmark(
    ref_unlike_the_tree: tuple[int, str], name: str, said: str
) -> None:
    """Each test's own words from the one REF process, not the process's last lines."""
    code, out = ref_unlike_the_tree
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert f"FAILED tests/test_{name}.py::test_work" in out
    assert not [line for line in out.splitlines() if f"test_{name}.py" in line and "new benchmark" in line]
    failure = out[out.index(f"tests/test_{name}.py::test_work: A/B against HEAD failed") :]
    failure = re.split(r"\n[_=]{3}", failure)[0]  # to the next section
    lines = pytest.LineMatcher(failure.splitlines())
    lines.fnmatch_lines(["*A/B against HEAD failed: the test exists at HEAD, but its process there failed*"])
    lines.fnmatch_lines([said])
    others = set(BROKEN_AT_REF) - {name}
    assert not any(f"tests/test_{other}.py:" in failure for other in others), failure


def test_a_test_absent_from_a_file_at_ref_is_new_as_collected_there(
    ref_unlike_the_tree: tuple[int, str],
) -> None:
    out = ref_unlike_the_tree[1]
    assert "PASSED tests/test_w.py::test_added" in out, out
    pytest.LineMatcher(out.splitlines()).fnmatch_lines(
        ["*test_added: new benchmark: it does not exist at HEAD; nothing to compare"]
    )


def test_an_ini_file_only_in_the_working_tree_leaves_ref_its_own_configuration(
    ref_unlike_the_tree: tuple[int, str],
) -> None:
    out = ref_unlike_the_tree[1]
    assert "PASSED tests/test_w.py::test_work" in out, out
    pytest.LineMatcher(out.splitlines()).fnmatch_lines(
        [
            "*pytest.ini does not exist at HEAD; REF runs under its own configuration*",
            "*test_work [[]eager[]]: A/B against HEAD: median * vs * at HEAD*",
        ]
    )


def test_an_unknown_ref_says_it_is_not_in_this_clone(pytester: pytest.Pytester) -> None:
    _commit(pytester.path, {"w": ""})
    result = pytester.runpytest_subprocess(*FAST, "--perf-compare-ref=no-such-branch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--perf-compare-ref no-such-branch: 'no-such-branch' is not a commit in this clone"]
    )


def test_a_shallow_clone_is_told_how_to_fetch_the_base(pytester: pytest.Pytester, tmp_path: Path) -> None:
    _commit(pytester.path, {"w": ""})
    _git(pytester.path, "commit", "-q", "--allow-empty", "-m", "second")
    shallow = tmp_path / "shallow"
    _git(tmp_path, "clone", "-q", "--depth", "1", pytester.path.as_uri(), str(shallow))
    with pytest.raises(worktree.ABError, match=r"shallow clone.*fetch-depth: 0.*git fetch origin HEAD~1"):
        worktree.RefCheckout("HEAD~1", shallow)


def _children(pid: int) -> dict[int, str]:
    """The live processes whose parent is ``pid`` and their command lines (Linux's /proc)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(stat.parent.name)] = cmdline
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_sigterm_removes_the_ref_checkout_and_stops_the_workers(pytester: pytest.Pytester) -> None:
    """SIGTERM while a pair runs: the REF checkout is removed and no worker process runs on (a
    worker waited for in a thread once outlived its session)."""
    _commit(pytester.path, {"w": "    import time; time.sleep(60)\n"})
    before = set(Path(tempfile.gettempdir()).glob("keisei-perf-ref-*"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    workers: dict[int, str] = {}
    while not workers and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        workers = {pid: cmd for pid, cmd in _children(proc.pid).items() if "--perf-worker" in cmd}
    assert workers, "the A/B run never started a worker"
    assert len(_worktrees(pytester.path)) == 2
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert len(_worktrees(pytester.path)) == 1, out
    assert set(Path(tempfile.gettempdir()).glob("keisei-perf-ref-*")) <= before
    assert [pid for pid in workers if _running(pid)] == [], workers


def test_sigterm_is_caught_before_the_checkout_exists_and_a_half_made_one_is_removed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI once sent SIGTERM between ``git worktree add`` and the handler: the process died with
    -15 and left its checkout. The handler now comes first, and an interrupted add is undone."""
    _commit(pytester.path, {"w": ""})
    real_git = worktree._git
    handlers = []

    def interrupted_add(args: list[str], cwd: Path) -> str:
        if args[:2] == ["worktree", "add"]:
            handlers.append(signal.getsignal(signal.SIGTERM))
            real_git(args, cwd)  # the checkout exists, as when the signal came
            raise KeyboardInterrupt("signal 15")
        return real_git(args, cwd)

    monkeypatch.setattr(worktree, "_git", interrupted_add)
    before = set(Path(tempfile.gettempdir()).glob("keisei-perf-ref-*"))
    checkout = worktree.RefCheckout("HEAD", pytester.path)
    outer = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a pytest run of its own
    try:
        with pytest.raises(KeyboardInterrupt):
            checkout.open()
        after = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, outer)
    assert len(handlers) == 1
    assert handlers[0] is not signal.SIG_DFL  # caught before git made the checkout
    assert after is signal.SIG_DFL  # and given back when the checkout was undone
    assert len(_worktrees(pytester.path)) == 1
    assert set(Path(tempfile.gettempdir()).glob("keisei-perf-ref-*")) <= before
    assert checkout.folder is None


def test_a_checkout_whose_session_died_is_swept_at_the_next_start(pytester: pytest.Pytester) -> None:
    _commit(pytester.path, {"w": ""})
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
