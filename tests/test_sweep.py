"""``perf.sweep``: one compiled object over several shapes, first calls timed, recompiles
counted per shape, and a storm failed with dynamo's reason."""

from __future__ import annotations

import json

import pytest

from pytest_keisei_perf.sweep import ShapeCompile, storm_failure

FAST = ("--perf-budget=0.05", "--perf-rounds=5", "-p", "no:cacheprovider")

SWEEPS = """
import pytest
import torch

def net(x):
    return torch.relu(x @ x.T).sum(-1)

SHAPES = {f"b{n}": (torch.randn(n, 8),) for n in (4, 16, 64)}

@pytest.mark.perf(compile={"backend": "eager", "dynamic": False}, max_recompiles=1)
def test_storm(perf):
    perf.sweep(net, SHAPES)

@pytest.mark.perf(compile={"backend": "eager", "dynamic": True}, max_recompiles=0)
def test_dynamic(perf):
    result = perf.sweep(net, SHAPES)
    assert [result.modes[f"compiled[{s}]"].recompiles for s in SHAPES] == [0, 0, 0]
    assert all(result.modes[f"compiled[{s}]"].compile_time_s > 0 for s in SHAPES)
    assert set(result.speedups) == {f"compiled[{s}]" for s in SHAPES}
    assert result.accuracy.checked and result.accuracy.passed

def test_not_a_mapping(perf):
    perf.sweep(net, [torch.ones(2)])
"""


def test_a_storm_fails_naming_shapes_and_reason_and_dynamic_shapes_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sweeps=SWEEPS)
    report = pytester.path / "perf.json"
    result = pytester.runpytest(*FAST, f"--perf-json={report}")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*test_storm: 2 recompile(s) over the sweep, more than max_recompiles=1: shapes b16, b64 "
            "compiled new graphs (dynamo: *size mismatch at index 0. expected 4, actual 16*",
            "*test_not_a_mapping: perf.sweep() needs a non-empty mapping of label -> argument tuple*",
            "test_dynamic*compiled[[]b64[]]*",
        ]
    )
    data = json.loads(report.read_text())
    storm = next(r for r in data["results"] if r["benchmark_id"].endswith("test_storm"))
    assert set(storm["modes"]) == {f"{m}[b{n}]" for m in ("eager", "compiled") for n in (4, 16, 64)}
    assert [storm["modes"][f"compiled[b{n}]"]["recompiles"] for n in (4, 16, 64)] == [0, 1, 1]
    assert storm["compile_kwargs"]["sweep"] == "b4,b16,b64"


def test_the_first_shape_compiles_and_later_ones_recompile() -> None:
    shapes = [ShapeCompile("b1", 2.0, 1), ShapeCompile("b4", 0.5, 1), ShapeCompile("b16", 0.01, 0)]
    assert storm_failure("t", shapes, [], limit=1) is None
    message = storm_failure("t", shapes, ["a", "b", "c", "d", "a"], limit=0, dynamic=True)
    assert message is not None
    assert message.startswith("t: 1 recompile(s) over the sweep, more than max_recompiles=0: shapes b4")
    assert "(dynamo: a; b; c; and 1 more)" in message
    assert "dynamic=True still guards sizes" in message
    assert storm_failure("t", shapes, [], limit=None) is None
