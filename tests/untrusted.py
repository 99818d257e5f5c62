"""Helpers for the tests of untrusted input: run the CLI as a user would, and check that a refusal is clean.

A clean refusal (README, "Reliability"): exit status 2, one line on stderr
that starts with ``geosample: error:`` and names the problem, no traceback,
no file written outside the dataset folder, and nothing half-written inside it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from geosample.cli import main

Tree = dict[str, tuple[int, int]]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``geosample ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_process(
    args: list[str], *, preexec: Callable[[], None] | None = None, env: dict[str, str] | None = None,
    code: str | None = None, timeout: float = 300,
) -> subprocess.CompletedProcess:  # fmt: skip
    """``geosample ARGS`` in a child process (``code``: Python run first, e.g. to plant a kill -9)."""
    prelude = code or ""
    script = f"import sys\n{prelude}\nfrom geosample.cli import main\nmain(sys.argv[1:])\n"
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=timeout,
        preexec_fn=preexec, env={**os.environ, **(env or {})},
    )  # fmt: skip


def kill_9_at(module: str, name: str) -> str:
    """Python that replaces ``module.name`` by a ``kill -9`` of the running process (SIGKILL, no clean-up)."""
    return (
        "import importlib, os, signal\n"
        f"setattr(importlib.import_module({module!r}), {name!r}, "
        f"lambda *a, **k: os.kill(os.getpid(), {int(signal.SIGKILL)}))\n"
    )


def tree(folder: Path) -> Tree:
    """Every file and folder under ``folder``, files with their size and modification time (to compare later)."""
    out: Tree = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        # A folder's own time changes when a staging entry comes and goes; what it holds is what counts.
        out[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns) if path.is_file() else (-1, 0)
    return out


def assert_refused(code: int, err: str, *words: str) -> str:
    """Exit status 2 and one ``geosample: error:`` line holding ``words``, no traceback; returns the line."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("geosample: error:")]
    others = [line for line in err.splitlines() if line.strip() and not line.startswith("geosample: warning:")]
    assert code == 2, (code, err)
    assert len(errors) == 1 and others == errors, err
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def assert_untouched(root: Path, before: Tree, ds: Path | None = None, allowed: Tree | None = None) -> None:
    """Nothing under ``root`` changed since ``before`` (``ds``, when given, is compared to ``allowed`` instead)."""
    after = tree(root)
    if ds is not None:
        prefix = str(ds.relative_to(root))
        strip = {k: v for k, v in after.items() if k != prefix and not k.startswith(prefix + os.sep)}
        before = {k: v for k, v in before.items() if k != prefix and not k.startswith(prefix + os.sep)}
        assert strip == before, sorted(k for k in set(strip) | set(before) if strip.get(k) != before.get(k))
        if allowed is not None:
            assert tree(ds) == allowed, sorted(set(tree(ds)) ^ set(allowed))
        return
    assert after == before, sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k))


def unprivileged() -> Callable[[], None] | None:
    """A ``preexec_fn`` under which file permissions bind root too; None when not root (they bind already).

    Root keeps its user id but loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set
    (``prctl(PR_CAPBSET_DROP)``), so after ``exec`` a folder without the write bit refuses it.
    """
    if os.geteuid() != 0:
        return None

    def drop() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    return drop


def ignore_sigxfsz() -> None:
    """In a child: exceeding RLIMIT_FSIZE gives EFBIG ("File too large") instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class FakeDNS:
    """Names resolved in this process as a test says: to a loopback address, or never (a resolver that hangs).

    ``dns.add("attacker.example", "127.0.0.1")`` makes a remote-looking host that is a loopback server;
    ``dns.hang("slow.example")`` makes every lookup of it block until the test ends (:meth:`release`).
    Other names resolve as usual. Installed by the ``dns`` fixture (tests/conftest.py).
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.hung: set[str] = set()
        self.waiting = 0
        self._released = threading.Event()
        self._real = socket.getaddrinfo

    def add(self, name: str, address: str) -> None:
        self.names[name] = address

    def hang(self, name: str) -> None:
        self.hung.add(name)

    def release(self) -> None:
        """Let hung lookups fail (at the end of the test), so their threads end."""
        self._released.set()

    @property
    def released(self) -> bool:
        """Whether hung lookups were let go (or gave up after a minute)."""
        return self._released.is_set()

    def getaddrinfo(self, host: object, port: object, *args: object, **kwargs: object) -> list:
        if host in self.hung:
            self.waiting += 1
            if not self._released.wait(60):  # a client that waits for the resolver fails on the message, not a hang
                self._released.set()
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return self._real(self.names.get(host, host), port, *args, **kwargs)
