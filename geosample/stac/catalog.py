"""``DS/stac/``: one static STAC catalog for the dataset, with one item per chip.

Layout: ``stac/catalog.json`` is the one root; it links one collection per
source collection, ``stac/<collection>/collection.json``, which links its
items ``stac/<collection>/<sample_id>.json``, and the label stage's
``stac/labels/collection.json``. Each chip item has the chip's footprint, the
projection extension (code, shape, transform, bbox), the chip (and preview)
as assets with relative hrefs, and a ``derived_from`` link to every source
item. Items are written as chips finish; the collections at the end of a
run, listing every ``ok`` chip, with the source collection's licence and
providers. Links are relative and no object has a ``self`` link, as pystac's
``SELF_CONTAINED`` catalogs are written, so the folder can be moved.
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
from geosample._dataset import atomic_path, write_atomic
from geosample._paths import folder_paths
from geosample.stac.grid import ChipGrid

__all__ = [
    "CATALOG_DIR", "ItemPaths", "chip_item", "item_path", "remove_item", "write_catalog", "write_item",
    "write_root_catalog",
]  # fmt: skip

CATALOG_DIR = "stac"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
EO_EXTENSION = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
JSON = "application/json"


def item_path(ds: Path, collection: str, sample_id: str) -> Path:
    """Where the item of one chip lives (refused if the ids would lead it out of ``DS/stac``)."""
    return ItemPaths(ds)(collection, sample_id)


class ItemPaths:
    """:func:`item_path` for the many items of one pass (a fetch run, a catalogue rewrite).

    Each collection's folder is resolved once, so an item costs one ``lstat`` instead of a walk of its path.
    """

    def __init__(self, ds: Path) -> None:
        self._path = folder_paths(ds, CATALOG_DIR, what="STAC item")

    def __call__(self, collection: str, sample_id: str) -> Path:
        """The item's path; :class:`~geosample.errors.UnsafeInputError` if it would lie outside ``DS/stac``."""
        return self._path(f"{CATALOG_DIR}/{collection}/{sample_id}.json")


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
    extensions = {*out.get("stac_extensions", []), FILE_EXTENSION}
    if "eo:cloud_cover" in properties:
        extensions.add(EO_EXTENSION)
    out["stac_extensions"] = sorted(extensions)
    out["collection"] = str(row["collection"])
    out["links"] = [
        {"rel": "root", "href": "../catalog.json", "type": JSON},
        {"rel": "parent", "href": "./collection.json", "type": JSON},
        {"rel": "collection", "href": "./collection.json", "type": JSON},
        *out["links"],
    ]
    return out


def _multihash(sha256: str) -> str:
    """The ``file:checksum`` form of a sha256 hex digest (multihash: 0x12, 32 bytes)."""
    return f"1220{sha256}"


def write_item(
    ds: Path, collection: str, sample_id: str, item: Mapping[str, Any], paths: ItemPaths | None = None
) -> None:
    """Write one chip's item atomically, as one line of JSON (``paths``: the pass's :class:`ItemPaths`).

    One item per chip is written, so the item is not indented: Python's JSON encoder is then its C one,
    ten times faster (any STAC reader or ``python -m json.tool`` shows it indented).
    """
    path = paths(collection, sample_id) if paths is not None else item_path(ds, collection, sample_id)
    write_atomic(path, json.dumps(item, ensure_ascii=False).encode("utf-8"))


def remove_item(ds: Path, collection: str, sample_id: str) -> None:
    """Remove a chip's item (the chip is no longer ``ok``)."""
    item_path(ds, collection, sample_id).unlink(missing_ok=True)


def write_catalog(ds: Path, manifest: pd.DataFrame, sources: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write one collection per source collection, linking every ``ok`` chip's item, and the root catalog.

    Args:
        ds: The dataset folder.
        manifest: ``chips.parquet``'s rows.
        sources: The source collections' JSON by name (for their licence,
            providers and title); a collection not given keeps what its
            ``collection.json`` recorded before.
    """
    root_dir = ds / CATALOG_DIR
    ok = manifest[manifest["status"] == "ok"]
    paths = ItemPaths(ds)
    for name in sorted(manifest["collection"].dropna().unique()):
        name = str(name)
        items = {s: paths(name, s) for s in ok.loc[ok["collection"] == name, "sample_id"]}
        written = sorted((s, p) for s, p in items.items() if p.exists())
        path = root_dir / name / "collection.json"
        source = dict((sources or {}).get(name) or _recorded_source(path))
        collection = _chip_collection(ds, name, written, source)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(collection, indent=1, ensure_ascii=False), encoding="utf-8")
        (root_dir / name / "catalog.json").unlink(missing_ok=True)  # the layout before collections
    return write_root_catalog(ds)


def _recorded_source(path: Path) -> dict[str, Any]:
    """What an earlier run recorded of the source collection (licence, providers, title)."""
    if not path.is_file():
        return {}
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    source = before.get("geosample:source") or {}
    return {"license": before.get("license"), "providers": before.get("providers"), **source}


def _chip_collection(ds: Path, name: str, items: list[tuple[str, Path]], source: Mapping[str, Any]) -> dict[str, Any]:
    """The STAC collection of one source's chips: extent from the items, licence and providers from the source."""
    boxes, times = [], []
    ids = [sid for sid, _ in items]
    for _, path in items:
        item = json.loads(path.read_bytes())
        boxes.append(item["bbox"])
        props = item["properties"]
        times += [t for t in (props.get("datetime"), props.get("start_datetime"), props.get("end_datetime")) if t]
    bbox = (
        [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
        if boxes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    license_ = source.get("license") if isinstance(source.get("license"), str) else None
    providers = [p for p in source.get("providers") or [] if isinstance(p, dict) and p.get("name")]
    providers.append({"name": "geosample", "roles": ["processor"], "description": f"geosample {__version__} chips"})
    title = source.get("title") if isinstance(source.get("title"), str) else name
    collection = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": name,
        "title": f"{ds.resolve().name}: chips from {title}",
        "description": f"Image chips of the dataset {ds.resolve().name} from STAC collection {name}, one item per chip "
        f"(geosample {__version__}).",
        "license": license_ or "other",
        "providers": providers,
        "extent": {
            "spatial": {"bbox": [bbox]},
            "temporal": {"interval": [[min(times) if times else None, max(times) if times else None]]},
        },
        "links": [
            {"rel": "root", "href": "../catalog.json", "type": JSON},
            {"rel": "parent", "href": "../catalog.json", "type": JSON},
            *({"rel": "item", "href": f"./{s}.json", "type": "application/geo+json"} for s in ids),
        ],
        "geosample:source": {"title": title, "license": license_},
    }
    return collection


def write_root_catalog(ds: Path) -> Path:
    """Write ``DS/stac/catalog.json``, the one root: a child link to every collection under ``DS/stac``.

    The fetch and label stages both call it, so whichever runs last leaves a
    root that reaches every chip item and every label item.
    """
    root_dir = ds / CATALOG_DIR
    children = sorted(p.parent.name for p in root_dir.glob("*/collection.json"))
    name = ds.resolve().name
    root = pystac.Catalog(
        id=name, title=f"{name}: a geosample dataset",
        description=f"The STAC catalog of the geosample dataset {name}: chips by source collection, and scene labels "
        f"(geosample {__version__})",
    ).to_dict(include_self_link=False, transform_hrefs=False)  # fmt: skip
    root["links"] = [
        {"rel": "root", "href": "./catalog.json", "type": JSON},
        *({"rel": "child", "href": f"./{c}/collection.json", "type": JSON, "title": c} for c in children),
    ]
    path = root_dir / "catalog.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(root, indent=1, ensure_ascii=False), encoding="utf-8")
    return path
