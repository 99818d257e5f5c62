"""The command's cap on glibc's malloc arenas: many threads allocating chip-sized arrays share a few arenas."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import geosample.cli

PROBE = """
import ctypes, os, re, tempfile, threading
import numpy as np
from geosample._malloc import ARENAS_PER_CORE, cap_malloc_arenas
first, second = cap_malloc_arenas(), cap_malloc_arenas()
barrier = threading.Barrier(16)
def work():
    barrier.wait()
    for _ in range(200):
        a = np.ones(40_000); b = a * 2; del a, b
threads = [threading.Thread(target=work) for _ in range(16)]
[t.start() for t in threads]; [t.join() for t in threads]
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
path = tempfile.mktemp()
fh = libc.fopen(path.encode(), b"w"); libc.malloc_info(0, ctypes.c_void_p(fh)); libc.fclose(ctypes.c_void_p(fh))
print(first, second, len(re.findall("<heap nr=", open(path).read())), ARENAS_PER_CORE * os.cpu_count())
os.unlink(path)
"""


def probe(env: dict[str, str]) -> tuple[str, str, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    first, second, heaps, cap = out.stdout.split()
    return first, second, int(heaps), int(cap)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
def test_arenas_are_capped_once_unless_the_user_set_them() -> None:
    """16 threads allocating at once: at most the cap of arenas, counted by glibc's own ``malloc_info``."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    first, second, heaps, cap = probe(env)
    assert (first, second) == ("True", "False") and heaps <= cap
    first, second, heaps, _ = probe({**env, "MALLOC_ARENA_MAX": "3"})
    assert (first, second) == ("False", "False") and heaps <= 3


def test_the_command_caps_them_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(geosample.cli, "cap_malloc_arenas", lambda: calls.append(1))
    geosample.cli.main(["--version"])
    assert calls == [1]
