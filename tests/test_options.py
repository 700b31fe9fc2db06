"""pytest conventions of the options: typed ini twins (native ``[tool.pytest]`` tables hold
numbers and booleans), hidden internals really hidden, help that says what an option does."""

from __future__ import annotations

import pytest

BUSY = """
def test_busy(perf):
    perf.benchmark(sum, range(200))
"""

PYTEST_9 = tuple(int(p) for p in pytest.__version__.split(".")[:2]) >= (9, 0)


@pytest.mark.parametrize(
    "table",
    [
        pytest.param(
            "[tool.pytest]\nperf_threshold = 0.5\nperf_rounds = 7\nperf_budget = 0.02\n"
            "perf_modes = 'eager'\n",
            id="native-table",
            marks=pytest.mark.skipif(not PYTEST_9, reason="native [tool.pytest] needs pytest 9"),
        ),
        pytest.param(
            "[tool.pytest.ini_options]\nperf_threshold = 0.5\nperf_rounds = '7'\nperf_budget = '0.02'\n"
            "perf_modes = 'eager'\n",
            id="ini-options-table",
        ),
    ],
)
def test_typed_ini_values_are_read_from_either_pyproject_table(pytester: pytest.Pytester, table: str) -> None:
    pytester.makepyprojecttoml(table)
    pytester.makepyfile(BUSY)
    result = pytester.runpytest("-p", "no:cacheprovider", "--perf-json=report.json")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["keisei-perf: modes eager, threads 1, budget 0.02 s/mode, threshold 50%, *"])


@pytest.mark.skipif(not PYTEST_9, reason="native [tool.pytest] needs pytest 9")
def test_a_wrong_typed_native_value_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.pytest]\nperf_threshold = 'high'\n")
    pytester.makepyfile(BUSY)
    result = pytester.runpytest("-p", "no:cacheprovider", "--perf-disable")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*keisei-perf: invalid perf_threshold in the ini file: expected float*"])


def test_help_hides_the_worker_option_and_types_the_ini_twins(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    assert "--perf-worker" not in out
    assert "SUPPRESS" not in out
    result.stdout.fnmatch_lines(
        [
            "*--perf-machine=NAME*a label for this machine's baseline key*",
            "*perf_threshold (float):*",
            "*perf_rounds (int):*",
            "*perf_fail_inconclusive (bool):*",
        ]
    )


def test_a_perf_test_named_by_node_id_runs_despite_addopts_deselecting_perf(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini('[pytest]\naddopts = -m "not perf"\n')
    pytester.makepyfile(test_named="import pytest\n\n@pytest.mark.perf\n" + BUSY.strip() + "\n")
    unnamed = pytester.runpytest("-p", "no:cacheprovider", "--perf-disable")
    unnamed.assert_outcomes(deselected=1)
    named = pytester.runpytest("-p", "no:cacheprovider", "--perf-disable", "test_named.py::test_busy")
    named.assert_outcomes(passed=1)
    # a -m on the command line itself still rules
    told = pytester.runpytest(
        "-p", "no:cacheprovider", "--perf-disable", "-m", "not perf", "test_named.py::test_busy"
    )
    told.assert_outcomes(deselected=1)


def test_the_items_keyword_sets_what_throughput_counts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest, torch

@pytest.mark.perf(items=4096, modes=["eager"])
def test_tokens(perf):
    result = perf.benchmark(torch.sin, torch.ones(8, 3))
    assert result.items == 4096  # not the leading dimension, 8
    assert result.throughput("eager") == pytest.approx(4096 / result.modes["eager"].median_s)

@pytest.mark.perf(modes=["eager"])
def test_batch(perf):
    assert perf.benchmark(torch.sin, torch.ones(8, 3)).items == 8
"""
    )
    pytester.makepyfile(
        test_bad="import pytest\n\n@pytest.mark.perf(items=0)\ndef test_bad(perf):\n    pass\n"
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--perf-budget=0.02", "--perf-rounds=5", "--continue-on-collection-errors"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*items*must be >= 1, got 0*"])
