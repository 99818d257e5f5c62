"""The offline demo (``data/examples/offline.yaml``) with every export, built once, and private copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from geosample.cli import cli

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def _demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``geosample run data/examples/offline.yaml`` with ``export: {format: all}``, as a user runs it."""
    work = tmp_path_factory.mktemp("demo")
    shutil.copytree(ROOT / "data" / "examples", work / "data" / "examples")
    config = work / "data" / "examples" / "offline.yaml"
    settings = yaml.safe_load(config.read_text())
    settings["out"] = str(work / "offline-demo")
    settings["export"]["format"] = "all"
    config.write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(cli, ["run", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    return work / "offline-demo"


@pytest.fixture
def demo(_demo: Path, tmp_path: Path) -> Path:
    """A private copy of the offline demo, to corrupt."""
    ds = tmp_path / "offline-demo"
    shutil.copytree(_demo, ds)
    return ds
