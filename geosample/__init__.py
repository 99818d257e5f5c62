"""geosample: globally balanced, hierarchically labelled, captioned remote-sensing datasets.

One function per stage, each writing its files into the dataset folder::

    import geosample
    geosample.plan("DS", config=geosample.PlanConfig(samples=500))
    geosample.fetch("DS", config=geosample.FetchConfig(stac="https://...", collections=("sentinel-2-l2a",)))
    geosample.label("DS")
    geosample.caption("DS")
    geosample.evaluate("DS", ...)
    geosample.finetune("DS", encoder="baseline")   # adapters on the train split, test before/after
    geosample.export("DS", format="parquet")
    geosample.run("config.yaml")           # all of the above from one file

Every stage is imported on first use, so ``import geosample`` (and ``geosample --help``) stays
light: no geopandas, pystac-client, torch or open_clip until a stage needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from geosample.errors import GeosampleError  # noqa: E402

_LAZY = {
    "plan": "geosample.sampling.plan",
    "PlanConfig": "geosample.sampling.config",
    "fetch": "geosample.stac.fetch",
    "FetchConfig": "geosample.stac.config",
    "label": "geosample.labels.label",
    "change": "geosample.labels.change",
    "observe": "geosample.stac.observe",
    "LabelConfig": "geosample.labels.config",
    "load_taxonomy": "geosample.labels.taxonomy",
    "Taxonomy": "geosample.labels.taxonomy",
    "caption": "geosample.captions.caption",
    "CaptionConfig": "geosample.captions.config",
    "evaluate": "geosample.retrieval.evaluate",
    "EvaluateConfig": "geosample.retrieval.config",
    "finetune": "geosample.finetune.train",
    "FinetuneConfig": "geosample.finetune.config",
    "ExportConfig": "geosample.export",
    "stats": "geosample.export.stats",
    "run": "geosample.pipeline.run",
    "read_samples": "geosample._dataset",
    "read_reserve": "geosample._dataset",
}
# Packages that are themselves the stage's callable (geosample.export(ds, format=...)).
_LAZY_MODULES = {"export": "geosample.export"}

__all__ = ["GeosampleError", "__version__", *_LAZY, *_LAZY_MODULES]


def __getattr__(name: str) -> Any:
    """Import a later stage's public name on first access."""
    if name in _LAZY_MODULES:
        return importlib.import_module(_LAZY_MODULES[name])
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geosample' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))
