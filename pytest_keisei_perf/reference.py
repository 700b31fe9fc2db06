"""The docs' reference pages, generated from the code that defines them: every command-line
option and ini twin from ``settings._OPTIONS``, every marker keyword from the marker's parsers.

``python -m pytest_keisei_perf.reference`` rewrites ``docs/reference/options.md``; a test fails
when the committed page and the code disagree.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Final

from .settings import _OPTIONS, MARKER_KEYWORDS, PerfSettings

__all__ = ["MARKER_DOCS", "options_page"]

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
        "`--perf-history` in an A/B run is not recorded, and a `PytestConfigWarning` says so.",
        "",
        "## Command-line options",
        "",
        "| option | ini | default | meaning |",
        "|---|---|---|---|",
    ]
    for opt in _OPTIONS:
        if opt.help == "==SUPPRESS==" or opt.dest == "worker":
            continue
        flag = opt.flag if opt.is_flag else f"{opt.flag} {opt.metavar or 'VALUE'}"
        ini = f"`{opt.ini_name}` ({opt.ini_type})" if opt.ini else "-"
        default = getattr(defaults, opt.dest, None) if opt.dest in _fields() else None
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


def _fields() -> set[str]:
    return {f.name for f in dataclasses.fields(PerfSettings)}


def _text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path("docs/reference/options.md")
    target.write_text(options_page(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
