"""Head against base in one job (``--perf-compare-ref``): real git repositories, real fresh
processes on both sides, slowdowns orders of magnitude above any noise."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from pytest_keisei_perf import ab

FAST = ("--perf-budget=0.02", "--perf-rounds=5", "--perf-modes=eager", "-p", "no:cacheprovider")

WORK = "def work(n=2000):\n    return sum(range(n * {factor}))\n"
TEST = """
import pytest
from mypkg.work import work

@pytest.mark.perf
def test_work(perf):
    perf.benchmark(work)
"""


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


@pytest.fixture
def repo(pytester: pytest.Pytester) -> pytest.Pytester:
    """A committed project: mypkg.work and a perf test that times it."""
    (pytester.path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (pytester.path / "mypkg").mkdir()
    (pytester.path / "mypkg" / "__init__.py").write_text("")
    (pytester.path / "mypkg" / "work.py").write_text(WORK.format(factor=1))
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_w.py").write_text(TEST)
    _git(pytester.path, "init", "-q")
    _git(pytester.path, "add", "-A")
    _git(pytester.path, "commit", "-q", "-m", "base")
    return pytester


def test_identical_code_passes_and_nothing_is_stored(repo: pytest.Pytester) -> None:
    result = repo.runpytest_subprocess(
        *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=3", "--perf-threshold=10"
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*tests/test_w.py::test_work [[]eager[]]: A/B against HEAD: median * vs * at HEAD; change *, "
            "paired over 3 pairs*",
        ]
    )
    assert not (repo.path / "baselines").exists()
    worktrees = subprocess.run(
        ["git", "worktree", "list"], cwd=repo.path, capture_output=True, text=True
    ).stdout
    assert len(worktrees.strip().splitlines()) == 1  # the REF checkout is gone again


def test_a_slower_working_tree_fails_against_its_base(repo: pytest.Pytester) -> None:
    (repo.path / "mypkg" / "work.py").write_text(WORK.format(factor=30))  # 30x the work, uncommitted
    result = repo.runpytest_subprocess(*FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=4")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*performance regression: tests/test_w.py::test_work [[]eager[]]: A/B against HEAD: *change +*"]
    )


def test_a_test_that_does_not_exist_at_ref_is_a_new_benchmark(repo: pytest.Pytester) -> None:
    (repo.path / "tests" / "test_new.py").write_text(TEST.replace("test_work(", "test_fresh("))
    result = repo.runpytest_subprocess(
        *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2", "--perf-require-baseline", "tests/test_new.py"
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "keisei-perf: NOT COMPARED (new benchmark: not at the compared git ref): 1 benchmark(s), "
            "1 mode(s);*"
        ]
    )


def test_ref_side_must_not_import_the_working_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    (tree / "mypkg").mkdir(parents=True)
    shadow = types.ModuleType("mypkg_shadow")
    shadow.__file__ = str(tree / "mypkg" / "__init__.py")
    monkeypatch.setitem(sys.modules, "mypkg_shadow", shadow)
    with pytest.raises(ab.ABError, match=r"the REF side imported mypkg_shadow from the working tree"):
        ab.check_imports(str(tree))
    monkeypatch.delitem(sys.modules, "mypkg_shadow")
    ab.check_imports(str(tree))  # nothing from there: fine


def test_paired_decisions_and_early_stop() -> None:
    from pytest_keisei_perf.simulate import make_run

    runs = ab.PairedRuns(
        a=[make_run({"eager": v}) for v in (0.0, 0.01, -0.01, 0.005)],
        b=[make_run({"eager": v + 0.5}) for v in (0.0, 0.012, -0.008, 0.004)],
    )
    decision, raw = ab.decide_pairs(runs, "eager", threshold=0.05, alpha=0.05)
    assert decision.status == "regression"
    assert raw == pytest.approx(0.6487, rel=0.01)  # exp(0.5) - 1
    assert ab.is_clear(runs, ["eager"], threshold=0.05, alpha=0.05)
    same = ab.PairedRuns(a=runs.a, b=[make_run({"eager": v}) for v in (0.03, -0.03, 0.02, -0.025)])
    assert not ab.is_clear(same, ["eager"], threshold=0.05, alpha=0.05)
    verdicts, failures = ab.verdicts_for(
        "t::b", runs, ["eager"], ref="main", threshold=0.05, alpha=0.05, bh=lambda p: (True, 1), nodeid="t"
    )
    assert verdicts["eager"].status == "regression"
    assert failures
    assert "A/B against main" in failures[0]
    verdicts, failures = ab.verdicts_for(
        "t::b", runs, ["eager"], ref="main", threshold=0.05, alpha=0.05, bh=lambda p: (False, 8), nodeid="t"
    )
    assert verdicts["eager"].status == "pass"
    assert "not significant after Benjamini-Hochberg over 8 comparisons" in verdicts["eager"].message
    assert failures == []
    heard: list[float] = []
    ab.verdicts_for(
        "t::b", same, ["eager"], ref="main", threshold=0.05, alpha=0.05,
        bh=lambda p: (heard.append(p), (False, 1))[1], nodeid="t",
    )  # fmt: skip
    assert len(heard) == 1  # a passing comparison still counts in the correction
