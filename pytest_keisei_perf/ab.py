"""Head against base in one job: ``--perf-compare-ref REF``.

A stored baseline ages, freezes its sampling error and cannot answer "is this faster here and
now?". Here each selected perf test runs at git ``REF`` (a temporary ``git worktree``) and at the
working tree, in fresh processes, alternately: A B, B A, A B... Each pair ran back to back on one
host, so machine drift cancels inside a pair; the paired, reference-normalised differences decide
(:func:`stats.compare_paired`). Nothing is read from or written to a baseline.

The REF side must import REF's code: its processes get the REF checkout's project root (and its
``src/``, plus ``perf_import_roots``) first on ``PYTHONPATH``, and a process that still imports a
module from the working tree (an editable install that wins, say) stops with an error naming it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from . import stats
from .gate import decision_verdict
from .record import RunRecord, median_of_runs
from .report import format_duration
from .result import Verdict
from .workers import WorkerError, run_worker

__all__ = [
    "FORBID_ROOT_ENV",
    "ABError",
    "PairedRuns",
    "RefCheckout",
    "check_imports",
    "decide_pairs",
    "gather_pairs",
    "is_clear",
    "run_ref_worker",
    "verdicts_for",
]

#: Set in REF-side processes: no module of the project may come from this folder (the working tree).
FORBID_ROOT_ENV: Final = "KEISEI_PERF_FORBID_ROOT"
#: Pairs after which the run may stop early when every mode's answer is already clear.
MIN_PAIRS_BEFORE_STOPPING: Final = 3
#: Early stops need more than the final decision: p below alpha / 10 for a regression, or the
#: upper 99% bound below the threshold for a pass, so peeking cannot inflate false alarms.
EARLY_STOP_CONFIDENCE: Final = 0.99


class ABError(RuntimeError):
    """The A/B comparison cannot run as asked (unknown ref, no git, wrong imports)."""


def _git(args: Sequence[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ABError(f"git {' '.join(args)} failed: {exc}") from None
    if proc.returncode != 0:
        raise ABError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


@dataclass
class RefCheckout:
    """``REF`` checked out in a temporary worktree of the repository holding ``project_root``."""

    ref: str
    project_root: Path
    import_roots: Sequence[str] = ()
    toplevel: Path = field(init=False)
    commit: str = field(init=False)
    folder: Path | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.toplevel = Path(_git(["rev-parse", "--show-toplevel"], self.project_root)).resolve()
        self.commit = _git(["rev-parse", "--verify", "--quiet", f"{self.ref}^{{commit}}"], self.project_root)

    def open(self) -> Path:
        """Create the worktree (once) and return its top folder."""
        if self.folder is None:
            parent = Path(tempfile.mkdtemp(prefix="keisei-perf-ref-"))
            folder = parent / "ref"
            _git(["worktree", "add", "--detach", str(folder), self.commit], self.toplevel)
            self.folder = folder
        return self.folder

    def close(self) -> None:
        if self.folder is None:
            return
        try:
            _git(["worktree", "remove", "--force", str(self.folder)], self.toplevel)
        except ABError:
            shutil.rmtree(self.folder, ignore_errors=True)
            subprocess.run(["git", "worktree", "prune"], cwd=self.toplevel, capture_output=True, check=False)
        shutil.rmtree(self.folder.parent, ignore_errors=True)
        self.folder = None

    def mapped(self, path: Path) -> Path:
        """Where ``path`` (inside the working tree) lies in the REF checkout."""
        return self.open() / path.resolve().relative_to(self.toplevel)

    def python_path(self) -> list[str]:
        """Import roots of the REF side, first on ``PYTHONPATH``."""
        root = self.mapped(self.project_root)
        roots = [root / r for r in self.import_roots] if self.import_roots else [root, root / "src"]
        return [str(r) for r in roots if r.is_dir()]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([*self.python_path(), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        env[FORBID_ROOT_ENV] = str(self.toplevel)
        return env


def check_imports(forbidden_root: str) -> None:
    """In a REF-side process: fail if any project module was imported from the working tree.

    Installed packages (under ``sys.prefix`` or a site-packages folder, such as a virtual
    environment inside the repository) do not count.
    """
    root = Path(forbidden_root).resolve()
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if "site-packages" in path.parts or any(p in path.parents for p in prefixes):
            continue
        if root in path.parents:
            raise ABError(
                f"the REF side imported {name} from the working tree ({path}), not from the REF "
                "checkout; put the package's folder on the import path with the ini option "
                "perf_import_roots (paths relative to the project root), or uninstall the "
                "editable install that shadows it"
            )


@dataclass
class PairedRuns:
    """The runs of one benchmark: REF side (A) and working tree (B), in pairs."""

    a: list[RunRecord] = field(default_factory=list)
    b: list[RunRecord] = field(default_factory=list)


def _differences(runs: PairedRuns, mode: str) -> list[float]:
    out = []
    for a, b in zip(runs.a, runs.b, strict=False):
        sa, sb = a.statistic(mode), b.statistic(mode)
        if sa is not None and sb is not None:
            out.append(sb - sa)
    return out


def decide_pairs(
    runs: PairedRuns, mode: str, *, threshold: float, alpha: float, confidence: float = 0.95
) -> tuple[stats.GateDecision, float]:
    """The paired decision for one mode and the raw change of the median times (B over A)."""
    decision = stats.compare_paired(
        _differences(runs, mode), threshold=threshold, alpha=alpha, confidence=confidence
    )
    raw = median_of_runs(runs.b, mode) / median_of_runs(runs.a, mode) - 1
    return decision, raw


def is_clear(runs: PairedRuns, modes: Sequence[str], *, threshold: float, alpha: float) -> bool:
    """Whether every mode's answer is already clear either way (early stop)."""
    for mode in modes:
        decision, _ = decide_pairs(
            runs, mode, threshold=threshold, alpha=alpha, confidence=EARLY_STOP_CONFIDENCE
        )
        if decision.change_ci is None or decision.p_slower is None:
            return False
        clearly_fine = decision.change_ci[1] < threshold
        clearly_slower = decision.p_slower < alpha / 10 and decision.change_ci[0] > threshold
        if not (clearly_fine or clearly_slower):
            return False
    return True


def gather_pairs(
    nodeid: str,
    *,
    pairs: int,
    run_a: Callable[[], list[dict[str, Any]] | None],
    run_b: Callable[[], list[dict[str, Any]]],
    threshold: float,
    alpha: float,
    say: Callable[[str], None],
) -> tuple[dict[str, PairedRuns], set[str]]:
    """Interleaved pairs (A B, B A, ...) of every benchmark the test produces.

    ``run_a`` returns None when the test does not exist at REF. One unmeasured run per side goes
    first, so both sides then time a warm compile cache alike. Returns the pairs per benchmark
    and the benchmarks that are new (absent at REF).
    """
    say(f"keisei-perf: A/B {nodeid}: warming both sides (one unmeasured run each)")
    warm_a = run_a()
    warm_b = {e["benchmark_id"]: e for e in run_b()}
    if warm_a is None:
        return {}, set(warm_b)
    present_at_ref = {e["benchmark_id"] for e in warm_a}
    new = set(warm_b) - present_at_ref
    results = {bench: PairedRuns() for bench in warm_b if bench not in new}
    modes = {bench: list(warm_b[bench]["modes"]) for bench in results}
    for i in range(pairs):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        say(f"keisei-perf: A/B {nodeid}: pair {i + 1}/{pairs} ({' then '.join(o.upper() for o in order)})")
        got: dict[str, dict[str, RunRecord]] = {}
        for side in order:
            entries = run_a() if side == "a" else run_b()
            got[side] = {e["benchmark_id"]: RunRecord.from_mapping(e) for e in entries or ()}
        for bench, paired in results.items():
            for side, runs in (("a", paired.a), ("b", paired.b)):
                if bench not in got[side]:
                    where = "REF" if side == "a" else "the working tree"
                    raise WorkerError(f"{where}'s process gave no result for {bench} in pair {i + 1}")
                runs.append(got[side][bench])
        taken = i + 1
        if MIN_PAIRS_BEFORE_STOPPING <= taken < pairs and all(
            is_clear(results[b], modes[b], threshold=threshold, alpha=alpha) for b in results
        ):
            say(f"keisei-perf: A/B {nodeid}: stopped after {taken} of {pairs} pairs: the answer is clear")
            break
    return results, new


def verdicts_for(
    bench: str,
    runs: PairedRuns,
    modes: Sequence[str],
    *,
    ref: str,
    threshold: float,
    alpha: float,
    bh: Callable[[float], tuple[bool, int]],
    nodeid: str,
) -> tuple[dict[str, Verdict], list[str]]:
    """Verdict per mode from the pairs; regressions must also be slower in raw time and survive
    Benjamini-Hochberg (``bh(p)`` -> (rejected, comparisons); it hears every p-value, so a
    session's passing comparisons count in the correction like the gate's do)."""
    verdicts: dict[str, Verdict] = {}
    failures: list[str] = []
    for mode in modes:
        decision, raw = decide_pairs(runs, mode, threshold=threshold, alpha=alpha)
        if decision.change is None or decision.change_ci is None:
            verdicts[mode] = Verdict(
                mode=mode, status="inconclusive", message=f"{bench} [{mode}]: {decision.reason}"
            )
            continue
        status = decision.status
        note = ""
        # every comparison's p-value joins Benjamini-Hochberg, as in the stored-baseline gate
        rejected, total = bh(decision.p_slower) if decision.p_slower is not None else (True, 0)
        if status == "regression" and raw <= 0:
            status, note = "inconclusive", f"; NOT failed: raw time is {raw:+.1%}"
        elif status == "regression" and not rejected:
            status, note = "pass", f"; not significant after Benjamini-Hochberg over {total} comparisons"
        lo, hi = decision.change_ci
        p = decision.p_slower if decision.change >= 0 else decision.p_faster
        now_s, ref_s = (format_duration(median_of_runs(side, mode)) for side in (runs.b, runs.a))
        message = (
            f"{bench} [{mode}]: A/B against {ref}: median {now_s} vs {ref_s} at {ref}; "
            f"change {decision.change:+.1%} (95% CI {lo:+.1%} "
            f"to {hi:+.1%}, paired over {len(runs.a)} pairs, machine-normalised), p={p:.3g}; raw {raw:+.1%}; "
            f"detectable {decision.detectable_effect:.1%}{note}"
        )
        if status == "regression":
            message = f"performance regression: {message}"
            failures.append(message)
        verdicts[mode] = decision_verdict(mode, status, message, decision, raw)
    return verdicts, failures


def run_ref_worker(
    checkout: RefCheckout,
    test_path: Path,
    nodeid_rest: str,
    *,
    settings: Any,
    user_args: Sequence[str],
    invocation_dir: Path,
) -> list[dict[str, Any]] | None:
    """One REF-side process over one test; None when the test does not exist at REF."""
    target = checkout.mapped(test_path)
    if not target.exists():
        return None
    inside = invocation_dir.resolve().is_relative_to(checkout.toplevel)
    entries = run_worker(
        [f"{target}{nodeid_rest}"],
        settings,
        cwd=checkout.mapped(invocation_dir) if inside else invocation_dir,
        wanted=None,
        user_args=[_map_arg(a, checkout) for a in user_args],
        env=checkout.env(),
        allow_missing=True,
    )
    return entries or None


def _map_arg(arg: str, checkout: RefCheckout) -> str:
    """Paths of the working tree (rootdir, ini file) point into the REF checkout instead."""
    try:
        path = Path(arg)
        if path.is_absolute() and path.resolve().is_relative_to(checkout.toplevel):
            return str(checkout.mapped(path))
    except (OSError, ValueError):
        pass
    return arg
