"""``keisei-perf``: work with baselines and reports outside a test run.

Subcommands: ``baselines`` (what is stored, per machine and benchmark), ``compare`` (two
``--perf-json`` reports or baseline files, with the gate's statistics; exit 1 on a regression),
``prune`` (drop entries whose tests no longer exist), ``history`` (an HTML page and PNGs of the
history, with steps and drifts) and ``architectures`` (what the model registry offers).
Exit codes: 0 fine, 1 regression (or a broken architecture), 2 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, formats, gate, stats
from .baseline import BaselineError, load, prune_file
from .ledger import FalseDiscoveryLedger
from .record import RunRecord, comparability_problem, median_of_runs
from .report import format_duration
from .result import Verdict

__all__ = ["main"]


class CliError(Exception):
    """Bad input: the message names the file or argument; exit code 2."""


# -- reading runs from either file kind ------------------------------------------------------------
@dataclass(frozen=True)
class RunSet:
    """Runs per benchmark id, read from one file."""

    path: Path
    runs: dict[str, list[Mapping[str, Any]]]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{path}: not valid JSON: {exc}") from None


def read_runs(path: Path) -> RunSet:
    """A ``--perf-json`` report (one run per benchmark) or a baseline file (its stored runs)."""
    data = _read_json(path)
    if isinstance(data, dict) and "benchmarks" in data:
        try:
            checked = load(path)
        except BaselineError as exc:
            raise CliError(str(exc)) from None
        return RunSet(path, {b: list(e["runs"]) for b, e in checked["benchmarks"].items()})
    if not (isinstance(data, dict) and isinstance(data.get("results"), list)):
        raise CliError(f"{path}: neither a --perf-json report nor a baseline file")
    _check_report(path, data)
    runs: dict[str, list[Mapping[str, Any]]] = {}
    for index, result in enumerate(data["results"]):
        if result.get("disabled"):
            continue
        untimed = [m for m, facts in result["modes"].items() if not facts["samples_s"]]
        if not result.get("reference_samples_s") or untimed:
            raise CliError(
                f"{path}: results[{index}] ({result['benchmark_id']}) was not timed "
                f"({', '.join(untimed) or 'reference workload'} has no samples); compare timed runs"
            )
        runs.setdefault(result["benchmark_id"], []).append(result)
    return RunSet(path, runs)


def _check_report(path: Path, data: Any) -> None:
    """A ``--perf-json`` report that breaks its format stops the command, naming file and place."""
    problem = formats.first_problem("report", data)
    if problem:
        raise CliError(f"{path}: {problem}")


# -- compare ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    benchmark: str
    mode: str
    base_median_s: float
    new_median_s: float
    decision: stats.GateDecision | None
    note: str = ""


def compare(base: RunSet, new: RunSet, *, threshold: float, alpha: float) -> list[Comparison]:
    """Every benchmark and mode in both files, decided like the gate: the same tests, the host
    and raw-time rules, and Benjamini-Hochberg (the gate's ledger) over all of them.

    Runs recorded under other conditions (device, compile settings, threads, reference
    workload: :func:`record.comparability_problem`, the gate's own check) are not compared.
    """
    decided: list[tuple[Comparison, gate.Evidence]] = []
    out: list[Comparison] = []
    for bench in sorted(set(base.runs) & set(new.runs)):
        b_all = [RunRecord.from_mapping(r) for r in base.runs[bench]]
        n_all = [RunRecord.from_mapping(r) for r in new.runs[bench]]
        problem = next((p for p in (comparability_problem(b, n) for b in b_all for n in n_all) if p), None)
        for mode in sorted({m for r in n_all for m in r.modes}):
            b_mode = [r for r in b_all if mode in r.modes]
            n_mode = [r for r in n_all if mode in r.modes]
            if not b_mode:
                continue
            row = Comparison(bench, mode, median_of_runs(b_mode, mode), median_of_runs(n_mode, mode), None)
            decision, why_not = _decision(b_mode, n_mode, mode, threshold=threshold, alpha=alpha)
            if problem or decision is None:
                note = f"recorded under other conditions: {problem}" if problem else why_not
                out.append(dataclasses.replace(row, note=note))
                continue
            out.append(row)
            decided.append((row, gate.evidence(b_mode, n_mode, decision, f"{len(n_mode)} run(s)")))
    ledger = FalseDiscoveryLedger()
    ledger.expect([e.decision.p_slower for _, e in decided if e.decision.p_slower is not None])
    context = gate.GateContext(threshold=threshold, alpha=alpha, ledger=ledger)
    settled = {id(row): _settled(row, e, context) for row, e in decided}
    return [settled.get(id(row), row) for row in out]


def _decision(
    base: Sequence[RunRecord], new: Sequence[RunRecord], mode: str, *, threshold: float, alpha: float
) -> tuple[stats.GateDecision | None, str]:
    """The run-level test with enough base runs, the round-level one for one run against one."""
    if len(base) >= stats.MIN_BASELINE_RUNS:
        values = [[v for v in (r.statistic(mode) for r in side) if v is not None] for side in (base, new)]
        return stats.compare_runs(*values, threshold=threshold, alpha=alpha), ""
    if len(base) == 1 and len(new) == 1:
        rounds = [
            stats.round_statistics(r.modes[mode].samples_s, r.reference_samples_s) for r in (*base, *new)
        ]
        return stats.compare_rounds(*rounds, threshold=threshold, alpha=alpha), ""
    return None, (
        f"{len(base)} run(s) in the base file: a comparison needs 1 (against 1) or at least "
        f"{stats.MIN_BASELINE_RUNS}"
    )


def _settled(row: Comparison, evidence: gate.Evidence, context: gate.GateContext) -> Comparison:
    """``row`` after the gate's own verdict tail (host rule, raw-time rule, BH)."""
    label = f"{row.benchmark} [{row.mode}]"
    settled = gate.settle_evidence(row.mode, evidence, context, label=row.benchmark)
    if isinstance(settled, Verdict):
        return dataclasses.replace(row, note=settled.message.removeprefix(f"{label}: not compared: "))
    status, note, _ = settled
    decision = dataclasses.replace(evidence.decision, status=status)
    return dataclasses.replace(row, decision=decision, note=note.removeprefix("; "))


def _comparison_line(row: Comparison) -> str:
    head = (
        f"{row.benchmark} [{row.mode}]: {format_duration(row.base_median_s)} -> "
        f"{format_duration(row.new_median_s)}"
    )
    d = row.decision
    if d is None:
        return f"{head}: not compared ({row.note})"
    if d.change is None:
        return f"{head}: inconclusive ({d.reason})"
    assert d.change_ci is not None
    p = d.p_slower if d.change >= 0 else d.p_faster
    text = (
        f"{head}: {d.status}, change {d.change:+.1%} (95% CI {d.change_ci[0]:+.1%} to "
        f"{d.change_ci[1]:+.1%}), p={p:.3g}, {d.baseline_runs} vs {d.current_runs} run(s)"
    )
    if d.detectable_effect is not None:
        text += f", detectable {d.detectable_effect:.1%}"
    notes = [n for n in (d.reason, row.note) if n]
    return text + (f" [{'; '.join(notes)}]" if notes else "")


def _cmd_compare(args: argparse.Namespace) -> int:
    base, new = read_runs(args.base), read_runs(args.new)
    rows = compare(base, new, threshold=args.threshold, alpha=args.alpha)
    if not rows:
        raise CliError(f"{args.base} and {args.new} have no benchmark in common")
    for row in rows:
        print(_comparison_line(row))
    regressions = [r for r in rows if r.decision is not None and r.decision.status == "regression"]
    print(f"{len(regressions)} regression(s) in {len(rows)} comparison(s)")
    return 1 if regressions else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import FORMATS, ExportError

    data = _read_json(args.report)
    _check_report(args.report, data)
    try:
        entries = FORMATS[args.format](data)
    except ExportError as exc:
        raise CliError(f"{args.report}: {exc}") from None
    text = json.dumps(entries, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    from .files import write_text_atomic

    try:
        write_text_atomic(args.out, text)
    except OSError as exc:
        raise CliError(f"--out {args.out}: cannot be written: {exc.strerror or exc}") from None
    print(f"keisei-perf: {len(entries)} entries written to {args.out}")
    return 0


# -- baselines -------------------------------------------------------------------------------------
def _cmd_baselines(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if not directory.is_dir():
        raise CliError(f"{directory}: no such baseline directory")
    files = sorted(directory.glob("*.json"))
    if not files:
        print(f"no baseline files in {directory}")
        return 0
    for path in files:
        try:
            data = load(path)
        except BaselineError as exc:
            raise CliError(str(exc)) from None
        facts = data.get("machine", {})
        described = ", ".join(
            f"{k} {facts[k]}" for k in ("name", "cpu_model", "torch", "threads") if k in facts
        )
        print(f"{path.stem}  ({described})")
        for bench, entry in sorted(data["benchmarks"].items()):
            runs = entry["runs"]
            records = [RunRecord.from_mapping(r) for r in runs]
            modes = sorted({m for r in records for m in r.modes})
            times = "  ".join(f"{m} {format_duration(median_of_runs(records, m))}" for m in modes)
            last = runs[-1]
            commit = (last.get("git_commit") or "-")[:10]
            print(f"  {bench}  {len(runs)} runs  {times}  last {last.get('timestamp', '-')}  commit {commit}")
    return 0


# -- machine ---------------------------------------------------------------------------------------
def _cmd_machine(args: argparse.Namespace) -> int:
    """This host's baseline key, its facts, and whether a baseline exists for it."""
    from .baseline import BaselineStore, machine_key, nearest_machine
    from .machine import machine_info
    from .settings import MACHINE_ENV

    name = args.name or os.environ.get(MACHINE_ENV) or None
    key, facts = machine_key(machine_info(threads=args.threads), name)
    store = BaselineStore(args.dir, key, facts)
    print(f"machine key: {key}")
    for fact, value in facts.items():
        print(f"  {fact}: {value}")
    if store.path.is_file():
        try:
            count = len(store.load())
        except BaselineError as exc:
            raise CliError(str(exc)) from None
        print(f"baseline: {store.path} ({count} benchmark(s)): the gate compares here")
        return 0
    print(f"baseline: none in {args.dir} for this key: the gate compares nothing here (NOT COMPARED)")
    found = nearest_machine(facts, store.other_machines())
    if found is not None:
        nearest, differences = found
        print(f"nearest stored key: {nearest}; differs in: {', '.join(differences) or 'nothing'}")
    print("create one with: pytest -m perf --perf-update-baseline")
    return 0


# -- prune -----------------------------------------------------------------------------------------
def collect_perf_nodeids(pytest_args: Sequence[str], cwd: Path) -> set[str]:
    """Ids of the perf tests pytest collects here now, as the plugin computes them (a
    ``--collect-only`` subprocess with :mod:`.collect_ids` loaded)."""
    from .collect_ids import IDS_FILE_ENV

    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "perf", "-p", "no:cacheprovider"]
    command += ["-p", "pytest_keisei_perf.collect_ids"]
    with tempfile.TemporaryDirectory(prefix="keisei-perf-prune-") as tmp:
        ids_file = Path(tmp) / "ids.txt"
        env = {**os.environ, IDS_FILE_ENV: str(ids_file)}
        proc = subprocess.run(
            [*command, *pytest_args], cwd=cwd, capture_output=True, text=True, check=False, env=env
        )
        if proc.returncode not in (0, 5):  # 5: nothing collected
            raise CliError(
                f"collecting tests failed (pytest exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        if not ids_file.exists():
            return set()
        return {line for line in ids_file.read_text(encoding="utf-8").splitlines() if line}


def _cmd_prune(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if args.apply and args.dry_run:
        raise CliError("--apply and --dry-run contradict each other")
    if not directory.is_dir():
        raise CliError(f"{directory}: no such baseline directory")
    nodeids = collect_perf_nodeids(args.pytest_args, Path.cwd())
    if not nodeids:
        raise CliError("no perf tests collected; refusing to prune every entry (check the pytest arguments)")

    def keep(bench: str) -> bool:
        return bench in nodeids or any(bench.startswith(f"{n}::") for n in nodeids)

    total = 0
    for path in sorted(directory.glob("*.json")):
        try:
            dropped = prune_file(path, keep, dry_run=not args.apply)
        except BaselineError as exc:
            raise CliError(str(exc)) from None
        for bench in dropped:
            print(f"{'dropped' if args.apply else 'would drop'} {bench} from {path.name}")
        total += len(dropped)
    entries = f"{total} stale entr{'y' if total == 1 else 'ies'}"
    if args.apply:
        print(f"{entries} removed")
    else:
        print(f"{entries} found; nothing changed (--apply removes them)" if total else f"{entries} found")
    return 0


# -- history ---------------------------------------------------------------------------------------
def _commit_url(text: str) -> str:
    if "{commit}" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} has no {{commit}} placeholder")
    try:
        text.format(commit="0" * 40)
    except (IndexError, KeyError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a template with only {{commit}}: {exc}") from None
    return text


def _cmd_history(args: argparse.Namespace) -> int:
    from .files import write_problem
    from .history import read_history
    from .history_page import write_page
    from .plots import PlotUnavailableError

    problem = write_problem(args.out, is_dir=True)
    if problem:
        raise CliError(f"--out {args.out}: {problem}")
    directory: Path = args.dir
    paths = sorted(directory.glob("*.history.jsonl")) if directory.is_dir() else []
    for extra in args.history:
        if not extra.is_file():
            raise CliError(f"{extra}: no such history file")
        paths.append(extra)
    if not paths:
        raise CliError(f"no history: no *.history.jsonl in {directory} and no --history file given")
    entries, problems = [], []
    for path in paths:
        found, bad = read_history(path)
        entries += found
        problems += bad
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not entries:
        raise CliError(f"no valid history entry in {', '.join(map(str, paths))}")
    try:
        page, changes = write_page(
            args.out, entries, threshold=args.threshold, problems=problems, commit_url=args.commit_url
        )
    except PlotUnavailableError as exc:
        raise CliError(str(exc).replace("--perf-plot", "keisei-perf history")) from None
    for change in changes[:20]:
        print(
            f"{change.what:5} {change.change:+7.1%}  p={change.p_value:.2g}  {change.benchmark_id} "
            f"[{change.mode}] {change.kind} on {change.machine}, at {change.at}"
        )
    print(f"{len(entries)} entries, {len(changes)} change(s); page written to {page}")
    return 0


# -- architectures ---------------------------------------------------------------------------------
def _cmd_architectures(args: argparse.Namespace) -> int:
    import keisei_models

    broken = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = keisei_models.available()
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(f"{'name':<22} {'input (batch first)':<22} {'actions':>8} {'parameters':>12}  description")
    for name in names:
        try:
            spec = keisei_models.get(name)
            params = sum(p.numel() for p in keisei_models.build(name).parameters())
        except Exception as exc:  # ArchitectureLoadError, or anything a third-party factory raises
            broken += 1
            print(f"{name:<22} cannot be loaded: {exc}")
            continue
        shape = "(B, " + ", ".join(map(str, spec.input_shape)) + ")"
        print(f"{name:<22} {shape:<22} {spec.num_actions:>8} {params:>12,}  {spec.description}")
    return 1 if broken else 0


# -- entry point -----------------------------------------------------------------------------------
def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keisei-perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    machine = sub.add_parser(
        "machine", help="this host's baseline key and facts, and whether a baseline exists for it"
    )
    machine.add_argument("--dir", type=Path, default=Path("baselines"), help="baseline directory")
    machine.add_argument("--threads", type=int, default=1, help="the --perf-threads the gate runs with")
    machine.add_argument("--name", help="the --perf-machine label (default: ${KEISEI_PERF_MACHINE})")
    machine.set_defaults(run=_cmd_machine)
    listing = sub.add_parser("baselines", help="list stored baselines per machine and benchmark")
    listing.add_argument("--dir", type=Path, default=Path("baselines"), help="baseline directory")
    listing.set_defaults(run=_cmd_baselines)
    comparing = sub.add_parser(
        "compare",
        help="compare two --perf-json reports or baseline files; exit 1 on a regression",
        description="Runs of the same benchmark are compared like the gate does: with at least 3 "
        "base runs (a baseline file) by the run-level t-test, one run per side by a round-level "
        "Welch test; regressions must survive Benjamini-Hochberg.",
    )
    comparing.add_argument("base", type=Path, help="the reference: a --perf-json report or baseline file")
    comparing.add_argument("new", type=Path, help="the candidate: a --perf-json report or baseline file")
    comparing.add_argument("--threshold", type=_fraction, default=0.05, help="smallest change that counts")
    comparing.add_argument("--alpha", type=_fraction, default=0.05, help="significance level")
    comparing.set_defaults(run=_cmd_compare)
    pruning = sub.add_parser(
        "prune",
        help="list, and with --apply drop, baseline entries whose tests no longer exist",
        description="Collects the perf tests with pytest --collect-only and computes their ids as "
        "the plugin does; extra arguments after -- go to pytest. Nothing is removed without --apply.",
    )
    pruning.add_argument("--dir", type=Path, default=Path("baselines"), help="baseline directory")
    pruning.add_argument("--apply", action="store_true", help="remove the stale entries (default: list them)")
    pruning.add_argument("--dry-run", action="store_true", help="only list them (the default)")
    pruning.add_argument("pytest_args", nargs="*", help="arguments for pytest's collection, e.g. tests/perf")
    pruning.set_defaults(run=_cmd_prune)
    hist = sub.add_parser(
        "history",
        help="draw the history as one self-contained HTML page with PNGs; steps and drifts marked",
    )
    hist.add_argument("--dir", type=Path, default=Path("baselines"), help="baseline directory")
    hist.add_argument(
        "--history", type=Path, action="append", default=[], help="a --perf-history file (repeatable)"
    )
    hist.add_argument("--out", type=Path, default=Path("perf-history"), help="folder for the page")
    hist.add_argument("--threshold", type=_fraction, default=0.05, help="drift that counts")
    hist.add_argument(
        "--commit-url",
        type=_commit_url,
        default=None,
        metavar="TEMPLATE",
        help="link each entry to its commit, e.g. https://github.com/OWNER/REPO/commit/{commit}",
    )
    hist.set_defaults(run=_cmd_history)
    exporting = sub.add_parser(
        "export",
        help="convert a --perf-json report for another tool (github-action-benchmark's "
        "customSmallerIsBetter JSON)",
    )
    exporting.add_argument("report", type=Path, help="a --perf-json report")
    exporting.add_argument("--format", choices=["github-action-benchmark"], required=True)
    exporting.add_argument("--out", type=Path, help="write here instead of standard output")
    exporting.set_defaults(run=_cmd_export)
    arches = sub.add_parser("architectures", help="list registered architectures with shapes and parameters")
    arches.set_defaults(run=_cmd_architectures)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CliError as exc:
        print(f"keisei-perf: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`keisei-perf baselines | head`): stop quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
