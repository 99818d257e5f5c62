"""glibc's malloc arenas, capped for the ``geosample`` command's many reading and encoding threads."""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["ARENAS_PER_CORE", "cap_malloc_arenas"]

ARENAS_PER_CORE = 2
"""glibc malloc arenas per core in the ``geosample`` command (glibc's default: 8; ``MALLOC_ARENA_MAX`` wins)."""
M_ARENA_MAX = -8
"""``mallopt`` parameter number, from glibc's ``<malloc.h>``."""
_capped = False


def cap_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas at :data:`ARENAS_PER_CORE` per core, once per process; whether it was set now.

    Every read and encoder thread of a fetch allocates chip-sized arrays. glibc gives busy threads their own
    arenas, up to 8 per core, and each keeps the memory it once held: with 16 read threads that adds 100–180 MB
    to the peak RSS of a fetch of 2,000 chips (``benchmarks/fetch_bench.py``), for no gain in speed. glibc
    fixes its arena limit the first time a process goes past 8 arenas, so a cap works only early in a process:
    the ``geosample`` command sets it before any work; in a notebook, set ``MALLOC_ARENA_MAX`` before Python
    starts. Nothing is done where ``MALLOC_ARENA_MAX`` is set (glibc applied it at start) or the C library is
    not glibc.
    """
    global _capped
    if _capped or "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc has it
        return False
    _capped = mallopt(M_ARENA_MAX, ARENAS_PER_CORE * max(1, os.cpu_count() or 1)) == 1
    return _capped
