"""The docs' reference pages, generated from the code that defines them: every command-line
option and ini twin from ``settings._OPTIONS``, every marker keyword from the marker's parsers,
and the fixture's methods, the hooks and the result's fields from their signatures and docstrings.

``python -m pytest_keisei_perf.reference`` rewrites ``docs/reference/options.md`` and
``docs/reference/api.md``; a test fails when the committed pages and the code disagree.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Final

from .settings import _OPTIONS, MARKER_KEYWORDS, PerfSettings

__all__ = ["MARKER_DOCS", "PAGES", "api_page", "options_page"]

#: What each marker keyword does; a test requires one line per keyword the marker accepts.
MARKER_DOCS: Final = {
    "modes": 'modes to run, narrowed by `--perf-modes` (`("eager",)`, `"eager,compiled"`)',
    "threshold": "tolerated slowdown for this test (a fraction, e.g. `0.2`)",
    "alpha": "significance of the confirming test",
    "rtol": "relative tolerance of compiled against eager (default: by dtype)",
    "atol": "absolute tolerance of compiled against eager (default: by dtype)",
    "min_speedup": "fail when compiled (or a `perf.compare` candidate) is confidently slower than this",
    "compile": "`torch.compile` arguments, or named settings, each its own mode `compiled[name]`",
    "strict_compile": "a compile failure fails the test instead of falling back to eager",
    "strict_accuracy": "a compiled-vs-eager check that could not run fails the test",
    "inference_mode": "run under `torch.inference_mode()` (default `True`; training steps never do)",
    "check_outputs": "check compiled outputs against eager (default `True`)",
    "budget": "seconds of timed rounds per mode",
    "rounds": "target rounds per mode (at least 5)",
    "max_recompiles": "`perf.sweep`: recompiles over the shapes beyond which the test fails",
    "items": "what one call processes, for throughput (default: the batch dimension)",
    "gate_p95": "gate each mode's p95 of single calls too, as the mode `<mode> p95`",
    "profile": "profile this test after its timed rounds (as `--perf-profile` does for all)",
    "focus": "a module class or path: its share of the time, and the most a replacement can save",
}


def options_page() -> str:
    """The Markdown of ``docs/reference/options.md``."""
    defaults = PerfSettings()
    lines = [
        "# Options and marker keywords",
        "",
        "Generated from the code (`python -m pytest_keisei_perf.reference`); a test keeps it in",
        "step. Precedence: command line > ini > default, then the marker per test. Every option",
        "but the one-shot ones has an ini twin. Numbers and switches are typed ini options where",
        "pytest can type them (8.4 and later: `perf_threshold (float)` in `pytest --help`), so a",
        "native `[tool.pytest]` table may hold `perf_threshold = 0.1` as a TOML number, and",
        "`[tool.pytest.ini_options]` and `[pytest]` keep reading the same values as text.",
        "",
        "Checked when the session starts, before anything is measured (a usage error naming the",
        "option and the path): options that contradict each other (`--perf-compare-ref` with",
        "`--perf-update-baseline` or `--perf-disable`), and every path the session will write",
        "(`--perf-json`, `--perf-markdown`, `--perf-history`, `--perf-plot`, `--perf-profile`, and",
        "with an update the baseline folder): a folder where a file is wanted, a file where a",
        "folder is wanted, or a parent that cannot be written. A report that still cannot be",
        "written at the end is named, the results table prints anyway, and the session exits 1.",
        "`--perf-history` in an A/B run records each benchmark's change against REF (`kind` `ab`),",
        "which the history page chains into a trend that needs no host identity.",
        "",
        "## Command-line options",
        "",
        "| option | ini | default | meaning |",
        "|---|---|---|---|",
    ]
    for opt in _OPTIONS:
        if opt.dest == "worker":  # hidden from --help too
            continue
        flag = opt.flag if opt.is_flag else f"{opt.flag} {opt.metavar or 'VALUE'}"
        ini = f"`{opt.ini_name}` ({opt.ini_type})" if opt.ini else "-"
        default = getattr(defaults, opt.dest, None)
        shown = "-" if default in (None, False, (), "") else f"`{_text(default)}`"
        lines.append(f"| `{flag}` | {ini} | {shown} | {_cell(opt.help)} |")
    lines += [
        "",
        "## Marker keywords",
        "",
        "`@pytest.mark.perf(...)` takes keywords only; an unknown keyword or a bad value is a",
        "collection error naming it.",
        "",
        "| keyword | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{key}` | {_cell(MARKER_DOCS[key])} |" for key in MARKER_KEYWORDS]
    return "\n".join(lines) + "\n"


def api_page() -> str:
    """The Markdown of ``docs/reference/api.md``."""
    from . import hookspecs
    from .fixture import PerfFixture
    from .result import ModeResult, PerfResult

    lines = [
        "# Fixture, hooks and results",
        "",
        "Generated from the code (`python -m pytest_keisei_perf.reference`); a test keeps it in step.",
        "",
        "## The `perf` fixture",
        "",
        "A test that takes `perf` is marked `perf`; each call below measures one benchmark and",
        "returns its `PerfResult`.",
        "",
    ]
    for method in ("benchmark", "compare", "train_step", "sweep"):
        lines += _documented(f"perf.{method}", getattr(PerfFixture, method), skip_self=True)
    lines += ["## Hooks", "", "Implement them in a `conftest.py` or a plugin.", ""]
    for hook in hookspecs.__all__:
        lines += _documented(hook, getattr(hookspecs, hook))
    for kind in (PerfResult, ModeResult):
        lines += [f"## `{kind.__name__}`", "", _docstring(kind), "", "| field | type |", "|---|---|"]
        lines += [f"| `{f.name}` | `{_cell(str(f.type))}` |" for f in dataclasses.fields(kind)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _documented(title: str, fn: Any, *, skip_self: bool = False) -> list[str]:
    return [f"### `{title}`", "", "```python", _signature(fn, skip_self), "```", "", _docstring(fn), ""]


def _signature(fn: Any, skip_self: bool) -> str:
    """``name(a: T, *args: T, b: T = 'x') -> R`` as written in the source (annotations are text
    under ``from __future__ import annotations``)."""
    import inspect

    signature = inspect.signature(fn)
    params = list(signature.parameters.values())[1 if skip_self else 0 :]
    parts: list[str] = []
    star_done = False
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
        star_done = star_done or p.kind in (p.VAR_POSITIONAL, p.KEYWORD_ONLY)
        stars = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        text = stars + p.name
        if p.annotation is not p.empty:
            text += f": {p.annotation}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        parts.append(text)
    returns = (
        f" -> {signature.return_annotation}" if signature.return_annotation is not signature.empty else ""
    )
    return f"{fn.__name__}({', '.join(parts)}){returns}"


def _docstring(obj: object) -> str:
    import inspect

    return inspect.getdoc(obj) or ""


#: Each generated page and its generator.
PAGES: Final = {"docs/reference/options.md": options_page, "docs/reference/api.md": api_page}


def _text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path()
    for page, make in PAGES.items():
        (root / page).write_text(make(), encoding="utf-8")
        print(f"wrote {root / page}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
