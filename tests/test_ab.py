"""Head against base in one job (``--perf-compare-ref``): real git repositories, real fresh
processes on both sides, slowdowns orders of magnitude above any noise."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from pytest_keisei_perf import ab, duet, paired, simulate, stats
from pytest_keisei_perf.history import read_history

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


def _project(root: Path) -> None:
    """A committed project in ``root``: mypkg.work and a perf test that times it."""
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "mypkg").mkdir()
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "work.py").write_text(WORK.format(factor=1))
    (root / "tests").mkdir()
    (root / "tests" / "test_w.py").write_text(TEST)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")


@pytest.fixture
def repo(pytester: pytest.Pytester) -> pytest.Pytester:
    """A committed project: mypkg.work and a perf test that times it."""
    _project(pytester.path)
    return pytester


def test_a_slower_working_tree_fails_against_its_base(repo: pytest.Pytester) -> None:
    """In sequential pairs (the duet, the default, has its own test below)."""
    (repo.path / "mypkg" / "work.py").write_text(WORK.format(factor=30))  # 30x the work, uncommitted
    history = repo.path / "perf-history.jsonl"
    result = repo.runpytest_subprocess(
        *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2", "--perf-ab-max-pairs=2",
        f"--perf-history={history}", "--perf-ab-schedule=sequential",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*performance regression: tests/test_w.py::test_work [[]eager[]]: A/B against HEAD: *change +*"]
    )
    assert "duet" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*keisei-perf: 1 A/B summaries appended to *perf-history.jsonl*"])
    # the history keeps the change against REF, which needs no host identity to chain
    (entry,), problems = read_history(history)
    assert problems == []
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo.path, capture_output=True, text=True)
    assert (entry.kind, entry.benchmark_id, entry.extra["ref_commit"]) == (
        "ab", "tests/test_w.py::test_work", head.stdout.strip()
    )  # fmt: skip
    eager = entry.modes["eager"]
    assert eager.change is not None
    assert eager.change > 5
    assert eager.change_se is not None
    assert eager.change_se > 0


def test_duet_pairs_catch_a_slower_working_tree(repo: pytest.Pytester) -> None:
    """A real A/B in duet pairs (the default, asked for by name here): both sides' fresh processes at
    once on their own cores (on a machine with two cores or more; elsewhere the session says it
    fell back), and the verdict."""
    (repo.path / "mypkg" / "work.py").write_text(WORK.format(factor=30))  # 30x the work, uncommitted
    result = repo.runpytest_subprocess(
        *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2", "--perf-ab-max-pairs=3",
        "--perf-ab-schedule=duet",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    cores = duet.duet_cores(1)
    if isinstance(cores, str):
        result.stdout.fnmatch_lines(["*A/B: sequential pairs instead of a duet: *"])
        result.stdout.fnmatch_lines(["*performance regression: tests/test_w.py::test_work*paired over*"])
        return
    a, b = (duet.describe(c) for c in cores)
    result.stdout.fnmatch_lines(
        [
            f"*A/B: duet pairs: REF and the working tree at once, on {a} and {b}, swapped every pair*",
            f"*pair 1/2 (A on {a} with B on {b})*",
            f"*pair 2/2 (A on {b} with B on {a})*",
            "*performance regression: tests/test_w.py::test_work [[]eager[]]: A/B against HEAD: *change +*"
            "paired over * duet pairs*",
        ]
    )


@pytest.fixture(scope="module")
def identical_selection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """One A/B session of identical code over three tests: two at REF, one new, under
    --perf-require-baseline. Its project, exit code and output."""
    root = tmp_path_factory.mktemp("ab-selection")
    _project(root)
    (root / "tests" / "test_more.py").write_text(TEST.replace("test_work(", "test_other("))
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "a second test")
    (root / "tests" / "test_new.py").write_text(TEST.replace("test_work(", "test_fresh("))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=3",
         "--perf-ab-max-pairs=3", "--perf-threshold=10", "--perf-require-baseline"],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return root, proc.returncode, proc.stdout + proc.stderr


def test_identical_code_passes_and_nothing_is_stored(identical_selection: tuple[Path, int, str]) -> None:
    root, code, out = identical_selection
    assert code == pytest.ExitCode.OK, out
    pytest.LineMatcher(out.splitlines()).fnmatch_lines(
        [
            "*tests/test_w.py::test_work [[]eager[]]: A/B against HEAD: median * vs * at HEAD; change *, "
            "paired over 3 *pairs*",
        ]
    )
    assert not (root / "baselines").exists()
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=root, capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # the REF checkout is gone again


def test_one_process_per_side_per_pair_runs_the_whole_selection(
    identical_selection: tuple[Path, int, str],
) -> None:
    """Two tests at REF and one new: the sides are warmed once and each pair is one process per
    side over all three, not one per test (the cost of 12 processes per test before)."""
    _, code, out = identical_selection
    assert code == pytest.ExitCode.OK, out
    assert out.count("warming both sides") == 1
    for pair in (1, 2, 3):
        assert out.count(f"A/B 3 tests: pair {pair}/3") == 1
    assert "pair 4/" not in out
    for name in ("test_w.py::test_work", "test_more.py::test_other"):
        assert f"tests/{name} [eager]: A/B against HEAD: median" in out
    pytest.LineMatcher(out.splitlines()).fnmatch_lines(
        ["*test_fresh: new benchmark: it does not exist at HEAD; nothing to compare"]
    )


def test_a_test_that_does_not_exist_at_ref_is_a_new_benchmark(
    identical_selection: tuple[Path, int, str],
) -> None:
    """Not compared, and said so; --perf-require-baseline does not fail it: REF, not a stored
    baseline, is what it is compared with."""
    _, code, out = identical_selection
    assert code == pytest.ExitCode.OK, out
    pytest.LineMatcher(out.splitlines()).fnmatch_lines(
        [
            "keisei-perf: NOT COMPARED (new benchmark: not at the compared git ref): 1 benchmark(s), "
            "1 mode(s);*"
        ]
    )


def test_an_unclear_answer_takes_more_pairs_then_is_inconclusive_not_a_pass(repo: pytest.Pytester) -> None:
    """A 0.1% threshold is below anything three pairs of identical code can show: more pairs are
    taken, and the answer is inconclusive (failing under --perf-fail-inconclusive), never pass.

    Identical code still reads as a clear regression or improvement with probability alpha per
    side (that is what alpha means; at 0.05 this test once failed so in CI), so it runs at
    --perf-alpha=0.001: a 0.2% chance of the other answer instead of 10%."""
    result = repo.runpytest_subprocess(
        *FAST, "--perf-compare-ref=HEAD", "--perf-ab-pairs=2", "--perf-ab-max-pairs=3",
        "--perf-threshold=0.001", "--perf-alpha=0.001", "--perf-fail-inconclusive",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*A/B tests/test_w.py::test_work: unclear after 2 pairs; adding pairs, up to 3 "
            "(--perf-ab-max-pairs)",
            "*A/B tests/test_w.py::test_work: pair 3/3 *",
            "*test_work [[]eager[]]: A/B against HEAD: * paired over 3 *pairs, *inconclusive, not a pass: "
            "after 3 pairs it can detect only *, past the 0.1% threshold*(--perf-fail-inconclusive)",
            "keisei-perf: INCONCLUSIVE (compared, but the answer is unclear): 1 benchmark(s), 1 mode(s);*",
        ]
    )


def test_max_pairs_below_pairs_is_a_usage_error(repo: pytest.Pytester) -> None:
    result = repo.runpytest("--perf-compare-ref=HEAD", "--perf-ab-pairs=6", "--perf-ab-max-pairs=4")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-ab-max-pairs 4 is below --perf-ab-pairs 6*"])


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


def test_ref_side_may_load_compiled_kernels_from_the_shared_cache_in_the_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's default inductor cache lies under the working tree's .pytest_cache, and both
    sides share it: a kernel module loaded from there is generated code, not the project's."""
    tree = tmp_path / "tree"
    cache = tree / ".pytest_cache" / "keisei-perf" / "inductor"
    kernel = types.ModuleType("cabc123")
    kernel.__file__ = str(cache / "ab" / "cabc123.py")
    monkeypatch.setitem(sys.modules, "cabc123", kernel)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    with pytest.raises(ab.ABError, match="imported cabc123 from the working tree"):
        ab.check_imports(str(tree))  # no cache named: it is just a file in the tree
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    ab.check_imports(str(tree))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tree))  # a cache that is the whole tree exempts nothing
    with pytest.raises(ab.ABError, match="imported cabc123 from the working tree"):
        ab.check_imports(str(tree))


PLAN = ab.PairPlan(pairs=4, max_pairs=12, threshold=0.05, alpha=0.05)


def _pairs(a: tuple[float, ...], b: tuple[float, ...]) -> ab.PairedRuns:
    from pytest_keisei_perf.simulate import make_run

    return ab.PairedRuns(a=[make_run({"eager": v}) for v in a], b=[make_run({"eager": v}) for v in b])


def test_paired_decisions_need_power_to_pass() -> None:
    runs = _pairs((0.0, 0.01, -0.01, 0.005), (0.5, 0.512, 0.492, 0.504))
    paired, raw = ab.decide_pairs(runs, "eager", PLAN)
    assert paired.decision.status == "regression"
    assert raw == pytest.approx(0.6487, rel=0.01)  # exp(0.5) - 1
    assert ab.is_clear(runs, ["eager"], PLAN)
    noisy = _pairs((0.0, 0.01, -0.01, 0.005), (0.03, -0.03, 0.02, -0.025))
    assert not ab.is_clear(noisy, ["eager"], PLAN)
    verdicts, failures = ab.verdicts_for("t::b", runs, ["eager"], PLAN, ref="main", bh=lambda p: (True, 1))
    assert verdicts["eager"].status == "regression"
    assert "A/B against main" in failures[0]
    # a slowdown BH does not confirm is not a pass either: nothing showed it is below the threshold
    verdicts, failures = ab.verdicts_for("t::b", runs, ["eager"], PLAN, ref="main", bh=lambda p: (False, 8))
    assert verdicts["eager"].status == "inconclusive"
    assert "not significant after Benjamini-Hochberg over 8 comparisons" in verdicts["eager"].message
    assert failures == []
    heard: list[float] = []
    verdicts, _ = ab.verdicts_for(
        "t::b", noisy, ["eager"], PLAN, ref="main", bh=lambda p: (heard.append(p), (False, 1))[1]
    )
    assert len(heard) == 1  # an unclear comparison still counts in the correction
    assert verdicts["eager"].status == "inconclusive"
    assert "inconclusive, not a pass: after 4 pairs it can detect only" in verdicts["eager"].message
    quiet = _pairs((0.0, 0.01, -0.01, 0.005, 0.0), (0.002, 0.008, -0.012, 0.004, 0.001))
    verdicts, _ = ab.verdicts_for("t::b", quiet, ["eager"], PLAN, ref="main", bh=lambda p: (False, 1))
    assert verdicts["eager"].status == "pass"


def test_a_wild_pair_is_set_aside_and_named() -> None:
    steady = (0.0, 0.01, -0.01, 0.005, -0.004, 0.002)
    runs = _pairs(steady, (*(v + 0.003 for v in steady[:-1]), 0.9))  # one process met a neighbour
    seen, _ = ab.decide_pairs(runs, "eager", PLAN)
    assert seen.wild == pytest.approx((math.expm1(0.898),))
    assert seen.powered_pass
    verdicts, _ = ab.verdicts_for("t::b", runs, ["eager"], PLAN, ref="main", bh=lambda p: (False, 1))
    assert "paired over 6 pairs, 1 wild pair(s) set aside (+145.5%)" in verdicts["eager"].message
    # the same pairs through a plain t-test: the wild pair alone would make them unclear
    differences = [b - a for a, b in zip(steady, (*(v + 0.003 for v in steady[:-1]), 0.9), strict=True)]
    plain = stats.compare_paired(differences, threshold=0.05, alpha=seen.level, confidence=seen.confidence)
    assert plain.change_ci is not None
    assert plain.change_ci[1] > 0.05


def test_the_per_look_level_keeps_false_alarms_at_alpha_across_looks() -> None:
    """Seeded: no-change comparisons looked at after every pair from 5 to 12, thresholds off.
    At the per-look level some look crosses in about alpha of them; at alpha itself, far more."""
    level = paired.per_look_level(0.05, 5, 12)
    assert 0.005 < level < 0.05
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 0.03, size=(2500, 12))
    crossed_at = {level: 0, 0.05: 0}
    for row in x:
        for nominal in crossed_at:
            decisions = (stats.compare_paired(row[:n], threshold=-1.0, alpha=nominal) for n in range(5, 13))
            crossed_at[nominal] += any(d.status == "regression" for d in decisions)
    assert crossed_at[level] / 2500 == pytest.approx(0.05, abs=0.013)
    assert crossed_at[0.05] / 2500 > 0.08  # looking after every pair at alpha inflates it


def test_the_stopping_rule_never_passes_without_power() -> None:
    """Seeded A/B sessions through the real stopping rule and verdicts (pairs 5 to 12, 5%
    threshold): identical code never fails, +10% is nearly always caught, and a pass is only ever
    reported with an upper bound and a detectable effect below the threshold."""
    plan = ab.PairPlan(pairs=5, max_pairs=12, threshold=0.05, alpha=0.05)
    rng = np.random.default_rng(5)
    same = [simulate.ab_comparison(plan, rng, 0.0, noise=0.02, wild_share=0.2) for _ in range(200)]
    slower = [simulate.ab_comparison(plan, rng, 0.10, noise=0.02, wild_share=0.2) for _ in range(200)]
    at_threshold = [simulate.ab_comparison(plan, rng, 0.05, noise=0.02) for _ in range(300)]
    assert sum(status == "regression" for status, _ in same) <= 4
    assert sum(status == "regression" for status, _ in slower) >= 190
    assert sum(status == "pass" for status, _ in at_threshold) / 300 <= 0.08  # alpha, with sampling error
    assert all(5 <= taken <= 12 for _, taken in same + slower + at_threshold)
    assert max(taken for _, taken in same) > 5  # unclear answers took more pairs
