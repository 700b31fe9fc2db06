"""Why does code loaded from inductor's cache run slower than freshly compiled code? (issue 11)

On an H100 (torch 2.11 + CUDA 13) ``resnet_tower`` at batch 1 ran 1.51-1.57x faster compiled
than eager when the process compiled from an empty cache, and 0.98-1.05x when it loaded the same
program from a warm cache. This script switches one suspect at a time and records, per fresh
process, the compiled/eager speedup, the compile time and inductor's cache counters:

    default                         cold (empty cache) and warm (same cache, next process)
    no_static_launcher              TORCHINDUCTOR_USE_STATIC_CUDA_LAUNCHER=0
    strict_static_launcher          TORCHINDUCTOR_STRICT_STATIC_CUDA_LAUNCHER=1
    no_autotune_local_cache         torch._inductor.config.autotune_local_cache = False
    compile_threads_1               TORCHINDUCTOR_COMPILE_THREADS=1
    force_disable_caches            TORCHINDUCTOR_FORCE_DISABLE_CACHES=1

It also diffs ``TORCH_LOGS=output_code`` between a cold and a warm process of the default
setting. Each setting gets its own empty cache folder; its first process is cold, later ones
warm. Results go to ``--out`` as ``results.jsonl`` (one line per process), ``summary.md`` and
``output_code.diff``.

    python benchmarks/compile_state_suspects.py --device cuda --out /tmp/suspects
    python benchmarks/compile_state_suspects.py --device cpu --settings default --cold 5 --warm 5

Timing: eager and compiled calls alternate in rounds (ABBA), each round synchronised, the
per-call median of each side is reported; the speedup is eager median / compiled median.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "no_static_launcher": {"TORCHINDUCTOR_USE_STATIC_CUDA_LAUNCHER": "0"},
    "strict_static_launcher": {"TORCHINDUCTOR_STRICT_STATIC_CUDA_LAUNCHER": "1"},
    "no_autotune_local_cache": {"KEISEI_SUSPECT_AUTOTUNE_LOCAL_CACHE": "0"},
    "compile_threads_1": {"TORCHINDUCTOR_COMPILE_THREADS": "1"},
    "force_disable_caches": {"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"},
}


def child(args: argparse.Namespace) -> None:
    """One fresh process: build, compile, time eager and compiled alternately, print one JSON line."""
    import torch

    if os.environ.get("KEISEI_SUSPECT_AUTOTUNE_LOCAL_CACHE") == "0":
        import torch._inductor.config as inductor_config

        inductor_config.autotune_local_cache = False
    from torch._dynamo.utils import counters

    import keisei_models
    from keisei_models.resnet_tower import RESNET_TOWER, RESNET_TOWER_TINY

    for spec in (RESNET_TOWER, RESNET_TOWER_TINY):  # a source checkout has no entry points
        if spec.name not in keisei_models.available():
            keisei_models.register(spec)
    torch.set_num_threads(args.threads)
    model = keisei_models.build(args.model).eval().to(args.device)
    (x,) = keisei_models.example_inputs(args.model, args.batch, device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        for _ in range(20):
            model(x)
        sync()
        start = time.perf_counter()
        compiled = torch.compile(model)
        compiled(x)
        sync()
        compile_s = time.perf_counter() - start
        for _ in range(20):
            compiled(x)
        sync()
        calls = _calls_per_round(model, x, sync)
        eager, comp = [], []
        for i in range(args.rounds):
            order = [(model, eager), (compiled, comp)]
            for fn, sink in order if i % 2 == 0 else order[::-1]:
                sync()
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn(x)
                sync()
                sink.append((time.perf_counter() - t0) / calls)
    cache = {
        f"{group}.{name}": int(value)
        for group in ("inductor", "aot_autograd")
        for name, value in counters.get(group, {}).items()
        if re.search(r"cache|bundler|autotune", name)
    }
    e, c = statistics.median(eager), statistics.median(comp)
    print(
        "RESULT "
        + json.dumps(
            {
                "eager_s": e,
                "compiled_s": c,
                "speedup": e / c,
                "compile_s": compile_s,
                "counters": cache,
                "torch": torch.__version__,
            }
        ),
        flush=True,
    )


def _calls_per_round(model: Any, x: Any, sync: Any, target_s: float = 0.02) -> int:
    sync()
    t0 = time.perf_counter()
    for _ in range(5):
        model(x)
    sync()
    per_call = (time.perf_counter() - t0) / 5
    return max(1, int(target_s / per_call))


def run_process(
    args: argparse.Namespace, setting: str, cache: Path, extra_env: dict[str, str]
) -> dict[str, Any]:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache), TRITON_CACHE_DIR=str(cache / "triton"))
    env.update(SETTINGS[setting])
    env.update(extra_env)
    command = [
        sys.executable, __file__, "--child", "--device", args.device, "--model", args.model,
        "--batch", str(args.batch), "--rounds", str(args.rounds), "--threads", str(args.threads),
    ]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=900)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        return {"setting": setting, "error": (proc.stdout + proc.stderr)[-2000:], "stderr": proc.stderr}
    data: dict[str, Any] = json.loads(line[len("RESULT ") :])
    data["stderr"] = proc.stderr
    return data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="resnet_tower")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated; default: all")
    parser.add_argument("--cold", type=int, default=1, help="cold processes per setting (default 1)")
    parser.add_argument("--warm", type=int, default=2, help="warm processes per setting (default 2)")
    parser.add_argument("--default-cold", type=int, default=2, help="cold processes of 'default'")
    parser.add_argument("--default-warm", type=int, default=3, help="warm processes of 'default'")
    parser.add_argument("--no-output-code", action="store_true", help="skip the TORCH_LOGS=output_code diff")
    parser.add_argument("--out", type=Path, default=Path("compile-state-suspects"))
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with open(args.out / "results.jsonl", "w", encoding="utf-8") as sink:

        def record(setting: str, state: str, data: dict[str, Any]) -> None:
            row = {"setting": setting, "state": state} | {k: v for k, v in data.items() if k != "stderr"}
            rows.append(row)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            if "error" in row:
                print(f"{setting:26} {state:5} ERROR {row['error'][-300:]}", flush=True)
            else:
                print(
                    f"{setting:26} {state:5} speedup {row['speedup']:.2f}x  "
                    f"eager {row['eager_s'] * 1e3:.3f} ms  "
                    f"compiled {row['compiled_s'] * 1e3:.3f} ms  compile {row['compile_s']:.1f} s  "
                    f"{row['counters']}",
                    flush=True,
                )

        for setting in args.settings.split(","):
            if setting not in SETTINGS:
                parser.error(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
            cold = args.default_cold if setting == "default" else args.cold
            warm = args.default_warm if setting == "default" else args.warm
            for i in range(cold):
                # a cold process needs an empty folder; the warm ones reuse the first cold folder
                with tempfile.TemporaryDirectory(prefix=f"suspect-{setting}-") as tmp:
                    record(setting, "cold", run_process(args, setting, Path(tmp), {}))
                    if i == 0:
                        for _ in range(warm):
                            record(setting, "warm", run_process(args, setting, Path(tmp), {}))
        if not args.no_output_code:
            with tempfile.TemporaryDirectory(prefix="suspect-output-code-") as tmp:
                logs = {}
                for state in ("cold", "warm"):
                    data = run_process(args, "default", Path(tmp), {"TORCH_LOGS": "output_code"})
                    record("default+output_code", state, data)
                    logs[state] = _normalise(data.get("stderr", ""))
                diff = difflib.unified_diff(
                    logs["cold"].splitlines(), logs["warm"].splitlines(), "cold", "warm", lineterm=""
                )
                (args.out / "output_code.diff").write_text("\n".join(diff) + "\n", encoding="utf-8")
    (args.out / "summary.md").write_text(_summary(rows), encoding="utf-8")
    print(_summary(rows))


def _normalise(log: str) -> str:
    """Output code without what differs between any two processes (paths, addresses, times)."""
    log = re.sub(r"/tmp/[^\s'\"]+", "<path>", log)
    log = re.sub(r"0x[0-9a-f]+", "<addr>", log)
    return re.sub(r"^.*\d\d:\d\d:\d\d[.,]\d+.*?\] ", "", log, flags=re.MULTILINE)


def _summary(rows: list[dict[str, Any]]) -> str:
    lines = ["| setting | state | processes | speedup (each) | compiled ms (median) | compile s (median) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if "error" not in row:
            groups.setdefault((row["setting"], row["state"]), []).append(row)
    for (setting, state), group in groups.items():
        speedups = ", ".join(f"{r['speedup']:.2f}x" for r in group)
        lines.append(
            f"| {setting} | {state} | {len(group)} | {speedups} | "
            f"{statistics.median(r['compiled_s'] for r in group) * 1e3:.3f} | "
            f"{statistics.median(r['compile_s'] for r in group):.1f} |"
        )
    errors = [r for r in rows if "error" in r]
    if errors:
        lines.append(
            f"\n{len(errors)} process(es) failed: "
            + ", ".join(f"{r['setting']}/{r['state']}" for r in errors)
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
