"""``keisei-perf``: listing baselines, comparing reports, pruning, architectures, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_keisei_perf.baseline import BaselineStore, machine_key, run_record
from pytest_keisei_perf.cli import main
from pytest_keisei_perf.report import write_json_report
from pytest_keisei_perf.result import ModeResult, PerfResult

FACTS = {"cpu_model": "Test CPU 9000", "cpu_count": 2, "machine": "x86_64", "torch": "2.13.0", "threads": 1}
BENCH = "tests/perf/test_x.py::test_model"


def _result(
    rng: np.random.Generator, scale: float = 1.0, *, nodeid: str = BENCH, reference_scale: float = 1.0
) -> PerfResult:
    """One process's result: 20 rounds around 1 ms (times ``scale``) with 3% per-process offset;
    the reference workload's rounds around 0.1 ms (times ``reference_scale``)."""
    offset = float(np.exp(rng.normal(0, 0.03)))
    samples = tuple(float(v) for v in 1e-3 * scale * offset * np.exp(rng.normal(0, 0.01, 20)))
    reference = tuple(float(v) for v in 1e-4 * reference_scale * offset * np.exp(rng.normal(0, 0.01, 20)))
    mode = ModeResult("eager", float(np.median(samples)), 1e-5, samples, 10, 30, True)
    return PerfResult(
        nodeid=nodeid,
        name="",
        device="cpu",
        threads=1,
        compile_kwargs={},
        modes={"eager": mode},
        reference_samples_s=reference,
        reference_version=2,
    )


def _report(path: Path, *results: PerfResult) -> Path:
    write_json_report(path, machine=FACTS, settings={}, results=list(results))
    return path


def _baseline_dir(tmp_path: Path, benches: dict[str, float], runs: int = 5) -> Path:
    rng = np.random.default_rng(0)
    key, facts = machine_key(FACTS)
    store = BaselineStore(tmp_path / "baselines", key, facts)
    store.replace_runs(
        {
            bench: [
                run_record(_result(rng, scale, nodeid=bench).to_dict(), git_commit="abc") for _ in range(runs)
            ]
            for bench, scale in benches.items()
        }
    )
    return store.directory


def test_baselines_lists_machines_and_benchmarks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _baseline_dir(tmp_path, {BENCH: 1.0})
    assert main(["baselines", "--dir", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "test-cpu-9000-" in out
    assert "cpu_model Test CPU 9000" in out
    assert f"{BENCH}  5 runs  eager 1" in out
    assert "commit abc" in out


def test_compare_two_reports_passes_identical_and_fails_a_slowdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    base = _report(tmp_path / "base.json", _result(rng))
    same = _report(tmp_path / "same.json", _result(rng))
    slow = _report(tmp_path / "slow.json", _result(rng, 1.5))
    assert main(["compare", str(base), str(same)]) == 0
    assert "0 regression(s) in 1 comparison(s)" in capsys.readouterr().out
    assert main(["compare", str(base), str(slow)]) == 1
    out = capsys.readouterr().out
    assert f"{BENCH} [eager]: 1" in out
    assert "regression, change +" in out
    assert "one run per side: rounds plus an assumed 3% between-process spread" in out


def test_compare_against_a_baseline_file_uses_the_run_level_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _baseline_dir(tmp_path, {BENCH: 1.0})
    (baseline_file,) = directory.glob("*.json")
    slow = _report(tmp_path / "slow.json", _result(np.random.default_rng(2), 1.4))
    assert main(["compare", str(baseline_file), str(slow)]) == 1
    out = capsys.readouterr().out
    assert "5 vs 1 run(s), detectable" in out


def test_compare_judges_like_the_gate_host_and_raw_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same data must get the gate's verdict: a 'slowdown' that exists only against a
    reference workload that ran twice as fast is not a regression, and a real one still is."""
    directory = _baseline_dir(tmp_path, {BENCH: 1.0})
    (baseline_file,) = directory.glob("*.json")
    rng = np.random.default_rng(3)
    faster_reference = _report(tmp_path / "ref.json", _result(rng, 1.0, reference_scale=0.5))
    assert main(["compare", str(baseline_file), str(faster_reference)]) == 0
    out = capsys.readouterr().out
    assert "not compared (this host differs from the baseline's" in out
    assert "they disagree on whether this is a regression" in out
    slow_too = _report(tmp_path / "slow.json", _result(rng, 1.6, reference_scale=0.5))
    assert main(["compare", str(baseline_file), str(slow_too)]) == 1
    out = capsys.readouterr().out
    assert "regression, change +" in out
    assert "raw and normalised time agree (host check)" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"something": 1}', "neither a --perf-json report nor a baseline file"),
        (
            '{"schema_version": 1, "machine": {}, "settings": {}, "results": [{"nodeid": "t.py::a", '
            '"benchmark_id": "a", "modes": {}, "verdicts": {}, "failures": [], '
            '"reference_samples_s": [-1.0]}]}',
            "results[0].reference_samples_s[0] must be above 0, got -1.0",
        ),
        ('{"results": [{"benchmark_id": "a"}]}', "the document lacks 'schema_version'"),
        (
            '{"schema_version": 1, "machine": {}, "settings": {}, "results": [{"nodeid": "t.py::a", '
            '"benchmark_id": "a", "modes": {"eager": {"samples_s": [], "median_s": 1}}, "verdicts": {}, '
            '"failures": [], "reference_samples_s": [1.0]}]}',
            "results[0] (a) was not timed (eager has no samples)",
        ),
        ('{"schema_version": 99, "benchmarks": {}}', "newer"),
    ],
)
def test_compare_bad_input_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    good = _report(tmp_path / "good.json", _result(np.random.default_rng(3)))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert main(["compare", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keisei-perf: error: ")
    assert str(bad) in err
    assert message in err


def test_prune_lists_by_default_and_drops_only_with_apply(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(
        test_x="import pytest\n\n"
        "def test_kept(perf):\n    pass\n\n"
        "@pytest.mark.parametrize('n', [1], ids=['small matrix'])\n"
        "def test_spaced(perf, n):\n    pass\n"
    )
    live = {"test_x.py::test_kept", "test_x.py::test_kept::named", "test_x.py::test_spaced[small matrix]"}
    directory = _baseline_dir(pytester.path, {**dict.fromkeys(live, 1.0), "test_x.py::gone": 1.0}, 3)
    (path,) = directory.glob("*.json")
    before = path.read_text()
    monkeypatch.chdir(pytester.path)
    for listing in (["prune"], ["prune", "--dry-run"]):
        assert main(listing) == 0
        out = capsys.readouterr().out
        assert "would drop test_x.py::gone" in out
        assert "small matrix" not in out  # a live id with a space is not stale
        assert "1 stale entry found; nothing changed (--apply removes them)" in out
        assert path.read_text() == before
    assert main(["prune", "--apply", "--dry-run"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert main(["prune", "--apply"]) == 0
    assert "1 stale entry removed" in capsys.readouterr().out
    assert set(json.loads(path.read_text())["benchmarks"]) == live


def test_prune_in_a_monorepo_reads_ids_as_the_plugin_writes_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """pytest.ini at the top, the package's own pyproject.toml below: ids are relative to the
    package (the test file's project root), not to the rootdir."""
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    package = pytester.path / "pkg"
    (package / "tests").mkdir(parents=True)
    (package / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    (package / "tests" / "test_y.py").write_text("def test_live(perf):\n    pass\n")
    directory = _baseline_dir(
        pytester.path, {"tests/test_y.py::test_live": 1.0, "tests/test_y.py::gone": 1.0}, 3
    )
    monkeypatch.chdir(pytester.path)
    assert main(["prune", "--dir", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "would drop tests/test_y.py::gone" in out
    assert "test_live" not in out


def test_prune_refuses_when_no_perf_test_is_collected(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_x="def test_plain():\n    pass\n")
    directory = _baseline_dir(pytester.path, {"test_x.py::old": 1.0}, 3)
    monkeypatch.chdir(pytester.path)
    assert main(["prune", "--dir", str(directory)]) == 2
    assert "refusing to prune every entry" in capsys.readouterr().err
    (path,) = directory.glob("*.json")
    assert "test_x.py::old" in json.loads(path.read_text())["benchmarks"]


def test_architectures_lists_shapes_and_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["architectures"]) == 0
    out = capsys.readouterr().out
    assert "resnet_tower " in out
    assert "(B, 46, 9, 9)" in out
    assert "13,241,300" in out
    assert "resnet_tower_tiny" in out
    assert "2,216,516" in out
    assert "13527" in out


def test_console_script_module_runs_and_reports_errors(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_keisei_perf.cli",
            "compare",
            str(tmp_path / "a.json"),
            str(tmp_path / "b.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{tmp_path / 'a.json'}: no such file" in proc.stderr
    usage = subprocess.run(
        [sys.executable, "-m", "pytest_keisei_perf.cli"], capture_output=True, text=True, check=False
    )
    assert usage.returncode == 2
    assert "baselines" in usage.stderr
    assert "compare" in usage.stderr


def test_version_and_machine_say_this_hosts_key_and_whether_it_is_gated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_keisei_perf import __version__
    from pytest_keisei_perf.machine import machine_info

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"keisei-perf {__version__}"

    monkeypatch.delenv("KEISEI_PERF_MACHINE", raising=False)
    directory = _baseline_dir(tmp_path, {BENCH: 1.0})  # another machine's file (Test CPU 9000)
    assert main(["machine", "--dir", str(directory), "--name", "ci-box"]) == 0
    out = capsys.readouterr().out
    key, _ = machine_key(machine_info(threads=1), "ci-box")
    assert f"machine key: {key}" in out
    assert "  name: ci-box" in out
    assert "the gate compares nothing here (NOT COMPARED)" in out
    assert "nearest stored key: test-cpu-9000-" in out
    assert "name None -> ci-box" in out
    BaselineStore(directory, key, machine_key(machine_info(threads=1), "ci-box")[1]).replace_runs(
        {BENCH: [run_record(_result(np.random.default_rng(1), 1.0).to_dict(), git_commit=None)] * 3}
    )
    assert main(["machine", "--dir", str(directory), "--name", "ci-box"]) == 0
    assert "(1 benchmark(s)): the gate compares here" in capsys.readouterr().out


def test_export_writes_github_action_benchmark_entries_and_names_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(5)
    smoke = PerfResult(
        nodeid="t.py::smoke", name="", device="cpu", threads=1, compile_kwargs={}, modes={}, disabled=True
    )
    report = _report(tmp_path / "perf.json", _result(rng, 2.0), smoke)
    out = tmp_path / "bench.json"
    assert main(["export", str(report), "--format", "github-action-benchmark", "--out", str(out)]) == 0
    [entry] = json.loads(out.read_text())
    assert entry["name"] == f"{BENCH} [eager]"
    assert entry["unit"] == "ms"
    assert 1.8 < entry["value"] < 2.2
    assert entry["range"] == "± 0.005"  # half the interquartile range
    assert "rounds: 20" in entry["extra"]
    capsys.readouterr()
    assert main(["export", str(report), "--format", "github-action-benchmark"]) == 0
    assert json.loads(capsys.readouterr().out) == [entry]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"results": [{"benchmark_id": "b", "modes": {"eager": {"median_s": 1}}}]}))
    assert main(["export", str(broken), "--format", "github-action-benchmark"]) == 2
    assert "broken.json: the document lacks 'schema_version'" in capsys.readouterr().err
    no_range = json.loads(report.read_text())
    no_range["results"][0]["modes"]["eager"]["iqr_s"] = None
    broken.write_text(json.dumps(no_range))
    assert main(["export", str(broken), "--format", "github-action-benchmark"]) == 2
    assert f"broken.json: results[0] ({BENCH} [eager]): no iqr_s, so no range" in capsys.readouterr().err


def test_the_version_is_the_package_metadata_one() -> None:
    from importlib.metadata import version

    from pytest_keisei_perf import __version__

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert __version__ == version("pytest-keisei-perf") == project["version"]
