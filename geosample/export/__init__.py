"""The dataset for its users: exports for ML and GIS tools, and statistics at a glance.

``geosample.export(ds, format=...)`` writes WebDataset shards, a Hugging
Face–style Parquet table, a static STAC catalog, a TrainingDML-AI document or
a styled GeoPackage, with train/validation/test splits by spatial blocks,
stratified like the plan, with a buffer between them (:func:`make_splits`).
``geosample.export.stats.stats(ds)`` writes ``DS/report/stats.json``, plots
and a self-contained ``DS/report/index.html``.

The package itself is callable, so ``geosample.export(...)`` is the export
function, as every other stage is called by its name.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from geosample.export._export import FORMATS, ExportConfig, ExportResult, export
from geosample.export.splits import SPLITS, Splits, make_splits, split_samples

__all__ = ["FORMATS", "SPLITS", "ExportConfig", "ExportResult", "Splits", "export", "make_splits", "split_samples"]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`export`."""

    def __call__(self, *args: Any, **kwargs: Any) -> ExportResult:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
