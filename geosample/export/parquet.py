"""``export --format parquet``: a Hugging Face–style image–text table, one set of files per split.

``data/<split>-NNNNN-of-MMMMM.parquet`` hold one row per record: ``image``
(a PNG in the Hugging Face ``Image`` layout, ``{bytes, path}``: the chip's
preview, or the chip rendered when fetch made none), ``geotiff`` (the chip
itself), ``captions`` (a list), the labels at every level, and the sample's
metadata with a ``split`` column. The files carry the ``huggingface``
features in their schema metadata (so ``datasets`` decodes the images) and
GeoParquet ``geo`` metadata for the footprint (so GeoPandas reads them too).
``README.md`` is the dataset card: its YAML header maps the files to splits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
import yaml

from geosample.export._content import DatasetContent
from geosample.export._export import ExportConfig, progress_bar
from geosample.export._preview import render_png
from geosample.export._records import BASE_PLAN_COLUMNS, iter_rows
from geosample.export.splits import SPLITS

__all__ = ["table_schema", "write_parquet"]

DATA_DIR = "data"
ROW_GROUP_BYTES = 32e6
ROW_GROUP_ROWS = 256
TIMESTAMP = pa.timestamp("us", tz="UTC")
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def table_schema(content: DatasetContent) -> pa.Schema:
    """The columns of the export, in order; chip, label and caption columns only when those stages ran."""
    fields = [pa.field(n, pa.string()) for n in ("key", "sample_id", "site_id", "split")]
    if content.chips is not None:
        fields += [pa.field("collection", pa.string()), pa.field("image", IMAGE), pa.field("geotiff", pa.binary())]
    if content.captions is not None:
        fields.append(pa.field("captions", pa.list_(pa.string())))
    for level in content.levels:
        fields.append(pa.field(level, pa.list_(pa.string())))
    fields += [pa.field(f"{level}_dominant", pa.string()) for level in content.levels]
    if content.labels is not None:
        fields += [
            pa.field("fractions", pa.string()),
            pa.field("valid_fraction", pa.float64()),
            pa.field("taxonomy", pa.string()),
            pa.field("label_source", pa.string()),
        ]
    fields += [
        pa.field("lon", pa.float64()),
        pa.field("lat", pa.float64()),
        pa.field("h3", pa.string()),
        pa.field("h3_res", pa.int64()),
        pa.field("stratum", pa.string()),
        *(pa.field(d, pa.string()) for d in content.dimensions),
        pa.field("time_bin", pa.string()),
        pa.field("start_datetime", TIMESTAMP),
        pa.field("end_datetime", TIMESTAMP),
        pa.field("chip_size_m", pa.float64()),
        pa.field("epsg", pa.int64()),
        pa.field("crs", pa.string()),
    ]
    extras = [c for c in content.plan.columns if c not in BASE_PLAN_COLUMNS and c not in content.dimensions]
    for field in pa.Schema.from_pandas(pd.DataFrame(content.plan[extras]), preserve_index=False):
        kind = TIMESTAMP if pa.types.is_timestamp(field.type) else field.type
        fields.append(pa.field(field.name, pa.string() if pa.types.is_large_string(kind) else kind))
    if content.chips is not None:
        fields += [
            pa.field("item_id", pa.string()),
            pa.field("item_datetime", TIMESTAMP),
            pa.field("cloud_cover", pa.float64()),
            pa.field("bands", pa.list_(pa.string())),
            pa.field("width", pa.int64()),
            pa.field("height", pa.int64()),
            pa.field("resolution", pa.float64()),
            pa.field("sha256", pa.string()),
        ]
    fields.append(pa.field("geometry", pa.binary()))
    return pa.schema(fields)


def write_parquet(
    content: DatasetContent, records: pd.DataFrame, out: Path, cfg: ExportConfig, *, progress: bool | None = None
) -> None:
    """Write ``data/*.parquet`` and the ``README.md`` card into the empty folder ``out``."""
    schema = table_schema(content)
    features = hf_features(schema)
    schema = schema.with_metadata(
        {"huggingface": json.dumps({"info": {"features": features}}), "geo": json.dumps(_geo_metadata(records))}
    )
    (out / DATA_DIR).mkdir()
    rng = np.random.default_rng(cfg.seed)
    limit = cfg.shard_size * 1e6
    bar = progress_bar(range(len(records)), len(records), progress, "parquet")
    files: dict[str, list[str]] = {}
    for split in SPLITS:
        mine = np.flatnonzero((records["split"] == split).to_numpy())
        order = mine[rng.permutation(len(mine))]  # positions in records, shuffled (no copy of the split's rows)
        parts: list[Path] = []
        writer: pq.ParquetWriter | None = None
        size = 0.0
        batch: list[dict[str, Any]] = []
        batch_bytes = 0.0
        for row in iter_rows(records, order):
            image, tif = _image_bytes(content, row)
            row["image"], row["geotiff"] = image, tif
            row["crs"] = f"EPSG:{int(row['epsg'])}"  # the chip's CRS, as GeoCroissant and GDAL spell it
            row_bytes = len(image["bytes"]) + len(tif) if tif is not None and image is not None else 1024
            if writer is None or (size > 0 and size + row_bytes > limit):
                if writer is not None:
                    _flush(writer, batch, schema)
                    batch, batch_bytes = [], 0.0
                    writer.close()
                parts.append(out / DATA_DIR / f"{split}-{len(parts):05d}.parquet")
                writer = pq.ParquetWriter(parts[-1], schema, compression="zstd")
                size = 0.0
            batch.append(row)
            batch_bytes += row_bytes
            size += row_bytes
            if len(batch) >= ROW_GROUP_ROWS or batch_bytes >= ROW_GROUP_BYTES:
                _flush(writer, batch, schema)
                batch, batch_bytes = [], 0.0
            next(bar, None)
        if writer is not None:
            _flush(writer, batch, schema)
            writer.close()
        names = []
        for i, part in enumerate(parts):
            final = part.with_name(f"{split}-{i:05d}-of-{len(parts):05d}.parquet")
            part.replace(final)
            names.append(final.name)
        if names:
            files[split] = names
    (out / "README.md").write_text(_card(content, cfg, schema, files, records), encoding="utf-8")


def _image_bytes(content: DatasetContent, row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bytes | None]:
    """The record's PNG (as an HF image) and GeoTIFF bytes, or Nones without a chip."""
    if not isinstance(row["path"], str):
        return None, None
    tif_path = content.ds / row["path"]
    preview = row["preview"]
    if isinstance(preview, str) and (content.ds / preview).is_file():
        png = (content.ds / preview).read_bytes()
    else:
        png = render_png(tif_path)
    return {"bytes": png, "path": f"{row['key']}.png"}, tif_path.read_bytes()


def _flush(writer: pq.ParquetWriter, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    """Write ``rows`` as one row group."""
    if not rows:
        return
    data = {}
    for field in schema:
        column = [row.get(field.name) for row in rows]
        if field.name == "geometry":
            data[field.name] = list(shapely.to_wkb(np.asarray(column, dtype=object), output_dimension=2))
        elif pa.types.is_list(field.type):
            data[field.name] = [None if _missing(v) else [str(x) for x in v] for v in column]
        elif pa.types.is_timestamp(field.type):
            data[field.name] = [None if pd.isna(v) else pd.Timestamp(v).to_pydatetime() for v in column]
        else:
            data[field.name] = [None if _missing(v) else (v.item() if isinstance(v, np.generic) else v) for v in column]
    writer.write_table(pa.Table.from_pydict(data, schema=schema))


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list | tuple | np.ndarray | dict | bytes):
        return False
    return bool(pd.isna(value))


def hf_features(schema: pa.Schema) -> dict[str, Any]:
    """The Hugging Face ``datasets`` features of the columns (the ``image`` column is an ``Image``)."""
    return {field.name: _feature(field) for field in schema}


def _feature(field: pa.Field) -> dict[str, Any]:
    if field.name == "image":
        return {"_type": "Image"}
    if pa.types.is_list(field.type):
        return {"feature": {"dtype": _dtype(field.type.value_type), "_type": "Value"}, "_type": "Sequence"}
    return {"dtype": _dtype(field.type), "_type": "Value"}


def _dtype(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return f"timestamp[{kind.unit}, tz={kind.tz}]" if kind.tz else f"timestamp[{kind.unit}]"
    names = {pa.float64(): "float64", pa.int64(): "int64", pa.string(): "string", pa.binary(): "binary"}
    return names.get(kind, str(kind))


def _geo_metadata(records: pd.DataFrame) -> dict[str, Any]:
    """GeoParquet 1.1 metadata of the WKB ``geometry`` column (lon/lat, the default OGC:CRS84)."""
    geometry = records["geometry"]
    kinds = sorted({g.geom_type for g in geometry if g is not None})
    bounds = shapely.total_bounds(np.asarray(geometry)) if len(records) else [0.0, 0.0, 0.0, 0.0]
    return {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": kinds, "bbox": [float(b) for b in bounds]}},
    }


def _card(
    content: DatasetContent, cfg: ExportConfig, schema: pa.Schema, files: dict[str, list[str]], records: pd.DataFrame
) -> str:
    """The dataset card: Hugging Face metadata (YAML header) and a datasheet filled from the run."""
    from geosample.export._datasheet import card_metadata, datasheet
    from geosample.export._facts import dataset_facts

    facts = dataset_facts(content, records)
    header = {
        **card_metadata(facts),
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"{DATA_DIR}/{s}-*.parquet"} for s in files],
            }
        ],
        "dataset_info": {"features": [_yaml_feature(field) for field in schema]},
    }
    counts = records["split"].value_counts()
    n = int(counts.sum())
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {content.name}",
        "",
        f"A remote-sensing image–text dataset built with geosample: {n} records "
        f"({', '.join(f'{s} {int(counts.get(s, 0))}' for s in SPLITS)}).",
        "",
        f"Splits are spatial blocks (H3 cells), shared out {' / '.join(f'{f:g}' for f in cfg.split)} "
        f"(train / validation / test, seed {cfg.seed}) within every stratum; a site's chips share one split, "
        "and no chip of one split lies within the buffer of another split's chip "
        "(the figures: `report/splits.json` of the dataset).",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/this/folder")',
        'ds["train"][0]["image"]  # a PIL image; "geotiff" holds the chip itself',
        "```",
    ]
    if content.missing():
        lines += ["", "Not in this dataset yet: " + "; ".join(content.missing()) + "."]
    lines += ["", *datasheet(facts, content)]
    return "\n".join(lines) + "\n"


def _yaml_feature(field: pa.Field) -> dict[str, Any]:
    if field.name == "image":
        return {"name": field.name, "dtype": "image"}
    if pa.types.is_list(field.type):
        return {"name": field.name, "sequence": _dtype(field.type.value_type)}
    return {"name": field.name, "dtype": _dtype(field.type)}


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"
