"""What items say about their assets: CRS (proj:code, then proj:epsg), data assets, bands, resolution."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pystac
import pytest

from geosample.errors import SourceError
from geosample.stac._assets import check_assets, data_assets, describe_assets, item_crs

COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def item(properties: dict[str, Any], assets: dict[str, dict[str, Any]]) -> pystac.Item:
    out = pystac.Item("i", {"type": "Point", "coordinates": [15, 45]}, [15, 45, 15, 45],
                      dt.datetime(2021, 5, 1, tzinfo=dt.UTC), properties)  # fmt: skip
    for key, fields in assets.items():
        fields = dict(fields)
        href = fields.pop("href", f"/data/{key}.tif")
        out.add_asset(key, pystac.Asset(href, media_type=fields.pop("type", COG), roles=fields.pop("roles", ["data"]),
                                        extra_fields=fields))  # fmt: skip
    return out


def test_item_crs_prefers_proj_code_then_epsg_asset_first() -> None:
    assert item_crs(item({"proj:code": "EPSG:32633", "proj:epsg": 4326}, {})).to_epsg() == 32633
    assert item_crs(item({"proj:epsg": 32634}, {})).to_epsg() == 32634
    both = item({"proj:epsg": 32634}, {"b": {"proj:code": "EPSG:4326"}})
    assert item_crs(both, "b").to_epsg() == 4326 and item_crs(both).to_epsg() == 32634
    assert item_crs(item({"proj:code": "not a crs"}, {})) is None
    assert item_crs(item({}, {})) is None


def test_data_assets_keep_item_order_and_skip_previews() -> None:
    it = item({}, {
        "thumbnail": {"href": "/t.jpg", "type": "image/jpeg", "roles": ["thumbnail"]},
        "B04": {}, "B03": {},
        "metadata": {"href": "/m.xml", "type": "application/xml", "roles": ["metadata"]},
        "visual": {"roles": ["visual"]},
        "overview": {"roles": ["overview"]},
        "legacy": {"href": "/x.TIF", "type": None, "roles": None},
    })  # fmt: skip
    assert data_assets(it) == ["B04", "B03", "visual", "legacy"]


def test_check_assets_lists_what_exists() -> None:
    with pytest.raises(
        SourceError, match=r"unknown asset key\(s\) 'B99' in collection 'c' \(here\); asset keys there: a, b"
    ):
        check_assets(["a", "B99"], ["a", "b", "a"], "c", "here")
    check_assets(["a"], ["a", "b"], "c", "here")


def test_describe_assets_from_metadata() -> None:
    it = item(
        {"proj:code": "EPSG:32633"},
        {
            "red": {"proj:transform": [10, 0, 5e5, 0, -10, 5e6], "raster:bands": [{"scale": 1e-4, "offset": -0.1}]},
            "swir16": {"proj:transform": [20, 0, 500000, 0, -20, 5000000], "raster:bands": [{}]},
            "image": {"eo:bands": [{"name": "R", "common_name": "red"}, {"name": "NIR"}], "gsd": 0.6},
            "scl": {"raster:bands": [{"classification:classes": [{"value": 4, "description": "vegetation"}]}],
                    "proj:transform": [20, 0, 0, 0, -20, 0]},
            "dem": {"proj:code": "EPSG:4326", "proj:transform": [0.000277, 0, 15, 0, -0.000277, 45], "bands": [{}]},
        },
    )  # fmt: skip
    specs, native = describe_assets([it], ["red", "swir16", "scl", "dem"], collection="x", item_assets={}, preset=None,
                                    signer=None)  # fmt: skip
    assert native == 10.0  # the finest asset
    red, swir, scl, dem = specs
    assert red.names == ("red",) and red.scale == 1e-4 and red.offset == -0.1 and not red.categorical
    assert scl.categorical and not swir.categorical
    assert not red.s2_offset  # only Sentinel-2 collections carry the baseline offset
    specs, native = describe_assets([it], ["dem"], collection="x", item_assets={}, preset=None, signer=None)
    assert native == pytest.approx(0.000277 * 111_320)  # degrees to metres
    specs, native = describe_assets([it], ["image"], collection="x", item_assets={}, preset=None, signer=None)
    assert specs[0].names == ("image_red", "image_nir") and native == 0.6
    specs, _ = describe_assets([it], ["red"], collection="sentinel-2-l2a", item_assets={}, preset=None, signer=None)
    assert specs[0].s2_offset
    # A preset overrides the item's metadata (Earth Search's offset of -0.1 is unreliable).
    specs, _ = describe_assets([it], ["red"], collection="sentinel-2-l2a", item_assets={}, preset="earth-search-s2",
                               signer=None)  # fmt: skip
    assert specs[0].scale == 1e-4 and specs[0].offset == 0.0 and specs[0].s2_offset


def test_describe_assets_reads_the_header_when_metadata_is_silent(files_root, s2: dict) -> None:
    sid = next(s for s, r in s2["roles"].items() if r == "plain")
    item_id = s2["expect"][sid]["cloud"][0]
    it = item({}, {"red": {"href": str(files_root / "sentinel-2-l2a" / item_id / "red.tif")}})
    specs, native = describe_assets([it], ["red"], collection="x", item_assets={}, preset=None, signer=None)
    assert specs[0].names == ("red",) and native == 10.0
    missing = item({}, {"red": {"href": str(files_root / "nothing.tif")}})
    with pytest.raises(SourceError, match="cannot read asset 'red'"):
        describe_assets([missing], ["red"], collection="x", item_assets={}, preset=None, signer=None)
