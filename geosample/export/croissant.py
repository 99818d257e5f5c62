"""``export --format croissant``: the Parquet export described by a Croissant 1.1 file with RAI and GeoCroissant.

The folder holds what ``--format parquet`` writes (``data/<split>-*.parquet``
and the ``README.md`` card), two small tables for the record sets that have
one row per caption or per labelled sample (``metadata/captions.parquet``,
``metadata/labels.parquet``) and ``croissant.json``:

- ``distribution``: the Parquet files (a ``cr:FileSet``) and the two tables
  (``cr:FileObject`` with their sha256);
- record sets ``splits`` (``cr:Split``: train, validation and test as the
  split module names them), ``samples`` (image, location, CRS, time, strata,
  labels and captions of each record), ``captions``, ``labels`` and
  ``strata`` (the sampling design per stratum: target, area and inclusion
  probability, inline);
- the RAI vocabulary (data collection, annotation by machine with the
  caption backend and model, known biases from the balance report) and
  GeoCroissant 1.0 properties (CRS, spatial resolution, band configuration,
  H3 spatial index, sampling strategy, spatial bias, temporal coverage and
  resolution).

Everything the file states is taken from the dataset (see ``_facts.py``).
``mlcroissant`` loads it and reads its records offline (the tests do).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geosample import __version__
from geosample.export._content import DatasetContent
from geosample.export._export import ExportConfig
from geosample.export._facts import DatasetFacts, dataset_facts
from geosample.export.parquet import DATA_DIR, table_schema, write_parquet
from geosample.export.splits import SPLITS

__all__ = ["CONTEXT", "CROISSANT_FILE", "croissant_document", "write_croissant"]

CROISSANT_FILE = "croissant.json"
CAPTIONS_FILE = "metadata/captions.parquet"
LABELS_FILE = "metadata/labels.parquet"
PARQUET = "application/x-parquet"
CONFORMS_TO = [
    "http://mlcommons.org/croissant/1.1",
    "http://mlcommons.org/croissant/RAI/1.0",
    "http://mlcommons.org/croissant/geo/1.0",
]
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "geocr": "http://mlcommons.org/croissant/geo/",
    "dct": "http://purl.org/dc/terms/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
"""The Croissant 1.1 JSON-LD context (as mlcroissant writes it), plus the GeoCroissant prefix ``geocr``."""
SPLIT_URLS = ("cr:TrainingSplit", "cr:ValidationSplit", "cr:TestSplit")
_TEMPORAL = {"year": (1, "year"), "season": (3, "month"), "month": (1, "month")}
_FIELD_TEXT = {
    "key": "Record key (sample id, with the collection when there are several).",
    "sample_id": "Sample id (stable for a config and seed).",
    "site_id": "Site id: the samples of one site (sizes, revisits, before/after) share it.",
    "split": "The split of the record; spatially disjoint (whole H3 cells).",
    "collection": "STAC collection the chip comes from.",
    "image": "RGB preview of the chip (PNG).",
    "captions": "Machine-generated captions of the image.",
    "lon": "Chip centre longitude, EPSG:4326.",
    "lat": "Chip centre latitude, EPSG:4326.",
    "h3": "H3 cell of the sample (spatial index; the chip is centred on its centre).",
    "h3_res": "H3 resolution of the h3 cell.",
    "stratum": "The sampling stratum: the values of every stratification dimension joined with '/'.",
    "time_bin": "Temporal bin of the sample's imagery window.",
    "start_datetime": "Start of the imagery time window (UTC).",
    "end_datetime": "End of the imagery time window (UTC, inclusive).",
    "chip_size_m": "Side of the square chip on the ground, metres.",
    "epsg": "EPSG code of the chip's CRS (UTM zone of its centre; UPS beyond ±84°).",
    "crs": "The chip's coordinate reference system (geocr:coordinateReferenceSystem of the record).",
    "item_id": "Source STAC item id(s).",
    "item_datetime": "Acquisition time of the source item (UTC).",
    "cloud_cover": "eo:cloud_cover of the source item, percent.",
    "bands": "Band names of the chip GeoTIFF, in file order.",
    "width": "Chip width, pixels.",
    "height": "Chip height, pixels.",
    "resolution": "Pixel size of the chip on the ground, metres (geocr:spatialResolution of the record).",
    "sha256": "sha256 of the chip GeoTIFF.",
    "fractions": "JSON: finest taxonomy class → share of the chip's valid area.",
    "valid_fraction": "Share of the chip with label data.",
    "taxonomy": "Taxonomy id@version of the labels.",
    "label_source": "The land-cover source of the labels.",
}
_EQUIVALENT = {"crs": "geocr:coordinateReferenceSystem", "resolution": "geocr:spatialResolution",
               "h3": "geocr:spatialIndex"}  # fmt: skip


def write_croissant(
    content: DatasetContent, records: pd.DataFrame, out: Path, cfg: ExportConfig, *, progress: bool | None = None
) -> None:
    """Write the Parquet export, the caption and label tables, and ``croissant.json`` into the empty folder ``out``."""
    write_parquet(content, records, out, cfg, progress=progress)
    (out / "metadata").mkdir()
    tables = {}
    if content.captions is not None:
        tables["captions"] = _write(out / CAPTIONS_FILE, _caption_rows(content, records))
    if content.labels is not None:
        tables["labels"] = _write(out / LABELS_FILE, _label_rows(content, records))
    facts = dataset_facts(content, records)
    document = croissant_document(content, facts, out, tables)
    (out / CROISSANT_FILE).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _write(path: Path, table: pa.Table) -> pa.Schema:
    pq.write_table(table, path, compression="zstd")
    return table.schema


def _caption_rows(content: DatasetContent, records: pd.DataFrame) -> pa.Table:
    """One row per scene caption: the sample, its split, the caption and who wrote it."""
    split = records.drop_duplicates("sample_id").set_index("sample_id")["split"]
    captions = content.captions[
        content.captions["sample_id"].isin(split.index)
    ].copy()  # not sites dropped for the buffer
    captions["split"] = captions["sample_id"].map(split)
    columns = {"sample_id": pa.string(), "caption_index": pa.int64(), "split": pa.string(), "caption": pa.string(),
               "backend": pa.string(), "model": pa.string(), "prompt_sha256": pa.string()}  # fmt: skip
    data = {c: [None if pd.isna(v) else v for v in captions[c]] if c in captions else [None] * len(captions)
            for c in columns}  # fmt: skip
    data["caption_index"] = [int(v) for v in captions["caption_index"]]
    return pa.table(data, schema=pa.schema(list(columns.items())))


def _label_rows(content: DatasetContent, records: pd.DataFrame) -> pa.Table:
    """One row per labelled sample: its split, the classes at every level, the dominant ones and the shares."""
    split = records.drop_duplicates("sample_id").set_index("sample_id")["split"]
    labels = content.labels[content.labels["sample_id"].isin(split.index)]  # not sites dropped for the buffer
    fields = [("sample_id", pa.string()), ("split", pa.string())]
    fields += [(level, pa.list_(pa.string())) for level in content.levels]
    fields += [(f"{level}_dominant", pa.string()) for level in content.levels]
    fields += [("fractions", pa.string()), ("label_source", pa.string()), ("taxonomy", pa.string())]
    data: dict[str, list[Any]] = {"sample_id": list(labels["sample_id"]), "split": list(labels["sample_id"].map(split))}
    for level in content.levels:
        data[level] = [[str(c) for c in codes] for codes in labels[level]]
        data[f"{level}_dominant"] = [None if pd.isna(v) else str(v) for v in labels[f"{level}_dominant"]]
    for column in ("fractions", "label_source", "taxonomy"):
        data[column] = [None if pd.isna(v) else str(v) for v in labels[column]]
    return pa.table(data, schema=pa.schema(fields))


def _data_type(kind: pa.DataType) -> str:
    if pa.types.is_list(kind):
        kind = kind.value_type
    if pa.types.is_floating(kind):
        return "sc:Float"
    if pa.types.is_integer(kind):
        return "sc:Integer"
    if pa.types.is_timestamp(kind):
        return "sc:DateTime"
    if pa.types.is_boolean(kind):
        return "sc:Boolean"
    return "sc:Text"


def _field(record_set: str, name: str, kind: pa.DataType, source: str, *, text: str | None = None) -> dict[str, Any]:
    """A field read from column ``name`` of distribution ``source``."""
    field: dict[str, Any] = {
        "@type": "cr:Field",
        "@id": f"{record_set}/{name}",
        "name": f"{record_set}/{name}",
        "description": text or _FIELD_TEXT.get(name) or f"Column {name}.",
        "dataType": _data_type(kind),
        "source": {"fileSet" if source == "parquet-files" else "fileObject": {"@id": source},
                   "extract": {"column": name}},
    }  # fmt: skip
    if pa.types.is_list(kind):
        field["isArray"] = True
        field["arrayShape"] = "-1"
    if name == "image":
        field["dataType"] = "sc:ImageObject"
        field["source"]["transform"] = {"jsonPath": "bytes"}
    if name == "split":
        field["references"] = {"field": {"@id": "splits/name"}}
    if name in _EQUIVALENT:
        field["equivalentProperty"] = _EQUIVALENT[name]
    return field


def _samples_record_set(content: DatasetContent, facts: DatasetFacts) -> dict[str, Any]:
    schema = table_schema(content)
    skip = {"geotiff", "geometry"}  # binary: the chip GeoTIFF and the WKB footprint stay in the files
    fields = [_field("samples", f.name, f.type, "parquet-files") for f in schema if f.name not in skip]
    image = next((f for f in fields if f["@id"] == "samples/image"), None)
    if image is not None and facts.bands:
        image["description"] = (
            f"RGB preview (PNG) of the chip; the chip GeoTIFF (column geotiff) holds the bands "
            f"{', '.join(facts.bands)}."
        )
    for level in content.levels:
        for f in fields:
            if f["@id"] in (f"samples/{level}", f"samples/{level}_dominant"):
                f["dataType"] = ["sc:Text", "cr:Label"]
                f["description"] = (f"Taxonomy classes at level {level} covering the chip" if f["@id"].endswith(level)
                                    else f"The dominant taxonomy class at level {level}.")  # fmt: skip
    return {
        "@type": "cr:RecordSet",
        "@id": "samples",
        "name": "samples",
        "description": "One record per sample and chip: image, location, CRS, time window, strata, labels and "
        "captions. The GeoTIFF chip (column geotiff) and the footprint (GeoParquet column geometry, WKB, "
        "OGC:CRS84) are in the same files.",
        "key": {"@id": "samples/key"},
        "geocr:timeSeriesIndex": {"@id": "samples/start_datetime"},
        "field": fields,
    }


def _table_record_set(name: str, source: str, schema: pa.Schema, key: list[str], text: str) -> dict[str, Any]:
    fields = [_field(name, f.name, f.type, source) for f in schema]
    for f in fields:
        if name == "captions" and f["@id"] == "captions/caption":
            f["description"] = "A machine-generated caption of the sample's image."
        if name == "labels" and f["name"].split("/")[-1][:1] == "l" and f["name"].split("/")[-1][1:2].isdigit():
            f["dataType"] = ["sc:Text", "cr:Label"]
    return {
        "@type": "cr:RecordSet",
        "@id": name,
        "name": name,
        "description": text,
        "key": [{"@id": f"{name}/{k}"} for k in key] if len(key) > 1 else {"@id": f"{name}/{key[0]}"},
        "field": fields,
    }


def _splits_record_set() -> dict[str, Any]:
    return {
        "@type": "cr:RecordSet",
        "@id": "splits",
        "name": "splits",
        "description": "The splits: spatially disjoint, stratified like the plan.",
        "dataType": "cr:Split",
        "key": {"@id": "splits/name"},
        "field": [
            {
                "@type": "cr:Field",
                "@id": "splits/name",
                "name": "splits/name",
                "dataType": "sc:Text",
                "description": "The split's name as in the files.",
            },
            {
                "@type": "cr:Field",
                "@id": "splits/url",
                "name": "splits/url",
                "dataType": "sc:URL",
                "description": "The Croissant split it is.",
            },
        ],  # fmt: skip
        "data": [{"splits/name": name, "splits/url": url} for name, url in zip(SPLITS, SPLIT_URLS, strict=True)],
    }


def _strata_record_set(facts: DatasetFacts) -> dict[str, Any]:
    columns = (
        ("stratum", "sc:Text", "The stratum key."),
        ("sites", "sc:Integer", "Sites achieved."),
        ("target", "sc:Integer", "Sites allocated to the stratum by the design (after capacity limits)."),
        ("area_km2", "sc:Float", "The stratum's area within the area of interest, km² (estimated by probes)."),
        ("inclusion_prob", "sc:Float", "Probability that an H3 cell of the stratum at the sample resolution was "
                                        "selected; empty when the plan did not record it."),
    )  # fmt: skip
    return {
        "@type": "cr:RecordSet",
        "@id": "strata",
        "name": "strata",
        "description": "The sampling design per stratum (geocr:samplingStrategy in figures).",
        "key": {"@id": "strata/stratum"},
        "field": [
            {"@type": "cr:Field", "@id": f"strata/{n}", "name": f"strata/{n}", "dataType": t, "description": d}
            for n, t, d in columns
        ],
        "data": [{f"strata/{n}": s[n] for n, _, _ in columns} for s in facts.strata],
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _license(facts: DatasetFacts) -> str | list[str]:
    urls = [f"https://spdx.org/licenses/{x}.html" if x != "other" else "other" for x in facts.licenses] or ["other"]
    return urls[0] if len(urls) == 1 else urls


def croissant_document(
    content: DatasetContent, facts: DatasetFacts, out: Path, tables: dict[str, pa.Schema]
) -> dict[str, Any]:
    """The Croissant JSON-LD of the export in ``out``."""
    distribution: list[dict[str, Any]] = [
        {
            "@type": "cr:FileSet",
            "@id": "parquet-files",
            "name": "parquet-files",
            "description": "The records, one Parquet file set per split (Hugging Face image layout, GeoParquet).",
            "encodingFormat": PARQUET,
            "includes": f"{DATA_DIR}/*.parquet",
        }
    ]
    record_sets = [_splits_record_set(), _samples_record_set(content, facts)]
    for name, file, key, text in (
        ("captions", CAPTIONS_FILE, ["sample_id", "caption_index"], "One record per machine-generated caption."),
        ("labels", LABELS_FILE, ["sample_id"], f"Scene labels ({facts.taxonomy}, from {facts.label_source})."),
    ):  # fmt: skip
        if name in tables:
            distribution.append({
                "@type": "cr:FileObject", "@id": f"{name}-table", "name": f"{name}-table", "contentUrl": file,
                "encodingFormat": PARQUET, "sha256": _sha256(out / file),
            })  # fmt: skip
            record_sets.append(_table_record_set(name, f"{name}-table", tables[name], key, text))
    record_sets.append(_strata_record_set(facts))
    document: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": facts.name,
        "description": f"A remote-sensing image–text dataset built with geosample {__version__}: {facts.records} "
        f"records at {facts.sites} sites, {facts.captions} machine-generated captions"
        + (f", scene labels ({facts.taxonomy})" if facts.taxonomy else "")
        + "; spatially disjoint, stratified splits.",
        "conformsTo": CONFORMS_TO,
        "license": _license(facts),
        "url": f"file:{facts.name}",
        "version": "1.0.0",
        "datePublished": dt.date.today().isoformat(),
        "citeAs": f"{facts.name}, a dataset built with geosample {__version__} (https://w3id.org/geosample).",
        "creator": {"@type": "sc:Organization", "name": "geosample"},
        "keywords": ["remote sensing", "earth observation", "image-text", "geosample"],
        "isBasedOn": [{"@type": "sc:Dataset", "name": c["id"], "license": c["license"]} for c in facts.collections],
        "distribution": distribution,
        "recordSet": record_sets,
    }
    document.update(_geo(facts))
    document.update(_rai(facts))
    return document


def _geo(facts: DatasetFacts) -> dict[str, Any]:
    """The GeoCroissant 1.0 properties."""
    out: dict[str, Any] = {
        # Locations (lon, lat, footprints) are in WGS 84; each chip is in its own UTM zone (samples/crs).
        "geocr:coordinateReferenceSystem": "EPSG:4326",
        "geocr:spatialIndex": [f"h3:{cell}" for cell in facts.index_cells],
        "geocr:samplingStrategy": facts.sampling_strategy,
        "geocr:spatialBias": " ".join(b for b in facts.biases if not b.startswith("Labels")) or "None recorded.",
        "additionalProperty": [
            {"@type": "PropertyValue", "name": "h3_resolution", "value": facts.h3_res,
             "description": "H3 resolution of the samples (samples/h3)."},
            {"@type": "PropertyValue", "name": "spatial_index_h3_resolution", "value": facts.index_res,
             "description": "H3 resolution of the cells in geocr:spatialIndex (those holding the sites)."},
            {"@type": "PropertyValue", "name": "split_h3_resolution", "value": facts.split_res,
             "description": "H3 resolution of the spatial blocks dealt whole to one split."},
            {"@type": "PropertyValue", "name": "split_buffer_m", "value": facts.split_buffer_m,
             "description": "No chip of one split lies within this distance (metres) of another split's chip."},
            {"@type": "PropertyValue", "name": "chip_crs", "value": ", ".join(f"EPSG:{e}" for e in facts.epsg_codes),
             "description": "The chips' CRSs (each record's in samples/crs)."},
        ],
    }  # fmt: skip
    if facts.start and facts.end:
        out["temporalCoverage"] = f"{facts.start}/{facts.end}"
    if facts.time_bins in _TEMPORAL:
        value, unit = _TEMPORAL[facts.time_bins]
        out["geocr:temporalResolution"] = {"@type": "QuantitativeValue", "value": value, "unitText": unit}
    if len(facts.resolutions_m) == 1:
        out["geocr:spatialResolution"] = {"@type": "QuantitativeValue", "value": facts.resolutions_m[0],
                                          "unitText": "m"}  # fmt: skip
    elif facts.resolutions_m:
        out["geocr:spatialResolution"] = (
            f"{min(facts.resolutions_m):g}–{max(facts.resolutions_m):g} m; each record's in samples/resolution"
        )
    if facts.bands:
        out["geocr:bandConfiguration"] = {
            "@type": "geocr:BandConfiguration",
            "geocr:totalBands": len(facts.bands),
            "geocr:bandNameList": facts.bands,
        }
    return out


def _rai(facts: DatasetFacts) -> dict[str, Any]:
    """The Croissant RAI 1.0 properties."""
    sources = ", ".join(f"{c['id']} ({c['license']})" for c in facts.collections) or "none yet"
    tools = [f"geosample {__version__}"]
    if facts.label_source:
        tools.append(f"labels: {facts.label_source} mapped to {facts.taxonomy}")
    tools += [f"captions: backend {s.get('backend')}, model {s.get('model') or 'none'}" for s in facts.caption_sources]
    out: dict[str, Any] = {
        "rai:dataCollection": f"{facts.sampling_strategy} Image chips were read from the STAC collection(s) "
        f"{sources} (the window under each chip, warped to its UTM zone); labels from {facts.label_source or 'none'}; "
        "captions generated by machine.",
        "rai:dataCollectionType": ["Secondary data: derived from open Earth-observation archives"],
        "rai:dataCollectionRawData": f"STAC collection(s): {sources}.",
        "rai:dataAnnotationProtocol": "Labels: class shares of a land-cover map on each chip, mapped through a "
        "crosswalk to the taxonomy and rolled up its levels. Captions: generated by machine from the sample's "
        "facts (and image, for multimodal backends); no person wrote or reviewed them.",
        "rai:annotationsPerItem": f"{facts.captions_per_sample:.1f} captions per captioned sample; one label set "
        f"per sample and taxonomy level.",
        "rai:machineAnnotationTools": tools,
        "rai:dataBiases": facts.biases or ["None recorded."],
        "rai:dataLimitations": "Labels are as good as their source map; captions state what the labels and "
        "metadata support and may miss what only the image shows.",
        "rai:dataUseCases": ["Training", "Validation", "Testing", "image-text retrieval", "zero-shot classification"],
        "rai:personalSensitiveInformation": "No personal data is collected; imagery is satellite imagery at "
        + (", ".join(f"{r:g} m" for r in facts.resolutions_m) or "the source's")
        + " pixel size; captions may name "
        "places (GeoNames).",
    }
    if facts.start and facts.end:
        out["rai:dataCollectionTimeframe"] = [facts.start, facts.end]
    return out
