"""The baseline store: layout, atomic and locked writes, validation that never touches the file."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_keisei_perf.baseline import (
    MAX_RUNS,
    SCHEMA_VERSION,
    BaselineError,
    BaselineStore,
    fact_differences,
    machine_key,
)
from pytest_keisei_perf.machine import cpu_facts, installed_version

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


def _file_with(**changes: Any) -> str:
    """A baseline file of one run with ``changes`` to the run (``mode_<field>`` to its mode)."""
    run = _run()
    for name, value in changes.items():
        if name.startswith("mode_"):
            run["modes"]["eager"][name.removeprefix("mode_")] = value
        else:
            run[name] = value
    return json.dumps({"schema_version": 1, "machine": {}, "benchmarks": {"a": {"runs": [run]}}})


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
    assert named_facts["name"] == "CI runner (x64)"
    assert named_facts["cpu_model"] == "Test CPU 9000"  # a name labels the key, never hides the hardware
    assert machine_key({**FACTS, "cpu_model": "Other"}, "CI runner (x64)")[0] != named


def test_hosts_with_one_cpu_string_get_different_keys() -> None:
    """The trust issue: two "Intel(R) Xeon(R) Processor" hosts, family 6 models 143 and 207."""
    xeon = {
        **FACTS,
        "cpu_model": "Intel(R) Xeon(R) Processor",
        "cpu_vendor": "GenuineIntel",
        "cpu_family": "6",
    }
    old, old_facts = machine_key({**xeon, "cpu_model_number": "143", "cpu_stepping": "8"})
    new, new_facts = machine_key({**xeon, "cpu_model_number": "207", "cpu_stepping": "2"})
    assert old != new
    assert old.startswith("intel-r-xeon-r-processor-f6m143s8-")
    assert new.startswith("intel-r-xeon-r-processor-f6m207s2-")
    assert fact_differences(new_facts, old_facts) == ["cpu_model_number 143 -> 207", "cpu_stepping 8 -> 2"]
    assert machine_key({**xeon, "cpu_isa": ["avx2"]})[0] != machine_key({**xeon, "cpu_isa": ["amx_tile"]})[0]
    assert machine_key({**xeon, "cpu_caches": {"L3": "32768K"}})[0] != machine_key(xeon)[0]


def test_cpu_facts_read_family_model_stepping_isa_and_caches(tmp_path: Path) -> None:
    cpuinfo = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\n"
        "model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\n"
        "flags\t\t: fpu avx avx2 avx512f amx_tile amx_bf16 sse4_2\n\nprocessor\t: 1\nmodel\t\t: 999\n"
    )
    index = tmp_path / "index3"
    index.mkdir()
    for name, value in (("level", "3"), ("type", "Unified"), ("size", "107520K")):
        (index / name).write_text(value + "\n")
    facts = cpu_facts(cpuinfo, tmp_path)
    assert facts == {
        "cpu_vendor": "GenuineIntel",
        "cpu_family": "6",
        "cpu_model_number": "207",
        "cpu_stepping": "2",
        "cpu_isa": ["amx_bf16", "amx_tile", "avx", "avx2", "avx512f"],
        "cpu_caches": {"L3": "107520K"},
    }
    assert cpu_facts("", tmp_path / "missing")["cpu_caches"] == {}


def test_versions_are_read_without_importing_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import scipy

    assert installed_version("scipy") == scipy.__version__
    monkeypatch.delitem(sys.modules, "scipy")  # as in a fresh process that never needed it
    assert installed_version("scipy") == scipy.__version__
    assert "scipy" not in sys.modules
    # a module on the path without installed metadata still says its version
    (tmp_path / "kp_unpackaged.py").write_text("__version__ = '9.9'\n")
    monkeypatch.syspath_prepend(tmp_path)
    assert installed_version("kp_unpackaged") == "9.9"
    del sys.modules["kp_unpackaged"]


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
    third = BaselineStore(store.directory, "third-box-456", {"torch": "2.12.0"})
    third.replace_runs({"t.py::a": [_run()]})
    assert store.other_machines() == {"other-box-123": {}, "third-box-456": {"torch": "2.12.0"}}
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
        ('{"schema_version": 0, "machine": {}, "benchmarks": {}}', "schema_version must be 1, got 0"),
        ('{"machine": {}, "benchmarks": {}}', "the document lacks 'schema_version'"),
        ('{"schema_version": 1, "benchmarks": {}}', "the document lacks 'machine'"),
        ("[1, 2]", "expected a JSON object at the top level, got list"),
        (
            '{"schema_version": 1, "machine": {}, "benchmarks": {"a": {"runs": {}}}}',
            "benchmarks['a'].runs must be a list, got {}",
        ),
        ('{"schema_version": 1, "machine": {}, "benchmarks": {"a": {}}}', "benchmarks['a'] lacks 'runs'"),
        (
            json.dumps({"schema_version": 1, "machine": {}, "benchmarks": {"a": {"runs": [_run(-1.0)]}}}),
            "benchmarks['a'].runs[0].modes['eager'].samples_s[0] must be above 0, got -1.0",
        ),
        (
            json.dumps({"schema_version": 1, "machine": {}, "benchmarks": {"a": {"runs": [_run()]}}}).replace(
                "0.0001,", "NaN,", 1
            ),
            "NaN is not allowed",
        ),
        (
            json.dumps({"schema_version": 1, "machine": {}, "benchmarks": {"a": {"runs": [_run()]}}}).replace(
                "0.0001,", "1e400,", 1
            ),
            "samples_s[0] must be a finite number, got inf",
        ),
        (_file_with(modes={}), "benchmarks['a'].runs[0].modes must hold at least 1 entr(ies), got 0"),
        (
            _file_with(compile_kwargs=[["backend", "eager"]]),
            "benchmarks['a'].runs[0].compile_kwargs must be an object or null, got [['backend', 'eager']]",
        ),
        (_file_with(device=3), "benchmarks['a'].runs[0].device must be a string or null, got 3"),
        (_file_with(threads="1"), "benchmarks['a'].runs[0].threads must be a whole number or null, got '1'"),
        (_file_with(threads=True), "runs[0].threads must be a whole number or null, got True"),
        (_file_with(reference_version="2"), "runs[0].reference_version must be a whole number, got '2'"),
        (_file_with(mode_fallback="no"), "runs[0].modes['eager'].fallback must be true or false, got 'no'"),
        (_file_with(mode_graph_count=1.5), "modes['eager'].graph_count must be a whole number or null"),
        (_file_with(mode_calls_per_round=0), "modes['eager'].calls_per_round must be at least 1, got 0"),
        (
            _file_with(mode_compile_cache="lukewarm"),
            "modes['eager'].compile_cache must be one of 'warm', 'cold', 'partly warm', None, got 'lukewarm'",
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


def test_locks_work_where_fcntl_does_not_exist(tmp_path: Path) -> None:
    """On Windows there is no fcntl: the autoloaded plugin must still import and lock."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"  # any `import fcntl` now raises ImportError
        "import filelock\n"
        "from pytest_keisei_perf import locks, plugin\n"
        f"with locks.lock_beside(__import__('pathlib').Path({str(tmp_path / 'b.json')!r})):\n"
        "    print('locked')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "locked"


def _mac(values: dict[str, str]):  # type: ignore[no-untyped-def]
    return lambda name: values.get(name)


def test_macos_and_windows_hosts_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /proc/cpuinfo the facts come from sysctl (macOS) or platform.processor() and
    torch's CPU capability (Windows), so two different CPUs never share a key there either."""
    from pytest_keisei_perf import machine

    intel_mac = cpu_facts("", system="Darwin", sysctl=_mac({
        "machdep.cpu.vendor": "GenuineIntel", "machdep.cpu.family": "6", "machdep.cpu.model": "158",
        "machdep.cpu.stepping": "10", "machdep.cpu.features": "FPU SSE AVX1.0 FMA",
        "machdep.cpu.leaf7_features": "AVX2 BMI2", "hw.l2cachesize": "262144", "hw.l3cachesize": "12582912",
    }))  # fmt: skip
    assert intel_mac == {
        "cpu_vendor": "GenuineIntel", "cpu_family": "6", "cpu_model_number": "158", "cpu_stepping": "10",
        "cpu_isa": ["avx", "avx2", "fma"], "cpu_caches": {"L2": "256K", "L3": "12288K"},
    }  # fmt: skip
    m1, m2 = (
        cpu_facts(
            "",
            system="Darwin",
            sysctl=_mac({"hw.optional.neon": "1", "hw.cpufamily": fam, "hw.cpusubtype": "2"}),
        )
        for fam in ("458787763", "3660830781")
    )
    assert m1["cpu_vendor"] == "Apple"
    assert m1["cpu_isa"] == ["asimd"]
    monkeypatch.setattr(machine, "_torch_cpu_capability", lambda: "AVX2")
    win = cpu_facts("", system="Windows", processor="Intel64 Family 6 Model 158 Stepping 10, GenuineIntel")
    assert win["cpu_family"] == "6"
    assert win["cpu_model_number"] == "158"
    assert win["cpu_vendor"] == "GenuineIntel"
    assert win["cpu_isa"] == ["torch:avx2"]
    amd = cpu_facts("", system="Windows", processor="AMD64 Family 25 Model 33 Stepping 0, AuthenticAMD")
    keys = {
        machine_key({"cpu_model": "x", **facts, "threads": 1})[0] for facts in (intel_mac, m1, m2, win, amd)
    }
    assert len(keys) == 5
