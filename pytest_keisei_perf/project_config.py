"""Settings are never lost to pytest's rootdir choice.

pytest picks its rootdir and ini file from the command line's paths. A path outside the project
given as a separate argument (``--perf-history /ci/cache/h.jsonl``, ``--perf-baseline-dir
/ci/baselines``) can move the rootdir above the project, and the project's ini file (its
``perf_threshold``, its baseline folder) is then silently not read. This module notices when the
ini file pytest chose is not the project's, by the nearest-project rule the benchmark ids use.
"""

from __future__ import annotations

import configparser
import itertools
import re
from collections.abc import Sequence
from pathlib import Path

from .ids import project_root

__all__ = ["lost_configuration", "pytest_config_file"]

_PYPROJECT_SECTION = re.compile(r"^\s*\[tool\.pytest(\.ini_options)?\]\s*$", re.MULTILINE)


def pytest_config_file(folder: Path) -> Path | None:
    """The file in ``folder`` that pytest would read its configuration from, in pytest's order."""
    for name in ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini"):
        if (folder / name).is_file():
            return folder / name
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file() and _PYPROJECT_SECTION.search(_read(pyproject)):
        return pyproject
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        path = folder / name
        if path.is_file() and _has_section(path, section):
            return path
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _has_section(path: Path, section: str) -> bool:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(_read(path))
    except configparser.Error:
        return False
    return parser.has_section(section)


def lost_configuration(
    invocation_dir: Path, inipath: Path | None, rootpath: Path, args: Sequence[str]
) -> str | None:
    """Why pytest is not reading this project's configuration, or None when it is (or when the
    invocation is outside any project that has one)."""
    project = project_root(invocation_dir.resolve())
    if project is None:
        return None
    wanted = pytest_config_file(project)
    if wanted is None or (inipath is not None and inipath.resolve() == wanted.resolve()):
        return None
    chosen = f"the ini file {inipath}" if inipath is not None else "no ini file"
    culprits = _outside_paths(args, project)
    if culprits:
        written = ", ".join(f"{option} {value}" for option, value in culprits)
        option, value = culprits[0]
        cause = f"a path outside the project given as a separate argument ({written}) moved it"
        how = f"; write such options as one argument with '=' ({option}={value})"
    else:
        cause, how = "the command line's paths moved it", f"; pass -c {wanted} or --rootdir {project}"
    return (
        f"pytest chose rootdir {rootpath} and {chosen}, so this project's settings in {wanted} are "
        f"not read: {cause}{how}"
    )


def _outside_paths(args: Sequence[str], project: Path) -> list[tuple[str, str]]:
    """The ``--opt VALUE`` pairs in ``args`` whose value is an absolute path outside ``project``."""
    found = []
    for option, value in itertools.pairwise(args):
        if not option.startswith("--") or "=" in option or value.startswith("-"):
            continue
        path = Path(value)
        if path.is_absolute() and not path.resolve().is_relative_to(project.resolve()):
            found.append((option, value))
    return found
