"""The docs: the generated reference page matches the code, every marker keyword is described,
and the site builds with MkDocs in strict mode (broken links and anchors are errors)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from extras import need

from pytest_keisei_perf.reference import MARKER_DOCS, PAGES, api_page, options_page
from pytest_keisei_perf.settings import _OPTIONS, MARKER_KEYWORDS

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("page", list(PAGES))
def test_the_reference_pages_are_generated_from_the_code(page: str) -> None:
    committed = (ROOT / page).read_text(encoding="utf-8")
    assert committed == PAGES[page](), "regenerate: python -m pytest_keisei_perf.reference"


def test_the_api_page_has_every_fixture_method_hook_and_result_field() -> None:
    from pytest_keisei_perf import hookspecs
    from pytest_keisei_perf.result import PerfResult

    page = api_page()
    for title in ("perf.benchmark", "perf.compare", "perf.train_step", "perf.sweep", *hookspecs.__all__):
        assert f"### `{title}`" in page
    for f in dataclasses.fields(PerfResult):
        assert f"| `{f.name}` |" in page


def test_every_option_and_marker_keyword_is_on_the_page() -> None:
    page = options_page()
    assert set(MARKER_DOCS) == set(MARKER_KEYWORDS)
    for opt in _OPTIONS:
        assert (opt.flag in page) == (opt.dest != "worker"), opt.flag  # the hidden one stays hidden
    for key in MARKER_KEYWORDS:
        assert f"| `{key}` |" in page


def test_the_readme_is_short_and_links_into_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 10_240
    for page in ("how-to/writing-tests.md", "reference/options.md", "explanation/gate.md", "measurements.md"):
        assert f"(docs/{page})" in readme
        assert (ROOT / "docs" / page).is_file()


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    need("mkdocs")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "options" / "index.html").is_file()
