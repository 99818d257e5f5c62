"""``DS/stac/``: a static STAC catalog with one item per chip.

Layout: ``stac/catalog.json`` links one child catalog per source collection,
``stac/<collection>/catalog.json``, which links its items
``stac/<collection>/<sample_id>.json``. Each item has the chip's footprint,
the projection extension (code, shape, transform, bbox), the chip (and
preview) as assets with relative hrefs, and a ``derived_from`` link to every
source item. Items are written as chips finish; the catalogs at the end of a
run, listing every ``ok`` chip.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pystac
import shapely
from pystac.extensions.projection import ProjectionExtension

from geosample import __version__
from geosample._dataset import atomic_path
from geosample.stac.grid import ChipGrid

__all__ = ["CATALOG_DIR", "chip_item", "item_path", "remove_item", "write_catalog", "write_item"]

CATALOG_DIR = "stac"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"


def item_path(ds: Path, collection: str, sample_id: str) -> Path:
    """Where the item of one chip lives."""
    return ds / CATALOG_DIR / collection / f"{sample_id}.json"


def chip_item(
    row: Mapping[str, Any],
    footprint: shapely.Geometry,
    grid: ChipGrid,
    sources: Sequence[tuple[str, str | None]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The STAC item (as a dict) of one ``ok`` manifest row.

    Args:
        row: The manifest row (``sample_id``, ``collection``, ``item_datetime``, ``path``, ``bands``, ...).
        footprint: The chip's footprint in lon/lat (the plan's geometry).
        grid: The chip's grid.
        sources: (item id, item href or None) of each source item.
        extra: More properties (e.g. ``geosample:site_id``).
    """
    when, start, end = (
        pd.Timestamp(row[k]).to_pydatetime() if row.get(k) is not None and not pd.isna(row[k]) else None
        for k in ("item_datetime", "item_start_datetime", "item_end_datetime")
    )
    properties: dict[str, Any] = {
        "geosample:sample_id": row["sample_id"],
        "geosample:source_collection": row["collection"],
        "geosample:source_items": [s[0] for s in sources],
        "gsd": float(grid.resolution),
        **(dict(extra) if extra else {}),
    }
    if row.get("cloud_cover") is not None and not pd.isna(row["cloud_cover"]):
        properties["eo:cloud_cover"] = float(row["cloud_cover"])
    item = pystac.Item(
        id=str(row["sample_id"]),
        geometry=shapely.geometry.mapping(footprint),
        bbox=list(shapely.bounds(footprint)),
        datetime=when,
        properties=properties,
        collection=None,
        start_datetime=start,
        end_datetime=end,
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = f"EPSG:{grid.epsg}"
    proj.shape = [grid.height, grid.width]
    proj.transform = list(grid.transform)[:6]
    proj.bbox = list(grid.bounds)
    bands = [{"name": str(b)} for b in row["bands"]]
    item.add_asset(
        "image",
        pystac.Asset(f"../../{row['path']}", media_type=pystac.MediaType.COG, roles=["data"],
                     extra_fields={"bands": bands, "file:checksum": _multihash(row["sha256"])}),
    )  # fmt: skip
    if row.get("preview"):
        item.add_asset("preview", pystac.Asset(f"../../{row['preview']}", media_type=pystac.MediaType.PNG,
                                               roles=["overview"]))  # fmt: skip
    for item_id, href in sources:
        if href:
            item.add_link(pystac.Link("derived_from", href, media_type=pystac.MediaType.GEOJSON, title=item_id))
    out = item.to_dict(include_self_link=False, transform_hrefs=False)
    out["stac_extensions"] = sorted({*out.get("stac_extensions", []), FILE_EXTENSION})
    out["links"] = [
        {"rel": "root", "href": "../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "./catalog.json", "type": "application/json"},
        *out["links"],
    ]
    return out


def _multihash(sha256: str) -> str:
    """The ``file:checksum`` form of a sha256 hex digest (multihash: 0x12, 32 bytes)."""
    return f"1220{sha256}"


def write_item(ds: Path, collection: str, sample_id: str, item: Mapping[str, Any]) -> None:
    """Write one chip's item atomically."""
    path = item_path(ds, collection, sample_id)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(item, ensure_ascii=False, indent=1), encoding="utf-8")


def remove_item(ds: Path, collection: str, sample_id: str) -> None:
    """Remove a chip's item (the chip is no longer ``ok``)."""
    item_path(ds, collection, sample_id).unlink(missing_ok=True)


def _catalog(cid: str, description: str, links: list[dict[str, Any]]) -> dict[str, Any]:
    catalog = pystac.Catalog(id=cid, description=description).to_dict(include_self_link=False, transform_hrefs=False)
    catalog["links"] = links
    return catalog


def write_catalog(ds: Path, manifest: pd.DataFrame) -> Path:
    """Write ``stac/catalog.json`` and one child catalog per collection, linking every ``ok`` chip's item."""
    root_dir = ds / CATALOG_DIR
    ok = manifest[manifest["status"] == "ok"]
    children = []
    for collection in sorted(manifest["collection"].dropna().unique()):
        ids = sorted(ok.loc[ok["collection"] == collection, "sample_id"])
        links = [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
            *({"rel": "item", "href": f"./{s}.json", "type": "application/geo+json"} for s in ids
              if item_path(ds, collection, s).exists()),
        ]  # fmt: skip
        child = _catalog(str(collection), f"Chips from STAC collection {collection}", links)
        with atomic_path(root_dir / collection / "catalog.json") as tmp:
            tmp.write_text(json.dumps(child, indent=1), encoding="utf-8")
        children.append({"rel": "child", "href": f"./{collection}/catalog.json", "type": "application/json",
                         "title": str(collection)})  # fmt: skip
    root = _catalog(
        "geosample-chips",
        f"Image chips of the dataset {ds.name}, one item per chip (geosample {__version__})",
        [{"rel": "root", "href": "./catalog.json", "type": "application/json"}, *children],
    )
    path = root_dir / "catalog.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(root, indent=1), encoding="utf-8")
    return path
