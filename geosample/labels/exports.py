"""The label stage's files: labels.parquet, STAC ``label`` items and a TrainingDML-AI dataset document.

Everything is written into a staging folder inside ``DS`` and renamed into
place at the end, so a failure leaves the previous labels untouched.

- ``DS/labels.parquet``: one row per sample (DESIGN.md).
- ``DS/stac/labels/collection.json`` and ``items/<sample_id>.json`` (+ a
  one-feature GeoJSON label asset each): the STAC ``label`` extension v1.0.1,
  ``label:classes`` per level, ``label:overviews`` with pixel counts.
- ``DS/trainingdml.json``: an OGC TrainingDML-AI ``AI_EOTrainingDataset``
  (JSON encoding 1.0, OGC 23-008r3), one ``AI_EOTrainingData`` per sample
  with an ``AI_SceneLabel`` per class present at each level.
- ``DS/report/labels.json``: samples per class and level.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geosample import __version__
from geosample._dataset import CHIPS_FILE, LABELS_FILE, read_table
from geosample.labels.config import LabelConfig
from geosample.labels.label import level_code, write_labels_parquet

if TYPE_CHECKING:
    from geosample.labels.taxonomy import Taxonomy

STAC_VERSION = "1.1.0"
LABEL_EXTENSION = "https://stac-extensions.github.io/label/v1.0.1/schema.json"
TDML_FILE = "trainingdml.json"
STAC_LABELS_DIR = "stac/labels"
REPORT_FILE = "report/labels.json"


def write_label_outputs(
    ds: Path, samples: gpd.GeoDataFrame, table: pd.DataFrame, taxonomy: Taxonomy, cfg: LabelConfig, source: str
) -> None:
    """Stage every label file in ``DS`` and rename them into place together."""
    staging = Path(tempfile.mkdtemp(prefix=".label-", dir=ds))
    try:
        write_labels_parquet(table, staging / LABELS_FILE)
        chips = _chip_paths(ds)
        write_stac_labels(staging / STAC_LABELS_DIR, samples, table, taxonomy, source, ds.name)
        write_trainingdml(staging / TDML_FILE, samples, table, taxonomy, source, ds.name, chips)
        (staging / "report").mkdir()
        report = label_report(table, taxonomy, cfg, source)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _replace_dir(staging / STAC_LABELS_DIR, ds / STAC_LABELS_DIR)
        from geosample.stac.catalog import write_root_catalog

        write_root_catalog(ds)  # the one root links the labels beside the chips
        (ds / "report").mkdir(exist_ok=True)
        for name in (LABELS_FILE, TDML_FILE, REPORT_FILE):
            (staging / name).replace(ds / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_dir(new: Path, old: Path) -> None:
    """Put folder ``new`` where ``old`` is, removing the old one only once the new one is in place."""
    old.parent.mkdir(parents=True, exist_ok=True)
    if old.exists():
        trash = old.with_name(f".{old.name}-old-{dt.datetime.now().timestamp():.0f}")
        old.replace(trash)
        new.replace(old)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        new.replace(old)


def _chip_paths(ds: Path) -> dict[str, list[str]]:
    """``sample_id`` -> paths of its ``ok`` chips, when the dataset has been fetched."""
    chips = read_table(ds, CHIPS_FILE, hint="geosample fetch")
    if chips is None or chips.empty:
        return {}
    ok = chips[chips["status"] == "ok"]
    return ok.groupby("sample_id")["path"].apply(list).to_dict()


# ------------------------------------------------------------------------------------------ STAC


def write_stac_labels(
    folder: Path, samples: gpd.GeoDataFrame, table: pd.DataFrame, taxonomy: Taxonomy, source: str, name: str
) -> None:
    """A self-contained STAC collection of label items, one per sample."""
    items = folder / "items"
    items.mkdir(parents=True)
    collection_id = f"{name}-labels"
    item_links = []
    for item, feature in label_items(samples, table, taxonomy, source, collection_id):
        (items / f"{item['id']}.geojson").write_text(json.dumps(feature), encoding="utf-8")
        (items / f"{item['id']}.json").write_text(json.dumps(item), encoding="utf-8")
        item_links.append({"rel": "item", "href": f"./items/{item['id']}.json", "type": "application/json"})
    collection = label_collection(samples, table, taxonomy, source, collection_id, name)
    collection["links"] += item_links
    (folder / "collection.json").write_text(json.dumps(collection, indent=1), encoding="utf-8")


def label_items(
    samples: gpd.GeoDataFrame, table: pd.DataFrame, taxonomy: Taxonomy, source: str, collection_id: str
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The STAC label item of every row of ``table``, and the one-feature GeoJSON its ``labels`` asset holds.

    The asset's href is ``./<sample_id>.geojson``, beside the item; the item
    links its collection at ``../collection.json``.
    """
    levels = list(taxonomy.levels)
    rows = samples.set_index("sample_id")
    description = _label_description(taxonomy, source)
    label_classes = [{"name": level, "classes": classes_at(taxonomy, table, level)} for level in levels]
    for record in table.itertuples(index=False):
        sample = rows.loc[record.sample_id]
        geometry = shapely.geometry.mapping(sample.geometry)
        bbox = list(sample.geometry.bounds)
        fractions = json.loads(record.fractions)
        label_props = {level: list(getattr(record, level)) for level in levels}
        dominants = {f"{level}_dominant": getattr(record, f"{level}_dominant") for level in levels}
        feature = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": record.sample_id,
                    "geometry": geometry,
                    "properties": {**label_props, **dominants, "fractions": fractions},
                }
            ],
        }
        overviews = []
        for level in levels:
            rolled: dict[str, float] = {}
            for code, value in fractions.items():
                key = level_code(taxonomy, code, level)
                rolled[key] = rolled.get(key, 0.0) + value
            overviews.append(
                {
                    "property_key": level,
                    "statistics": [{"name": code, "value": round(v, 6)} for code, v in sorted(rolled.items())],
                }
            )
        item = {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": [LABEL_EXTENSION],
            "id": record.sample_id,
            "collection": collection_id,
            "geometry": geometry,
            "bbox": bbox,
            "properties": {
                "datetime": None,
                "start_datetime": _iso(sample["start_datetime"]),
                "end_datetime": _iso(sample["end_datetime"]),
                "label:properties": levels,
                "label:description": description,
                "label:type": "vector",
                "label:tasks": ["classification"],
                "label:methods": ["automated"],
                "label:classes": label_classes,
                "label:overviews": overviews,
                **dominants,
            },
            "links": [
                {"rel": "collection", "href": "../collection.json", "type": "application/json"},
                {"rel": "parent", "href": "../collection.json", "type": "application/json"},
                {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            ],
            "assets": {
                "labels": {
                    "href": f"./{record.sample_id}.geojson",
                    "type": "application/geo+json",
                    "title": "Scene labels at every taxonomy level",
                    "roles": ["labels"],
                }
            },
        }
        yield item, feature


def label_collection(
    samples: gpd.GeoDataFrame, table: pd.DataFrame, taxonomy: Taxonomy, source: str, collection_id: str, name: str
) -> dict[str, Any]:
    """The STAC collection of the label items, with class lists and sample counts per level; no item links yet."""
    levels = list(taxonomy.levels)
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [LABEL_EXTENSION],
        "id": collection_id,
        "title": f"{name}: scene labels",
        "description": _label_description(taxonomy, source),
        "license": "other",
        "extent": {
            "spatial": {"bbox": [list(samples.total_bounds)]},
            "temporal": {"interval": [[_iso(samples["start_datetime"].min()), _iso(samples["end_datetime"].max())]]},
        },
        "summaries": {
            "label:type": ["vector"],
            "label:tasks": ["classification"],
            "label:methods": ["automated"],
            "label:properties": levels,
        },
        "label:classes": [{"name": level, "classes": classes_at(taxonomy, table, level)} for level in levels],
        "label:overviews": [{"property_key": level, "counts": _sample_counts(table, level)} for level in levels],
        "links": [  # DS/stac/catalog.json is the root (no self link: the catalog is relative, SELF_CONTAINED)
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
            {"rel": "describedby", "href": taxonomy_uri(taxonomy), "title": taxonomy.title},
        ],
    }


def _label_description(taxonomy: Taxonomy, source: str) -> str:
    return f"Scene labels from {source} mapped to {taxonomy.key}; levels {', '.join(taxonomy.levels)}."


def classes_at(taxonomy: Taxonomy, table: pd.DataFrame, level: str) -> list[str]:
    """The level's classes, plus any coarser class kept at this level because a source could not resolve it."""
    codes = taxonomy.codes_at(level)
    known = set(codes)
    extra = {code for labels in table[level] for code in labels if code not in known}
    return codes + sorted(extra, key=_code_order(taxonomy))


def _sample_counts(table: pd.DataFrame, level: str) -> list[dict[str, Any]]:
    counts = pd.Series([code for codes in table[level] for code in codes], dtype=object).value_counts()
    return [{"name": str(code), "count": int(n)} for code, n in counts.sort_index().items()]


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def taxonomy_uri(taxonomy: Taxonomy) -> str:
    """The URI that names the taxonomy (its SKOS concept scheme)."""
    uri = getattr(taxonomy, "uri", None)
    return str(uri) if uri else f"https://w3id.org/geosample/taxonomy/{taxonomy.id}/{taxonomy.version}/"


# ----------------------------------------------------------------------------------- TrainingDML-AI


def write_trainingdml(
    path: Path,
    samples: gpd.GeoDataFrame,
    table: pd.DataFrame,
    taxonomy: Taxonomy,
    source: str,
    name: str,
    chips: dict[str, list[str]],
    *,
    training_types: Mapping[str, str] | None = None,
    plan_href: str = "plan.parquet",
) -> int:
    """Write an ``AI_EOTrainingDataset`` (TrainingDML-AI JSON 1.0) of every labelled sample to ``path``.

    ``chips`` gives each sample's image references; a sample without chips refers to its row of the
    plan at ``plan_href``. ``training_types`` gives each sample's ``trainingType`` (``training``,
    ``validation``, ``test``). The ``data`` entries are written one at a time, so memory stays flat in
    the number of samples (the document built whole took ~85 MB per 10,000 samples while encoded).
    Returns the number of entries.
    """
    header = _tdml_header(samples, table, taxonomy, source, name)
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        head = json.dumps({**header, "data": []}, indent=1, ensure_ascii=False)
        out.write(head[: head.rindex("[]")] + "[")
        for entry in _tdml_entries(samples, table, taxonomy, name, chips, training_types, plan_href):
            out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(entry, ensure_ascii=False))
            count += 1
        out.write("\n ]\n}\n")
    return count


def _tdml_header(
    samples: gpd.GeoDataFrame, table: pd.DataFrame, taxonomy: Taxonomy, source: str, name: str
) -> dict[str, Any]:
    """Every member of the ``AI_EOTrainingDataset`` but ``data``."""
    levels = list(taxonomy.levels)
    used = sorted({code for level in levels for codes in table[level] for code in codes}, key=_code_order(taxonomy))
    labelled = sum(1 for record in table.itertuples(index=False) if _is_labelled(record, levels))
    return {
        "type": "AI_EOTrainingDataset",
        "id": name,
        "name": name,
        "description": f"Scene labels for {len(table)} samples from {source}, classified with {taxonomy.key}.",
        "license": "other",
        "version": "1",
        "createdTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "providers": [f"geosample {__version__}"],
        "keywords": ["remote sensing", "land cover", "scene classification", taxonomy.id],
        "classificationScheme": taxonomy_uri(taxonomy),
        "numberOfClasses": len(used),
        "classes": [{"key": code, "value": taxonomy[code].name} for code in used],
        "amountOfTrainingData": labelled,
        "dataSources": [{"title": source}],
        "extent": {"geographicElement": [_bbox_element(samples.total_bounds)]},
        "tasks": [
            {
                "type": "AI_EOTask",
                "id": f"scene-classification-{level}",
                "taskType": "Scene Classification",
                "description": f"Multi-label scene classification at taxonomy level {level}",
            }
            for level in levels
        ],
        "labeling": [
            {
                "type": "AI_Labeling",
                "id": "geosample-label",
                "scope": {"level": "dataset"},
                "procedure": {
                    "type": "AI_LabelingProcedure",
                    "id": "land-cover-fractions",
                    "methods": ["automatic"],
                    "tools": [f"geosample {__version__}", source],
                },
            }
        ],
    }


def _tdml_entries(
    samples: gpd.GeoDataFrame,
    table: pd.DataFrame,
    taxonomy: Taxonomy,
    name: str,
    chips: dict[str, list[str]],
    training_types: Mapping[str, str] | None,
    plan_href: str,
) -> Iterator[dict[str, Any]]:
    """One ``AI_EOTrainingData`` per labelled sample (a sample without labelled pixels is not training data)."""
    levels = list(taxonomy.levels)
    first = samples.drop_duplicates("sample_id")
    bounds = dict(zip(first["sample_id"], first.geometry.bounds.itertuples(index=False, name=None), strict=True))
    times = dict(zip(first["sample_id"], zip(first["start_datetime"], first["end_datetime"], strict=True), strict=True))
    for record in table.itertuples(index=False):
        if not _is_labelled(record, levels):
            continue
        fractions = json.loads(record.fractions)
        labels = []
        for level in levels:
            for code in getattr(record, level):
                share = sum(v for c, v in fractions.items() if level_code(taxonomy, c, level) == code)
                labels.append({"type": "AI_SceneLabel", "class": code, "confidence": round(min(share, 1.0), 6)})
        start, end = times[record.sample_id]
        entry: dict[str, Any] = {
            "type": "AI_EOTrainingData",
            "id": record.sample_id,
            "datasetId": name,
            "dataURL": chips.get(record.sample_id) or [f"{plan_href}#{record.sample_id}"],
            "extent": {"geographicElement": [_bbox_element(bounds[record.sample_id])]},
            "dataTime": [_iso(start), _iso(end)],
            "numberOfLabels": len(labels),
            "labels": labels,
        }
        if training_types is not None and record.sample_id in training_types:
            entry["trainingType"] = training_types[record.sample_id]
        yield entry


def _is_labelled(record: Any, levels: Sequence[str]) -> bool:
    """Whether a row of the label table has a class at any level: only those are training data."""
    return any(len(getattr(record, level)) for level in levels)


def _bbox_element(bounds: Any) -> dict[str, Any]:
    west, south, east, north = (float(v) for v in bounds)
    return {
        "westBoundLongitude": west,
        "eastBoundLongitude": east,
        "southBoundLatitude": south,
        "northBoundLatitude": north,
    }


def _code_order(taxonomy: Taxonomy) -> Any:
    order = {code: i for i, code in enumerate(taxonomy.classes)}
    return lambda code: order.get(code, len(order))


# ------------------------------------------------------------------------------------------ report


def label_report(table: pd.DataFrame, taxonomy: Taxonomy, cfg: LabelConfig, source: str) -> dict[str, Any]:
    """Samples per class at every level (multi-label and dominant), and how much of the chips had data."""
    levels = {}
    for level in taxonomy.levels:
        present = _sample_counts(table, level)
        dominant = table[f"{level}_dominant"].dropna().value_counts().sort_index()
        levels[level] = {
            "classes": {row["name"]: {"name": taxonomy[row["name"]].name, "samples": row["count"]} for row in present},
            "dominant": {str(code): int(n) for code, n in dominant.items()},
        }
    valid = table["valid_fraction"].to_numpy()
    return {
        "n_samples": len(table),
        "taxonomy": taxonomy.key,
        "label_source": source,
        "min_fraction": cfg.min_fraction,
        "unlabelled_samples": int((valid == 0).sum()),
        "mean_valid_fraction": float(np.mean(valid)) if len(valid) else 0.0,
        "levels": levels,
    }
