"""The JSON Schemas of the three file formats (docs/reference/schemas) against what the plugin
really writes: the committed baselines and their history, a --perf-json report of a real
session, and history lines of every kind; and each schema refuses what a reader refuses."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from extras import need

from pytest_keisei_perf.history import HistoryEntry, ModeSummary

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "reference" / "schemas"


def _validator(name: str) -> Any:
    jsonschema = need("jsonschema")
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(name: str, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in _validator(name).iter_errors(document)]


def test_the_committed_baselines_and_their_history_validate() -> None:
    files = sorted((ROOT / "baselines").glob("*.json"))
    assert files
    for path in files:
        assert _errors("baseline", json.loads(path.read_text())) == [], path
    for path in sorted((ROOT / "baselines").glob("*.history.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert _errors("history-line", json.loads(line)) == [], f"{path}:{number}"


def test_a_real_sessions_report_validates(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import torch

        def test_model(perf):
            perf.benchmark(torch.nn.Linear(8, 4).eval(), torch.randn(3, 8))
        """
    )
    result = pytester.runpytest(
        "--perf-budget=0.02", "--perf-rounds=5", "--perf-compile-backend=eager", "-p", "no:cacheprovider",
        "--perf-json=report.json",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "report.json").read_text())
    assert {m for r in report["results"] for m in r["modes"]} == {"eager", "compiled"}
    assert _errors("report", report) == []
    broken = copy.deepcopy(report)
    broken["results"][0]["verdicts"]["eager"]["status"] = "fine"
    assert any("'fine' is not one of" in e for e in _errors("report", broken))


@pytest.mark.parametrize("kind", ["baseline", "run", "ab"])
def test_history_lines_of_every_kind_validate_and_an_ab_line_needs_its_change(kind: str) -> None:
    extra = {"change": 0.02, "change_se": 0.01} if kind == "ab" else {}
    entry = HistoryEntry(
        kind=kind, benchmark_id="t.py::test_a", machine="box", timestamp="2026-12-02T00:00:00Z", runs=3,
        modes={"eager": ModeSummary(median_s=1e-3, statistic=0.1, **extra)},
    )  # fmt: skip
    line = entry.to_json()
    assert _errors("history-line", line) == []
    if kind == "ab":
        del line["modes"]["eager"]["change_se"]
        assert _errors("history-line", line)  # the reader refuses it too
        with pytest.raises(ValueError, match="change_se"):
            HistoryEntry.from_json(line)


def test_the_baseline_schema_refuses_a_non_positive_sample() -> None:
    path = sorted((ROOT / "baselines").glob("*.json"))[0]
    data = json.loads(path.read_text())
    bench = next(iter(data["benchmarks"].values()))
    mode = next(iter(bench["runs"][0]["modes"].values()))
    mode["samples_s"][0] = 0.0
    assert any("samples_s/0" in e for e in _errors("baseline", data))
