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

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import pytest

from . import stats
from .gate import decision_verdict, settle
from .record import RunRecord, median_of_runs
from .report import format_duration
from .result import PerfResult, Verdict
from .workers import WorkerError
from .worktree import FORBID_ROOT_ENV, ABError, RefCheckout, check_imports

if TYPE_CHECKING:
    from .calls import BenchmarkCall
    from .session import PerfSession
    from .settings import BenchmarkConfig

__all__ = [
    "FORBID_ROOT_ENV",
    "ABError",
    "ABRole",
    "PairedRuns",
    "RefCheckout",
    "check_imports",
    "decide_pairs",
    "gather_pairs",
    "is_clear",
    "verdicts_for",
]

#: Pairs after which the run may stop early when every mode's answer is already clear.
MIN_PAIRS_BEFORE_STOPPING: Final = 3
#: Early stops need more than the final decision: p below alpha / 10 for a regression, or the
#: upper 99% bound below the threshold for a pass, so peeking cannot inflate false alarms.
EARLY_STOP_CONFIDENCE: Final = 0.99


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
    run_a: Callable[[], list[PerfResult] | None],
    run_b: Callable[[], list[PerfResult]],
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
    warm_b = {e.benchmark_id: e for e in run_b()}
    if warm_a is None:
        return {}, set(warm_b)
    present_at_ref = {e.benchmark_id for e in warm_a}
    new = set(warm_b) - present_at_ref
    results = {bench: PairedRuns() for bench in warm_b if bench not in new}
    modes = {bench: list(warm_b[bench].modes) for bench in results}
    for i in range(pairs):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        say(f"keisei-perf: A/B {nodeid}: pair {i + 1}/{pairs} ({' then '.join(o.upper() for o in order)})")
        got: dict[str, dict[str, RunRecord]] = {}
        for side in order:
            entries = run_a() if side == "a" else run_b()
            got[side] = {e.benchmark_id: RunRecord.from_result(e) for e in entries or ()}
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
        status, note = settle(decision, raw, bh)
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


class ABRole:
    """``--perf-compare-ref``: each perf test's benchmarks decided from interleaved REF /
    working-tree pairs of fresh processes; no baseline is read or written."""

    def __init__(self, session: PerfSession) -> None:
        from .fresh import FreshProcesses

        self._session = session
        self.fresh = FreshProcesses(session)
        self.checkout: RefCheckout | None = None
        #: Per test: the pairs per benchmark, the benchmarks new at REF, the last B-side results.
        self._runs: dict[str, tuple[dict[str, PairedRuns], set[str], dict[str, PerfResult]]] = {}

    @property
    def ref(self) -> str:
        return str(self._session.settings.compare_ref)

    def activate(self) -> None:
        if self.checkout is not None:
            return
        session = self._session
        session.activate_timing()
        try:
            self.checkout = RefCheckout(self.ref, session.config.rootpath, session.settings.import_roots)
        except ABError as exc:
            raise pytest.UsageError(f"keisei-perf: --perf-compare-ref {self.ref}: {exc}") from None

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.checkout is not None:
            self.checkout.close()

    def measure(
        self, item: pytest.Item, call: BenchmarkCall, config: BenchmarkConfig, test_id: str
    ) -> PerfResult:
        """This benchmark's verdicts from the pairs its test gave (measured once per test)."""
        from .gate import concluded
        from .result import benchmark_id

        self.activate()
        if item.nodeid not in self._runs:
            problem = None
            try:
                with self._session.measurement_lock():
                    self._runs[item.nodeid] = self._gather(item, config)
            except (WorkerError, ABError) as exc:
                problem = str(exc)
            if problem is not None:
                pytest.fail(f"{test_id}: A/B against {self.ref} failed: {problem}", pytrace=False)
        pairs, new, last_b = self._runs[item.nodeid]
        bench = benchmark_id(test_id, call.name)
        measured = last_b.get(bench)
        if measured is None:
            pytest.fail(f"{bench}: the working tree's fresh processes gave no result for it", pytrace=False)
        result = dataclasses.replace(measured, verdicts={}, failures=(), test_id=test_id)
        if bench in new:
            message = f"{bench}: new benchmark: it does not exist at {self.ref}; nothing to compare"
            verdicts = {
                m: Verdict(mode=m, status="no-baseline", message=message, not_compared="new")
                for m in result.modes
            }
            return dataclasses.replace(result, verdicts=verdicts)
        ledger = self._session.ledger
        verdicts, failures = verdicts_for(
            bench, pairs[bench], list(result.modes), ref=self.ref, threshold=config.threshold,
            alpha=config.alpha, bh=lambda p: ledger.decide(p, config.alpha), nodeid=item.nodeid,
        )  # fmt: skip
        return concluded(result, verdicts, failures, self._session.settings)

    def _gather(
        self, item: pytest.Item, config: BenchmarkConfig
    ) -> tuple[dict[str, PairedRuns], set[str], dict[str, PerfResult]]:
        from .compile_state import process_state
        from .ref_side import RefSideArgs, run_ref_worker

        checkout, session = self.checkout, self._session
        assert checkout is not None
        path_part, sep, rest = item.nodeid.partition("::")
        last_b: dict[str, PerfResult] = {}

        def run_b() -> list[PerfResult]:
            results = self.fresh.run(item.nodeid, None)
            last_b.update({r.benchmark_id: r for r in results})
            return results

        ref_args = RefSideArgs(self.fresh.user_args, checkout)
        for ini in ref_args.dropped:
            session.say(
                f"keisei-perf: A/B: {ini} does not exist at {self.ref}; REF runs under its own configuration"
            )

        def run_ref() -> list[PerfResult] | None:
            return run_ref_worker(
                checkout,
                session.config.rootpath / path_part,
                sep + rest,
                settings=session.settings,
                ref_args=ref_args,
                invocation_dir=session.config.invocation_params.dir,
            )

        def run_a() -> list[PerfResult] | None:
            # REF gets the same warm guarantee as the working tree's processes
            state = process_state(session.settings.compile_state)
            return self.fresh.warm_retry(run_ref, f"{item.nodeid} at {self.ref}", state)

        pairs, new = gather_pairs(
            item.nodeid,
            pairs=session.settings.ab_pairs,
            run_a=run_a,
            run_b=run_b,
            threshold=config.threshold,
            alpha=config.alpha,
            say=session.say,
        )
        return pairs, new, last_b
