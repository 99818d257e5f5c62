"""Seeded Sentinel-2-like chips with known layouts, for any test that needs real-looking reflectance.

Built on ``data/examples/synthetic_stac.py`` (its spectral library, scene
classification and COG writer), so the demo and the tests share one set of
spectra. A *scene* is an array of surface codes (``water``, ``trees``,
``bare``, ``snow``, ``cloud``, ``shadow``, ``burned``, ...); :func:`expected`
says what a correct observation of it is, computed from the layout alone
(surface → observed class), never from index thresholds. :func:`serve_scenes`
writes scenes as COG items on a chip's exact grid, ready for ``rustac serve``
and the loopback file server, e.g. cloudy and clear candidates of one sample::

    scenes = [Scene("a-cloudy", quadrant_scene(64, cloud=(0.3, 0.3, 0.25)), when, cloud_cover=1.0),
              Scene("a-clear", quadrant_scene(64), when + 10 days, cloud_cover=5.0)]
    items = serve_scenes(files_root / "scenes", file_server.url + "/scenes", grid, scenes)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

EXAMPLES = Path(__file__).parents[1] / "data" / "examples"
QUADRANTS = ("nw", "ne", "sw", "se")
LAYOUT = {"nw": "water", "ne": "trees", "sw": "bare", "se": "snow"}
"""The default quadrant layout: one observed class in each quadrant."""


@cache
def synthetic() -> ModuleType:
    """``data/examples/synthetic_stac.py`` as a module."""
    spec = importlib.util.spec_from_file_location("synthetic_stac", EXAMPLES / "synthetic_stac.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def code(name: str) -> int:
    """A surface's code in scene arrays."""
    return synthetic().surface(name)


def quadrant_scene(
    size: int,
    layout: Mapping[str, str] = LAYOUT,
    *,
    cloud: tuple[float, float, float] | None = None,
    shadow: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """A square scene with one surface per quadrant (split at size // 2), optionally a disc of cloud and one of shadow.

    ``cloud``/``shadow`` are (centre x, centre y, radius) as fractions of the side.
    """
    scene = np.empty((size, size), dtype=np.uint8)
    h = size // 2
    for name, (rows, cols) in zip(
        QUADRANTS, [(slice(0, h), slice(0, h)), (slice(0, h), slice(h, None)), (slice(h, None), slice(0, h)),
                    (slice(h, None), slice(h, None))], strict=True,
    ):  # fmt: skip
        scene[rows, cols] = code(layout[name])
    for what, spec in (("shadow", shadow), ("cloud", cloud)):
        if spec is not None:
            yy, xx = (np.mgrid[:size, :size] + 0.5) / size
            scene[(xx - spec[0]) ** 2 + (yy - spec[1]) ** 2 <= spec[2] ** 2] = code(what)
    return scene


def expected(scene: np.ndarray, nodata: np.ndarray | None = None, *, spectral: bool = False) -> dict[str, Any]:
    """What observing ``scene`` must give, from its layout: nodata and cloud shares, observed shares per quadrant.

    With ``spectral`` (no mask band), cloud shadow is not seen as cloud: it is the vegetation it darkens.
    Shares are of valid, cloud-free pixels; the classes are water, vegetation, bare, snow_ice.
    """
    syn = synthetic()
    names = np.array(syn.SURFACES, dtype=object)[scene]
    observed = np.vectorize(syn.OBSERVED.get, otypes=[object])(names)
    if spectral:
        observed[names == "shadow"] = "vegetation"
    valid = np.ones(scene.shape, bool) if nodata is None else ~nodata
    cloud = (observed == "cloud") & valid
    clear = valid & ~cloud
    size = scene.shape[0]
    h = size // 2
    parts = {"nw": (slice(0, h), slice(0, h)), "ne": (slice(0, h), slice(h, None)),
             "sw": (slice(h, None), slice(0, h)), "se": (slice(h, None), slice(h, None))}  # fmt: skip

    def shares(region: tuple[slice, slice]) -> dict[str, float]:
        mine = clear[region]
        n = int(mine.sum())
        return {c: float(((observed[region] == c) & mine).sum() / n) for c in ("water", "vegetation", "bare",
                                                                            "snow_ice")} if n else {}  # fmt: skip

    return {
        "nodata_fraction": float(1 - valid.mean()),
        "cloud_fraction": float(cloud.sum() / valid.sum()) if valid.any() else None,
        "observed": shares((slice(None), slice(None))),
        "observed_quadrants": {q: shares(r) for q, r in parts.items()},
    }


@dataclasses.dataclass
class Scene:
    """One item to serve: its id, surfaces, date and what its metadata claims."""

    item_id: str
    scene: np.ndarray
    when: dt.datetime
    cloud_cover: float | None = None
    nodata: np.ndarray | None = None
    seed: int = 0


def serve_scenes(
    folder: Path, base_url: str, grid: Any, scenes: Sequence[Scene], *, margin: int = 4, collection: str = "scenes"
) -> list[dict[str, Any]]:
    """Write each scene as a Sentinel-2-like item whose pixels lie exactly on ``grid`` (a ChipGrid), with a margin.

    The scene array must have the grid's shape; the margin (of pixels repeating the edge) makes the items cover
    the chip. Returns the items with asset hrefs under ``base_url``.
    """
    syn = synthetic()
    res = grid.resolution
    x0 = grid.transform.c - margin * res
    y0 = grid.transform.f + margin * res
    items = []
    for s in scenes:
        padded = np.pad(s.scene, margin, mode="edge")
        nodata = np.pad(s.nodata, margin, mode="edge") if s.nodata is not None else None
        item = syn.write_s2_item(
            folder, s.item_id, padded, epsg=grid.epsg, x0=x0, y0=y0, when=s.when, res=res, cloud_cover=s.cloud_cover,
            seed=s.seed, collection=collection, nodata=nodata,
        )  # fmt: skip
        text = json.dumps(item).replace(f'"./{folder.name}/', f'"{base_url.rstrip("/")}/')
        items.append(json.loads(text))
    return items


def api_files(out: Path, items: Sequence[Mapping[str, Any]], collection: str = "scenes") -> list[Path]:
    """A collection and an items file for ``rustac serve``."""
    out.mkdir(parents=True, exist_ok=True)
    coll = {
        "type": "Collection", "stac_version": "1.1.0", "id": collection, "description": "synthetic scenes",
        "license": "CC0-1.0", "links": [],
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [["2000-01-01T00:00:00Z", None]]}},
    }  # fmt: skip
    (out / f"{collection}.collection.json").write_text(json.dumps(coll))
    (out / f"{collection}.items.json").write_text(json.dumps({"type": "FeatureCollection", "features": list(items)}))
    return [out / f"{collection}.collection.json", out / f"{collection}.items.json"]


def pair_plan(ds: Path, points: Sequence[tuple[float, float]], size: float, year: int = 2021) -> Any:
    """A plan of event pairs: per point a site with a ``before`` (first half of ``year``) and an ``after`` sample."""
    import geopandas as gpd
    import h3
    import pandas as pd

    from geosample.sampling._geometry import chip_footprints, utm_epsg

    rows = []
    for lon, lat in points:
        cell = h3.latlng_to_cell(lat, lon, 9)
        epsg = int(utm_epsg(np.array([lon]), np.array([lat]))[0])
        for phase, start, end in (("before", f"{year}-01-01", f"{year}-06-30T23:59:59"),
                                  ("after", f"{year}-07-01", f"{year}-12-31T23:59:59")):  # fmt: skip
            rows.append({"sample_id": f"{cell}-{phase}", "site_id": cell, "h3": cell, "h3_res": 9, "lon": lon,
                         "lat": lat, "stratum": "x", "time_bin": str(year), "phase": phase, "event_type": "test",
                         "start_datetime": pd.Timestamp(start, tz="UTC"), "end_datetime": pd.Timestamp(end, tz="UTC"),
                         "chip_size_m": float(size), "epsg": epsg})  # fmt: skip
    frame = pd.DataFrame(rows)
    geometry = chip_footprints(frame["lon"].to_numpy(), frame["lat"].to_numpy(), frame["epsg"].to_numpy(), size)
    plan = gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326")
    ds.mkdir(parents=True, exist_ok=True)
    plan.to_parquet(ds / "plan.parquet", index=False)
    return plan


def static_catalog(root: Path, items: Sequence[Mapping[str, Any]], collection: str = "scenes") -> Path:
    """A static catalog (catalog.json → collection.json → items) under ``root`` for items whose hrefs are absolute."""
    root.mkdir(parents=True, exist_ok=True)
    links = [{"rel": "root", "href": "../catalog.json"}, {"rel": "parent", "href": "../catalog.json"}]
    coll = {
        "type": "Collection", "stac_version": "1.1.0", "id": collection, "description": "synthetic scenes",
        "license": "CC0-1.0", "links": list(links),
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [["2000-01-01T00:00:00Z", None]]}},
    }  # fmt: skip
    for item in items:
        folder = root / collection / item["id"]
        folder.mkdir(parents=True, exist_ok=True)
        body = {**item, "links": [{"rel": "root", "href": "../../catalog.json"},
                                  {"rel": "parent", "href": "../collection.json"},
                                  {"rel": "collection", "href": "../collection.json"}]}  # fmt: skip
        (folder / f"{item['id']}.json").write_text(json.dumps(body))
        coll["links"].append({"rel": "item", "href": f"./{item['id']}/{item['id']}.json"})
    (root / collection / "collection.json").write_text(json.dumps(coll))
    catalog = {"type": "Catalog", "stac_version": "1.1.0", "id": "scenes", "description": "synthetic scenes",
               "links": [{"rel": "root", "href": "./catalog.json"},
                         {"rel": "child", "href": f"./{collection}/collection.json"}]}  # fmt: skip
    (root / "catalog.json").write_text(json.dumps(catalog))
    return root / "catalog.json"


FATES = ("clear", "hole", "cloudy_meta", "cloudy_pixels", "nodata")
"""What an archive holds for a sample: a clear item, nothing (a hole), an item whose ``eo:cloud_cover`` says 95 %
(``fetch --max-cloud`` drops it), an item that says 5 % but whose pixels are mostly cloud (``--max-chip-cloud``
rejects the chip), or one whose chip is mostly nodata (``--min-valid`` rejects it)."""


def archive_with_holes(
    samples: Any, folder: Path, base_url: str, fate: Any, *, resolution: float = 20.0, collection: str = "scenes"
) -> list[dict[str, Any]]:
    """Items for every sample of ``samples`` (plan and reserve rows) as ``fate(row)`` (one of :data:`FATES`) says.

    Each item is one Sentinel-2-like scene on the sample's chip grid at ``resolution``, dated in the middle of
    the sample's window; a ``hole`` gets no item.
    """
    import pandas as pd

    from geosample.stac.grid import chip_grid

    items = []
    for row in samples.itertuples(index=False):
        what = fate(row)
        assert what in FATES, what
        if what == "hole":
            continue
        grid = chip_grid(row.lon, row.lat, int(row.epsg), float(row.chip_size_m), resolution)
        size = grid.width
        start = pd.Timestamp(row.start_datetime)
        when = (start + (pd.Timestamp(row.end_datetime) - start) / 2).to_pydatetime()
        cloud = (0.5, 0.5, 0.45) if what == "cloudy_pixels" else None
        nodata = None
        if what == "nodata":
            nodata = np.zeros((size, size), dtype=bool)
            nodata[:, : int(size * 0.75)] = True
        scene = Scene(
            f"{row.sample_id}-item", quadrant_scene(size, cloud=cloud), when,
            cloud_cover=95.0 if what == "cloudy_meta" else 5.0, nodata=nodata,
        )  # fmt: skip
        items += serve_scenes(folder, base_url, grid, [scene], collection=collection)
    return items
