"""Make an offline STAC catalog of synthetic imagery and land cover for any plan (demo and test fixture).

For every sample of ``DS/plan.parquet`` (and of ``reserve.parquet``) it paints a scene of surfaces (trees,
grass, crops, built-up land, water; snow where the site is cold) in the
sample's UTM zone, covering its chip with a margin, and serves it three ways:

* collection ``synthetic-s2``: Sentinel-2-like L2A surface reflectance, one
  uint16 COG per band (assets ``blue``, ``green``, ``red``, ``nir``,
  ``swir16``, ``swir22``; reflectance = DN × 0.0001, ``eo:bands`` common names,
  ``raster:bands`` scale) and a scene classification ``scl`` (uint8, the
  Sentinel-2 L2A classes: 3 cloud shadow, 4 vegetation, 5 not vegetated,
  6 water, 9 cloud, 11 snow). Reflectances come from :data:`SPECTRA`, typical
  surface reflectances of each surface in those bands, with ±3 % texture;
* collection ``synthetic-rgb``: the same scene as a 3-band uint8 true-colour image;
* collection ``synthetic-landcover``: the scene's land cover coded as ESA
  WorldCover (asset ``map``).

The samples of one site share their scene, except that an ``after`` row
(event plans) or a later revisit shows a change planted in a disc in the
middle: a burn scar (wildfire), flood water (flood), a bare clearing
(landslide), a dark lava field (volcano), or new built-up land (revisits).
Every third scene also carries a small cloud with its shadow in the north-west
corner, which its ``eo:cloud_cover`` understates (as real catalogues sometimes
do); those samples get a second, clear item ten days later. It is synthetic,
so every change and cloud is known exactly. Try the pipeline offline:

    geosample plan --events data/examples/events.csv --start 2018-01-01 --end 2025-06-30 -n 16 -o ev
    python data/examples/synthetic_stac.py ev ev-stac
    geosample fetch ev --stac ev-stac/catalog.json --collection synthetic-s2 --preview --max-chip-cloud 0.1
    geosample label ev --source stac:synthetic-landcover --stac ev-stac/catalog.json --scheme esa-worldcover
    geosample caption ev

``label`` then also writes ``ev/change.parquet`` and the change masks under
``ev/change/``. The functions here (:func:`reflectance`, :func:`scene_classification`,
:func:`write_s2_item`, ...) are reused by the tests to build chips with known layouts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import rasterio
import rasterio.warp
from rasterio.transform import from_origin

RES = 20.0
MARGIN = 1.25
BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
"""Reflectance bands (STAC common names) of ``synthetic-s2``, in file order."""
WAVELENGTHS = {"blue": 0.49, "green": 0.56, "red": 0.665, "nir": 0.842, "swir16": 1.61, "swir22": 2.19}
SCALE = 1e-4
"""Reflectance per digital number (Sentinel-2 L2A's quantification value, 10,000)."""
TEXTURE = 0.03
"""Each pixel's reflectance is its surface's times a factor drawn uniformly from 1 ± TEXTURE."""

SPECTRA: dict[str, tuple[float, float, float, float, float, float]] = {
    # blue, green, red, nir, swir16, swir22 surface reflectance
    "water": (0.06, 0.05, 0.03, 0.02, 0.01, 0.005),  # clear, deep water
    "flood": (0.08, 0.10, 0.09, 0.06, 0.03, 0.02),  # turbid flood water
    "trees": (0.03, 0.07, 0.04, 0.35, 0.18, 0.08),
    "grass": (0.04, 0.08, 0.06, 0.30, 0.22, 0.12),
    "crops": (0.04, 0.08, 0.05, 0.40, 0.20, 0.10),
    "bare": (0.10, 0.14, 0.18, 0.24, 0.32, 0.26),  # dry soil, cleared land
    "built": (0.12, 0.13, 0.14, 0.18, 0.20, 0.18),  # roofs, roads, concrete
    "burned": (0.04, 0.05, 0.06, 0.08, 0.15, 0.17),  # char and ash after a fire
    "lava": (0.05, 0.05, 0.05, 0.06, 0.07, 0.07),  # fresh basalt
    "snow": (0.85, 0.83, 0.80, 0.70, 0.08, 0.05),
    "cloud": (0.45, 0.45, 0.46, 0.50, 0.40, 0.30),
    "shadow": (0.01, 0.02, 0.012, 0.10, 0.05, 0.025),  # cloud shadow on vegetation
}
"""Typical surface reflectance of each surface (after the spectral libraries summarised in the README)."""
SURFACES = tuple(SPECTRA)
"""Surface codes: a scene is an array of indexes into this tuple."""
SCL = {
    "water": 6, "flood": 6, "trees": 4, "grass": 4, "crops": 4, "bare": 5, "built": 5, "burned": 5, "lava": 5,
    "snow": 11, "cloud": 9, "shadow": 3,
}  # fmt: skip
"""Sentinel-2 L2A scene classification of each surface."""
OBSERVED = {
    "water": "water", "flood": "water", "trees": "vegetation", "grass": "vegetation", "crops": "vegetation",
    "bare": "bare", "built": "bare", "burned": "bare", "lava": "bare", "snow": "snow_ice", "cloud": "cloud",
    "shadow": "cloud",
}  # fmt: skip
"""What each surface is as observed cover (built-up land cannot be told from bare soil; shadow counts as cloud)."""
WORLDCOVER = {
    "water": 80, "flood": 80, "trees": 10, "grass": 30, "crops": 40, "bare": 60, "built": 50, "burned": 60,
    "lava": 60, "snow": 70,
}  # fmt: skip
"""ESA WorldCover code of each land surface."""
SCAR = {"wildfire": "burned", "flood": "flood", "landslide": "bare", "volcano": "lava", "growth": "built"}
"""The surface an event (or a revisit's growth) leaves in the middle of the chip."""


def surface(name: str) -> int:
    """The code of a surface in a scene array."""
    return SURFACES.index(name)


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def landcover(site_id: str, size: int, *, cold: bool = False) -> np.ndarray:
    """Smooth random patches of five surfaces (snow for crops where cold), the same for every sample of a site."""
    rng = _rng(site_id)
    coarse = rng.random((6, 6, 5))
    fine = np.kron(coarse, np.ones((size // 6 + 1, size // 6 + 1, 1)))[:size, :size]
    names = ["trees", "grass", "snow" if cold else "crops", "built", "water"]
    classes = np.array([surface(n) for n in names], dtype=np.uint8)
    weights = np.array([1.6, 1.2, 1.2, 0.7, 0.6])
    return classes[np.argmax(fine * weights, axis=2)]


def disc(size: int, strength: float = 1.0) -> np.ndarray:
    """The changed disc in the middle of a scene, radius 0.32 of its side times ``strength``."""
    yy, xx = np.mgrid[:size, :size]
    radius = size * 0.32 * strength
    return (xx - size / 2 + 0.5) ** 2 + (yy - size / 2 + 0.5) ** 2 <= radius**2


def changed(base: np.ndarray, kind: str, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The scene after an event (a disc in the middle) and the mask of changed pixels."""
    where = disc(base.shape[0], strength)
    out = base.copy()
    out[where] = surface(SCAR.get(kind, "built"))
    return out, where


def add_cloud(scene: np.ndarray, corner: tuple[float, float] = (0.2, 0.2), radius: float = 0.14) -> np.ndarray:
    """The scene with a round cloud (centre and radius as fractions of the side) and its shadow to the south-east."""
    size = scene.shape[0]
    yy, xx = np.mgrid[:size, :size] / size
    cloud = (xx - corner[0]) ** 2 + (yy - corner[1]) ** 2 <= radius**2
    shadow = ((xx - corner[0] - 0.12) ** 2 + (yy - corner[1] - 0.12) ** 2 <= radius**2) & ~cloud
    out = scene.copy()
    out[shadow] = surface("shadow")
    out[cloud] = surface("cloud")
    return out


def reflectance(scene: np.ndarray, seed: str | int = 0, texture: float = TEXTURE) -> np.ndarray:
    """(6, h, w) float32 surface reflectance of a scene (band order :data:`BANDS`), with bounded texture."""
    table = np.array([SPECTRA[name] for name in SURFACES], dtype=np.float32)
    refl = np.moveaxis(table[scene], -1, 0)
    rng = _rng(str(seed)) if isinstance(seed, str) else np.random.default_rng(seed)
    return refl * rng.uniform(1 - texture, 1 + texture, size=refl.shape).astype(np.float32)


def digital_numbers(refl: np.ndarray) -> np.ndarray:
    """Reflectance as Sentinel-2 L2A-style uint16 digital numbers (DN = reflectance / 0.0001; 0 is no data)."""
    return np.clip(np.round(refl / SCALE), 1, 65535).astype(np.uint16)


def scene_classification(scene: np.ndarray) -> np.ndarray:
    """The Sentinel-2 L2A scene classification (SCL) of a scene."""
    table = np.array([SCL[name] for name in SURFACES], dtype=np.uint8)
    return table[scene]


def worldcover(scene: np.ndarray) -> np.ndarray:
    """The scene's land cover as ESA WorldCover codes (clouds: what lies under them is unknown here, so 0)."""
    table = np.array([WORLDCOVER.get(name, 0) for name in SURFACES], dtype=np.uint8)
    return table[scene]


def true_colour(refl: np.ndarray) -> np.ndarray:
    """A (3, h, w) uint8 true-colour rendering (red, green, blue; reflectance 0–0.3 stretched, gamma 1/1.6)."""
    rgb = np.clip(refl[[2, 1, 0]] / 0.3, 0, 1) ** (1 / 1.6)
    return np.clip(np.round(rgb * 254) + 1, 1, 255).astype(np.uint8)


def cloud_share(scene: np.ndarray) -> float:
    """Percentage of a scene that is cloud or cloud shadow (what an honest ``eo:cloud_cover`` would say)."""
    return 100.0 * float(np.isin(scene, [surface("cloud"), surface("shadow")]).mean())


def write_cog(path: Path, data: np.ndarray, epsg: int, x0: float, y0: float, res: float = RES,
              names: Sequence[str] | None = None, nodata: float | None = 0) -> None:  # fmt: skip
    """One tiled, compressed COG (the whole array) with its band descriptions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="COG", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype.name,
        crs=f"EPSG:{epsg}", transform=from_origin(x0, y0, res, res), nodata=nodata, compress="deflate",
        blocksize=256,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if names:
            dst.descriptions = tuple(names)


def write_s2_item(
    folder: Path,
    item_id: str,
    scene: np.ndarray,
    *,
    epsg: int,
    x0: float,
    y0: float,
    when: dt.datetime,
    res: float = RES,
    cloud_cover: float | None = None,
    seed: str | int = 0,
    collection: str = "synthetic-s2",
    nodata: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write a scene as Sentinel-2-like COGs (6 reflectance bands + ``scl``) under ``folder``; return its item.

    The item (a plain dict, STAC 1.1) has asset hrefs relative to ``folder``'s parent
    (``./<folder name>/<item_id>_<band>.tif``), ``eo:bands`` common names, ``raster:bands``
    scale and nodata, ``classification:classes`` for ``scl`` and the projection extension.
    Pixels where ``nodata`` is true are 0 (no data) in every asset.
    """
    import shapely

    size_y, size_x = scene.shape
    refl = reflectance(scene, seed)
    dn = digital_numbers(refl)
    scl = scene_classification(scene)
    if nodata is not None:
        dn[:, nodata] = 0
        scl[nodata] = 0
    assets: dict[str, Any] = {}
    transform = [res, 0.0, x0, 0.0, -res, y0]
    for b, band in enumerate(BANDS):
        rel = f"{folder.name}/{item_id}_{band}.tif"
        write_cog(folder / f"{item_id}_{band}.tif", dn[b : b + 1], epsg, x0, y0, res, [band])
        assets[band] = {
            "href": f"./{rel}", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"],
            "eo:bands": [{"name": band, "common_name": band, "center_wavelength": WAVELENGTHS[band]}],
            "raster:bands": [{"data_type": "uint16", "nodata": 0, "scale": SCALE, "offset": 0.0,
                              "spatial_resolution": res}],
            "proj:shape": [size_y, size_x], "proj:transform": transform,
        }  # fmt: skip
    rel = f"{folder.name}/{item_id}_scl.tif"
    write_cog(folder / f"{item_id}_scl.tif", scl[None], epsg, x0, y0, res, ["scl"])
    scl_names = ((3, "cloud_shadows"), (4, "vegetation"), (5, "not_vegetated"), (6, "water"),
                 (9, "cloud_high_probability"), (11, "snow"))  # fmt: skip
    classes = [{"value": v, "name": n} for v, n in scl_names]
    assets["scl"] = {
        "href": f"./{rel}", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"],
        "raster:bands": [{"data_type": "uint8", "nodata": 0, "spatial_resolution": res,
                          "classification:classes": classes}],
        "proj:shape": [size_y, size_x], "proj:transform": transform,
    }  # fmt: skip
    bbox = rasterio.warp.transform_bounds(epsg, 4326, x0, y0 - size_y * res, x0 + size_x * res, y0, densify_pts=21)
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": collection,
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
        "geometry": shapely.geometry.mapping(shapely.box(*bbox)), "bbox": list(bbox),
        "properties": {"datetime": when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "proj:code": f"EPSG:{epsg}",
                       "platform": "synthetic", "gsd": res,
                       "eo:cloud_cover": round(cloud_share(scene) if cloud_cover is None else cloud_cover, 2)},
        "links": [], "assets": assets,
    }  # fmt: skip


def _item(rec: Mapping[str, Any]) -> Any:
    import pystac

    return pystac.Item.from_dict(dict(rec), preserve_dict=False)


COLLECTIONS = ("synthetic-s2", "synthetic-rgb", "synthetic-landcover")
"""The collections :func:`build` can write."""


def checked_collections(collections: Sequence[str]) -> tuple[str, ...]:
    """``collections`` if they are some of :data:`COLLECTIONS`; else ValueError saying which may be given."""
    if not collections or set(collections) - set(COLLECTIONS):
        raise ValueError(f"collections must be some of {', '.join(COLLECTIONS)}; got {list(collections)}")
    return tuple(collections)


def build(ds: Path, out: Path, collections: Sequence[str] = COLLECTIONS) -> Path:
    """Write the COGs and a self-contained static catalog for ``ds``'s plan (and reserve) into ``out``.

    ``collections``: which of :data:`COLLECTIONS` to write (the Sentinel-2-like one is seven COGs per scene,
    most of the work; a demo that fetches ``synthetic-rgb`` needs only that and the land cover). Each scene
    is the same whichever are written. Returns the path of ``catalog.json``.
    """
    collections = checked_collections(collections)
    import pystac
    import shapely
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension

    samples = gpd.read_parquet(ds / "plan.parquet")
    if (ds / "reserve.parquet").exists():  # the plan's reserve sites, which fetch substitutes for failed ones
        samples = pd.concat([samples, gpd.read_parquet(ds / "reserve.parquet")], ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    data.mkdir(exist_ok=True)
    catalog = pystac.Catalog("synthetic", "Synthetic imagery and land cover for a geosample plan (offline demo)")
    extent = pystac.Extent(
        pystac.SpatialExtent([list(samples.total_bounds)]),
        pystac.TemporalExtent([[samples["start_datetime"].min().to_pydatetime(),
                                (samples["end_datetime"].max() + dt.timedelta(days=11)).to_pydatetime()]]),
    )  # fmt: skip
    s2 = pystac.Collection("synthetic-s2", "Synthetic Sentinel-2-like surface reflectance", extent, license="other")
    rgb = pystac.Collection("synthetic-rgb", "Synthetic true-colour images", extent, license="other")
    lcc = pystac.Collection("synthetic-landcover", "Synthetic ESA WorldCover-coded land cover", extent, license="other")
    catalog.add_children([c for c in (s2, rgb, lcc) if c.id in collections])
    phases = samples["phase"] if "phase" in samples else None
    revisits = samples["revisit_index"] if "revisit_index" in samples else None
    for i, row in enumerate(samples.itertuples(index=False)):
        half = row.chip_size_m / 2 * MARGIN
        cx, cy = pyproj.Transformer.from_crs(4326, row.epsg, always_xy=True).transform(row.lon, row.lat)
        size = int(round(2 * half / RES))
        x0, y0 = cx - half, cy + half
        base = landcover(row.site_id, size, cold=abs(row.lat) > 60)
        kind = str(getattr(row, "event_type", "") or "")
        strength = 0.0
        if phases is not None and phases.iloc[i] == "after":
            strength = 1.0
        elif revisits is not None and int(revisits.iloc[i]) > 0:
            strength = min(1.0, 0.5 * int(revisits.iloc[i]))
            kind = kind or "growth"
        scene, _ = changed(base, kind, strength) if strength > 0 else (base, None)
        stem = row.sample_id
        middle = (row.start_datetime + (row.end_datetime - row.start_datetime) / 2).to_pydatetime()
        cloudy = _rng(f"cloud-{stem}").random() < 1 / 3
        shown = add_cloud(scene) if cloudy else scene
        if s2.id in collections:
            # A cloudy scene's eo:cloud_cover understates its cloud, as real catalogues sometimes do.
            first = write_s2_item(data, f"{stem}-s2", shown, epsg=row.epsg, x0=x0, y0=y0, when=middle, seed=stem,
                                  cloud_cover=min(cloud_share(shown) / 4, 1.0) if cloudy else 0.0)  # fmt: skip
            s2.add_item(_item(first))
            if cloudy:
                later = middle + dt.timedelta(days=10)
                s2.add_item(_item(write_s2_item(data, f"{stem}-s2-clear", scene, epsg=row.epsg, x0=x0, y0=y0,
                                                when=later, seed=f"{stem}-clear", cloud_cover=2.0)))  # fmt: skip
        if rgb.id in collections:
            refl = reflectance(scene, stem)
            write_cog(data / f"{stem}_rgb.tif", true_colour(refl), row.epsg, x0, y0, names=["red", "green", "blue"])
        if lcc.id in collections:
            write_cog(data / f"{stem}_lc.tif", worldcover(scene)[None], row.epsg, x0, y0, names=["map"])
        bbox = rasterio.warp.transform_bounds(row.epsg, 4326, x0, y0 - 2 * half, x0 + 2 * half, y0, densify_pts=21)
        geometry = shapely.geometry.mapping(shapely.box(*bbox))
        views = ((rgb, "rgb", "visual", ["red", "green", "blue"]), (lcc, "lc", "map", None))
        for collection, suffix, key, bands in views:
            if collection.id not in collections:
                continue
            item = pystac.Item(
                f"{stem}-{suffix}", geometry, list(bbox), middle.astimezone(dt.UTC),
                {"eo:cloud_cover": 0.0} if bands else {},
            )  # fmt: skip
            item.add_asset(key, pystac.Asset(f"./data/{stem}_{suffix}.tif", media_type=pystac.MediaType.COG,
                                             roles=["data"]))  # fmt: skip
            proj = ProjectionExtension.ext(item, add_if_missing=True)
            proj.epsg = int(row.epsg)
            proj.transform = [RES, 0.0, x0, 0.0, -RES, y0]
            proj.shape = [size, size]
            if bands:
                EOExtension.ext(item.assets[key], add_if_missing=True).bands = [
                    Band.create(name=b, common_name=b) for b in bands
                ]
            collection.add_item(item)
    catalog.normalize_hrefs(str(out))
    for item in catalog.get_items(recursive=True):
        for asset in item.assets.values():
            asset.href = str((out / asset.href.lstrip("./")).resolve())
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return out / "catalog.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ds", type=Path, help="dataset folder with plan.parquet")
    parser.add_argument("out", type=Path, help="folder for the catalog and its COGs")
    parser.add_argument("--collections", default=",".join(COLLECTIONS), help="which to write, comma-separated")
    args = parser.parse_args()
    try:
        chosen = checked_collections([c.strip() for c in args.collections.split(",") if c.strip()])
    except ValueError as exc:
        parser.error(f"--{exc}")
    print(f"wrote {build(args.ds, args.out, chosen)}")


if __name__ == "__main__":
    main()
