"""Facts about the machine and software a measurement was taken on.

Two hosts that report the same CPU marketing string ("Intel(R) Xeon(R) Processor") can be
different generations that run the reference workload and the models at different relative
speeds, so comparing across them reads as regressions (the docs' "Baseline files and machine
fingerprints" has the case). The fingerprint therefore carries what tells such
hosts apart: vendor, family, model and stepping, the vector/matrix extensions, cache sizes, and
the GPU model, capability and driver.

torch is imported inside :func:`machine_info` only: the plugin must cost nothing in a session
that selects no perf test.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from functools import cache
from pathlib import Path
from typing import Any, Final

from . import __version__

__all__ = ["ISA_FLAGS", "cpu_facts", "cpu_model", "gpu_driver", "machine_info"]

#: /proc/cpuinfo flags that change which kernels torch and inductor pick.
ISA_FLAGS: Final = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "sve2",
)
_CPUINFO: Final = Path("/proc/cpuinfo")
_CACHE_SYSFS: Final = Path("/sys/devices/system/cpu/cpu0/cache")
_NVIDIA_VERSION: Final = Path("/proc/driver/nvidia/version")


def _first_cpu_block(text: str) -> dict[str, str]:
    """``key: value`` pairs of the first processor in a /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _cache_sizes(sysfs: Path) -> dict[str, str]:
    """``{"L1d": "32K", "L2": "1024K", "L3": "32768K"}`` for cpu0, from sysfs; empty elsewhere."""
    sizes: dict[str, str] = {}
    try:
        for index in sorted(sysfs.glob("index*")):
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            if kind == "Instruction":
                continue
            name = f"L{level}" + ("d" if kind == "Data" else "")
            sizes[name] = (index / "size").read_text().strip()
    except OSError:
        return {}
    return sizes


def cpu_facts(cpuinfo: str | None = None, cache_dir: Path = _CACHE_SYSFS) -> dict[str, Any]:
    """Vendor, family/model/stepping, ISA extensions and caches of this CPU (None where unknown)."""
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text()
        except OSError:
            cpuinfo = ""
    block = _first_cpu_block(cpuinfo)
    flags = set((block.get("flags") or block.get("features") or "").split())
    return {
        "cpu_vendor": block.get("vendor_id") or block.get("cpu implementer"),
        "cpu_family": block.get("cpu family"),
        "cpu_model_number": block.get("model") or block.get("cpu part"),
        "cpu_stepping": block.get("stepping") or block.get("cpu variant"),
        "cpu_isa": sorted(flags.intersection(ISA_FLAGS)),
        "cpu_caches": _cache_sizes(cache_dir),
    }


@cache
def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in _CPUINFO.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_driver() -> str | None:
    """The NVIDIA kernel driver version (``/proc/driver/nvidia/version``), or None."""
    try:
        first = _NVIDIA_VERSION.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    words = [w for w in first.split() if w[:1].isdigit() and "." in w]
    return words[0] if words else first.strip()


def machine_info(*, threads: int) -> dict[str, Any]:
    """The environment record: hardware, software versions, thread count and devices."""
    import numpy
    import scipy
    import torch

    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        **cpu_facts(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pytest_keisei_perf": __version__,
        "threads": threads,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "argv": sys.argv[1:],
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [
            f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())
        ]
        info["cuda_driver"] = gpu_driver()
    return info
