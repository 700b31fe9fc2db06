"""Run a GitHub Actions workflow's jobs here, for one event: the ``run:`` steps for real, in bash,
with GitHub's environment variables and files set; the ``uses:`` steps this workflow needs
emulated (artifacts are folders, the checkout is the clone it is given).

Not a general Actions runner: the expression language covers what ``perf.yml`` uses (contexts,
``==``/``!=``/``&&``/``||``/``!``, ``always()``/``success()``/``failure()``/``cancelled()``,
``hashFiles()``), and an unknown ``uses:`` action stops the run instead of being skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class Context(dict[str, Any]):
    """A context object: attribute access, missing keys read as '' (GitHub's null)."""

    def __getattr__(self, name: str) -> Any:
        value = self.get(name.replace("_", "-"), self.get(name, ""))
        return Context(value) if isinstance(value, dict) else value


_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_FUNCTIONS = ("always", "success", "failure", "cancelled", "hashFiles")


def _python(expression: str) -> str:
    """A GitHub expression as Python: the operators spelt out, ``foo-bar`` names as ``foo_bar``."""
    out = expression.replace("&&", " and ").replace("||", " or ")
    out = re.sub(r"!(?!=)", " not ", out)
    return re.sub(r"(?<=[A-Za-z_])-(?=[A-Za-z_])", "_", out)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@dataclass
class JobRun:
    """One job's outcome and its steps' outputs."""

    result: str = "success"
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


@dataclass
class WorkflowRun:
    """A workflow run for one event, in ``clone``, with ``artifacts`` kept under ``scratch``."""

    workflow: Mapping[str, Any]
    clone: Path
    scratch: Path
    event_name: str
    github: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Set last, over the workflow's own env: what this machine must differ in (no network).
    overrides: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, JobRun] = field(default_factory=dict)
    pages: Path | None = None

    @classmethod
    def load(cls, path: Path, **kwargs: Any) -> WorkflowRun:
        data = yaml.safe_load(path.read_text())
        data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads `on` as true
        return cls(workflow=data, **kwargs)

    # -- expressions -------------------------------------------------------------------------------
    def evaluate(self, expression: str, *, job: JobRun | None = None, env: Mapping[str, str] = {}) -> Any:
        namespace: dict[str, Any] = {
            "github": Context(self.github, event_name=self.event_name),
            "inputs": Context(self.inputs),
            "vars": Context(self.variables),
            "env": Context(env),
            "runner": Context(os="Linux", arch="X64"),
            "needs": Context({name: {"result": run.result} for name, run in self.jobs.items()}),
            "steps": Context({k: {"outputs": v} for k, v in (job.outputs if job else {}).items()}),
            "true": True,
            "false": False,
            "null": None,
            "always": lambda: True,
            "cancelled": lambda: False,
            "success": lambda: job is None or job.result == "success",
            "failure": lambda: job is not None and job.result == "failure",
            "hashFiles": lambda *patterns: "x" if any(self.clone.glob(p) for p in patterns) else "",
        }
        return eval(_python(expression), {"__builtins__": {}}, namespace)  # our own workflow file

    def substitute(self, text: str, **kwargs: Any) -> str:
        return _EXPRESSION.sub(lambda m: _text(self.evaluate(m.group(1), **kwargs)), text)

    def condition(self, raw: Any, *, job: JobRun | None = None, env: Mapping[str, str] = {}) -> bool:
        """An ``if:``; without a status function it means ``success() && (...)``, as on GitHub."""
        text = "true" if raw is None else _EXPRESSION.sub(lambda m: m.group(1), str(raw))
        if not any(f"{name}(" in text for name in _FUNCTIONS[:4]):
            text = f"success() && ({text})"
        return bool(self.evaluate(text, job=job, env=env))

    # -- jobs ----------------------------------------------------------------------------------------
    def order(self) -> list[str]:
        jobs = self.workflow["jobs"]
        done: list[str] = []
        while len(done) < len(jobs):
            for name, job in jobs.items():
                needs = job.get("needs", [])
                needs = [needs] if isinstance(needs, str) else needs
                if name not in done and all(n in done for n in needs):
                    done.append(name)
        return done

    def run(self, say: Callable[[str], None] = print) -> dict[str, JobRun]:
        for name in self.order():
            job = self.workflow["jobs"][name]
            if not self.condition(job.get("if")):
                self.jobs[name] = JobRun(result="skipped")
                say(f"job {name}: skipped")
                continue
            say(f"job {name}: runs on {self.substitute(str(job['runs-on']))}")
            self.jobs[name] = self._job(name, job, say)
            say(f"job {name}: {self.jobs[name].result}")
        return self.jobs

    def _job(self, name: str, job: Mapping[str, Any], say: Callable[[str], None]) -> JobRun:
        run = JobRun()
        files = self.scratch / "github" / name
        files.mkdir(parents=True, exist_ok=True)
        base_env = {**self.workflow.get("env", {}), **job.get("env", {})}
        for index, step in enumerate(job["steps"]):
            label = step.get("name") or step.get("uses") or f"step {index}"
            env = {k: self.substitute(str(v), job=run) for k, v in base_env.items()}
            env |= {k: self.substitute(str(v), job=run, env=env) for k, v in step.get("env", {}).items()}
            if not self.condition(step.get("if"), job=run, env=env):
                say(f"  {label}: skipped")
                continue
            ok = self._uses(step, run, env) if "uses" in step else self._bash(step, run, env, files, label)
            say(f"  {label}: {'ok' if ok else 'FAILED'}")
            if not ok and not step.get("continue-on-error"):
                run.result = "failure"
        return run

    def _bash(
        self, step: Mapping[str, Any], run: JobRun, env: dict[str, str], files: Path, label: str
    ) -> bool:
        script = self.substitute(step["run"], job=run, env=env)
        outputs, summary = files / "output", files / "summary.md"
        outputs.write_text("")
        environ = {
            **os.environ,
            **self.extra_env,
            **env,
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": self.event_name,
            "GITHUB_SHA": str(self.github["sha"]),
            "GITHUB_REF": str(self.github["ref"]),
            "GITHUB_REPOSITORY": str(self.github["repository"]),
            "GITHUB_WORKSPACE": str(self.clone),
            "GITHUB_OUTPUT": str(outputs),
            "GITHUB_STEP_SUMMARY": str(summary),
            "RUNNER_TEMP": str(self.scratch / "runner-temp"),
            **self.overrides,
        }
        (self.scratch / "runner-temp").mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=self.clone, env=environ, capture_output=True, text=True, check=False,
        )  # fmt: skip
        run.log.append(f"$ {label}\n{proc.stdout}{proc.stderr}")
        if "id" in step:
            pairs = (line.partition("=") for line in outputs.read_text().splitlines() if "=" in line)
            run.outputs[step["id"]] = {k: v for k, _, v in pairs}
        return proc.returncode == 0

    def _uses(self, step: Mapping[str, Any], run: JobRun, env: dict[str, str]) -> bool:
        action = step["uses"].split("@")[0]
        given = {k: self.substitute(str(v), job=run, env=env) for k, v in step.get("with", {}).items()}
        artifacts = self.scratch / "artifacts"
        if action == "actions/checkout":
            # a fresh checkout of the event's commit; the venv and the compile cache stay, as
            # setup-python's pip cache and actions/cache would bring them back
            for command in (
                ["clean", "-ffdqx", "-e", ".venv", "-e", ".pytest_cache"],
                ["worktree", "prune"],
                ["checkout", "--quiet", "--force", str(self.github["sha"])],
            ):
                subprocess.run(["git", *command], cwd=self.clone, check=True, capture_output=True)
            return True
        if action in ("actions/setup-python", "actions/cache"):
            return True  # this machine's python3 is the runner's Python; the cache stays in place
        if action == "actions/upload-artifact":
            target = artifacts / given["name"]
            for line in given["path"].split():
                for found in self.clone.glob(line.rstrip("/")):
                    dest = target / found.relative_to(self.clone)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    (shutil.copytree if found.is_dir() else shutil.copy2)(found, dest)
            return True
        if action == "actions/download-artifact":
            source = artifacts / given["name"]
            if not source.is_dir():
                return False
            shutil.copytree(source, self.clone / given.get("path", "."), dirs_exist_ok=True)
            return True
        if action == "actions/upload-pages-artifact":
            self.pages = self.clone / given["path"]
            return (self.pages / "index.html").is_file()
        if action == "actions/deploy-pages":
            run.outputs[step["id"]] = {"page_url": "https://example.invalid/"}
            return self.pages is not None
        raise ValueError(f"{step['uses']}: no emulation for this action")
