"""The baseline store: layout, atomic and locked writes, validation that never touches the file."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from pytest_keisei_perf.baseline import MAX_RUNS, SCHEMA_VERSION, BaselineError, BaselineStore, machine_key

FACTS = {"cpu_model": "Test CPU 9000", "cpu_count": 2, "machine": "x86_64", "torch": "2.13.0", "threads": 1}


def _run(value: float = 1e-3) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-25T00:00:00Z",
        "git_commit": None,
        "device": "cpu",
        "compile_kwargs": {"backend": "eager"},
        "speedup": None,
        "reference_samples_s": [1e-4, 1e-4],
        "modes": {"eager": {"samples_s": [value, value], "graph_count": None}},
    }


def _store(tmp_path: Path) -> BaselineStore:
    key, facts = machine_key(FACTS)
    return BaselineStore(tmp_path / "baselines", key, facts)


def test_machine_key_ignores_volatile_facts_and_honours_a_name() -> None:
    key, facts = machine_key({**FACTS, "hostname": "a", "load_average": [1, 2, 3]})
    assert key == machine_key({**FACTS, "hostname": "b"})[0]
    assert key.startswith("test-cpu-9000-")
    assert "hostname" not in facts
    assert machine_key({**FACTS, "threads": 2})[0] != key
    assert machine_key({**FACTS, "torch": "2.14.0"})[0] != key
    named, named_facts = machine_key(FACTS, "CI runner (x64)")
    assert named.startswith("ci-runner-x64-")
    assert named_facts == {"name": "CI runner (x64)", "torch": "2.13.0", "threads": 1}
    assert machine_key({**FACTS, "cpu_model": "Other"}, "CI runner (x64)")[0] == named


def test_replace_runs_writes_sorted_versioned_json_and_spares_other_benchmarks(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.replace_runs({"t.py::a": [_run()], "t.py::b": [_run()]})
    store.replace_runs({"t.py::a": [_run(2e-3)] * 3})
    text = store.path.read_text()
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["machine"]["cpu_model"] == "Test CPU 9000"
    assert len(data["benchmarks"]["t.py::a"]["runs"]) == 3
    assert data["benchmarks"]["t.py::b"]["runs"] == [_run()]
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert store.load()["t.py::a"][0]["modes"]["eager"]["samples_s"] == [2e-3, 2e-3]
    assert not list(store.path.parent.glob("*.tmp"))


def test_history_is_capped(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.replace_runs({"t.py::a": [_run(i + 1.0) for i in range(MAX_RUNS + 5)]})
    runs = store.load()["t.py::a"]
    assert len(runs) == MAX_RUNS
    assert runs[0]["modes"]["eager"]["samples_s"][0] == 6.0  # the oldest were dropped


def test_other_machines_are_listed_not_read(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.replace_runs({"t.py::a": [_run()]})
    other = BaselineStore(store.directory, "other-box-123", {})
    other.path.write_text("not even json")
    assert store.other_machines() == ["other-box-123"]
    assert "t.py::a" in store.load()


def _write_many(args: tuple[str, str, int]) -> None:
    directory, key, worker = args
    store = BaselineStore(Path(directory), key, FACTS)
    for i in range(10):
        store.replace_runs({f"t.py::w{worker}_{i}": [_run()]})


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_write_many, [(str(store.directory), store.key, w) for w in range(4)])
    assert len(store.load()) == 40


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        (
            '{"schema_version": 99, "benchmarks": {}}',
            "schema_version 99 is newer than this pytest-keisei-perf",
        ),
        ('{"schema_version": 0, "benchmarks": {}}', "unknown schema_version 0"),
        ('{"benchmarks": {}}', "missing or invalid schema_version"),
        ("[1, 2]", "expected a JSON object at the top level, got list"),
        (
            '{"schema_version": 1, "benchmarks": {"a": {"runs": {}}}}',
            "benchmarks['a'] must be an object with a 'runs' list",
        ),
        (
            json.dumps({"schema_version": 1, "benchmarks": {"a": {"runs": [_run(-1.0)]}}}),
            "holds -1.0; samples must be",
        ),
        (
            json.dumps({"schema_version": 1, "benchmarks": {"a": {"runs": [_run()]}}}).replace(
                "0.0001,", "NaN,", 1
            ),
            "NaN is not allowed",
        ),
    ],
)
def test_bad_files_raise_naming_file_and_problem_and_stay_untouched(
    tmp_path: Path, content: str, problem: str
) -> None:
    store = _store(tmp_path)
    store.directory.mkdir(parents=True)
    store.path.write_text(content)
    with pytest.raises(BaselineError) as excinfo:
        store.load()
    assert str(store.path) in str(excinfo.value)
    assert problem in str(excinfo.value)
    with pytest.raises(BaselineError):
        store.replace_runs({"t.py::new": [_run()]})
    assert store.path.read_text() == content
