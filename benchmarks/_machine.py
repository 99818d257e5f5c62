"""What every benchmark prints beside its figures: the machine, its load, the BLAS kernels; and peak memory.

The benchmarks run as scripts (``python benchmarks/NAME.py``), so this module is imported as ``_machine``
from the script's own folder, in the parent and in every child process alike.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown"


def cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ram_gb() -> float | None:
    """Physical memory, GiB (None where ``sysconf`` cannot tell)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def load() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def blas() -> str:
    """The BLAS libraries numpy loaded: library, version, kernel (``architecture``) and threads."""
    import numpy  # noqa: F401 - loads the BLAS that threadpoolctl reports

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl is not installed)"
    found = [
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}) x{i.get('num_threads')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return ", ".join(found) or "none loaded"


def describe(*, gdal: bool = False) -> str:
    """One line: CPU, cores, RAM, Python, numpy and its BLAS kernels, the load average (and GDAL, if asked)."""
    import numpy as np

    ram = ram_gb()
    parts = [
        f"{cores()} x {cpu_model()}" + (f", {ram:.1f} GiB RAM" if ram else ""),
        f"Python {platform.python_version()}",
        f"numpy {np.__version__} (BLAS: {blas()})",
    ]
    if gdal:
        import rasterio

        parts.append(f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})")
    parts.append(f"load average {load()} (a shared machine)")
    return "; ".join(parts)


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB: ``VmHWM`` where Linux has it (``ru_maxrss`` would carry the
    parent's peak across fork + exec, so a child started by a large parent would report the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a running process (Linux ``/proc``); None where that cannot be read."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
