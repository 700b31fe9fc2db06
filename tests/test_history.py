"""History: the line format and its files, what sessions write and check, and the page
``keisei-perf history`` draws, looked at in a real headless browser."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from extras import need, need_program

from pytest_keisei_perf import cli
from pytest_keisei_perf.history import (
    HistoryEntry,
    ModeSummary,
    append_entries,
    read_history,
    record_update,
    summarize,
)
from pytest_keisei_perf.simulate import make_run


def _entry(
    bench: str = "t.py::test_a", statistic: float = 0.0, *, kind: str = "baseline", when: int = 0,
    commit: str | None = None, speedup: float | None = 1.2,
) -> HistoryEntry:  # fmt: skip
    modes = {
        "eager": ModeSummary(median_s=1e-3 * math.exp(statistic), statistic=statistic, statistic_sd=0.01),
        "compiled": ModeSummary(median_s=8e-4 * math.exp(statistic), statistic=statistic - 0.2),
    }
    timestamp = f"2026-11-{1 + when // 24:02d}T{when % 24:02d}:00:00Z"
    return HistoryEntry(
        kind=kind,
        benchmark_id=bench,
        machine="box-1",
        timestamp=timestamp,
        runs=5,
        modes=modes,
        git_commit=commit or f"c{when:02d}".ljust(40, "0"),
        torch="2.13.0",
        speedup=speedup,
    )


# -- the format ----------------------------------------------------------------------------------
def test_an_entry_survives_its_own_json_and_summarises_runs() -> None:
    entry = _entry(statistic=0.1)
    assert HistoryEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry
    runs = [make_run({"eager": 0.0 + d, "compiled": -0.2 + d}) for d in (0, 0.01, -0.03)]
    summary = summarize("b", runs, kind="baseline", machine="m", torch_version="2.13.0")
    assert summary is not None
    assert summary.runs == 3
    assert summary.modes["eager"].statistic == pytest.approx(-0.02 / 3)
    assert summary.modes["eager"].statistic_sd == pytest.approx(np.std([0, 0.01, -0.03], ddof=1))
    assert summary.modes["eager"].p95_s is None  # no run measured single calls


def test_a_summary_keeps_the_median_p95_and_a_line_carries_it() -> None:
    runs = [make_run({"eager": 0.0}) for _ in range(3)]
    runs = [
        dataclasses.replace(r, modes={"eager": dataclasses.replace(r.modes["eager"], p95_s=p)})
        for r, p in zip(runs, (2e-3, 3e-3, 9e-3), strict=True)
    ]
    summary = summarize("b", runs, kind="run", machine="m", torch_version="2.13.0")
    assert summary is not None
    assert summary.modes["eager"].p95_s == 3e-3
    line = json.loads(json.dumps(summary.to_json()))
    assert line["modes"]["eager"]["p95_s"] == 3e-3
    assert HistoryEntry.from_json(line) == summary


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other"}, "format must be 'keisei-perf-history', got 'other'"),
        ({"version": 7}, "version 7 is newer than this plugin understands (1); upgrade"),
        ({"version": 0}, "version must be 1, got 0"),
        ({"kind": "guess"}, "kind must be one of 'baseline', 'run', 'ab', got 'guess'"),
        ({"runs": 0}, "runs must be at least 1, got 0"),
        ({"benchmark_id": ""}, "benchmark_id must be at least 1 character(s) long, got ''"),
        ({"modes": {}}, "modes must hold at least 1 entr(ies), got 0"),
        ({"modes": {"eager": {"median_s": -1, "statistic": 0}}}, "median_s must be above 0, got -1"),
        (
            {"modes": {"eager": {"median_s": 1, "statistic": "x"}}},
            "modes['eager'].statistic must be a number, got 'x'",
        ),
        ({"modes": {"eager": {"median_s": 1, "statistic": 1e400}}}, "statistic must be a finite number"),
        ({"kind": "ab"}, "modes['eager'].change must be a number, got None (when kind is 'ab')"),
    ],
)
def test_a_bad_entry_is_refused_with_its_reason(change: dict[str, object], message: str) -> None:
    data = _entry().to_json() | change
    with pytest.raises(ValueError, match=re.escape(message)):
        HistoryEntry.from_json(data)


def test_bad_lines_are_named_skipped_and_never_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    good = json.dumps(_entry().to_json())
    path.write_text(f"{good}\n{{broken\n{json.dumps({'format': 'keisei-perf-history', 'version': 9})}\n")
    entries, problems = read_history(path)
    assert len(entries) == 1
    assert problems[0].startswith(f"{path}:2: ")
    assert problems[1].startswith(f"{path}:3: version 9 is newer")
    assert all(p.endswith("; line skipped") for p in problems)
    assert append_entries(path, [_entry(when=1)]) == 1
    lines = path.read_text().splitlines()
    assert lines[1] == "{broken"  # untouched
    assert len(read_history(path)[0]) == 2
    # a file whose last line lost its newline: the append starts a line of its own
    cut = tmp_path / "cut.jsonl"
    cut.write_text(good[:40])
    append_entries(cut, [_entry()])
    assert cut.read_text().splitlines()[1] == json.dumps(_entry().to_json(), sort_keys=True)
    assert read_history(tmp_path / "missing.jsonl") == ([], [])


def test_baseline_history_keeps_the_last_entries_per_benchmark(tmp_path: Path) -> None:
    path = tmp_path / "box.history.jsonl"
    path.write_text("not json\n")
    record_update(path, [_entry("a", when=i) for i in range(5)] + [_entry("b", when=0)], max_entries=3)
    record_update(path, [_entry("a", when=9)], max_entries=3)
    entries, problems = read_history(path)
    assert [(e.git_commit or "")[:3] for e in entries if e.benchmark_id == "a"] == ["c03", "c04", "c09"]
    assert [e.benchmark_id for e in entries].count("b") == 1
    assert path.read_text().splitlines()[0] == "not json"  # kept verbatim where it was
    assert len(problems) == 1


# -- through pytest --------------------------------------------------------------------------------
WORKLOAD = """
import pytest

def busy(n):
    return sum(range(n))

@pytest.mark.perf(modes=["eager"])
def test_busy(perf):
    perf.benchmark(busy, 20_000)
"""
FAST = ("--perf-budget=0.05", "--perf-rounds=6", "--perf-compile-backend=eager", "-p", "no:cacheprovider")


def test_updates_keep_history_and_a_creeping_slowdown_is_caught(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five re-baselines of +4% each: no single one crosses 5%, the drift of 22% does."""
    monkeypatch.setenv("KEISEI_PERF_MACHINE", "history-box")
    pytester.makepyfile(test_work=WORKLOAD)
    update = pytester.runpytest(*FAST, "--perf-update-baseline", "--perf-baseline-runs=3")
    assert update.ret == 0, update.stdout.str()
    update.stdout.fnmatch_lines(
        ["*keisei-perf: history of 1 benchmark(s) kept in *history-box-*.history.jsonl"]
    )
    (path,) = (pytester.path / "baselines").glob("history-box-*.history.jsonl")
    (first,) = read_history(path)[0]
    assert (first.kind, first.runs, first.benchmark_id) == ("baseline", 3, "test_work.py::test_busy")
    # the runs an update replaces get a summary of their own when they had none (older files)
    path.unlink()
    again = pytester.runpytest(*FAST, "--perf-update-baseline", "--perf-baseline-runs=3")
    assert again.ret == 0, again.stdout.str()
    assert [e.runs for e in read_history(path)[0]] == [3, 3]
    # history as five +4% re-baselines would have left it
    level = read_history(path)[0][-1].modes["eager"].statistic
    creeping = [
        dataclasses.replace(
            first,
            timestamp=f"2026-11-0{k + 1}T00:00:00Z",
            git_commit=f"c{k}" + "0" * 39,
            modes={
                "eager": dataclasses.replace(first.modes["eager"], statistic=level - (5 - k) * math.log(1.04))
            },
        )
        for k in range(6)
    ]
    path.write_text("".join(json.dumps(e.to_json()) + "\n" for e in creeping))
    history = pytester.path / "runs.jsonl"
    history.write_text("{corrupt\n")
    warned = pytester.runpytest(*FAST, "--perf-confirm-runs=0", f"--perf-history={history}")
    warned.stdout.fnmatch_lines(
        [
            "*PerfDriftWarning: test_work.py::test_busy [[]eager[]]: drifted +21.7% over 6 re-baselines "
            "since commit c00000000000*above the 5% threshold; the steps between entries were "
            "+3.9%, +3.9%, +3.9%, +3.9%, +3.9%*",
            f"*PerfHistoryWarning: keisei-perf: {history}:1: *line skipped*",
        ]
    )
    lines = history.read_text().splitlines()
    assert lines[0] == "{corrupt"
    assert HistoryEntry.from_json(json.loads(lines[1])).kind == "run"
    failed = pytester.runpytest(*FAST, "--perf-confirm-runs=0", "--perf-fail-drift")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*drifted +21.7% over 6 re-baselines*(--perf-fail-drift)*"])
    # measured from the fifth entry on, two +4% steps are below nothing that counts
    since = pytester.runpytest(*FAST, "--perf-confirm-runs=0", "--perf-drift-since=c4")
    assert "drifted" not in since.stdout.str()


# -- the page --------------------------------------------------------------------------------------
def _history_files(folder: Path) -> tuple[Path, Path]:
    """A baseline history with a creeping drift, and a run history with a 10% step."""
    baselines = folder / "baselines"
    baselines.mkdir()
    creeping = [_entry("t.py::test_creep", k * math.log(1.04), when=k) for k in range(6)]
    (baselines / "box-1.history.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in creeping))
    rng = np.random.default_rng(1)
    values = rng.normal(0, 0.02, 30)
    values[15:] += math.log(1.10)
    runs = [_entry("t.py::test_step", float(v), kind="run", when=k) for k, v in enumerate(values)]
    history = folder / "runs.jsonl"
    history.write_text("".join(json.dumps(e.to_json()) + "\n" for e in runs) + "oops\n")
    return baselines, history


def test_history_page_marks_steps_and_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("matplotlib")
    baselines, history = _history_files(tmp_path)
    out = tmp_path / "page"
    code = cli.main(["history", "--dir", str(baselines), "--history", str(history), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"warning: {history}:31: " in captured.err
    assert re.search(r"step\s+\+\d+\.\d%.*t\.py::test_step \[eager\] run on box-1, at c1500000", captured.out)
    assert re.search(r"drift\s+\+21\.7%.*t\.py::test_creep \[eager\] baseline", captured.out)
    page = (out / "index.html").read_text()
    assert "<script" not in page
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # nothing loaded from anywhere
    assert page.count('src="data:image/png;base64,') == 2
    assert len(list(out.glob("*.png"))) == 2
    assert "Largest changes" in page
    assert "oops" not in page  # the bad line is named, not shown
    assert f"{history}:31" in page


def test_history_command_names_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["history", "--dir", str(tmp_path)]) == 2
    assert "no *.history.jsonl in" in capsys.readouterr().err
    assert cli.main(["history", "--history", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: no such history file" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text("junk\n")
    assert cli.main(["history", "--dir", str(tmp_path / "x"), "--history", str(tmp_path / "bad.jsonl")]) == 2
    assert "no valid history entry" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert (
        cli.main(["history", "--history", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "a_file")])
        == 2
    )
    assert f"--out {tmp_path / 'a_file'}: is a file, not a folder" in capsys.readouterr().err


def _browse(page: Path, screenshot: Path) -> tuple[list[str], list[str]]:
    """Load ``page`` in headless Chromium: its console messages and the files it loaded."""
    chromium = need_program("chromium", "chromium-browser", "google-chrome")
    profile = page.parent / ".chromium-profile"
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=1", "--window-size=1200,1800",
        f"--screenshot={screenshot}", page.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    loaded = re.findall(r"FileURLLoader::Start: (\S+)", proc.stderr)
    return console, loaded


def test_history_page_in_a_real_browser(tmp_path: Path) -> None:
    need("matplotlib")
    from matplotlib.image import imread

    baselines, history = _history_files(tmp_path)
    out = tmp_path / "page"
    assert cli.main(["history", "--dir", str(baselines), "--history", str(history), "--out", str(out)]) == 0
    # the checker itself: a page with a console error and a missing picture is caught
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="missing.png"><script>console.error("boom")</script></body></html>')
    console, loaded = _browse(bad, tmp_path / "bad.png")
    assert any('"boom"' in line for line in console)
    assert any(url.endswith("missing.png") for url in loaded)
    console, loaded = _browse(out / "index.html", tmp_path / "shot.png")
    assert console == []
    assert loaded == [(out / "index.html").as_uri()]
    pixels = imread(tmp_path / "shot.png")[..., :3]
    lines = [np.array(rgb) / 255 for rgb in ((0x15, 0x65, 0xC0), (0xC6, 0x28, 0x28))]  # the modes' colours
    drawn = sum(np.all(np.abs(pixels - rgb) < 0.05, axis=-1).sum() for rgb in lines)
    assert drawn > 2000  # the plots' lines are on the screen


def test_a_both_state_update_keeps_one_state_in_its_history(tmp_path: Path) -> None:
    from pytest_keisei_perf.history_session import SessionHistory

    def run(level: float, cache: str) -> dict[str, object]:
        record = make_run({"eager": level, "compiled": level})
        return {
            "modes": {m: {"samples_s": list(r.samples_s), "compile_cache": cache if m == "compiled" else None}
                      for m, r in record.modes.items()},
            "reference_samples_s": list(record.reference_samples_s),
        }  # fmt: skip

    keeper = SessionHistory(tmp_path, "box", torch_version="2.13.0", history_path=None, window=20, since=None)
    runs = [run(v, "warm") for v in (0.0, 0.01, -0.01)] + [run(v, "cold") for v in (0.5, 0.51, 0.49)]
    keeper.record_update({"b": runs}, {}, commit="abc")
    (entry,) = read_history(tmp_path / "box.history.jsonl")[0]
    assert entry.runs == 3
    assert entry.compile_state == "warm"
    assert entry.modes["compiled"].statistic == pytest.approx(0.0, abs=1e-9)


# -- A/B entries: changes against the parent, chained on the page ------------------------------------
def _ab_entry(when: int, change: float, *, machine: str) -> HistoryEntry:
    mode = ModeSummary(median_s=1e-3, statistic=0.0, change=change, change_se=0.005)
    return dataclasses.replace(
        _entry(when=when, kind="ab"), machine=machine, modes={"eager": mode}, extra={"ref_commit": "p" * 40}
    )


def test_an_ab_entry_needs_its_change_and_survives_its_json() -> None:
    entry = _ab_entry(0, 0.02, machine="box-1")
    assert HistoryEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry
    line = entry.to_json()
    del line["modes"]["eager"]["change_se"]
    with pytest.raises(ValueError, match=re.escape("modes['eager'] lacks 'change_se' (when kind is 'ab')")):
        HistoryEntry.from_json(line)


def test_history_page_chains_ab_changes_across_runners_and_links_commits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pushes measured on three kinds of hosted runner, each +2% against its parent: one chain
    (no host identity needed), a drift found, and each entry linked to its commit."""
    need("matplotlib")
    history = tmp_path / "perf-history.jsonl"
    machines = ("amd-epyc-7763", "amd-epyc-9v74", "intel-xeon-8370c")
    append_entries(history, [_ab_entry(i, 0.02, machine=machines[i % 3]) for i in range(12)])
    out = tmp_path / "page"
    url = "https://github.com/o/r/commit/{commit}"
    code = cli.main(
        ["history", "--dir", str(tmp_path / "none"), "--history", str(history), "--out", str(out),
         "--commit-url", url]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert re.search(r"drift\s+\+26\.8%.*t\.py::test_a \[eager\] ab on any runner", captured.out)
    page = (out / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 1  # one series, not one per runner kind
    assert "A/B against the parent, chained" in page
    assert '<a href="https://github.com/o/r/commit/c1100000' in page
    assert "+2.0% (chained +26.8%," in page
    with pytest.raises(SystemExit) as exited:
        cli.main(["history", "--history", str(history), "--commit-url", "https://x/{sha}"])
    assert exited.value.code == 2
    assert "no {commit} placeholder" in capsys.readouterr().err
