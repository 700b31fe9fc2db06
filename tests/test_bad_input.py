"""Bad input met on purpose: contradicting options and unwritable paths are usage errors before
anything is measured, and a report that cannot be written still leaves the table and a red exit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FAST = ("--perf-budget=0.02", "--perf-rounds=5", "--perf-modes=eager", "-p", "no:cacheprovider")

BUSY = """
import pytest

@pytest.mark.perf
def test_busy(perf):
    perf.benchmark(sum, range(2000))
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--perf-compare-ref=HEAD", "--perf-update-baseline"),
            "*--perf-compare-ref and --perf-update-baseline*",
        ),
        (("--perf-compare-ref=HEAD", "--perf-disable"), "*--perf-compare-ref and --perf-disable contradict*"),
    ],
)
def test_contradicting_options_are_usage_errors(
    pytester: pytest.Pytester, args: tuple[str, ...], message: str
) -> None:
    pytester.makepyfile(BUSY)
    result = pytester.runpytest(*FAST, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*keisei-perf: {message}"])
    assert "keisei-perf results" not in result.stdout.str()  # nothing was measured


def test_unwritable_paths_are_named_at_the_start(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BUSY)
    (pytester.path / "a_file").write_text("")
    (pytester.path / "a_folder").mkdir()
    cases = [
        ((f"--perf-json={pytester.path / 'a_folder'}",), "--perf-json * is a folder, not a file"),
        (
            ("--perf-update-baseline", f"--perf-baseline-dir={pytester.path / 'a_file'}"),
            "--perf-baseline-dir * is a file, not a folder",
        ),
        (
            (f"--perf-markdown={pytester.path / 'a_file' / 'summary.md'}",),
            "--perf-markdown * cannot be created: * is a file",
        ),
    ]
    for args, message in cases:
        result = pytester.runpytest(*FAST, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines([f"*keisei-perf: {message}*"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_a_read_only_baseline_folder_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BUSY)
    folder = pytester.path / "baselines"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = pytester.runpytest(*FAST, "--perf-update-baseline")
    finally:
        folder.chmod(0o755)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-baseline-dir * cannot be written: * is not writable*"])


def test_a_report_that_cannot_be_written_keeps_the_table_and_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path was fine at the start and went away during the run."""
    pytester.makepyfile(BUSY)
    report = pytester.path / "out" / "report.json"

    def vanish(path: Path, **_: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("pytest_keisei_perf.report.write_json_report", vanish)
    result = pytester.runpytest(*FAST, f"--perf-json={report}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "keisei-perf results" in out
    assert f"keisei-perf: could not write the JSON report {report}: [Errno 13] Permission denied" in out


def test_an_update_waits_for_the_measurement_lock_and_says_so(pytester: pytest.Pytester) -> None:
    """Updates started together ran their workers side by side and stored medians 5-9x too slow:
    an update measures only while it holds the machine-wide lock, and says when it waits."""
    import subprocess
    import sys
    import threading
    from typing import IO

    from filelock import FileLock

    from pytest_keisei_perf.locks import MEASUREMENT_LOCK

    pytester.makepyfile(test_busy=BUSY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [sys.executable, "-m", "pytest", *FAST, "--perf-update-baseline", "--perf-baseline-runs=3"]
    waiting = "keisei-perf: waiting for another perf session to finish measuring"
    lines: list[str] = []
    seen = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.append(line)
            if waiting in line:
                seen.set()

    holder = FileLock(str(MEASUREMENT_LOCK))
    with holder:
        proc = subprocess.Popen(
            command, cwd=pytester.path, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
        reader.start()
        # collection and the smoke run come first; it must then wait, not measure
        assert seen.wait(timeout=120), "".join(lines)
        assert proc.poll() is None, "the update finished while another process held the lock"
        assert not list((pytester.path / "baselines").glob("*.json")), "it measured without the lock"
    proc.wait(timeout=300)
    reader.join(timeout=60)
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert list((pytester.path / "baselines").glob("*.json"))


def test_fewer_rounds_than_the_floor_are_refused_not_quietly_taken(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BUSY)
    result = pytester.runpytest("--perf-budget=0.02", "--perf-rounds=3", "--perf-modes=eager")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-rounds*must be >= 5, got '3'*"])
    pytester.makepyfile(BUSY.replace("@pytest.mark.perf", "@pytest.mark.perf(rounds=3)"))
    result = pytester.runpytest("--perf-budget=0.02", "--perf-modes=eager")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines(["*rounds*must be >= 5, got 3*"])


def test_a_path_outside_the_project_cannot_drop_the_project_ini(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """pytest moves its rootdir above the project when an outside path is a separate argument;
    the project's perf_threshold would be silently lost, so the session stops and says how."""
    pytester.makeini("[pytest]\nperf_threshold = 0.5\n")
    pytester.makepyfile(BUSY)
    history = tmp_path_factory.mktemp("ci-cache") / "h.jsonl"
    history.write_text("")
    result = pytester.runpytest_subprocess("--perf-disable", "--perf-history", str(history))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"*keisei-perf: pytest chose rootdir * and no ini file, so this project's settings in "
            f"{pytester.path / 'tox.ini'} are not read: a path outside the project given as a separate "
            f"argument (--perf-history {history}) moved it; write such options as one argument with "
            f"'=' (--perf-history={history})"
        ]
    )
    result = pytester.runpytest_subprocess("--perf-disable", f"--perf-history={history}")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()


@pytest.mark.parametrize(
    ("files", "found"),
    [
        ({"pyproject.toml": "[project]\nname = 'x'\n"}, None),  # no pytest section: not pytest's file
        ({"pyproject.toml": "[tool.pytest.ini_options]\n"}, "pyproject.toml"),
        ({"pyproject.toml": "[tool.pytest]\n", "pytest.toml": "[pytest]\n"}, "pytest.toml"),
        ({"tox.ini": "[tox]\n"}, None),
        ({"tox.ini": "[pytest]\n", "setup.cfg": "[tool:pytest]\n"}, "tox.ini"),
        ({"setup.cfg": "[tool:pytest]\n"}, "setup.cfg"),
    ],
)
def test_the_projects_own_ini_file_is_found_as_pytest_would(
    tmp_path: Path, files: dict[str, str], found: str | None
) -> None:
    from pytest_keisei_perf.project_config import pytest_config_file

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert pytest_config_file(tmp_path) == (tmp_path / found if found else None)
