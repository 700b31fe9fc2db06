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
import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from .duet import Cores, describe, duet_cores, run_together
from .gate import decision_verdict, settle
from .history import HistoryEntry
from .paired import PairedLook, look
from .record import RunRecord, median_of_runs
from .report import format_duration
from .result import PerfResult, Verdict
from .workers import WorkerError, entry_problem
from .worktree import FORBID_ROOT_ENV, ABError, RefCheckout, check_imports

if TYPE_CHECKING:
    from .calls import BenchmarkCall
    from .session import PerfSession
    from .settings import BenchmarkConfig

__all__ = [
    "FORBID_ROOT_ENV",
    "ABError",
    "ABRole",
    "Gathered",
    "PairPlan",
    "PairedRuns",
    "RefCheckout",
    "check_imports",
    "decide_pairs",
    "gather_pairs",
    "is_clear",
    "verdicts_for",
]


@dataclass(frozen=True)
class PairPlan:
    """How many pairs a comparison takes: ``pairs`` always, then more up to ``max_pairs`` while
    some answer is unclear (:mod:`.paired` keeps the error rates across these looks)."""

    pairs: int
    max_pairs: int
    threshold: float
    alpha: float

    def done(self, taken: int, all_clear: bool) -> bool:
        """Whether a comparison with ``taken`` pairs stops here."""
        return taken >= self.max_pairs or (taken >= self.pairs and all_clear)

    def look(self, differences: Sequence[float]) -> PairedLook:
        return look(
            differences, threshold=self.threshold, alpha=self.alpha, first=self.pairs, last=self.max_pairs
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


def decide_pairs(runs: PairedRuns, mode: str, plan: PairPlan) -> tuple[PairedLook, float]:
    """The paired look at one mode and the raw change of the median times (B over A)."""
    raw = median_of_runs(runs.b, mode) / median_of_runs(runs.a, mode) - 1
    return plan.look(_differences(runs, mode)), raw


def is_clear(runs: PairedRuns, modes: Sequence[str], plan: PairPlan) -> bool:
    """Whether every mode's answer is clear: beyond the threshold, or a pass with power."""
    return all(decide_pairs(runs, mode, plan)[0].clear for mode in modes)


@dataclass
class Gathered:
    """What the pairs of one A/B session gave: the pairs per benchmark, the benchmarks new at
    REF, the working tree's last result per benchmark, and why a benchmark has no pairs."""

    pairs: dict[str, PairedRuns] = field(default_factory=dict)
    new: set[str] = field(default_factory=set)
    last_b: dict[str, PerfResult] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    #: Whether the pairs ran as duets (both sides at once, on separate cores).
    duet: bool = False


#: One side of a pair: a fresh process over the selection, pinned to the given cores (or not).
Side = Callable[[Collection[int] | None], list[PerfResult] | None]


def gather_pairs(
    label: str,
    plan_for: Callable[[str], PairPlan],
    *,
    run_a: Side,
    run_b: Side,
    say: Callable[[str], None],
    gone_at_ref: Callable[[PerfResult], str | None] = lambda _: None,
    cores: Cores | None = None,
) -> Gathered:
    """Interleaved pairs (A B, B A, ...) of every benchmark the selection produces: the plan's
    pairs, then one more at a time up to its max while some benchmark's answer is unclear
    (``plan_for(bench)``: each benchmark's threshold; the pair counts are the session's).

    With ``cores`` the two sides of each pair run at the same time instead, pinned to one set of
    cores each, swapped between pairs (:mod:`.duet`).

    ``run_a`` returns None when REF has none of the tests. One unmeasured run per side goes
    first, so both sides then time a warm compile cache alike. A benchmark absent at REF is new,
    unless ``gone_at_ref(result)`` says its test failed there; a benchmark that fails on either
    side gets a problem and no pairs, and the others go on.
    """
    say(f"keisei-perf: A/B {label}: warming both sides (one unmeasured run each)")
    warm_a, warm_b_all = _run_sides(("a", "b"), run_a, run_b, cores)
    gathered = Gathered(duet=cores is not None)
    warm_b = _usable(warm_b_all or [], gathered, "")
    gathered.last_b.update(warm_b)
    at_ref = _usable(warm_a or [], gathered, "at REF: ")
    for bench, result in warm_b.items():
        if bench in gathered.problems or bench in at_ref:
            continue
        problem = gone_at_ref(result)
        if problem:
            gathered.problems[bench] = problem
        else:
            gathered.new.add(bench)
    results = {b: PairedRuns() for b in warm_b if b not in gathered.new and b not in gathered.problems}
    if not results:
        return gathered
    gathered.pairs = results
    modes = {bench: list(warm_b[bench].modes) for bench in results}
    plan = plan_for(next(iter(results)))
    for i in range(plan.max_pairs):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        planned = plan.pairs if i < plan.pairs else plan.max_pairs
        pair_cores = None if cores is None else (cores if i % 2 == 0 else (cores[1], cores[0]))
        say(f"keisei-perf: A/B {label}: pair {i + 1}/{planned} ({_how(order, pair_cores)})")
        _add_pair(gathered, i, _run_sides(order, run_a, run_b, pair_cores))
        taken = i + 1
        if taken < plan.pairs:
            continue
        all_clear = all(is_clear(runs, modes[b], plan_for(b)) for b, runs in gathered.pairs.items())
        if plan.done(taken, all_clear):
            if all_clear and taken > plan.pairs:
                say(f"keisei-perf: A/B {label}: clear after {taken} pairs")
            break
        if taken == plan.pairs:
            say(
                f"keisei-perf: A/B {label}: unclear after {taken} pairs; adding pairs, "
                f"up to {plan.max_pairs} (--perf-ab-max-pairs)"
            )
    return gathered


def _how(order: tuple[str, str], cores: Cores | None) -> str:
    if cores is None:
        return " then ".join(side.upper() for side in order)
    return f"A on {describe(cores[0])} with B on {describe(cores[1])}"


def _run_sides(
    order: tuple[str, str], run_a: Side, run_b: Side, cores: Cores | None
) -> tuple[list[PerfResult] | None, list[PerfResult] | None]:
    """Both sides' results (A's, B's): one after the other in ``order``, or at once on ``cores``."""
    if cores is not None:
        a_cores, b_cores = cores
        got_a, got_b = run_together([lambda: run_a(a_cores), lambda: run_b(b_cores)])
        return got_a, got_b
    got = {side: (run_a if side == "a" else run_b)(None) for side in order}
    return got["a"], got["b"]


def _usable(results: Sequence[PerfResult], gathered: Gathered, where: str) -> dict[str, PerfResult]:
    """The results that stand for a measurement, by benchmark; the others become problems."""
    usable = {}
    for result in results:
        problem = entry_problem(result)
        if problem:
            gathered.problems.setdefault(result.benchmark_id, where + problem)
        else:
            usable[result.benchmark_id] = result
    return usable


def _add_pair(
    gathered: Gathered, index: int, sides: tuple[list[PerfResult] | None, list[PerfResult] | None]
) -> None:
    entries_a = _usable(sides[0] or [], gathered, "at REF: ")
    entries_b = _usable(sides[1] or [], gathered, "")
    gathered.last_b.update(entries_b)
    got = {side: {bench: RunRecord.from_result(e) for bench, e in entries.items()}
           for side, entries in (("a", entries_a), ("b", entries_b))}  # fmt: skip
    for bench, paired in list(gathered.pairs.items()):
        missing = [side for side in ("a", "b") if bench not in got[side]]
        if missing:
            where = "REF" if missing[0] == "a" else "the working tree"
            gathered.problems.setdefault(
                bench, f"{where}'s process gave no result for it in pair {index + 1}"
            )
            del gathered.pairs[bench]
            continue
        paired.a.append(got["a"][bench])
        paired.b.append(got["b"][bench])


def verdicts_for(
    bench: str,
    runs: PairedRuns,
    modes: Sequence[str],
    plan: PairPlan,
    *,
    ref: str,
    bh: Callable[[float], tuple[bool, int]],
    duet: bool = False,
) -> tuple[dict[str, Verdict], list[str]]:
    """Verdict per mode from the pairs; regressions must also be slower in raw time and survive
    Benjamini-Hochberg (``bh(p)`` -> (rejected, comparisons); it hears every p-value, so a
    session's passing comparisons count in the correction like the gate's do). A pass without
    the power to have seen a slowdown at the threshold is ``inconclusive``."""
    verdicts: dict[str, Verdict] = {}
    failures: list[str] = []
    for mode in modes:
        paired, raw = decide_pairs(runs, mode, plan)
        decision = paired.decision
        if decision.change is None or decision.change_ci is None:
            verdicts[mode] = Verdict(
                mode=mode, status="inconclusive", message=f"{bench} [{mode}]: {decision.reason}"
            )
            continue
        status, note = settle(decision, raw, bh)
        if status == "pass" and not paired.powered_pass:
            status = "inconclusive"
            note += (
                f"; inconclusive, not a pass: after {paired.pairs} pairs {paired.why_unclear()} "
                "(--perf-ab-max-pairs allows more pairs; --perf-fail-inconclusive fails it)"
            )
        message = f"{bench} [{mode}]: {_describe_look(paired, runs, mode, ref, raw, duet)}{note}"
        if status == "regression":
            message = f"performance regression: {message}"
            failures.append(message)
        verdicts[mode] = decision_verdict(mode, status, message, decision, raw)
    return verdicts, failures


def _describe_look(paired: PairedLook, runs: PairedRuns, mode: str, ref: str, raw: float, duet: bool) -> str:
    decision = paired.decision
    assert decision.change is not None
    assert decision.change_ci is not None
    lo, hi = decision.change_ci
    p = decision.p_slower if decision.change >= 0 else decision.p_faster
    now_s, ref_s = (format_duration(median_of_runs(side, mode)) for side in (runs.b, runs.a))
    kind = " duet" if duet else ""
    wild = ""
    if paired.wild:
        wild = f", {len(paired.wild)} wild pair(s) set aside ({', '.join(f'{w:+.1%}' for w in paired.wild)})"
    return (
        f"A/B against {ref}: median {now_s} vs {ref_s} at {ref}; change {decision.change:+.1%} "
        f"({paired.confidence:.1%} CI {lo:+.1%} to {hi:+.1%}, paired over {paired.pairs}{kind} pairs{wild}, "
        f"machine-normalised), p={p:.3g}; raw {raw:+.1%}; detectable {decision.detectable_effect:.1%}"
    )


class ABRole:
    """``--perf-compare-ref``: every selected perf test's benchmarks decided from interleaved REF
    / working-tree pairs of fresh processes, each process running the whole selection; no
    baseline is read or written."""

    def __init__(self, session: PerfSession) -> None:
        from .fresh import FreshProcesses

        self._session = session
        self.fresh = FreshProcesses(session)
        self.checkout: RefCheckout | None = None
        #: The whole selection's pairs, gathered at the first perf test.
        self._gathered: Gathered | None = None
        #: Why no pair could be gathered at all (then every benchmark fails with it).
        self._failure: str | None = None
        #: ``--perf-history``: one ``kind="ab"`` entry per compared benchmark, appended at the end.
        self._history: list[HistoryEntry] = []

    @functools.cached_property
    def _head(self) -> str | None:
        """The working tree's commit, for its history entries (read once)."""
        from .baseline import git_commit

        return git_commit(self._session.config.rootpath)

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
        path = self._session.settings.history_path
        if path is not None and self._history:
            from .history import append_entries

            try:
                added = append_entries(path, self._history)
                self._session.say(f"keisei-perf: {added} A/B summaries appended to {path}")
            except OSError as exc:
                self._session.say(f"keisei-perf: could not append to {path}: {exc}")

    def _remember(self, bench: str, runs: PairedRuns, modes: Sequence[str], plan: PairPlan) -> None:
        """This benchmark's ``kind="ab"`` history entry: each mode's paired change against REF."""
        from .history import ab_entry

        changes = {}
        for mode in modes:
            decision = decide_pairs(runs, mode, plan)[0].decision
            if decision.change is not None and decision.log_se is not None:
                changes[mode] = (decision.change, decision.log_se)
        session = self._session
        entry = ab_entry(
            bench, runs.b, changes,
            machine=session.store.key if session.store is not None else "unknown",
            torch_version=session.machine.get("torch"),
            git_commit=self._head,
            ref_commit=self.checkout.commit if self.checkout is not None else None,
        )  # fmt: skip
        if entry is not None:
            self._history.append(entry)

    def measure(
        self, item: pytest.Item, call: BenchmarkCall, config: BenchmarkConfig, test_id: str
    ) -> PerfResult:
        """This benchmark's verdicts from the pairs the whole selection gave (measured once, at
        the first perf test: one process per side per pair runs every selected perf test)."""
        from .gate import concluded
        from .result import benchmark_id

        self.activate()
        if self._gathered is None:
            try:
                with self._session.measurement_lock():
                    self._gathered = self._gather(item.session)
            except (WorkerError, ABError) as exc:
                self._failure = str(exc)
                self._gathered = Gathered()
        bench = benchmark_id(test_id, call.name)
        gathered = self._gathered
        problem = self._failure or gathered.problems.get(bench)
        if problem is not None:
            pytest.fail(f"{bench}: A/B against {self.ref} failed: {problem}", pytrace=False)
        measured = gathered.last_b.get(bench)
        if measured is None:
            pytest.fail(f"{bench}: the working tree's fresh processes gave no result for it", pytrace=False)
        result = dataclasses.replace(measured, verdicts={}, failures=(), test_id=test_id)
        if bench in gathered.new:
            message = f"{bench}: new benchmark: it does not exist at {self.ref}; nothing to compare"
            verdicts = {
                m: Verdict(mode=m, status="no-baseline", message=message, not_compared="new")
                for m in result.modes
            }
            return dataclasses.replace(result, verdicts=verdicts)
        ledger = self._session.ledger
        verdicts, failures = verdicts_for(
            bench, gathered.pairs[bench], list(result.modes), self._plan(config), ref=self.ref,
            bh=lambda p: ledger.decide(p, config.alpha), duet=gathered.duet,
        )  # fmt: skip
        if self._session.settings.history_path is not None:
            self._remember(bench, gathered.pairs[bench], list(result.modes), self._plan(config))
        return concluded(result, verdicts, failures, self._session.settings)

    def _plan(self, config: BenchmarkConfig) -> PairPlan:
        settings = self._session.settings
        return PairPlan(settings.ab_pairs, settings.ab_max_pairs, config.threshold, config.alpha)

    def _gather(self, session: pytest.Session) -> Gathered:
        """Pairs of fresh processes over every selected perf test, in the session's order on
        both sides (so order effects cancel inside a pair)."""
        from .compile_state import process_state
        from .ref_side import RefSelection, RefSideArgs
        from .session import CONFIG_KEY

        checkout, perf = self.checkout, self._session
        assert checkout is not None
        items = [i for i in session.items if CONFIG_KEY in i.stash]
        configs = {i.nodeid: i.stash[CONFIG_KEY] for i in items}
        nodeids = list(configs)
        ref_args = RefSideArgs(self.fresh.user_args, checkout)
        for ini in ref_args.dropped:
            perf.say(
                f"keisei-perf: A/B: {ini} does not exist at {self.ref}; REF runs under its own configuration"
            )
        at_ref = RefSelection(
            checkout, nodeids, rootpath=perf.config.rootpath, settings=perf.settings, ref_args=ref_args,
            invocation_dir=perf.config.invocation_params.dir,
        )  # fmt: skip
        # REF gets the same warm guarantee as the working tree's processes
        state = process_state(perf.settings.compile_state)

        test_of: dict[str, str] = {}  # benchmark -> its test's node id, from the working tree

        def run_a(cpus: Collection[int] | None) -> list[PerfResult] | None:
            return self.fresh.warm_retry(lambda: at_ref.run(cpus), f"the selection at {self.ref}", state)

        def run_b(cpus: Collection[int] | None) -> list[PerfResult]:
            results = self.fresh.run(nodeids, (), others=True, cpus=cpus)
            test_of.update({r.benchmark_id: r.nodeid for r in results})
            return results

        def plan_for(bench: str) -> PairPlan:
            return self._plan(configs.get(test_of.get(bench, ""), next(iter(configs.values()))))

        def gone_at_ref(result: PerfResult) -> str | None:
            """A benchmark missing at REF whose test exists there failed there: it is not new."""
            if result.nodeid in at_ref.problems:
                return at_ref.problems[result.nodeid]
            if result.nodeid in at_ref.present:
                return f"the test exists at {self.ref}, but gave no result for {result.benchmark_id} there"
            return None

        label = nodeids[0] if len(nodeids) == 1 else f"{len(nodeids)} tests"
        return gather_pairs(
            label, plan_for, run_a=run_a, run_b=run_b, say=perf.say, gone_at_ref=gone_at_ref,
            cores=self._duet_cores(),
        )  # fmt: skip

    def _duet_cores(self) -> Cores | None:
        """The cores of a duet when ``--perf-ab-schedule duet`` asks for one and this machine
        can run it; otherwise None, saying why it falls back to sequential pairs."""
        settings = self._session.settings
        if settings.ab_schedule != "duet":
            return None
        cores = duet_cores(settings.threads)
        if isinstance(cores, str):
            self._session.say(f"keisei-perf: A/B: sequential pairs instead of a duet: {cores}")
            return None
        self._session.say(
            f"keisei-perf: A/B: duet pairs: REF and the working tree at once, on {describe(cores[0])} "
            f"and {describe(cores[1])}, swapped every pair"
        )
        return cores
