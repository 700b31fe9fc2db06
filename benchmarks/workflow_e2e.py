"""The example workflow, run end to end here: its steps for a pull request, two pushes to main
and a manual re-baseline, in a temporary clone of this repository whose ``origin`` is a local bare
repository (so the history really lands on a ``perf-data`` branch), with ``gh`` replaced by a
stub that records the comment it was asked to post.

The host is deliberately not the committed baselines' host, and the pushes set yet another
``KEISEI_PERF_MACHINE``: on a mixed pool of runners nothing here may turn red for that.

The perf suite is narrowed through ``PYTEST_ADDOPTS`` (one benchmark, eager, small budgets), the
one change to what a user's run would do, besides an empty ``PIP_EXTRA_INDEX_URL`` (no network).

    python benchmarks/workflow_e2e.py [--keep DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from workflow_runner import WorkflowRun  # noqa: E402

NARROW = "-k test_forward_batch1 --perf-modes=eager --perf-budget=0.2 --perf-ab-pairs=3 --perf-ab-max-pairs=4"
GH_STUB = '#!/bin/sh\necho "gh $*" >> "$GH_LOG"\nexit 0\n'


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def run_event(clone: Path, scratch: Path, event: str, github: dict, **kwargs: object) -> dict:
    stub = scratch / "bin"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "gh").write_text(GH_STUB)
    (stub / "gh").chmod(0o755)
    import os

    overrides = {
        "PIP_EXTRA_INDEX_URL": "",
        "PYTEST_ADDOPTS": NARROW,
        "PATH": f"{stub}:{os.environ['PATH']}",
        "GH_LOG": str(scratch / "gh.log"),
        **kwargs.pop("overrides", {}),  # type: ignore[dict-item]
    }
    github = {"repository": "keisei/pytest-keisei-perf", "server_url": "https://github.com", **github}
    run = WorkflowRun.load(
        clone / ".github" / "workflows" / "perf.yml", clone=clone, scratch=scratch, event_name=event,
        github=github, overrides=overrides, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    start = time.perf_counter()
    jobs = run.run(say=lambda line: print(f"[{event}] {line}", flush=True))
    took = time.perf_counter() - start
    for job in jobs.values():
        if job.result == "failure":
            print("\n".join(job.log[-2:])[-6000:])
    return {"event": event, "jobs": {n: j.result for n, j in jobs.items()}, "wall_s": round(took, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the outcome here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="keisei-workflow-"))
    work.mkdir(parents=True, exist_ok=True)
    origin, clone = work / "origin.git", work / "clone"
    git(work, "clone", "--quiet", "--bare", str(ROOT), str(origin))
    git(work, "clone", "--quiet", str(origin), str(clone))
    outcomes = []

    # a pull request: a branch with one commit on top of main
    git(clone, "checkout", "--quiet", "-b", "feature")
    (clone / "NOTES.md").write_text("a change under review\n")
    git(clone, "add", "NOTES.md")
    git(clone, "commit", "--quiet", "-m", "a change under review")
    same_repository = {"number": 7, "head": {"repo": {"full_name": "keisei/pytest-keisei-perf"}}}
    pr = {
        "sha": git(clone, "rev-parse", "HEAD"), "ref": "refs/pull/7/merge", "base_ref": "main",
        "event": {"pull_request": same_repository},
    }  # fmt: skip
    outcomes.append(run_event(clone, work / "pr", "pull_request", pr))
    log = work / "pr" / "gh.log"
    outcomes[-1]["gh"] = log.read_text().strip() if log.exists() else None

    # two pushes to main, on "another CPU kind" each time
    git(clone, "checkout", "--quiet", "main")
    for n in (1, 2):
        if n == 2:
            git(clone, "commit", "--quiet", "--allow-empty", "-m", "the second push")
            git(clone, "push", "--quiet", "origin", "main")
        push = {"sha": git(clone, "rev-parse", "HEAD"), "ref": "refs/heads/main"}
        overrides = {"KEISEI_PERF_MACHINE": f"gha-mixed-pool-{n}"}
        outcome = run_event(clone, work / f"push{n}", "push", push, overrides=overrides)
        lines = git(origin, "show", "perf-data:history.jsonl").splitlines()
        outcome["perf_data_lines"] = len(lines)
        outcome["page"] = (clone / "site" / "index.html").is_file()
        outcomes.append(outcome)

    # a manual re-baseline
    dispatch = {"sha": git(clone, "rev-parse", "HEAD"), "ref": "refs/heads/main"}
    outcome = run_event(
        clone, work / "rebaseline", "workflow_dispatch", dispatch, inputs={"rebaseline": True}
    )
    stored = sorted(p.name for p in (work / "rebaseline" / "artifacts" / "perf-baselines").rglob("*.json"))
    outcome["baseline_files"] = stored
    outcomes.append(outcome)

    text = json.dumps(outcomes, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if all("failure" not in o["jobs"].values() for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
