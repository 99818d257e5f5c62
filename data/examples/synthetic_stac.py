"""Make an offline STAC catalog of synthetic imagery and land cover for any plan (demo and test fixture).

For every sample of ``DS/plan.parquet`` it writes two small COGs in the
sample's UTM zone, covering its chip with a margin, and one STAC item each,
dated in the middle of the sample's window:

* collection ``synthetic-rgb``: a 3-band uint8 "true colour" image (asset
  ``visual``, ``eo:bands`` red/green/blue) rendered from the land cover;
* collection ``synthetic-landcover``: an ESA WorldCover-coded uint8 map
  (asset ``map``) of smooth random patches of trees, grass, crops, built-up
  and water.

The samples of one site share their land cover, except that an ``after``
row (event plans) or a later revisit shows a change typical of its event
type: a burn scar (wildfire), standing water (flood), a lava field
(volcano), a bare scar (landslide), or new built-up land (revisits). It is
synthetic, so the change is known exactly; use it to try the whole pipeline
offline:

    geosample plan --events data/examples/events.csv --start 2018-01-01 --end 2025-06-30 -n 16 -o ev
    python data/examples/synthetic_stac.py ev ev-stac
    geosample fetch ev --stac ev-stac/catalog.json --collection synthetic-rgb --resolution 20 --preview
    geosample label ev --source stac:synthetic-landcover --stac ev-stac/catalog.json --scheme esa-worldcover
    geosample caption ev
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import rasterio
import rasterio.warp
from rasterio.transform import from_origin

RES = 20.0
MARGIN = 1.25
TREES, SHRUB, GRASS, CROPS, BUILT, BARE, WATER = 10, 20, 30, 40, 50, 60, 80
_COLOURS = {
    TREES: (34, 78, 34), SHRUB: (110, 120, 60), GRASS: (130, 160, 80), CROPS: (190, 180, 110),
    BUILT: (150, 150, 150), BARE: (200, 180, 150), WATER: (40, 70, 130),
}  # fmt: skip
_SCAR = {"wildfire": BARE, "volcano": BARE, "landslide": BARE, "flood": WATER}
_SCAR_RGB = {"wildfire": (45, 40, 38), "volcano": (60, 55, 55), "landslide": (170, 150, 120), "flood": (60, 90, 140)}


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def landcover(site_id: str, size: int) -> np.ndarray:
    """Smooth random patches of five classes, the same for every sample of a site."""
    rng = _rng(site_id)
    coarse = rng.random((6, 6, 5))
    fine = np.kron(coarse, np.ones((size // 6 + 1, size // 6 + 1, 1)))[:size, :size]
    classes = np.array([TREES, GRASS, CROPS, BUILT, WATER], dtype=np.uint8)
    weights = np.array([1.6, 1.2, 1.2, 0.7, 0.6])
    return classes[np.argmax(fine * weights, axis=2)]


def changed(base: np.ndarray, kind: str, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The land cover after an event (a disc in the middle) and the mask of changed pixels."""
    size = base.shape[0]
    yy, xx = np.mgrid[:size, :size]
    radius = size * 0.32 * strength
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= radius**2
    out = base.copy()
    out[disc] = _SCAR.get(kind, BUILT)
    return out, disc


def render(lc: np.ndarray, scar: np.ndarray | None, kind: str, seed: str) -> np.ndarray:
    """A (3, h, w) uint8 image: class colours with texture; the scar in its own colour."""
    rgb = np.zeros((3, *lc.shape), dtype=np.float32)
    for value, colour in _COLOURS.items():
        rgb[:, lc == value] = np.array(colour, dtype=np.float32)[:, None]
    if scar is not None and scar.any():
        rgb[:, scar] = np.array(_SCAR_RGB.get(kind, _COLOURS[BUILT]), dtype=np.float32)[:, None]
    rgb += _rng(seed).normal(0, 8, size=rgb.shape)
    return np.clip(rgb, 1, 255).astype(np.uint8)


def _write(path: Path, data: np.ndarray, epsg: int, x0: float, y0: float, names: list[str]) -> None:
    profile = dict(
        driver="COG", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype="uint8",
        crs=f"EPSG:{epsg}", transform=from_origin(x0, y0, RES, RES), nodata=0, compress="deflate", blocksize=256,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(names)


def build(ds: Path, out: Path) -> Path:
    """Write the COGs and a self-contained static catalog for ``ds``'s plan into ``out``; return catalog.json."""
    import pystac
    import shapely
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension

    samples = gpd.read_parquet(ds / "plan.parquet")
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    catalog = pystac.Catalog("synthetic", "Synthetic imagery and land cover for a geosample plan (offline demo)")
    extent = pystac.Extent(
        pystac.SpatialExtent([list(samples.total_bounds)]),
        pystac.TemporalExtent([[samples["start_datetime"].min().to_pydatetime(),
                                samples["end_datetime"].max().to_pydatetime()]]),
    )  # fmt: skip
    rgb = pystac.Collection("synthetic-rgb", "Synthetic true-colour images", extent, license="other")
    lcc = pystac.Collection("synthetic-landcover", "Synthetic ESA WorldCover-coded land cover", extent, license="other")
    catalog.add_children([rgb, lcc])
    phases = samples["phase"] if "phase" in samples else None
    revisits = samples["revisit_index"] if "revisit_index" in samples else None
    for i, row in enumerate(samples.itertuples(index=False)):
        half = row.chip_size_m / 2 * MARGIN
        cx, cy = pyproj.Transformer.from_crs(4326, row.epsg, always_xy=True).transform(row.lon, row.lat)
        size = int(round(2 * half / RES))
        x0, y0 = cx - half, cy + half
        base = landcover(row.site_id, size)
        kind = str(getattr(row, "event_type", "") or "")
        strength = 0.0
        if phases is not None and phases.iloc[i] == "after":
            strength = 1.0
        elif revisits is not None and int(revisits.iloc[i]) > 0:
            strength = min(1.0, 0.5 * int(revisits.iloc[i]))
            kind = kind or "growth"
        lc, scar = changed(base, kind, strength) if strength > 0 else (base, None)
        image = render(lc, scar, kind, row.sample_id)
        stem = row.sample_id
        _write(out / "data" / f"{stem}_rgb.tif", image, row.epsg, x0, y0, ["red", "green", "blue"])
        _write(out / "data" / f"{stem}_lc.tif", lc[None], row.epsg, x0, y0, ["map"])
        middle = row.start_datetime + (row.end_datetime - row.start_datetime) / 2
        bbox = rasterio.warp.transform_bounds(row.epsg, 4326, x0, y0 - 2 * half, x0 + 2 * half, y0, densify_pts=21)
        geometry = shapely.geometry.mapping(shapely.box(*bbox))
        for collection, suffix, key, media, bands in (
            (rgb, "rgb", "visual", pystac.MediaType.COG, ["red", "green", "blue"]),
            (lcc, "lc", "map", pystac.MediaType.COG, None),
        ):
            item = pystac.Item(
                f"{stem}-{suffix}", geometry, list(bbox), middle.to_pydatetime().astimezone(dt.UTC),
                {"eo:cloud_cover": 0.0} if bands else {},
            )  # fmt: skip
            asset = pystac.Asset(f"./data/{stem}_{suffix}.tif", media_type=media, roles=["data"])
            item.add_asset(key, asset)
            proj = ProjectionExtension.ext(item, add_if_missing=True)
            proj.epsg = int(row.epsg)
            proj.transform = [RES, 0.0, x0, 0.0, -RES, y0]
            proj.shape = [size, size]
            if bands:
                EOExtension.ext(item.assets[key], add_if_missing=True).bands = [Band.create(name=b) for b in bands]
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
    args = parser.parse_args()
    print(f"wrote {build(args.ds, args.out)}")


if __name__ == "__main__":
    main()
