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

import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Callable
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


def cpu_facts(
    cpuinfo: str | None = None,
    cache_dir: Path = _CACHE_SYSFS,
    *,
    system: str | None = None,
    sysctl: Callable[[str], str | None] | None = None,
    processor: str | None = None,
) -> dict[str, Any]:
    """Vendor, family/model/stepping, ISA extensions and caches of this CPU (None where unknown):
    from /proc/cpuinfo and sysfs on Linux, ``sysctl`` on macOS, ``platform.processor()`` and
    torch's CPU capability on Windows, so that different hosts never share a key there either."""
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text()
        except OSError:
            cpuinfo = ""
    system = system or platform.system()
    if not cpuinfo.strip() and system == "Darwin":
        return _darwin_facts(sysctl or _sysctl)
    if not cpuinfo.strip() and system == "Windows":
        return _windows_facts(processor if processor is not None else platform.processor())
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


def _sysctl(name: str) -> str | None:
    """``sysctl -n name`` (macOS), or None where it is unknown."""
    try:
        done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None


def _darwin_facts(sysctl: Callable[[str], str | None]) -> dict[str, Any]:
    """Intel Macs report vendor/family/model/stepping and feature words; Apple silicon its CPU
    family and subtype numbers and optional-feature switches."""
    words = " ".join(filter(None, (sysctl("machdep.cpu.features"), sysctl("machdep.cpu.leaf7_features"))))
    flags = {w.lower().replace("avx1.0", "avx") for w in words.split()}
    if sysctl("hw.optional.neon") == "1" or sysctl("hw.optional.AdvSIMD") == "1":
        flags.add("asimd")
    caches = {}
    for name, key in (("L1d", "hw.l1dcachesize"), ("L2", "hw.l2cachesize"), ("L3", "hw.l3cachesize")):
        size = sysctl(key)
        if size and size.isdigit() and int(size) > 0:
            caches[name] = f"{int(size) // 1024}K"
    return {
        "cpu_vendor": sysctl("machdep.cpu.vendor") or ("Apple" if "asimd" in flags else None),
        "cpu_family": sysctl("machdep.cpu.family") or sysctl("hw.cpufamily"),
        "cpu_model_number": sysctl("machdep.cpu.model") or sysctl("hw.cpusubtype"),
        "cpu_stepping": sysctl("machdep.cpu.stepping"),
        "cpu_isa": sorted(flags.intersection(ISA_FLAGS)),
        "cpu_caches": caches,
    }


_WINDOWS_PROCESSOR: Final = re.compile(
    r"Family (?P<family>\d+) Model (?P<model>\d+) Stepping (?P<stepping>\d+), (?P<vendor>\w+)"
)


def _windows_facts(processor: str) -> dict[str, Any]:
    """``Intel64 Family 6 Model 158 Stepping 10, GenuineIntel`` read into its parts; the ISA is
    torch's CPU capability (the kernels it dispatches to), as Windows has no flag list."""
    match = _WINDOWS_PROCESSOR.search(processor)
    return {
        "cpu_vendor": match["vendor"] if match else None,
        "cpu_family": match["family"] if match else None,
        "cpu_model_number": match["model"] if match else None,
        "cpu_stepping": match["stepping"] if match else None,
        "cpu_isa": [f"torch:{_torch_cpu_capability().lower()}"],
        "cpu_caches": {},
    }


def _torch_cpu_capability() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


@cache
def cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo, macOS's brand string, Windows' registry, else
    what ``platform`` knows."""
    try:
        for line in _CPUINFO.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        brand = _sysctl("machdep.cpu.brand_string")
        if brand:
            return brand
    if platform.system() == "Windows":
        brand = _windows_cpu_name()
        if brand:
            return brand
    return platform.processor() or platform.machine() or "unknown"


def _windows_cpu_name() -> str | None:
    if sys.platform != "win32":
        return None
    import winreg

    try:
        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0")
        return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip() or None
    except OSError:
        return None


def gpu_driver() -> str | None:
    """The NVIDIA kernel driver version (``/proc/driver/nvidia/version``), or None."""
    try:
        first = _NVIDIA_VERSION.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    words = [w for w in first.split() if w[:1].isdigit() and "." in w]
    return words[0] if words else first.strip()


def installed_version(name: str) -> str:
    """A package's version, read from its installed metadata unless it is imported already: a
    fresh process that never needs scipy should not import it to write down its version."""
    module = sys.modules.get(name)
    if module is None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # importable without metadata
            module = importlib.import_module(name)
    return str(module.__version__)


def machine_info(*, threads: int) -> dict[str, Any]:
    """The environment record: hardware, software versions, thread count and devices."""
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
        "numpy": installed_version("numpy"),
        "scipy": installed_version("scipy"),
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
