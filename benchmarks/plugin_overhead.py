"""What installing the plugin costs a session that selects no perf test.

Makes a throwaway project with one trivial test and times ``pytest --co -q`` (and a plain
``pytest -q``) with the plugin loaded and with ``-p no:keisei_perf``, in interleaved pairs of
fresh processes; prints the medians and the median paired difference.

    python benchmarks/plugin_overhead.py [--pairs 15]

Target: under 50 ms difference for ``--co``. Before the plugin imported torch lazily, a plain run
took 2.65 s and 289 MiB with it against 0.22 s and 31 MiB without.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], cwd: Path) -> float:
    """Wall seconds of one fresh process."""
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keisei-perf-overhead-") as tmp:
        project = Path(tmp)
        (project / "test_trivial.py").write_text("def test_trivial():\n    assert True\n")
        os.environ.pop("PYTEST_ADDOPTS", None)
        # as on a user's machine: bytecode is cached (some CI images set this variable; then
        # every import of the plugin compiles its sources again, ~60 ms here)
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
        timed([*base, "--co", "-q"], project)  # writes the bytecode caches once
        for label, extra in (("pytest --co -q", ["--co", "-q"]), ("pytest -q", ["-q"])):
            with_plugin, without, diffs = [], [], []
            for i in range(args.pairs):
                order = [("with", []), ("without", ["-p", "no:keisei_perf"])]
                if i % 2:
                    order.reverse()
                got = {}
                for name, flag in order:
                    got[name] = timed([*base, *flag, *extra], project)
                with_plugin.append(got["with"])
                without.append(got["without"])
                diffs.append(got["with"] - got["without"])
            print(
                f"{label}: with plugin {statistics.median(with_plugin) * 1e3:.0f} ms, "
                f"-p no:keisei_perf {statistics.median(without) * 1e3:.0f} ms, "
                f"median paired difference {statistics.median(diffs) * 1e3:+.0f} ms "
                f"({args.pairs} interleaved pairs)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
