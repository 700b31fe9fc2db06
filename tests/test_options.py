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
    assert result.ret != pytest.ExitCode.OK
    assert "perf_threshold" in result.stderr.str() + result.stdout.str()


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
