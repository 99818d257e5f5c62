"""``export --format stac``: the whole dataset as one self-contained static STAC catalog.

``catalog.json`` links one collection per chip source (items are the chips,
with the chip and its preview copied beside the item), a ``samples``
collection for samples without a chip (footprint and time window only), and
a ``labels`` collection of STAC ``label`` items (the label stage's items,
each with a ``source`` link to its sample's chip items). Every item carries
the ``ml-aoi`` extension: ``ml-aoi:split``, and ``ml-aoi:role`` ``feature``
on chips and ``label`` on label assets. Hrefs are relative, so the folder
can be moved or published as it is.

Items are built with pystac and written as JSON with their relative links
directly (as the fetch and label stages do): pystac's own ``save`` looks up
each item's parent among all of a collection's links, which grows with the
square of the number of items.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pystac
import shapely
from pystac.extensions.projection import ProjectionExtension

from geosample._paths import inside
from geosample.export._content import DatasetContent
from geosample.export._export import ExportConfig, progress_bar
from geosample.export._rasters import chip_grid
from geosample.export._records import iso, iter_rows, plain
from geosample.export.splits import ML_AOI_SPLITS

if TYPE_CHECKING:
    from geosample.labels.taxonomy import Taxonomy

__all__ = ["ML_AOI_EXTENSION", "write_stac"]

ML_AOI_EXTENSION = "https://stac-extensions.github.io/ml-aoi/v0.2.0/schema.json"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
SAMPLES_COLLECTION = "samples"
LABELS_COLLECTION = "labels"
JSON = "application/json"
GEOJSON = "application/geo+json"


def write_stac(
    content: DatasetContent, records: pd.DataFrame, out: Path, cfg: ExportConfig, *, progress: bool | None = None
) -> None:
    """Write the catalog into the empty folder ``out``."""
    groups: dict[str, list[dict[str, Any]]] = {}
    features: dict[str, list[tuple[str, str]]] = {}
    bar = progress_bar(range(len(records)), len(records), progress, "stac")
    for row in iter_rows(records):
        if isinstance(row["path"], str):
            item, files = _chip_item(content, row)
            group = str(row["collection"])
        else:
            item, files = _sample_item(row), []
            group = SAMPLES_COLLECTION
        _add_sample_properties(item, row, content)
        document = _item_document(item, group, ML_AOI_SPLITS[row["split"]])
        folder = inside(out, group, item.id, what="STAC item id")  # an id from DS/stac/ must not leave the export
        folder.mkdir(parents=True)
        for key, source in files:
            target = folder / f"{item.id}{source.suffix}"
            shutil.copyfile(source, target)
            document["assets"][key]["href"] = f"./{target.name}"
        _write_json(folder / f"{item.id}.json", document)
        groups.setdefault(group, []).append(_summary(document))
        features.setdefault(row["sample_id"], []).append((group, item.id))
        next(bar, None)
    children = []
    for group, documents in groups.items():
        _write_collection(out, _collection(group, content), documents)
        children.append(group)
    if content.labels is not None and content.taxonomy is not None:
        _write_labels(out, content, content.labels, content.taxonomy, records, features)
        children.append(LABELS_COLLECTION)
    catalog = pystac.Catalog(
        id=content.name, title=f"{content.name}: a geosample dataset", description=_description(content, records)
    ).to_dict(include_self_link=False, transform_hrefs=False)
    catalog["links"] = [
        {"rel": "root", "href": "./catalog.json", "type": JSON, "title": catalog.get("title")},
        *({"rel": "child", "href": f"./{child}/collection.json", "type": JSON, "title": child} for child in children),
    ]
    _write_json(out / "catalog.json", catalog, indent=1)


def _write_json(path: Path, document: Mapping[str, Any], *, indent: int | None = None) -> None:
    path.write_text(json.dumps(document, indent=indent, ensure_ascii=False), encoding="utf-8")


def _description(content: DatasetContent, records: pd.DataFrame) -> str:
    parts = [f"{len(content.plan)} samples"]
    if content.chips is not None:
        parts.append(f"{int(records['path'].notna().sum())} chips from {', '.join(content.collections)}")
    if content.labels is not None:
        parts.append(f"labels ({content.taxonomy.key if content.taxonomy else 'taxonomy'})")
    if content.captions is not None:
        parts.append(f"{len(content.captions)} captions")
    return "A geosample remote-sensing dataset: " + ", ".join(parts) + "; splits in ml-aoi:split."


def _item_document(item: pystac.Item, group: str, split: str) -> dict[str, Any]:
    """The item as JSON with ``ml-aoi:split``, its collection and relative links to it and the catalog."""
    document = item.to_dict(include_self_link=False, transform_hrefs=False)
    document["collection"] = group
    document["properties"]["ml-aoi:split"] = split
    document["stac_extensions"] = [*dict.fromkeys([*document.get("stac_extensions", []), ML_AOI_EXTENSION])]
    kept = [link for link in document.get("links", []) if link.get("rel") == "derived_from"]
    document["links"] = [*_up_links(), *kept]
    return document


def _up_links() -> list[dict[str, str]]:
    """An item's links to its collection and the catalog (items live in ``<collection>/<id>/``)."""
    return [
        {"rel": "root", "href": "../../catalog.json", "type": JSON},
        {"rel": "parent", "href": "../collection.json", "type": JSON},
        {"rel": "collection", "href": "../collection.json", "type": JSON},
    ]


def _chip_item(content: DatasetContent, row: Mapping[str, Any]) -> tuple[pystac.Item, list[tuple[str, Path]]]:
    """The chip's item: fetch's own (``DS/stac/<collection>/<sample_id>.json``) when there is one, else built."""
    fetched = content.ds / "stac" / str(row["collection"]) / f"{row['sample_id']}.json"
    tif = content.ds / row["path"]
    preview = content.ds / row["preview"] if isinstance(row["preview"], str) else None
    has_preview = preview is not None and preview.is_file()
    if fetched.is_file():
        data = json.loads(fetched.read_text(encoding="utf-8"))
        data.pop("collection", None)
        item = pystac.Item.from_dict(data, preserve_dict=False)
        image_key = next((k for k, a in item.assets.items() if "data" in (a.roles or [])), "image")
        if image_key not in item.assets:
            item.add_asset(image_key, pystac.Asset(str(tif), media_type=pystac.MediaType.COG, roles=["data"]))
        for key in [k for k in item.assets if k != image_key and not (k == "preview" and has_preview)]:
            del item.assets[key]
    else:
        item = _built_chip_item(content.ds, row, tif)
        image_key = "image"
    files = [(image_key, tif)]
    item.assets[image_key].extra_fields.update({"ml-aoi:role": "feature", "ml-aoi:reference-grid": True})
    if has_preview:
        if "preview" not in item.assets:
            item.add_asset("preview", pystac.Asset(str(preview), media_type=pystac.MediaType.PNG, roles=["overview"]))
        files.append(("preview", preview))
    return item, files


def _built_chip_item(ds: Path, row: Mapping[str, Any], tif: Path) -> pystac.Item:
    """A chip's item from its manifest row and the GeoTIFF's own grid."""
    geometry = row["geometry"]
    when = pd.Timestamp(row["item_datetime"]).to_pydatetime() if not pd.isna(row["item_datetime"]) else None
    window = {"start_datetime": iso(row["start_datetime"]), "end_datetime": iso(row["end_datetime"])}
    item = pystac.Item(
        id=str(row["sample_id"]),
        geometry=shapely.geometry.mapping(geometry),
        bbox=[float(v) for v in geometry.bounds],
        datetime=when,
        properties={} if when is not None else window,
    )
    grid = chip_grid(ds, row)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = f"EPSG:{grid.epsg}" if grid.epsg else None
    proj.shape = list(grid.shape)
    proj.transform = list(grid.transform)
    proj.bbox = list(grid.bounds)
    bands = [{"name": str(b)} for b in (row["bands"] if row["bands"] is not None else [])]
    asset = pystac.Asset(str(tif), media_type=pystac.MediaType.COG, roles=["data"], extra_fields={"bands": bands})
    if isinstance(row["sha256"], str):
        asset.extra_fields["file:checksum"] = f"1220{row['sha256']}"  # multihash: sha2-256, 32 bytes
        item.stac_extensions.append(FILE_EXTENSION)
    item.add_asset("image", asset)
    if isinstance(row["item_id"], str):
        item.properties["geosample:source_item"] = row["item_id"]
    if not pd.isna(row["cloud_cover"]):
        item.properties["eo:cloud_cover"] = float(row["cloud_cover"])
    return item


def _sample_item(row: Mapping[str, Any]) -> pystac.Item:
    """An item for a sample without a chip: its footprint and time window."""
    geometry = row["geometry"]
    return pystac.Item(
        id=str(row["sample_id"]),
        geometry=shapely.geometry.mapping(geometry),
        bbox=[float(v) for v in geometry.bounds],
        datetime=None,
        properties={"start_datetime": iso(row["start_datetime"]), "end_datetime": iso(row["end_datetime"])},
    )


def _add_sample_properties(item: pystac.Item, row: Mapping[str, Any], content: DatasetContent) -> None:
    props = item.properties
    props["geosample:sample_id"] = row["sample_id"]
    props["geosample:site_id"] = row["site_id"]
    props["geosample:h3"] = row["h3"]
    props["geosample:stratum"] = row["stratum"]
    for dim in content.dimensions:
        props[f"geosample:{dim}"] = plain(row[dim])
    props["geosample:time_bin"] = row["time_bin"]
    props.setdefault("start_datetime", iso(row["start_datetime"]))
    props.setdefault("end_datetime", iso(row["end_datetime"]))
    if content.captions is not None:
        props["geosample:captions"] = list(row["captions"])


def _collection(group: str, content: DatasetContent) -> dict[str, Any]:
    if group == SAMPLES_COLLECTION:
        description = "Samples without an image chip: footprint and imagery time window"
    else:
        description = f"Image chips from STAC collection {group}, one item per sample"
    collection = pystac.Collection(
        id=group,
        description=description,
        extent=pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])),
        license="other",
        title=f"{content.name}: {group}",
    )
    return collection.to_dict(include_self_link=False, transform_hrefs=False)


def _write_collection(out: Path, collection: dict[str, Any], documents: list[dict[str, Any]]) -> None:
    """Finish a collection from its items' summaries (extent, ``ml-aoi:split``, item links) and write it."""
    collection["extent"] = _extent(documents)
    collection["stac_extensions"] = [*dict.fromkeys([*collection.get("stac_extensions", []), ML_AOI_EXTENSION])]
    splits = sorted({d["properties"]["ml-aoi:split"] for d in documents}, key=list(ML_AOI_SPLITS.values()).index)
    collection["summaries"] = {**collection.get("summaries", {}), "ml-aoi:split": splits}
    links = [link for link in collection.get("links", []) if link.get("rel") not in ("root", "self", "parent", "item")]
    collection["links"] = [
        {"rel": "root", "href": "../catalog.json", "type": JSON},
        {"rel": "parent", "href": "../catalog.json", "type": JSON},
        *links,
        *({"rel": "item", "href": f"./{d['id']}/{d['id']}.json", "type": GEOJSON} for d in documents),
    ]
    _write_json(out / collection["id"] / "collection.json", collection, indent=1)


def _summary(document: dict[str, Any]) -> dict[str, Any]:
    """What a collection needs of a written item (id, bbox, times, split), so items need not stay in memory."""
    props = document["properties"]
    keep = ("datetime", "start_datetime", "end_datetime", "ml-aoi:split")
    return {"id": document["id"], "bbox": document["bbox"], "properties": {k: props.get(k) for k in keep}}


def _extent(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The spatial and temporal extent of items: the union of their bboxes, the span of their times."""
    boxes = [d["bbox"] for d in documents]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    starts = [d["properties"].get("datetime") or d["properties"].get("start_datetime") for d in documents]
    ends = [d["properties"].get("datetime") or d["properties"].get("end_datetime") for d in documents]
    known_starts, known_ends = [t for t in starts if t], [t for t in ends if t]
    interval = [min(known_starts) if known_starts else None, max(known_ends) if known_ends else None]
    return {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}}


def _write_labels(
    out: Path,
    content: DatasetContent,
    labels: pd.DataFrame,
    taxonomy: Taxonomy,
    records: pd.DataFrame,
    features: dict[str, list[tuple[str, str]]],
) -> None:
    """The label stage's items, with ``ml-aoi`` and ``source`` links to their sample's feature items."""
    from geosample.labels.exports import label_collection, label_items

    source = str(labels["label_source"].iloc[0]) if len(labels) else "unknown"
    split_of = records.drop_duplicates("sample_id").set_index("sample_id")["split"]
    documents = []
    for item, feature in label_items(content.plan, labels, taxonomy, source, LABELS_COLLECTION):
        sid = item["id"]
        if sid not in split_of.index:  # its site was dropped for the split buffer
            continue
        item["properties"]["ml-aoi:split"] = ML_AOI_SPLITS[split_of[sid]]
        item["stac_extensions"] = [*item["stac_extensions"], ML_AOI_EXTENSION]
        item["assets"]["labels"]["ml-aoi:role"] = "label"
        sources = [
            {"rel": "source", "href": f"../../{group}/{fid}/{fid}.json", "type": GEOJSON, "title": fid}
            for group, fid in features.get(sid, [])
        ]
        item["links"] = [*_up_links(), *sources]
        folder = out / LABELS_COLLECTION / sid
        folder.mkdir(parents=True)
        (folder / f"{sid}.geojson").write_text(json.dumps(feature), encoding="utf-8")
        _write_json(folder / f"{sid}.json", item)
        documents.append(_summary(item))
    collection = label_collection(content.plan, labels, taxonomy, source, LABELS_COLLECTION, content.name)
    _write_collection(out, collection, documents)
