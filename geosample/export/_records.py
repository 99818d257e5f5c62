"""One record per exported image: a sample with its chip (one per collection), labels, captions and split.

A sample without a chip is one record without an image, so plan-only and
label-only datasets export too. Every format writes these records; the
metadata document of a record is the same in all of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from geosample import __version__
from geosample.errors import DatasetError
from geosample.export._content import DatasetContent

__all__ = ["BASE_PLAN_COLUMNS", "iter_rows", "record_metadata", "record_table", "safe_key"]

BASE_PLAN_COLUMNS = (
    "sample_id", "site_id", "h3", "h3_res", "lon", "lat", "stratum", "time_bin", "start_datetime", "end_datetime",
    "chip_size_m", "epsg", "geometry",
)  # fmt: skip
"""Plan columns every plan has; the others are dimensions or plan-type extras (season, events, revisits)."""
CHIP_COLUMNS = (
    "collection", "item_id", "item_datetime", "cloud_cover", "path", "preview", "width", "height", "bands",
    "resolution", "sha256",
)  # fmt: skip
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
ROWS_PER_CHUNK = 1024
"""Rows :func:`iter_rows` turns into dicts at a time."""


def safe_key(text: str) -> str:
    """``text`` with every character but letters, digits, ``_`` and ``-`` turned into ``-``.

    WebDataset splits a member name at its first dot into key and extension,
    so keys must not hold dots (nor slashes).
    """
    return _UNSAFE.sub("-", text)


def record_table(content: DatasetContent, split: pd.Series) -> pd.DataFrame:
    """The records: plan columns, ``split``, ``key``, the chip's columns, labels and ``captions`` (a list).

    Rows come in ``sample_id`` then ``collection`` order.
    """
    table = pd.DataFrame(content.plan.assign(split=split.reindex(content.plan.index).to_numpy()))
    if content.chips is not None:
        chips = content.chips[["sample_id", *(c for c in CHIP_COLUMNS if c in content.chips.columns)]]
        table = table.merge(chips, on="sample_id", how="left", validate="one_to_many")
    for column in CHIP_COLUMNS:
        if column not in table:
            table[column] = None
    for column in ("width", "height"):  # integers, with NA where a sample has no chip
        table[column] = pd.to_numeric(table[column]).astype("Int64")
    if content.labels is not None:
        table = table.merge(content.labels, on="sample_id", how="left", validate="many_to_one")
    table["captions"], table["caption_sources"] = _caption_lists(content, table["sample_id"])
    table["key"] = _keys(table, multi=len(content.collections) > 1)
    return table.reset_index(drop=True)


def iter_rows(table: pd.DataFrame, positions: np.ndarray | None = None) -> Iterator[dict[str, Any]]:
    """The rows of ``table`` at ``positions`` (default: all, in order) as dicts, as ``to_dict("records")`` makes them.

    Only :data:`ROWS_PER_CHUNK` rows exist as dicts (or as a copied frame) at once: a dict per row costs
    kilobytes (every cell a Python object), so the writers stream them rather than hold a whole table's.
    """
    if positions is None:
        positions = np.arange(len(table))
    for start in range(0, len(positions), ROWS_PER_CHUNK):
        yield from table.iloc[positions[start : start + ROWS_PER_CHUNK]].to_dict("records")


def _caption_lists(content: DatasetContent, sample_ids: pd.Series) -> tuple[Any, list[list[dict]]]:
    """Every record's captions (in ``caption_index`` order) and the distinct (backend, model, prompt) that made them.

    The captions are an Arrow list column (a list of ``str`` per record when read as a row): a third of the
    memory of Python lists of strings.
    """
    if content.captions is None:
        return [[] for _ in range(len(sample_ids))], [[] for _ in range(len(sample_ids))]
    captions = content.captions
    at = captions.groupby("sample_id", sort=False).indices  # a sample's rows, in caption_index order
    none = np.empty(0, dtype=np.intp)
    picks = [at.get(s, none) for s in sample_ids]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in picks])]).astype(np.int32)
    texts = pa.array(captions["caption"])  # the column's own Arrow type: no cast, no copy
    if isinstance(texts, pa.ChunkedArray):  # one chunk per row group; joining them copies (even a single one)
        texts = texts.chunk(0) if texts.num_chunks == 1 else texts.combine_chunks()
    positions = np.concatenate([none, *picks])
    if not (positions.size == len(texts) and (positions == np.arange(positions.size)).all()):
        texts = texts.take(positions)  # records in another order than the captions (the usual case needs none)
    lists = pd.arrays.ArrowExtensionArray(pa.ListArray.from_arrays(pa.array(offsets), texts))
    columns = [c for c in ("backend", "model", "prompt_sha256") if c in captions.columns]
    sources: dict[str, list[dict]] = {}
    distinct: dict[tuple, dict] = {}  # one dict per distinct source, shared by its records (a few, not one a record)
    for record in captions[["sample_id", *columns]].drop_duplicates().itertuples(index=False):
        source = distinct.setdefault(record[1:], {k: plain(v) for k, v in zip(columns, record[1:], strict=True)})
        sources.setdefault(record[0], []).append(source)
    return lists, [list(sources.get(s, [])) for s in sample_ids]


def _keys(table: pd.DataFrame, *, multi: bool) -> pd.Series:
    keys = table["sample_id"].map(safe_key)
    if multi:
        keys = keys + "_" + table["collection"].fillna("none").map(safe_key)
    duplicated = keys[keys.duplicated()]
    if not duplicated.empty:
        raise DatasetError(
            f"sample ids {sorted(table.loc[keys == duplicated.iloc[0], 'sample_id'])} give the same key "
            f"{duplicated.iloc[0]!r} once made safe for file names; rename the samples or their collections"
        )
    return keys


def record_metadata(
    row: Mapping[str, Any], content: DatasetContent, files: dict[str, str] | None = None
) -> dict[str, Any]:
    """The JSON document of one record (a row of :func:`record_table`): location, time, strata, labels, image.

    ``files`` names the record's files in the export (e.g. ``{"image": "KEY.tif"}``).
    """
    geometry = row["geometry"]
    doc: dict[str, Any] = {
        "key": row["key"],
        "sample_id": row["sample_id"],
        "site_id": row["site_id"],
        "split": row["split"],
        "location": {
            "lon": float(row["lon"]),
            "lat": float(row["lat"]),
            "h3": row["h3"],
            "h3_res": int(row["h3_res"]),
            "epsg": int(row["epsg"]),
            "chip_size_m": float(row["chip_size_m"]),
            "bbox": [float(v) for v in geometry.bounds],
            "geometry": shapely.geometry.mapping(geometry),
        },
        "time": {
            "start_datetime": iso(row["start_datetime"]),
            "end_datetime": iso(row["end_datetime"]),
            "time_bin": row["time_bin"],
        },
        "strata": {"stratum": row["stratum"], **{d: plain(row[d]) for d in content.dimensions}},
    }
    extras = [c for c in content.plan.columns if c not in BASE_PLAN_COLUMNS and c not in content.dimensions]
    if extras:
        doc["attributes"] = {c: plain(row[c]) for c in extras}
    doc["labels"] = _labels(row, content)
    doc["image"] = _image(row)
    doc["captions"] = len(row["captions"])
    if files:
        doc["files"] = files
    doc["provenance"] = _provenance(row, content)
    return doc


def _labels(row: Mapping[str, Any], content: DatasetContent) -> dict[str, Any] | None:
    if content.labels is None or not isinstance(row.get("taxonomy"), str):
        return None
    out: dict[str, Any] = {"taxonomy": row["taxonomy"], "source": row["label_source"]}
    taxonomy = content.taxonomy
    for level in content.levels:
        codes = [str(c) for c in row[level]]
        dominant = plain(row[f"{level}_dominant"])
        out[level] = codes
        out[f"{level}_dominant"] = dominant
        if taxonomy is not None:
            out[f"{level}_names"] = [taxonomy[c].name if c in taxonomy else c for c in codes]
    out["fractions"] = json.loads(row["fractions"]) if isinstance(row.get("fractions"), str) else {}
    if "valid_fraction" in row:
        out["valid_fraction"] = plain(row["valid_fraction"])
    return out


def _image(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if not isinstance(row.get("path"), str):
        return None
    bands = row.get("bands")
    return {
        "collection": plain(row["collection"]),
        "item_id": plain(row["item_id"]),
        "item_datetime": iso(row["item_datetime"]),
        "cloud_cover": plain(row["cloud_cover"]),
        "bands": [str(b) for b in bands] if bands is not None and not _is_missing(bands) else [],
        "width": plain(row["width"]),
        "height": plain(row["height"]),
        "resolution": plain(row["resolution"]),
        "sha256": plain(row["sha256"]),
        "path": row["path"],
    }


def _provenance(row: Mapping[str, Any], content: DatasetContent) -> dict[str, Any]:
    plan_cfg = content.config.get("plan", {})
    out: dict[str, Any] = {
        "dataset": content.name,
        "geosample_version": __version__,
        "plan": {k: plan_cfg[k] for k in ("aoi", "seed", "samples", "strata") if k in plan_cfg},
    }
    if isinstance(row.get("item_id"), str):
        out["source_item"] = {"collection": row["collection"], "id": row["item_id"]}
    if content.captions is not None:
        out["captions"] = row["caption_sources"]
    return out


def iso(value: Any) -> str | None:
    """A timestamp as ISO 8601 UTC (``...Z``), or None."""
    if _is_missing(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def plain(value: Any) -> Any:
    """A table value as a JSON-ready Python value (NaN and NA as None, numpy scalars unwrapped)."""
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return iso(value)
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    return value


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list | tuple | np.ndarray | dict):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
