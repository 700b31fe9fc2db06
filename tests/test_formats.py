"""The JSON Schemas of the three file formats (shipped in pytest_keisei_perf/schemas, published
in docs/reference/schemas) against what the plugin really writes: the committed baselines and
their history, a --perf-json report of a real session, and history lines of every kind; and the
plugin's own validator (pytest_keisei_perf.formats) against the jsonschema reference
implementation on those files and on a corpus of broken copies of them."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from extras import need

from pytest_keisei_perf import formats
from pytest_keisei_perf.history import HistoryEntry, ModeSummary

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "pytest_keisei_perf" / "schemas"


@functools.cache
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


# -- the plugin's validator against the reference implementation -----------------------------------
#: Objects the formats leave open (machine facts, settings): their insides are not mutated.
_FREE_FORM = frozenset({"machine", "settings", "compile_kwargs", "accuracy"})


def _mutations(document: Any) -> list[tuple[str, Any]]:
    """Broken (and some still valid) copies of ``document``: every object loses each key in turn,
    and every value is replaced by values of other types and by edge numbers."""
    replacements: list[Any] = [None, True, 0, -1, 1.5, 2.0, "x", "", [], [0.0], {}, "warm", "ab"]
    out: list[tuple[str, Any]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        children = (
            node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        )
        for key, child in children:
            here = (*path, key)
            if isinstance(node, dict):
                out.append((f"drop {here}", _edited(document, here, None, drop=True)))
            out.extend((f"{here} = {value!r}", _edited(document, here, value)) for value in replacements)
            if key not in _FREE_FORM:
                walk(child, here)

    walk(document, ())
    return out


def _edited(document: Any, path: tuple[Any, ...], value: Any, *, drop: bool = False) -> Any:
    copied = copy.deepcopy(document)
    node = copied
    for key in path[:-1]:
        node = node[key]
    if drop:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copied


def _small_baseline() -> Any:
    """The first benchmark of a committed baseline with its first run, whole."""
    data = json.loads(sorted((ROOT / "baselines").glob("*.json"))[0].read_text())
    bench_id, entry = next(iter(data["benchmarks"].items()))
    run = entry["runs"][0]
    run["modes"] = {m: {**facts, "samples_s": facts["samples_s"][:2]} for m, facts in run["modes"].items()}
    run["reference_samples_s"] = run["reference_samples_s"][:2]
    return {**data, "benchmarks": {bench_id: {"runs": [run]}}}


def _small_report() -> Any:
    verdict = {"status": "pass", "message": "m", "change": 0.01, "change_ci": [-0.01, 0.03], "p_value": 0.4}
    result = {
        "nodeid": "t.py::a", "benchmark_id": "t.py::a", "name": "", "device": "cpu", "threads": 1,
        "failures": [], "disabled": False, "speedup_ci": [1.1, 1.3], "reference_samples_s": [1e-3],
        "modes": {"eager": {"samples_s": [1e-3], "median_s": 1e-3, "compile_cache": None, "fallback": False}},
        "verdicts": {"eager": verdict},
    }  # fmt: skip
    return {"schema_version": 1, "machine": {}, "settings": {}, "results": [result]}


def _small_history_line() -> Any:
    return HistoryEntry(
        kind="ab", benchmark_id="t.py::a", machine="box", timestamp="2026-12-02T00:00:00Z", runs=3,
        modes={"eager": ModeSummary(median_s=1e-3, statistic=0.1, change=0.02, change_se=0.01)},
        extra={"ref_commit": "abc"},
    ).to_json()  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "document"),
    [("baseline", _small_baseline()), ("report", _small_report()), ("history-line", _small_history_line())],
)
def test_the_plugins_validator_agrees_with_jsonschema(kind: formats.Format, document: Any) -> None:
    assert formats.problems(kind, document) == []
    corpus = _mutations(document)
    refused = 0
    for label, broken in corpus:
        ours = formats.problems(kind, broken)
        reference = _errors(kind, broken)
        assert bool(ours) == bool(reference), f"{label}: ours {ours}, jsonschema {reference}"
        refused += bool(ours)
    assert 0 < refused < len(corpus)  # both answers occur: neither validator can pass by saying one


def test_a_schema_keyword_the_validator_does_not_check_is_refused() -> None:
    for kind in formats.FORMATS:
        formats.check_supported(formats.schema(kind), kind)  # the shipped ones pass
    with pytest.raises(formats.SchemaError, match=r"\['pattern'\]"):
        formats.check_supported({"properties": {"id": {"type": "string", "pattern": "^t"}}}, "test")
    with pytest.raises(formats.SchemaError, match="not a local"):
        formats.check_supported({"$ref": "other.json#/x"}, "test")
