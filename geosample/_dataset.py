"""The dataset folder: atomic writes and the per-stage sections of geosample.yaml."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from geosample.errors import DatasetError

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

CONFIG_FILE = "geosample.yaml"
PLAN_FILE = "plan.parquet"
CHIPS_FILE = "chips.parquet"
LABELS_FILE = "labels.parquet"
CAPTIONS_FILE = "captions.parquet"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def read_config(ds: str | Path) -> dict[str, Any]:
    """All sections of ``DS/geosample.yaml`` (empty if there is none yet)."""
    path = Path(ds) / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path} is not valid YAML ({exc.__class__.__name__}); fix or delete it") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DatasetError(f"{path} must hold a mapping of stage sections; fix or delete it")
    return data


def write_section(ds: str | Path, stage: str, values: dict[str, Any]) -> None:
    """Set one stage's section of ``DS/geosample.yaml``, keeping the others."""
    data = read_config(ds)
    data[stage] = values
    with atomic_path(Path(ds) / CONFIG_FILE) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def read_plan(ds: str | Path) -> gpd.GeoDataFrame:
    """``DS/plan.parquet``, or a :class:`DatasetError` that says how to make it."""
    import geopandas as gpd

    ds = Path(ds)
    if not ds.is_dir():
        raise DatasetError(f"dataset folder {ds} does not exist; make it with 'geosample plan -o {ds}'")
    path = ds / PLAN_FILE
    if not path.exists():
        raise DatasetError(f"{ds} has no {PLAN_FILE}; run 'geosample plan -o {ds}' first")
    try:
        return gpd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise DatasetError(f"{path} cannot be read ({exc.__class__.__name__}); re-run 'geosample plan'") from None


def read_table(ds: str | Path, name: str, *, hint: str) -> pd.DataFrame | None:
    """A stage's Parquet table in ``DS`` (plain pandas), or None if that stage has not run.

    ``hint`` names the command that writes it, for the error raised when the file is unreadable.
    """
    import pandas as pd

    path = Path(ds) / name
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path} cannot be read ({exc.__class__.__name__}); re-run '{hint}'") from None
