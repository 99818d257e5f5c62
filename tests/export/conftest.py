"""Datasets to export: the small real plan, labelled by the label stage, with chips and captions (builders.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from export.builders import write_captions, write_chips
from validation import assert_valid

from geosample.cli import cli


@pytest.fixture(scope="session")
def _full_ds(_small_plan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small plan with labels (the label stage, embedded source), chips and captions."""
    ds = tmp_path_factory.mktemp("full") / "DS"
    shutil.copytree(_small_plan, ds)
    result = CliRunner().invoke(cli, ["label", str(ds), "-q", "--no-progress"])
    assert result.exit_code == 0, result.output
    write_chips(ds)
    write_captions(ds)
    assert_valid(ds)
    return ds


@pytest.fixture
def full_ds(_full_ds: Path, tmp_path: Path) -> Path:
    """A private copy of the complete dataset."""
    ds = tmp_path / "full" / "DS"  # beside planned_ds's tmp_path/DS
    shutil.copytree(_full_ds, ds)
    return ds
