"""Rebuild ``offline-stac/``: a static STAC catalog of one real Landsat 7 scene, for the offline example config.

The scene (``tests/data/imagery/landsat7_rgb_utm18n_300m.tif``: Landsat 7
ETM+ RGB over Andros, Bahamas, 300 m, CC0, from rasterio's test data) is
rewritten as a COG and described by one item of collection ``landsat7-demo``
with a 3-band ``visual`` asset (``eo:bands`` red, green, blue). The source
file does not record its acquisition date, so the item spans the Landsat 7
mission (1999-04-15 to 2025-06-04) and matches any plan window in it.

    python data/examples/make_offline_stac.py
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pystac
import rasterio
import rasterio.shutil
import rasterio.warp
import shapely
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension

HERE = Path(__file__).parent
SCENE = HERE.parents[1] / "tests" / "data" / "imagery" / "landsat7_rgb_utm18n_300m.tif"
OUT = HERE / "offline-stac"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    cog = OUT / "landsat7_andros_rgb.tif"
    with rasterio.open(SCENE) as src, rasterio.MemoryFile() as memory:
        with memory.open(**src.profile) as named:  # band names travel into the COG
            named.write(src.read())
            named.descriptions = ("red", "green", "blue")
        with memory.open() as named:
            rasterio.shutil.copy(named, cog, driver="COG", compress="deflate", blocksize=256)
    with rasterio.open(cog) as src:
        bbox = rasterio.warp.transform_bounds(src.crs, 4326, *src.bounds, densify_pts=21)
        epsg, transform, shape = src.crs.to_epsg(), list(src.transform)[:6], [src.height, src.width]
    start = dt.datetime(1999, 4, 15, tzinfo=dt.UTC)
    end = dt.datetime(2025, 6, 4, tzinfo=dt.UTC)
    catalog = pystac.Catalog("geosample-offline-demo", "One real Landsat 7 scene for geosample's offline example")
    collection = pystac.Collection(
        "landsat7-demo",
        "Landsat 7 ETM+ RGB over Andros, Bahamas (300 m; rasterio test data, CC0)",
        pystac.Extent(pystac.SpatialExtent([list(bbox)]), pystac.TemporalExtent([[start, end]])),
        license="CC0-1.0",
    )
    catalog.add_child(collection)
    item = pystac.Item(
        "landsat7-andros", shapely.geometry.mapping(shapely.box(*bbox)), list(bbox), None,
        {"eo:cloud_cover": 0.0, "platform": "landsat-7", "instruments": ["etm+"], "gsd": 300.0},
        start_datetime=start, end_datetime=end,
    )  # fmt: skip
    item.add_asset(
        "visual", pystac.Asset(f"./{cog.name}", title="True colour", media_type=pystac.MediaType.COG, roles=["data"])
    )
    EOExtension.ext(item.assets["visual"], add_if_missing=True).bands = [
        Band.create(name=name, common_name=name) for name in ("red", "green", "blue")
    ]
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.epsg, proj.transform, proj.shape = epsg, transform, shape
    collection.add_item(item)
    catalog.normalize_hrefs(str(OUT))
    item.assets["visual"].href = str(cog.resolve())
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    print(f"wrote {OUT / 'catalog.json'}")


if __name__ == "__main__":
    main()
