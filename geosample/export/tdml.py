"""``export --format tdml``: the OGC TrainingDML-AI document of the dataset, with its splits.

The label stage's ``AI_EOTrainingDataset`` (JSON encoding 1.0), with each
sample's ``trainingType`` (``training``, ``validation`` or ``test``) from the
split and ``dataURL`` pointing at its chips relative to the document, so the
export folder can sit anywhere beside the dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from geosample.errors import DatasetError
from geosample.export._content import DatasetContent
from geosample.export._export import ExportConfig
from geosample.labels.exports import write_trainingdml

__all__ = ["TDML_FILE", "TRAINING_TYPES", "write_tdml"]

TDML_FILE = "trainingdml.json"
TRAINING_TYPES = {"train": "training", "validation": "validation", "test": "test"}
"""Split names to TrainingDML-AI ``AI_TrainingTypeCode`` values."""


def write_tdml(
    content: DatasetContent, records: pd.DataFrame, out: Path, cfg: ExportConfig, *, progress: bool | None = None
) -> None:
    """Write ``trainingdml.json`` into the empty folder ``out``.

    ``out`` is a staging folder beside the export's final place, so paths
    relative to it hold for the final place too.
    """
    if content.labels is None or content.taxonomy is None:
        raise DatasetError(f"{content.ds} has no labels; run 'geosample label {content.ds}' first")
    base = out.resolve()
    chips = {
        sample_id: [_relative(content.ds / p, base) for p in group]
        for sample_id, group in records.dropna(subset=["path"]).groupby("sample_id")["path"]
    }
    types = {
        s: TRAINING_TYPES[v] for s, v in records.drop_duplicates("sample_id").set_index("sample_id")["split"].items()
    }
    source = str(content.labels["label_source"].iloc[0]) if len(content.labels) else "unknown"
    entries = write_trainingdml(
        out / TDML_FILE,
        content.plan,
        content.labels,
        content.taxonomy,
        source,
        content.name,
        chips,
        training_types=types,
        plan_href=_relative(content.ds / "plan.parquet", base),
    )
    if not entries:
        raise DatasetError(
            f"no sample of {content.ds} has labelled pixels, so there is no training data to describe; "
            "check the label source's coverage and re-run 'geosample label'"
        )


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to folder ``base``, with forward slashes (a URI reference)."""
    return Path(os.path.relpath(path.resolve(), base)).as_posix()
