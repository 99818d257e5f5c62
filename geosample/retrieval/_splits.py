"""The train/validation/test split of every sample, as ``geosample export`` assigns it (for evaluate and finetune).

The assignment lives in the export package (:func:`geosample.export.splits.dataset_splits`);
this module only maps its names onto the one vocabulary used here, so that
``evaluate --split test`` and ``finetune`` see the very samples an export puts
in each split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SPLIT_NAMES = ("train", "validation", "test")
ALIASES = {"validate": "validation", "val": "validation"}  # STAC ml-aoi spells it "validate"


def dataset_splits(ds: Path) -> pd.Series:
    """The split (``train``, ``validation``, ``test``) of every sample of ``ds``, indexed by ``sample_id``."""
    from geosample.export.splits import dataset_splits as export_splits

    return export_splits(ds).map(normalise)


def normalise(name: str) -> str:
    """A split name as used here (``validate`` → ``validation``)."""
    return ALIASES.get(name, name)
