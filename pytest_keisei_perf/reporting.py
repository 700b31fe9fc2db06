"""What a session tells: the header, the results table and notes at the end, the JSON report,
the Markdown summary, plots, JUnit properties, and results handed from xdist workers."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from .result import PerfResult
    from .session import PerfSession

__all__ = ["STEP_SUMMARY_ENV", "SessionReport", "record_properties"]

#: Key of the results an xdist worker hands to the controller (JSON text: execnet-safe).
_WORKEROUTPUT_KEY: Final = "keisei_perf_results"
#: Where GitHub Actions collects a job's Markdown summary.
STEP_SUMMARY_ENV: Final = "GITHUB_STEP_SUMMARY"


class SessionReport:
    """The session's reporting hooks; they read the session's results and write nothing else."""

    def __init__(self, session: PerfSession) -> None:
        self._session = session

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        """xdist controller: collect the results a worker measured, for one summary."""
        from .result import PerfResult

        data = getattr(node, "workeroutput", {}).get(_WORKEROUTPUT_KEY)
        if data:
            results = self._session.results
            results.extend(PerfResult.from_dict(d) for d in json.loads(data))
            results.sort(key=lambda r: r.benchmark_id)

    def pytest_report_header(self) -> list[str]:
        s = self._session.settings
        mode = "disabled (smoke run)" if s.disable else f"modes {','.join(s.modes)}"
        return [
            f"keisei-perf: {mode}, threads {s.threads}, budget {s.budget_s:g} s/mode, "
            f"threshold {s.threshold:.0%}, alpha {s.alpha:g}, baselines {s.baseline_dir}"
        ]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        from .breakdown import breakdown_lines
        from .report import (
            economics_lines,
            inconclusive_lines,
            not_checked_lines,
            not_compared_lines,
            summary_lines,
        )

        session = self._session
        results = session.results
        if not results or session.xdist_workers is not None:
            return
        terminalreporter.write_sep("=", "keisei-perf results")
        for line in summary_lines(results):
            terminalreporter.write_line(line)
        verbose = session.config.get_verbosity() > 0
        notes = [
            v.message
            for r in results
            for v in r.verdicts.values()
            if v.message and v.not_compared is None and (v.status != "no-baseline" or verbose)
        ]
        notes += slower_than_eager_lines(results)
        from .variants import cpu_notes, fastest_line

        for r in results:
            notes += [line for line in (fastest_line(r),) if line] + cpu_notes(r)
        for note in notes:
            terminalreporter.write_line(note)
        for line in breakdown_lines(results):
            terminalreporter.write_line(line)
        if verbose:
            for line in economics_lines(results):
                terminalreporter.write_line(line)
        unsettled = [
            *not_compared_lines(results, verbose=verbose),
            *inconclusive_lines(results, fails=session.settings.fail_inconclusive),
            *not_checked_lines(results),
        ]
        for line in unsettled:
            terminalreporter.write_line(line, yellow=True, bold=True)
        if session.compile_cache is not None:
            terminalreporter.write_line(f"keisei-perf: compile cache {session.compile_cache.describe()}")
        s = session.settings
        for what, path in (
            ("JSON report", s.json_path),
            ("Markdown summary", s.markdown_path),
            ("plots", s.plot_dir),
        ):
            if path is not None and session.reporting:
                terminalreporter.write_line(f"keisei-perf: {what} written to {path}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from .report import write_json_report

        perf = self._session
        if perf.xdist_workers is not None:
            # an xdist worker hands its results to the controller, which reports and re-baselines
            perf.config.workeroutput[_WORKEROUTPUT_KEY] = json.dumps(  # type: ignore[attr-defined]
                [r.to_dict() for r in perf.results], default=str
            )
            return
        if perf.reporting and perf.results:
            self._write_summaries()
        path = perf.settings.json_path
        if path is None:
            return
        settings = {
            k: (str(v) if not isinstance(v, (int, float, bool, str, tuple, type(None))) else v)
            for k, v in dataclasses.asdict(perf.settings).items()
        }
        machine = perf.machine if perf.timing_active else {}
        try:
            write_json_report(path, machine=machine, settings=settings, results=perf.results)
        except OSError as exc:  # the results table still prints; the session fails
            perf.say(f"keisei-perf: could not write the JSON report {path}: {exc}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write_summaries(self) -> None:
        """Markdown to ``--perf-markdown`` and ``$GITHUB_STEP_SUMMARY``; pictures to ``--perf-plot``."""
        from .report import markdown_summary

        perf = self._session
        s = perf.settings
        markdown = markdown_summary(perf.results, machine=perf.store.key if perf.store is not None else "")
        try:
            if s.markdown_path is not None:
                s.markdown_path.parent.mkdir(parents=True, exist_ok=True)
                s.markdown_path.write_text(markdown, encoding="utf-8")
            step_summary = os.environ.get(STEP_SUMMARY_ENV)
            if step_summary:
                with open(step_summary, "a", encoding="utf-8") as handle:
                    handle.write(markdown + "\n")
        except OSError as exc:
            perf.say(f"keisei-perf: could not write the Markdown summary: {exc}")
        if s.plot_dir is not None:
            from .plots import write_plots

            # the gate's and the update's roles hold this machine's baselines; others have none
            baselines = getattr(getattr(perf.role, "gate", None), "baselines", {})
            try:
                write_plots(s.plot_dir, perf.results, baselines)
            except Exception as exc:  # matplotlib or the file system; the results stand regardless
                perf.say(f"keisei-perf: could not draw the plots in {s.plot_dir}: {exc}")


def slower_than_eager_lines(results: list[PerfResult]) -> list[str]:
    """Every compiled mode (named compile settings too) confidently slower than eager."""
    lines = []
    for r in results:
        pairs = [("compiled", r.speedup, r.speedup_ci)] if "compiled" in r.modes else []
        pairs += [(m, ratio, ci) for m, (ratio, ci) in r.speedups.items() if m.startswith("compiled[")]
        for mode, ratio, ci in pairs:
            if ratio is not None and ci is not None and ci[1] < 1.0:
                lines.append(
                    f"{r.benchmark_id}: {mode} is SLOWER than eager ({ratio:.2f}x, 95% CI "
                    f"{ci[0]:.2f}x-{ci[1]:.2f}x); set min_speedup to fail on this"
                )
    return lines


def record_properties(item: pytest.Item, result: PerfResult) -> None:
    """Results as JUnit XML properties of the test (what ``record_property`` does)."""
    prefix = f"perf.{result.name}." if result.name else "perf."
    props: list[tuple[str, object]] = []
    for mode, m in result.modes.items():
        props += [(f"{prefix}{mode}.median_s", m.median_s), (f"{prefix}{mode}.rounds", m.rounds)]
        if m.p95_s is not None:
            props.append((f"{prefix}{mode}.p95_s", m.p95_s))
        throughput = result.throughput(mode)
        if throughput is not None:
            props.append((f"{prefix}{mode}.throughput_items_s", round(throughput, 3)))
        if m.compile_time_s is not None:
            props.append((f"{prefix}{mode}.compile_time_s", round(m.compile_time_s, 4)))
            props.append((f"{prefix}{mode}.compile_cache", str(m.compile_cache)))
        for state, seconds in (("cold", m.cold_compile_time_s), ("warm", m.warm_compile_time_s)):
            if seconds is not None:
                props.append((f"{prefix}{mode}.{state}_compile_time_s", round(seconds, 4)))
        for state, calls in (m.break_even_calls or {}).items():
            value = calls if isinstance(calls, str) else round(calls, 1)
            props.append((f"{prefix}{mode}.break_even_calls.{state}", value))
        verdict = result.verdicts.get(mode)
        if verdict is None:
            continue
        props.append((f"{prefix}{mode}.verdict", verdict.status))
        if verdict.change is not None:
            props.append((f"{prefix}{mode}.change", round(verdict.change, 5)))
        if verdict.change_ci is not None:
            props.append(
                (f"{prefix}{mode}.change_ci", f"{verdict.change_ci[0]:.5f},{verdict.change_ci[1]:.5f}")
            )
        if verdict.detectable_effect is not None:
            props.append((f"{prefix}{mode}.detectable_effect", round(verdict.detectable_effect, 5)))
    if result.speedup is not None:
        props.append((f"{prefix}speedup", round(result.speedup, 4)))
    for candidate, (ratio, ci) in result.speedups.items():
        props.append((f"{prefix}{candidate}.speedup", round(ratio, 4)))
        if ci is not None:
            props.append((f"{prefix}{candidate}.speedup_ci", f"{ci[0]:.4f},{ci[1]:.4f}"))
    item.user_properties.extend(props)
