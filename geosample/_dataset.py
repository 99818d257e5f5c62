"""The dataset folder: atomic writes and the per-stage sections of geosample.yaml."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from geosample.errors import DatasetError

CONFIG_FILE = "geosample.yaml"


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
