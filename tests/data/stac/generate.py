"""Seeded generator of the fetch tests' STAC fixtures: COG scenes and items shaped like real ones.

Nothing is committed but this script: the tests generate into a temporary
folder. Items carry the real asset keys and properties of Earth Search's and
Planetary Computer's collections (``proj:code`` or ``proj:epsg``,
``eo:cloud_cover``, ``s2:processing_baseline``, ``earthsearch:boa_offset_applied``,
``raster:bands`` with nodata/scale/offset, ``classification:classes``), with
asset hrefs of the form ``{base}/<file>``: :func:`finalize` points them at a
loopback HTTP server or at local paths.

Run ``python tests/data/stac/generate.py OUT`` to look at a fixture.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds, transform_geom

BASE = "{base}"
LANDSAT = Path(__file__).parents[1] / "imagery" / "landsat7_rgb_utm18n_300m.tif"
COG_MEDIA = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclasses.dataclass(frozen=True)
class AssetDef:
    """One asset: its file's dtype, bands, pixel size (as a multiple of the scene's) and values."""

    key: str
    dtype: str = "uint16"
    count: int = 1
    factor: int = 1
    nodata: float | None = 0
    low: int = 1100
    high: int = 5000
    classes: tuple[int, ...] = ()
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)


def write_cog(
    path: Path, data: np.ndarray, crs: CRS, transform: Any, nodata: float | None, blocksize: int = 256
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "COG", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
        "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata, "compress": "deflate",
        "blocksize": blocksize, "level": 1,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def _values(asset: AssetDef, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    if asset.classes:
        return rng.choice(np.array(asset.classes, dtype=asset.dtype), size=(asset.count, *shape))
    return rng.integers(asset.low, asset.high, size=(asset.count, *shape), dtype=asset.dtype)


def scene_item(
    root: Path,
    collection: str,
    item_id: str,
    crs: CRS,
    bounds: tuple[float, float, float, float],
    res: float,
    assets: Sequence[AssetDef],
    properties: dict[str, Any],
    rng: np.random.Generator,
    *,
    missing: Sequence[str] = (),
    proj: str = "code",
) -> dict[str, Any]:
    """Write one scene's COGs under ``root/collection/item_id/`` and return its item (hrefs under {base})."""
    west, south, east, north = bounds
    width, height = round((east - west) / res), round((north - south) / res)
    footprint = transform_geom(
        crs, "EPSG:4326", shapely.geometry.mapping(shapely.box(west, south, east, north).segmentize((east - west) / 8))
    )
    geom = shapely.geometry.shape(footprint)
    item_assets: dict[str, Any] = {}
    for asset in assets:
        size = res * asset.factor
        w, h = max(1, round(width / asset.factor)), max(1, round(height / asset.factor))
        transform = from_origin(west, north, size, size)
        rel = f"{collection}/{item_id}/{asset.key}.tif"
        if asset.key not in missing:
            write_cog(root / rel, _values(asset, (h, w), rng), crs, transform, asset.nodata)
        band = {"data_type": asset.dtype, "spatial_resolution": size}
        if asset.nodata is not None:
            band["nodata"] = asset.nodata
        fields = {"proj:shape": [h, w], "proj:transform": list(transform)[:6], **asset.fields}
        fields.setdefault("raster:bands", [dict(band) for _ in range(asset.count)])
        item_assets[asset.key] = {"href": f"{BASE}/{rel}", "type": COG_MEDIA, "roles": ["data"], **fields}
    props = {**properties}
    epsg = crs.to_epsg()
    if proj == "code":
        props["proj:code"] = f"EPSG:{epsg}"
    else:
        props["proj:epsg"] = epsg
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": item_id,
        "collection": collection,
        "geometry": shapely.geometry.mapping(geom),
        "bbox": list(geom.bounds),
        "properties": props,
        "links": [],
        "assets": item_assets,
    }


def collection_json(cid: str, item_assets: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "description": f"fixture collection {cid}",
        "license": "CC0-1.0",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }
    if item_assets:
        out["item_assets"] = item_assets
    return out


# --------------------------------------------------------------------------- Sentinel-2, Earth Search shape

ES_S2 = "sentinel-2-l2a"
_S2_BAND = {"scale": 0.0001, "offset": -0.1}
S2_ASSETS = (
    *(AssetDef(k, fields={"eo:bands": [{"name": k, "common_name": k}]}) for k in ("red", "green", "blue", "nir")),
    AssetDef("scl", dtype="uint8", factor=2, classes=tuple(range(1, 12))),
)
SCENARIOS = ("no_item", "missing_asset", "mosaic", "other_zone", "geographic", "ranked", "ranked", "ranked")


def _day(start: pd.Timestamp, days: float) -> str:
    return (start + pd.Timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _s2_props(when: str, cloud: float, offset_applied: bool | None) -> dict[str, Any]:
    year = int(when[:4])
    props: dict[str, Any] = {
        "datetime": when, "platform": "sentinel-2a", "constellation": "sentinel-2", "instruments": ["msi"],
        "eo:cloud_cover": cloud, "s2:processing_baseline": "05.09" if year >= 2022 else "02.14",
    }  # fmt: skip
    if offset_applied is not None:
        props["earthsearch:boa_offset_applied"] = offset_applied
    return props


def chip_bounds(lon: float, lat: float, epsg: int, size: float) -> tuple[float, float, float, float]:
    x, y = pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    return x - size / 2, y - size / 2, x + size / 2, y + size / 2


def _snap(bounds: tuple[float, float, float, float], step: float, margin: float) -> tuple[float, float, float, float]:
    w, s, e, n = bounds
    return (
        np.floor((w - margin) / step) * step,
        np.floor((s - margin) / step) * step,
        np.ceil((e + margin) / step) * step,
        np.ceil((n + margin) / step) * step,
    )


def s2_fixture(root: Path, samples: pd.DataFrame, seed: int = 0, res: float = 10.0) -> dict[str, Any]:
    """Earth Search-shaped Sentinel-2 items for each sample; the first samples get the special scenarios.

    Returns ``{"items": [...], "roles": {sample_id: scenario}, "expect": {...}}``: ``expect`` holds, per
    sample, the item ids a correct fetch picks (``cloud`` and ``time`` sort, and the mosaic).
    """
    rng = np.random.default_rng(seed)
    items: list[dict[str, Any]] = []
    roles: dict[str, str] = {}
    expect: dict[str, dict[str, Any]] = {}
    ordered = samples.sort_values("sample_id").reset_index(drop=True)
    for i, s in ordered.iterrows():
        sid, epsg, size = str(s.sample_id), int(s.epsg), float(s.chip_size_m)
        start = pd.Timestamp(s.start_datetime)
        role = SCENARIOS[i] if i < len(SCENARIOS) else "plain"
        roles[sid] = role
        crs = CRS.from_epsg(epsg)
        box = chip_bounds(s.lon, s.lat, epsg, size)
        full = _snap(box, res * 2, 400.0)
        proj = "epsg" if i % 2 else "code"
        applied = None if i % 3 == 0 else bool(i % 2)
        if role == "no_item":
            continue
        if role == "missing_asset":
            props = _s2_props(_day(start, 100), 10.0, applied)
            items.append(
                scene_item(root, ES_S2, f"S2_{sid}_A", crs, full, res, S2_ASSETS, props, rng, missing=("nir",))
            )
            expect[sid] = {"cloud": [f"S2_{sid}_A"]}
        elif role == "mosaic":
            w, so, e, n = full
            mid = (box[0] + box[2]) / 2
            # The west scene covers ~40 % of the chip, the east one ~75 %; they overlap by ~400 m.
            west = (w, so, np.ceil((mid - 250) / (2 * res)) * 2 * res, n)
            east = (np.floor((mid - 650) / (2 * res)) * 2 * res, so, e, n)
            items.append(
                scene_item(
                    root,
                    ES_S2,
                    f"S2_{sid}_W",
                    crs,
                    west,
                    res,
                    S2_ASSETS,
                    _s2_props(_day(start, 50), 20.0, applied),
                    rng,
                    proj=proj,
                )
            )
            items.append(
                scene_item(
                    root,
                    ES_S2,
                    f"S2_{sid}_E",
                    crs,
                    east,
                    res,
                    S2_ASSETS,
                    _s2_props(_day(start, 60), 30.0, applied),
                    rng,
                    proj=proj,
                )
            )
            expect[sid] = {"cloud": [f"S2_{sid}_W"], "mosaic": [f"S2_{sid}_W", f"S2_{sid}_E"]}
        elif role == "other_zone":
            other = CRS.from_epsg(epsg + 1)
            b = _snap(transform_bounds(crs, other, *box, densify_pts=21), res * 2, 600.0)
            items.append(
                scene_item(
                    root,
                    ES_S2,
                    f"S2_{sid}_Z",
                    other,
                    b,
                    res,
                    S2_ASSETS,
                    _s2_props(_day(start, 120), 5.0, applied),
                    rng,
                    proj=proj,
                )
            )
            expect[sid] = {"cloud": [f"S2_{sid}_Z"]}
        elif role == "geographic":
            geo = CRS.from_epsg(4326)
            w, so, e, n = transform_bounds(crs, geo, *box, densify_pts=21)
            step = 0.0001
            b = (
                np.floor(w / step - 6) * step,
                np.floor(so / step - 6) * step,
                np.ceil(e / step + 6) * step,
                np.ceil(n / step + 6) * step,
            )
            items.append(
                scene_item(
                    root,
                    ES_S2,
                    f"S2_{sid}_G",
                    geo,
                    b,
                    step,
                    S2_ASSETS,
                    _s2_props(_day(start, 200), 15.0, applied),
                    rng,
                    proj=proj,
                )
            )
            expect[sid] = {"cloud": [f"S2_{sid}_G"]}
        elif role == "ranked":
            w, so, e, n = full
            half = (w, so, np.ceil(((box[0] + box[2]) / 2) / (2 * res)) * 2 * res, n)
            middle = (pd.Timestamp(s.end_datetime) - start).days / 2
            a = scene_item(
                root,
                ES_S2,
                f"S2_{sid}_A",
                crs,
                full,
                res,
                S2_ASSETS,
                _s2_props(_day(start, middle - 5), 30.0, applied),
                rng,
                proj=proj,
            )
            b = scene_item(
                root,
                ES_S2,
                f"S2_{sid}_B",
                crs,
                full,
                res,
                S2_ASSETS,
                _s2_props(_day(start, 20), 5.0, applied),
                rng,
                proj=proj,
            )
            c = scene_item(
                root,
                ES_S2,
                f"S2_{sid}_C",
                crs,
                half,
                res,
                S2_ASSETS,
                _s2_props(_day(start, middle), 0.0, applied),
                rng,
                proj=proj,
            )
            cloudy = scene_item(
                root,
                ES_S2,
                f"S2_{sid}_D",
                crs,
                full,
                res,
                S2_ASSETS,
                _s2_props(_day(start, middle + 1), 95.0, applied),
                rng,
                proj=proj,
            )
            items += [a, b, c, cloudy]
            expect[sid] = {"cloud": [f"S2_{sid}_B"], "time": [f"S2_{sid}_D"], "max_cloud_50_time": [f"S2_{sid}_A"]}
        else:
            cloud = float(np.round(rng.uniform(5, 40), 1))  # above the PC fixture items (3, 4): pc-s2 tests pick those
            props = _s2_props(_day(start, float(rng.uniform(10, 350))), cloud, applied)
            items.append(scene_item(root, ES_S2, f"S2_{sid}_P", crs, full, res, S2_ASSETS, props, rng, proj=proj))
            expect[sid] = {"cloud": [f"S2_{sid}_P"]}
    return {"items": items, "roles": roles, "expect": expect}


# --------------------------------------------------------------------------- the real Landsat scene

LANDSAT_COLLECTION = "landsat-7-rgb"


def landsat_fixture(root: Path) -> dict[str, Any]:
    """The real Landsat 7 scene (tests/data/imagery), as a COG, with one item."""
    rel = f"{LANDSAT_COLLECTION}/LE07_013042_20010926/rgb.tif"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(LANDSAT) as src:
        data = src.read()
        write_cog(root / rel, data, src.crs, src.transform, src.nodata)
        bounds, crs = src.bounds, src.crs
        shape = [src.height, src.width]
        transform = list(src.transform)[:6]
    geom = shapely.geometry.shape(transform_geom(crs, "EPSG:4326", shapely.geometry.mapping(shapely.box(*bounds))))
    item = {
        "type": "Feature", "stac_version": "1.1.0", "id": "LE07_013042_20010926", "collection": LANDSAT_COLLECTION,
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
        "geometry": shapely.geometry.mapping(geom), "bbox": list(geom.bounds),
        "properties": {"datetime": "2001-09-26T15:30:00Z", "platform": "landsat-7", "eo:cloud_cover": 1.0,
                       "proj:code": "EPSG:32618"},
        "links": [],
        "assets": {"rgb": {"href": f"{BASE}/{rel}", "type": COG_MEDIA, "roles": ["data"], "proj:shape": shape,
                           "proj:transform": transform,
                           "eo:bands": [{"name": n, "common_name": n} for n in ("red", "green", "blue")]}},
    }  # fmt: skip
    return {"items": [item]}


# --------------------------------------------------------------------------- Planetary Computer shapes

PC_S2_KEYS = ("B02", "B03", "B04", "B08")
WORLDCOVER_CLASSES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)


def pc_fixture(root: Path, samples: pd.DataFrame, seed: int = 1) -> dict[str, Any]:
    """Items shaped like Planetary Computer's sentinel-2-l2a, landsat-c2-l2, naip and esa-worldcover."""
    rng = np.random.default_rng(seed)
    items = []
    for s in samples.sort_values("sample_id").itertuples():
        sid, epsg, size = str(s.sample_id), int(s.epsg), float(s.chip_size_m)
        start = pd.Timestamp(s.start_datetime)
        crs = CRS.from_epsg(epsg)
        box = chip_bounds(s.lon, s.lat, epsg, size)
        s2 = [AssetDef(k, fields={"eo:bands": [{"name": k}], "gsd": 10.0}) for k in PC_S2_KEYS]
        s2.append(AssetDef("SCL", dtype="uint8", factor=2, classes=tuple(range(0, 12))))
        s2.append(AssetDef("visual", dtype="uint8", count=3, nodata=0, low=1, high=255,
                           fields={"eo:bands": [{"name": b, "common_name": c} for b, c in
                                                (("B04", "red"), ("B03", "green"), ("B02", "blue"))]}))  # fmt: skip
        for j, baseline in enumerate(("03.00", "05.10")):
            props = {"datetime": _day(start, 30 + 200 * j), "platform": "Sentinel-2B", "eo:cloud_cover": 3.0 + j,
                     "s2:processing_baseline": baseline, "s2:mgrs_tile": "33TWN"}  # fmt: skip
            items.append(scene_item(root, "sentinel-2-l2a", f"S2B_MSIL2A_{sid}_N{baseline}", crs,
                                    _snap(box, 20, 300), 10.0, s2, props, rng, proj="epsg"))  # fmt: skip
        sr = {"scale": 2.75e-05, "offset": -0.2, "nodata": 0, "data_type": "uint16", "unit": "reflectance"}
        landsat = [AssetDef(k, low=7273, high=43636, fields={"raster:bands": [dict(sr)]})
                   for k in ("red", "green", "blue", "nir08")]  # fmt: skip
        landsat.append(AssetDef("qa_pixel", nodata=1, classes=(21824, 21952, 22080, 23888),
                                fields={"raster:bands": [{"data_type": "uint16", "nodata": 1,
                                                          "classification:bitfields": []}]}))  # fmt: skip
        props = {"datetime": _day(start, 150), "platform": "landsat-8", "eo:cloud_cover": 12.5,
                 "landsat:wrs_path": "188", "landsat:wrs_row": "027", "landsat:collection_category": "T1"}  # fmt: skip
        items.append(scene_item(root, "landsat-c2-l2", f"LC08_L2SP_{sid}", crs, _snap(box, 30, 300), 30.0,
                                landsat, props, rng, proj="epsg"))  # fmt: skip
        naip = [AssetDef("image", dtype="uint8", count=4, nodata=None, low=1, high=255,
                         fields={"eo:bands": [{"name": n, "common_name": n.lower()} for n in
                                              ("Red", "Green", "Blue", "NIR")], "gsd": 0.6})]  # fmt: skip
        props = {"datetime": _day(start, 90), "naip:state": "or", "naip:year": str(start.year), "gsd": 0.6}
        items.append(scene_item(root, "naip", f"or_m_{sid}", crs, _snap(box, 0.6, 30), 0.6, naip, props, rng,
                                proj="epsg"))  # fmt: skip
        geo = CRS.from_epsg(4326)
        w, so, e, n = transform_bounds(crs, geo, *box, densify_pts=21)
        step = 1 / 12000
        gb = (np.floor(w / step - 5) * step, np.floor(so / step - 5) * step,
              np.ceil(e / step + 5) * step, np.ceil(n / step + 5) * step)  # fmt: skip
        classes = [{"value": v, "description": f"class {v}"} for v in WORLDCOVER_CLASSES]
        wc = [AssetDef("map", dtype="uint8", classes=WORLDCOVER_CLASSES,
                       fields={"raster:bands": [{"data_type": "uint8", "nodata": 0,
                                                 "classification:classes": classes}]})]  # fmt: skip
        props = {"datetime": None, "start_datetime": f"{start.year}-01-01T00:00:00Z",
                 "end_datetime": f"{start.year}-12-31T23:59:59Z",
                 "esa_worldcover:product_version": "2.0.0"}  # fmt: skip
        items.append(scene_item(root, "esa-worldcover", f"ESA_WorldCover_10m_{sid}", geo, gb, step, wc, props, rng,
                                proj="epsg"))  # fmt: skip
    return {"items": items}


# --------------------------------------------------------------------------- output


def finalize(items: Sequence[dict[str, Any]], base: str) -> list[dict[str, Any]]:
    """Items with ``{base}`` in asset hrefs replaced (a URL, or a folder for local paths)."""
    text = json.dumps(list(items)).replace(BASE, base.rstrip("/"))
    return json.loads(text)


def write_api_files(out: Path, items: Sequence[dict[str, Any]]) -> list[Path]:
    """Collections and one items file per collection, for ``rustac serve``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    by_coll: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_coll.setdefault(item["collection"], []).append(item)
    for cid, members in sorted(by_coll.items()):
        c = out / f"{cid}.collection.json"
        c.write_text(json.dumps(collection_json(cid)))
        f = out / f"{cid}.items.json"
        f.write_text(json.dumps({"type": "FeatureCollection", "features": members}))
        paths += [c, f]
    return paths


def write_static_catalog(out: Path, items: Sequence[dict[str, Any]]) -> Path:
    """A static catalog (catalog.json → collection.json → item files) with relative links."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    by_coll: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_coll.setdefault(item["collection"], []).append(item)
    root = {"type": "Catalog", "stac_version": "1.1.0", "id": "fixture", "description": "fixture catalog",
            "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]}  # fmt: skip
    for cid, members in sorted(by_coll.items()):
        coll = collection_json(cid)
        coll["links"] = [{"rel": "root", "href": "../catalog.json"}, {"rel": "parent", "href": "../catalog.json"}]
        for item in members:
            d = dict(item)
            d["links"] = [
                {"rel": "root", "href": "../../catalog.json"},
                {"rel": "parent", "href": "../collection.json"},
                {"rel": "collection", "href": "../collection.json"},
            ]
            (out / cid / item["id"]).mkdir(parents=True)
            (out / cid / item["id"] / f"{item['id']}.json").write_text(json.dumps(d))
            coll["links"].append({"rel": "item", "href": f"./{item['id']}/{item['id']}.json"})
        (out / cid / "collection.json").write_text(json.dumps(coll))
        root["links"].append({"rel": "child", "href": f"./{cid}/collection.json"})
    (out / "catalog.json").write_text(json.dumps(root))
    return out / "catalog.json"


def make_plan(ds: Path, points: Sequence[tuple[float, float]], chip_size: float, year: int = 2021) -> pd.DataFrame:
    """A minimal plan.parquet (the columns fetch reads) for hand-picked centres."""
    import geopandas as gpd
    import h3

    from geosample.sampling._geometry import chip_footprints, utm_epsg

    lon = np.array([p[0] for p in points])
    lat = np.array([p[1] for p in points])
    epsg = utm_epsg(lon, lat).astype(np.int64)
    cells = [h3.latlng_to_cell(la, lo, 9) for lo, la in points]
    frame = pd.DataFrame(
        {
            "sample_id": [f"{c}-{chip_size:g}m" for c in cells], "site_id": cells, "h3": cells, "h3_res": 9,
            "lon": lon, "lat": lat, "stratum": "x", "time_bin": str(year),
            "start_datetime": pd.Timestamp(f"{year}-01-01", tz="UTC"),
            "end_datetime": pd.Timestamp(f"{year}-12-31T23:59:59", tz="UTC"),
            "chip_size_m": float(chip_size), "epsg": epsg,
        }
    )  # fmt: skip
    gdf = gpd.GeoDataFrame(frame, geometry=chip_footprints(lon, lat, epsg, chip_size), crs="EPSG:4326")
    ds.mkdir(parents=True, exist_ok=True)
    gdf.to_parquet(ds / "plan.parquet", index=False)
    return gdf


if __name__ == "__main__":  # pragma: no cover
    import sys

    import geopandas as gpd

    out = Path(sys.argv[1])
    plan = gpd.read_parquet(sys.argv[2]) if len(sys.argv) > 2 else None
    if plan is None:
        raise SystemExit("usage: generate.py OUT PLAN.parquet")
    fx = s2_fixture(out / "files", plan)
    write_api_files(out / "api", finalize(fx["items"], str(out / "files")))
    print(json.dumps(fx["roles"], indent=1))
