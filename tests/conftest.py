"""Shared fixtures."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not reach outside the machine: only loopback connections are allowed."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise RuntimeError(f"test tried to reach {address!r}; tests must stay offline")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def _small_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small real plan (24 sites in central Europe), made once per test session."""
    from geosample import PlanConfig, plan

    ds = tmp_path_factory.mktemp("plan") / "DS"
    cfg = PlanConfig.from_mapping({"samples": 24, "aoi": "bbox:5,40,25,55", "seed": 1})
    plan(ds, config=cfg, progress=False)
    return ds


@pytest.fixture
def planned_ds(_small_plan: Path, tmp_path: Path) -> Path:
    """A private copy of the small planned dataset folder DS, for a test to add stages to."""
    ds = tmp_path / "DS"
    shutil.copytree(_small_plan, ds)
    return ds


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run the real entry point, ``geosample.cli.main``, as a user would: ``(exit code, stdout, stderr)``."""
    from geosample.cli import main

    def run(*args: object) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
