"""The baseline store: one JSON file per machine fingerprint, written atomically under a lock.

Layout of ``<baseline_dir>/<machine key>.json``::

    {"schema_version": 1,
     "machine": {...facts the key was made from...},
     "benchmarks": {"<node id>[::<name>]": {"runs": [run, ...]}}}

Each run is one independent process: per-mode raw round samples, the interleaved reference
samples, compile facts, speedup, git commit and timestamp. Files are sorted and indented so
diffs read well; one machine never writes another's file, so runners merge without conflicts.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import formats
from .files import write_json_atomic
from .locks import lock_beside
from .record import utc_now

__all__ = [
    "MAX_RUNS",
    "SCHEMA_VERSION",
    "BaselineError",
    "BaselineStore",
    "fact_differences",
    "git_commit",
    "load",
    "machine_key",
    "prune_file",
    "run_record",
]

#: Version of the baseline layout. 1: first release.
SCHEMA_VERSION: Final = 1
#: Runs kept per benchmark; older ones are dropped when new ones are stored.
MAX_RUNS: Final = 20
#: Machine facts that change performance; volatile ones (hostname, load) are left out. CPU
#: family/model/stepping, ISA extensions and caches tell apart hosts that share a marketing name.
FINGERPRINT_FACTS: Final = (
    "cpu_model",
    "cpu_vendor",
    "cpu_family",
    "cpu_model_number",
    "cpu_stepping",
    "cpu_isa",
    "cpu_caches",
    "cpu_count",
    "machine",
    "torch",
    "torch_cuda",
    "cuda_devices",
    "cuda_driver",
    "threads",
)


class BaselineError(Exception):
    """A baseline file is unreadable or malformed; the message names the file and the problem."""


def machine_key(info: Mapping[str, Any], name: str | None = None) -> tuple[str, dict[str, Any]]:
    """A readable, file-name-safe key for this machine and the facts it was derived from.

    ``<cpu or name>-f<family>m<model>s<stepping>-<hash of every fingerprint fact>``. A name
    (``--perf-machine`` / ``KEISEI_PERF_MACHINE``) labels the key and joins the facts; it never
    replaces the hardware facts, so hosts that behave differently never share a baseline.
    """
    facts = {k: info.get(k) for k in FINGERPRINT_FACTS}
    if name:
        facts["name"] = name
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:10]
    label = name or str(info.get("cpu_model", "machine"))
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()[:40] or "machine"
    family, model, stepping = (info.get(k) for k in ("cpu_family", "cpu_model_number", "cpu_stepping"))
    if family is not None or model is not None:
        slug += "-" + re.sub(r"[^A-Za-z0-9]+", "", f"f{family}m{model}s{stepping}").lower()
    return f"{slug}-{digest}", facts


def fact_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """``torch 2.12.0 -> 2.13.0`` for each fingerprint fact in which two machines differ."""
    keys = [k for k in (*FINGERPRINT_FACTS, "name") if k in ours or k in theirs]
    return [f"{k} {theirs.get(k)!s} -> {ours.get(k)!s}" for k in keys if ours.get(k) != theirs.get(k)]


def nearest_machine(
    facts: Mapping[str, Any], others: Mapping[str, Mapping[str, Any]]
) -> tuple[str, list[str]] | None:
    """The stored key whose facts differ from ``facts`` in the fewest ways, with those ways."""
    if not others:
        return None
    nearest = min(others, key=lambda key: len(fact_differences(facts, others[key])))
    return nearest, fact_differences(facts, others[nearest])


def git_commit(cwd: Path) -> str | None:
    """HEAD of the repository at ``cwd``, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_record(result: Mapping[str, Any], *, git_commit: str | None) -> dict[str, Any]:
    """One process's measurement of one benchmark (a ``PerfResult.to_dict()``), as stored."""
    return {
        "timestamp": utc_now(),
        "git_commit": git_commit,
        "device": result["device"],
        "threads": result.get("threads"),
        "compile_kwargs": result["compile_kwargs"],
        "speedup": result["speedup"],
        "reference_samples_s": list(result["reference_samples_s"]),
        "reference_version": result.get("reference_version"),
        "modes": {
            mode: {
                key: m.get(key)
                for key in (
                    "samples_s",
                    "calls_per_round",
                    "compile_time_s",
                    "compile_cache",
                    "compile_counters",
                    "fallback",
                    "graph_count",
                    "graph_breaks",
                    "recompiles",
                    "p95_s",
                )
            }
            for mode, m in result["modes"].items()
        },
    }


def validate(path: Path, data: Any) -> dict[str, Any]:
    """Check the whole document against the baseline format (:mod:`.formats`); raise
    :class:`BaselineError` naming the file and the first problem."""
    if not isinstance(data, dict):
        raise BaselineError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise BaselineError(
            f"{path}: schema_version {version} is newer than this pytest-keisei-perf understands "
            f"({SCHEMA_VERSION}); upgrade the plugin"
        )
    problem = formats.first_problem("baseline", data)
    if problem:
        raise BaselineError(f"{path}: {problem}")
    return data


def load(path: Path) -> dict[str, Any]:
    """Read and validate one baseline file; it is never modified here."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise BaselineError(f"{path}: not valid JSON: {exc}") from None
    return validate(path, data)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a baseline")


@dataclass
class BaselineStore:
    """This machine's baseline file inside ``directory``."""

    directory: Path
    key: str
    facts: Mapping[str, Any]

    @property
    def path(self) -> Path:
        return self.directory / f"{self.key}.json"

    def load(self) -> dict[str, list[dict[str, Any]]]:
        """Benchmark id -> stored runs (oldest first); empty when this machine has no file."""
        if not self.path.exists():
            return {}
        data = load(self.path)
        return {bench: entry["runs"] for bench, entry in data["benchmarks"].items()}

    def other_machines(self) -> dict[str, dict[str, Any]]:
        """Key -> machine facts of the other machines' files here (never used for gating; read
        only to say how they differ, so a file that is not readable is listed without facts)."""
        if not self.directory.is_dir():
            return {}
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(self.directory.glob("*.json")):
            if path.stem == self.key:
                continue
            try:
                facts = json.loads(path.read_text(encoding="utf-8")).get("machine")
            except (OSError, ValueError, AttributeError):
                facts = None
            found[path.stem] = facts if isinstance(facts, dict) else {}
        return found

    def replace_runs(self, runs: Mapping[str, Iterable[dict[str, Any]]]) -> Path:
        """Store ``runs`` as the new history of the given benchmarks; others are untouched.

        Read-modify-write happens under the lock, and the write is atomic, so an interrupted or
        concurrent update never leaves a truncated or merged-wrong file.
        """
        with lock_beside(self.path):
            data: dict[str, Any] = (
                load(self.path)
                if self.path.exists()
                else {"schema_version": SCHEMA_VERSION, "benchmarks": {}}
            )
            data["machine"] = dict(self.facts)
            for bench, bench_runs in runs.items():
                data["benchmarks"][bench] = {"runs": list(bench_runs)[-MAX_RUNS:]}
            write_json_atomic(self.path, data)
        return self.path


def prune_file(path: Path, keep: Callable[[str], bool], *, dry_run: bool = False) -> list[str]:
    """Drop the benchmarks of one baseline file for which ``keep(benchmark_id)`` is false.

    Returns the dropped ids. Under the file's lock with an atomic write, like every update; with
    ``dry_run`` the file is only read.
    """
    with lock_beside(path):
        data = load(path)
        dropped = sorted(bench for bench in data["benchmarks"] if not keep(bench))
        if dropped and not dry_run:
            for bench in dropped:
                del data["benchmarks"][bench]
            write_json_atomic(path, data)
    return dropped
