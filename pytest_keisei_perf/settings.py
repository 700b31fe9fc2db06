"""Command line, ini file and ``@pytest.mark.perf`` resolved into validated, frozen settings.

Precedence is CLI > ini > default for the session, then the marker for each test. Every error
names where the bad value came from (``--perf-threshold``, ``perf_threshold in the ini file`` or
``@pytest.mark.perf(threshold=...) on <node id>``). Nothing else in the plugin reads options.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import pytest

from .files import write_problem

__all__ = [
    "MODES",
    "BenchmarkConfig",
    "PerfConfigError",
    "PerfSettings",
    "add_options",
    "resolve_marker",
    "resolve_settings",
]

#: The two ways a benchmark can run, in the order they are reported.
MODES: Final = ("eager", "compiled")
#: Fresh processes that re-measure a suspect by default: with the default baseline runs, enough
#: to detect a 10% slowdown at the between-process spread of 2-core CI boxes.
CONFIRM_RUNS: Final = 4
#: Fewer baseline runs than this cannot estimate between-run spread (``stats.MIN_BASELINE_RUNS``).
MIN_BASELINE_RUNS: Final = 3
#: Fewer timed rounds than this give no usable spread, whatever the budget says.
MIN_ROUNDS: Final = 5
#: Default of ``--perf-ab-max-pairs``.
AB_MAX_PAIRS: Final = 12
#: ``--perf-compile-state``: time compiled code loaded from the persisted cache, compiled from an
#: empty cache in a fresh process, or both side by side.
COMPILE_STATES: Final = ("warm", "cold", "both")
#: pytest reads ``int`` and ``float`` ini options from 8.4 on.
_PYTEST_TYPES_NUMBERS: Final = tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit()) >= (
    8,
    4,
)
#: Environment variable naming this machine for baseline keys (CI runners of one kind share it).
MACHINE_ENV: Final = "KEISEI_PERF_MACHINE"


class PerfConfigError(ValueError):
    """A bad option, ini value or marker keyword; the message names its source."""


# -- value parsers: each takes the raw value and returns the typed one or raises ValueError --------
#: The ini type of each typed parser (pytest converts ini strings and checks native TOML values);
#: every other parser reads a string.
_IniType = Literal["string", "bool", "int", "float"]
_INI_TYPES: dict[Callable[[Any], Any], _IniType] = {}


def _float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        if isinstance(raw, bool):
            raise ValueError(f"expected a number, got {raw!r}")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {raw!r}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            bracket = "(" if low_open else "["
            raise ValueError(f"must be in {bracket}{low:g}, {high:g}], got {raw!r}")
        return value

    _INI_TYPES[parse] = "float"
    return parse


def _int_at_least(low: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"expected an integer, got {raw!r}")
        try:
            value = int(str(raw).strip()) if not isinstance(raw, int) else raw
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if value < low:
            raise ValueError(f"must be >= {low}, got {raw!r}")
        return value

    _INI_TYPES[parse] = "int"
    return parse


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        value = str(raw).strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


_INI_TYPES[_bool] = "bool"


def _modes(raw: Any) -> tuple[str, ...]:
    items = [m.strip() for m in raw.split(",")] if isinstance(raw, str) else list(raw)
    if not items or not all(isinstance(m, str) and m for m in items):
        raise ValueError(f"expected a non-empty list of modes from {MODES}, got {raw!r}")
    unknown = [m for m in items if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(map(repr, unknown))}; choose from {', '.join(MODES)}")
    return tuple(m for m in MODES if m in items)


def _paths_list(raw: Any) -> tuple[str, ...]:
    items = [p.strip() for p in raw.replace("\n", ",").split(",")] if isinstance(raw, str) else list(raw)
    items = [p for p in items if p]
    if not items:
        raise ValueError("expected one or more folders")
    return tuple(items)


def _text(raw: Any) -> str:
    text = str(raw).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


@cache
def _compile_keywords() -> frozenset[str]:
    """``torch.compile``'s keyword arguments (torch is imported only once a marker needs it)."""
    import torch

    return frozenset(
        name
        for name, p in inspect.signature(torch.compile).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def _compile_setting(raw: Any) -> Mapping[str, Any]:
    """The marker's ``compile=``: ``torch.compile`` keyword arguments, or named settings
    (``{"default": {}, "reduce-overhead": {"mode": "reduce-overhead"}}``), each its own mode."""
    # every value a dict: named settings, unless it is torch.compile's one dict-valued argument
    named = isinstance(raw, Mapping) and raw and all(isinstance(v, Mapping) for v in raw.values())
    if named and not set(map(str, raw)) <= {"options"}:
        bad = [k for k in raw if not isinstance(k, str) or not k or "]" in k]
        if bad:
            raise ValueError(f"compile setting names must be non-empty strings without ']', got {bad!r}")
        variants = {}
        for key, value in raw.items():
            try:
                variants[key] = _compile_kwargs(value)
            except ValueError as exc:
                raise ValueError(f"setting {key!r}: {exc}") from None
        return MappingProxyType({NAMED_SETTINGS: MappingProxyType(variants)})
    return _compile_kwargs(raw)


def _compile_kwargs(raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected a dict of torch.compile keyword arguments, got {type(raw).__name__}")
    known = _compile_keywords()
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ValueError(
            f"unknown torch.compile argument(s) {', '.join(map(repr, unknown))}; "
            f"torch.compile accepts {', '.join(sorted(known))}"
        )
    return MappingProxyType(dict(raw))


#: ``--perf-ab-schedule``: how the two processes of an A/B pair share the machine (:mod:`.duet`).
AB_SCHEDULES: Final = ("sequential", "duet")


# -- the session settings -----------------------------------------------------------------------
@dataclass(frozen=True)
class PerfSettings:
    """Everything the command line and ini file decide for the whole session."""

    update_baseline: bool = False
    baseline_dir: Path = Path("baselines")
    modes: tuple[str, ...] = MODES
    threshold: float = 0.05
    alpha: float = 0.05
    threads: int = 1
    compile_backend: str = "inductor"
    compile_mode: str | None = None
    strict_compile: bool = False
    strict_accuracy: bool = False
    require_baseline: bool = False
    json_path: Path | None = None
    markdown_path: Path | None = None
    plot_dir: Path | None = None
    profile_dir: Path | None = None
    compile_cache: str | None = None
    compile_state: str = "warm"
    history_path: Path | None = None
    fail_drift: bool = False
    drift_window: int = 20
    drift_since: str | None = None
    disable: bool = False
    budget_s: float = 2.0
    rounds: int = 20
    baseline_runs: int = 5
    confirm_runs: int = CONFIRM_RUNS
    machine: str | None = None
    fail_inconclusive: bool = False
    worker: bool = False
    compare_ref: str | None = None
    ab_pairs: int = 5
    ab_max_pairs_set: int | None = None
    ab_schedule: str = "duet"
    import_roots: tuple[str, ...] = ()

    @property
    def ab_max_pairs(self) -> int:
        """The most pairs an A/B comparison takes while an answer is unclear: as set, or
        :data:`AB_MAX_PAIRS` (never fewer than ``ab_pairs``)."""
        if self.ab_max_pairs_set is not None:
            return self.ab_max_pairs_set
        return max(AB_MAX_PAIRS, self.ab_pairs)


@dataclass(frozen=True)
class _Option:
    dest: str
    flag: str
    parse: Callable[[Any], Any]
    help: str
    ini: bool = True
    metavar: str | None = None
    is_flag: bool = False
    #: Path-valued settings are resolved against the rootdir (ini) or the invocation dir (CLI).
    is_path: bool = False

    @property
    def ini_name(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def ini_type(self) -> _IniType:
        """pytest's ini type: numbers and booleans typed where pytest can (8.4 and later), so that
        a native ``[tool.pytest]`` table may hold ``perf_threshold = 0.1``."""
        kind = _INI_TYPES.get(self.parse, "string")
        if kind in ("int", "float") and not _PYTEST_TYPES_NUMBERS:
            return "string"
        return kind


_OPTIONS: Final = (
    _Option(
        "update_baseline",
        "--perf-update-baseline",
        _bool,
        "measure the selected benchmarks in several fresh processes and store them as the new "
        "baseline for this machine (no regression gate)",
        ini=False,
        is_flag=True,
    ),
    _Option(
        "baseline_dir",
        "--perf-baseline-dir",
        _text,
        "where baselines live (default: baselines/ under the rootdir)",
        metavar="DIR",
        is_path=True,
    ),
    _Option(
        "modes", "--perf-modes", _modes, "modes to run, e.g. eager,compiled (default both)", metavar="M,..."
    ),
    _Option(
        "threshold",
        "--perf-threshold",
        _float_in(0.0, 10.0, low_open=True),
        "tolerated slowdown as a fraction (default 0.05)",
        metavar="F",
    ),
    _Option(
        "alpha",
        "--perf-alpha",
        _float_in(0.0, 0.5, low_open=True),
        "significance level of the confirming regression test (default 0.05)",
        metavar="F",
    ),
    _Option(
        "threads",
        "--perf-threads",
        _int_at_least(1),
        "torch/OpenMP threads while timing, fixed before compiling (default 1)",
        metavar="N",
    ),
    _Option(
        "compile_backend",
        "--perf-compile-backend",
        _text,
        "torch.compile backend (default inductor)",
        metavar="B",
    ),
    _Option(
        "compile_mode", "--perf-compile-mode", _text, "torch.compile mode (default: torch's)", metavar="M"
    ),
    _Option(
        "strict_compile",
        "--perf-strict-compile",
        _bool,
        "a compile failure fails the test instead of falling back to eager",
        is_flag=True,
    ),
    _Option(
        "strict_accuracy",
        "--perf-strict-accuracy",
        _bool,
        "a compiled-vs-eager check that could not run (eager not deterministic) fails the test "
        "instead of being reported as NOT CHECKED",
        is_flag=True,
    ),
    _Option(
        "require_baseline",
        "--perf-require-baseline",
        _bool,
        "a benchmark without a baseline fails instead of passing with a note",
        is_flag=True,
    ),
    _Option(
        "json_path",
        "--perf-json",
        _text,
        "write every result, verdict and environment fact as JSON to PATH",
        ini=False,
        metavar="PATH",
        is_path=True,
    ),
    _Option(
        "disable",
        "--perf-disable",
        _bool,
        "smoke run: call each benchmark once per mode, untimed, no compile and no gate",
        ini=False,
        is_flag=True,
    ),
    _Option(
        "budget_s",
        "--perf-budget",
        _float_in(0.0, 3600.0, low_open=True),
        "seconds of timed rounds per benchmark and mode (default 2; warm-up and compile extra)",
        metavar="S",
    ),
    _Option(
        "rounds",
        "--perf-rounds",
        _int_at_least(MIN_ROUNDS),
        "timed rounds per mode when the budget allows (default 20, at least 5)",
        metavar="N",
    ),
    _Option(
        "baseline_runs",
        "--perf-baseline-runs",
        _int_at_least(MIN_BASELINE_RUNS),
        "independent processes --perf-update-baseline gathers per benchmark (default 5)",
        metavar="N",
    ),
    _Option(
        "confirm_runs",
        "--perf-confirm-runs",
        _int_at_least(0),
        "fresh processes that re-measure a suspected regression before it fails "
        f"(default {CONFIRM_RUNS}; 0 = decide at once)",
        metavar="N",
    ),
    _Option(
        "machine",
        "--perf-machine",
        _text,
        f"a label for this machine's baseline key (env {MACHINE_ENV}); it joins the hardware "
        "fingerprint and never replaces it",
        metavar="NAME",
    ),
    _Option(
        "markdown_path",
        "--perf-markdown",
        _text,
        "write the results table as Markdown to PATH (appended to $GITHUB_STEP_SUMMARY anyway)",
        ini=False,
        metavar="PATH",
        is_path=True,
    ),
    _Option(
        "plot_dir",
        "--perf-plot",
        _text,
        "draw each benchmark's baseline and current rounds, plus an overview, as PNGs in DIR "
        "(needs pip install 'pytest-keisei-perf[plot]')",
        ini=False,
        metavar="DIR",
        is_path=True,
    ),
    _Option(
        "profile_dir",
        "--perf-profile",
        _text,
        "after each benchmark's timed rounds, profile every mode (torch.profiler, outside the "
        "rounds): a Perfetto/chrome://tracing trace per mode in DIR, and where the time goes by "
        "submodule, module class and op (marker profile=True does it for one test)",
        metavar="DIR",
        is_path=True,
    ),
    _Option(
        "compile_cache",
        "--perf-compile-cache",
        _text,
        "folder for inductor's compile cache, kept between runs (default: under pytest's cache "
        "dir, keyed by torch version and threads; 'torch' keeps torch's default; a set "
        "$TORCHINDUCTOR_CACHE_DIR wins over the default)",
        metavar="DIR",
    ),
    _Option(
        "compile_state",
        "--perf-compile-state",
        _one_of(COMPILE_STATES),
        "state of inductor's cache the compiled mode is timed in: warm (loaded from the kept "
        "cache, the default), cold (compiled from an empty cache in a fresh process) or both "
        "side by side",
        metavar="{warm,cold,both}",
    ),
    _Option(
        "history_path",
        "--perf-history",
        _text,
        "append every gated run's summary to PATH as one JSON line (keep it in a CI cache, "
        "artifact or branch); its drift is checked like the baselines'. An A/B run appends "
        "each benchmark's change against REF instead",
        metavar="PATH",
        is_path=True,
    ),
    _Option(
        "fail_drift",
        "--perf-fail-drift",
        _bool,
        "a significant drift above the threshold along the history fails the test (default: a "
        "PerfDriftWarning)",
        is_flag=True,
    ),
    _Option(
        "drift_window",
        "--perf-drift-window",
        _int_at_least(3),
        "history entries the drift check spans, newest last (default 20)",
        metavar="N",
    ),
    _Option(
        "drift_since",
        "--perf-drift-since",
        _text,
        "measure drift from the first history entry of this git commit (a prefix will do) "
        "instead of over --perf-drift-window entries",
        metavar="COMMIT",
    ),
    _Option(
        "fail_inconclusive",
        "--perf-fail-inconclusive",
        _bool,
        "an inconclusive verdict (too noisy to decide) fails the test",
        is_flag=True,
    ),
    _Option(
        "compare_ref",
        "--perf-compare-ref",
        _text,
        "gate the working tree against git REF in interleaved fresh processes on this host "
        "(no baseline read or written)",
        metavar="REF",
    ),
    _Option(
        "ab_pairs",
        "--perf-ab-pairs",
        _int_at_least(2),
        "pairs of fresh processes (REF, working tree) per test for --perf-compare-ref (default 5); "
        "more while an answer is unclear",
        metavar="N",
    ),
    _Option(
        "ab_max_pairs_set",
        "--perf-ab-max-pairs",
        _int_at_least(2),
        "the most pairs --perf-compare-ref takes while an answer is unclear (default 12); still "
        "unclear then: inconclusive",
        metavar="N",
    ),
    _Option(
        "ab_schedule",
        "--perf-ab-schedule",
        _one_of(AB_SCHEDULES),
        "how --perf-compare-ref runs a pair: duet (REF and the working tree at once, each pinned "
        "to its own cores; the default, and sequential pairs where the machine cannot) or "
        "sequential (REF, then the working tree)",
        metavar="{sequential,duet}",
    ),
    _Option(
        "import_roots",
        "--perf-import-roots",
        _paths_list,
        "import roots of the REF side, relative to the project root, comma-separated (default: the "
        "project root and its src/)",
        metavar="DIR,...",
    ),
    _Option(
        "worker", "--perf-worker", _bool, "internal: this process is one fresh run", ini=False, is_flag=True
    ),
)


def add_options(parser: pytest.Parser) -> None:
    """Register the ``keisei-perf`` option group and the ini twins."""
    group = parser.getgroup("keisei-perf", "performance regression testing (pytest-keisei-perf)")
    for opt in _OPTIONS:
        # argparse hides an option whose help *is* its SUPPRESS constant (an equal string shows)
        help_text = argparse.SUPPRESS if opt.dest == "worker" else opt.help
        if opt.is_flag:
            group.addoption(
                opt.flag, action="store_true", default=None, dest=f"perf_{opt.dest}", help=help_text
            )
        else:
            group.addoption(
                opt.flag, default=None, dest=f"perf_{opt.dest}", metavar=opt.metavar, help=help_text
            )
        if opt.ini:
            parser.addini(
                opt.ini_name, f"{opt.help} (ini twin of {opt.flag})", type=opt.ini_type, default=None
            )


def resolve_settings(config: pytest.Config) -> PerfSettings:
    """Read every option once, CLI over ini over default; a bad value raises ``pytest.UsageError``."""
    values: dict[str, Any] = {}
    for opt in _OPTIONS:
        raw, where, base = config.getoption(f"perf_{opt.dest}"), opt.flag, Path(config.invocation_params.dir)
        if raw is None and opt.ini:
            try:
                from_ini = config.getini(opt.ini_name)
            except (TypeError, ValueError, pytest.UsageError) as exc:  # pytest's typed-ini conversion
                raise pytest.UsageError(
                    f"keisei-perf: invalid {opt.ini_name} in the ini file: expected {opt.ini_type}, {exc}"
                ) from None
            raw, where, base = (
                None if from_ini in (None, "") else from_ini,
                f"{opt.ini_name} in the ini file",
                config.rootpath,
            )
        if raw is None and opt.dest == "machine" and os.environ.get(MACHINE_ENV):
            raw, where = os.environ[MACHINE_ENV], f"the {MACHINE_ENV} environment variable"
        if raw is None:
            continue
        try:
            value = opt.parse(raw)
        except ValueError as exc:
            raise pytest.UsageError(f"keisei-perf: invalid {where}: {exc}") from None
        values[opt.dest] = (base / value) if opt.is_path else value
    values.setdefault("baseline_dir", config.rootpath / "baselines")
    settings = PerfSettings(**values)
    if not settings.worker:
        _check_contradictions(settings)
        _check_writable(settings)
    return settings


def _check_contradictions(settings: PerfSettings) -> None:
    """Options that cannot both hold are a usage error before anything is measured."""
    if settings.compare_ref and settings.update_baseline:
        raise pytest.UsageError(
            "keisei-perf: --perf-compare-ref and --perf-update-baseline contradict each other: an A/B "
            "run reads and writes no baseline; run the update on its own"
        )
    if settings.compare_ref and settings.disable:
        raise pytest.UsageError(
            "keisei-perf: --perf-compare-ref and --perf-disable contradict each other: a smoke run "
            "times nothing to compare"
        )
    if settings.ab_max_pairs < settings.ab_pairs:
        raise pytest.UsageError(
            f"keisei-perf: --perf-ab-max-pairs {settings.ab_max_pairs} is below --perf-ab-pairs "
            f"{settings.ab_pairs}: the most pairs cannot be fewer than the pairs always taken"
        )


def _check_writable(settings: PerfSettings) -> None:
    """Every file this session will write can be written: checked now, not after the measuring."""
    targets: list[tuple[str, Path, bool]] = [
        ("--perf-json", p, False) for p in [settings.json_path] if p is not None
    ]
    targets += [("--perf-markdown", p, False) for p in [settings.markdown_path] if p is not None]
    targets += [("--perf-history", p, False) for p in [settings.history_path] if p is not None]
    targets += [("--perf-plot", p, True) for p in [settings.plot_dir] if p is not None]
    targets += [("--perf-profile", p, True) for p in [settings.profile_dir] if p is not None]
    if settings.update_baseline:
        targets.append(("--perf-baseline-dir", settings.baseline_dir, True))
    for flag, path, is_dir in targets:
        problem = write_problem(path, is_dir=is_dir)
        if problem:
            raise pytest.UsageError(f"keisei-perf: {flag} {path}: {problem}")


# -- per-test configuration ---------------------------------------------------------------------
@dataclass(frozen=True)
class BenchmarkConfig:
    """What one test's benchmarks run with: the session settings refined by its marker."""

    modes: tuple[str, ...]
    threshold: float
    alpha: float
    rtol: float | None
    atol: float | None
    min_speedup: float | None
    compile_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: Named compile settings (marker ``compile={"name": {...}}``), each timed as the mode
    #: ``compiled[name]`` with ``compile_kwargs`` updated by its own; empty: one ``compiled`` mode.
    compile_variants: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    strict_compile: bool = False
    strict_accuracy: bool = False
    inference_mode: bool = True
    check_outputs: bool = True
    budget_s: float = 2.0
    rounds: int = 20
    threads: int = 1
    #: ``perf.sweep``: recompiles over the shapes beyond which the benchmark fails (None: any).
    max_recompiles: int | None = None
    #: Items one call processes, for throughput (None: the leading dimension of the first tensor).
    items: int | None = None
    #: Gate each mode's p95 of single calls too, as the mode ``"<mode> p95"``.
    gate_p95: bool = False
    #: Profile each mode after its timed rounds (``--perf-profile``, marker ``profile=True``, or
    #: a ``focus``); traces are written only where ``profile_dir`` is set.
    profile: bool = False
    profile_dir: Path | None = None
    #: A module class or path whose share of the time bounds any replacement of it (Amdahl).
    focus: str | None = None

    @property
    def compiled_modes(self) -> dict[str, Mapping[str, Any]]:
        """Each compiled mode and its ``torch.compile`` arguments (none without ``compiled``)."""
        if "compiled" not in self.modes:
            return {}
        return dict(self.compile_variants) or {"compiled": self.compile_kwargs}

    @property
    def mode_names(self) -> tuple[str, ...]:
        """The modes a result of this config has: eager, then each compiled one."""
        return tuple(m for m in self.modes if m != "compiled") + tuple(self.compiled_modes)


#: Key under which :func:`_compile_setting` hands named settings on (not a torch.compile argument).
NAMED_SETTINGS: Final = "__named_settings__"


def _strict_bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"expected True or False, got {raw!r}")
    return raw


def _module_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip() or any(c.isspace() for c in raw.strip()):
        raise ValueError(
            f"expected a module class name or module path such as 'SqueezeExcitation', got {raw!r}"
        )
    return raw.strip()


_MARKER_PARSERS: Final[Mapping[str, Callable[[Any], Any]]] = {
    "modes": _modes,
    "threshold": _float_in(0.0, 10.0, low_open=True),
    "alpha": _float_in(0.0, 0.5, low_open=True),
    "rtol": _float_in(0.0, 1.0),
    "atol": _float_in(0.0, math.inf),
    "min_speedup": _float_in(0.0, 1000.0, low_open=True),
    "compile": _compile_setting,
    "strict_compile": _strict_bool,
    "strict_accuracy": _strict_bool,
    "inference_mode": _strict_bool,
    "check_outputs": _strict_bool,
    "budget": _float_in(0.0, 3600.0, low_open=True),
    "rounds": _int_at_least(MIN_ROUNDS),
    "max_recompiles": _int_at_least(0),
    "items": _int_at_least(1),
    "gate_p95": _strict_bool,
    "profile": _strict_bool,
    "focus": _module_name,
}
#: Marker keywords, for the marker's help line and error messages.
MARKER_KEYWORDS: Final = tuple(_MARKER_PARSERS)


def resolve_marker(settings: PerfSettings, nodeid: str, markers: list[pytest.Mark]) -> BenchmarkConfig:
    """Apply ``@pytest.mark.perf`` keywords (closest marker wins) to the session settings.

    Raises:
        PerfConfigError: positional arguments, an unknown keyword or a bad value, named.
    """
    merged: dict[str, Any] = {}
    for mark in reversed(markers):  # iter_markers yields the closest first
        if mark.args:
            raise PerfConfigError(
                f"{nodeid}: @pytest.mark.perf takes keyword arguments only, got positional {mark.args!r}"
            )
        merged.update(mark.kwargs)
    parsed: dict[str, Any] = {}
    for key, raw in merged.items():
        parse = _MARKER_PARSERS.get(key)
        if parse is None:
            raise PerfConfigError(
                f"{nodeid}: @pytest.mark.perf got unknown keyword {key!r}; "
                f"known keywords: {', '.join(MARKER_KEYWORDS)}"
            )
        try:
            parsed[key] = parse(raw)
        except ValueError as exc:
            raise PerfConfigError(f"{nodeid}: @pytest.mark.perf({key}={raw!r}): {exc}") from None
    compile_kwargs: dict[str, Any] = {"backend": settings.compile_backend}
    if settings.compile_mode is not None:
        compile_kwargs["mode"] = settings.compile_mode
    setting = parsed.pop("compile", {})
    variants = setting.get(NAMED_SETTINGS, {})
    if not variants:
        compile_kwargs.update(setting)
    base = BenchmarkConfig(
        modes=settings.modes,
        threshold=settings.threshold,
        alpha=settings.alpha,
        rtol=None,
        atol=None,
        min_speedup=None,
        compile_kwargs=MappingProxyType(compile_kwargs),
        compile_variants=MappingProxyType(
            {f"compiled[{name}]": MappingProxyType({**compile_kwargs, **kw}) for name, kw in variants.items()}
        ),
        strict_compile=settings.strict_compile,
        strict_accuracy=settings.strict_accuracy,
        budget_s=settings.budget_s,
        rounds=settings.rounds,
        threads=settings.threads,
        profile=settings.profile_dir is not None,
        profile_dir=settings.profile_dir,
    )
    if parsed.get("focus"):
        if parsed.get("profile") is False:
            raise PerfConfigError(
                f"{nodeid}: @pytest.mark.perf(focus={parsed['focus']!r}) needs a profile, "
                "but the marker says profile=False"
            )
        parsed["profile"] = True  # a bound needs a profile, trace or no trace
    if "modes" in parsed:  # --perf-modes narrows what a marker asks for; it never adds modes
        parsed["modes"] = tuple(m for m in parsed["modes"] if m in settings.modes)
    if "budget" in parsed:
        parsed["budget_s"] = parsed.pop("budget")
    for strict in ("strict_compile", "strict_accuracy"):  # a --perf-strict-* flag cannot be loosened
        if getattr(settings, strict):
            parsed.pop(strict, None)
    return replace(base, **parsed)
