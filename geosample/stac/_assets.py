"""What the items say about their assets: keys, bands, native resolution, categorical or not, scale.

STAC metadata answers most questions (``eo:bands``/``bands``/``raster:bands``,
``proj:transform``, ``gsd``, ``proj:code`` falling back to ``proj:epsg``); where
it is silent, the first item's file header is read (one small request).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pystac
import rasterio
from rasterio.crs import CRS

from geosample.errors import SourceError
from geosample.stac._work import AssetSpec
from geosample.stac.observe import mask_kind
from geosample.stac.presets import S2_REFLECTANCE, asset_info
from geosample.stac.reader import gdal_env

Signer = Callable[[str], str]

_RASTER_TYPES = ("image/tiff", "image/jp2", "application/x-geotiff", "image/vnd.stac.geotiff")
_NOT_DATA = {"thumbnail", "overview", "metadata", "visual-preview"}
_METRES_PER_DEGREE = 111_320.0


def item_crs(item: pystac.Item, key: str | None = None) -> CRS | None:
    """The CRS of an item (or of one asset): ``proj:code``, falling back to ``proj:epsg``, asset level first."""
    sources: list[Mapping[str, Any]] = []
    if key is not None and key in item.assets:
        sources.append(item.assets[key].extra_fields)
    sources.append(item.properties)
    for fields in sources:
        code = fields.get("proj:code")
        if code:
            try:
                return CRS.from_user_input(code)
            except Exception:  # noqa: BLE001,S112 - an unparseable code is as good as none
                continue
        epsg = fields.get("proj:epsg")
        if epsg:
            try:
                return CRS.from_epsg(int(epsg))
            except Exception:  # noqa: BLE001,S112
                continue
    return None


def data_assets(item: pystac.Item) -> list[str]:
    """Keys of the item's raster data assets, in item order (the default ``--assets``)."""
    keys = []
    for key, asset in item.assets.items():
        media = (asset.media_type or "").lower()
        suffix = PurePosixPath(urlparse(asset.href).path).suffix.lower()
        raster = any(media.startswith(t) for t in _RASTER_TYPES) or (not media and suffix in (".tif", ".tiff", ".jp2"))
        roles = set(asset.roles or [])
        if raster and not (roles & _NOT_DATA and "data" not in roles):
            keys.append(key)
    return keys


def check_assets(requested: Sequence[str], available: Sequence[str], collection: str, where: str) -> None:
    """Raise a SourceError naming requested asset keys that are not ``available``, and listing those that are."""
    missing = [k for k in requested if k not in available]
    if missing:
        have = ", ".join(dict.fromkeys(available)) or "none"
        raise SourceError(
            f"unknown asset key(s) {', '.join(map(repr, missing))} in collection {collection!r} ({where}); "
            f"asset keys there: {have}"
        )


def _band_list(fields: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    for name in ("bands", "eo:bands", "raster:bands"):
        value = fields.get(name)
        if isinstance(value, list) and value:
            return value
    return []


def _asset_fields(item: pystac.Item, key: str, item_assets: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The asset's own fields, then the collection's ``item_assets`` entry for it."""
    out: list[Mapping[str, Any]] = []
    if key in item.assets:
        out.append(item.assets[key].extra_fields)
    if isinstance(item_assets.get(key), Mapping):
        out.append(item_assets[key])
    return out


def _band_names(key: str, bands: Sequence[Mapping[str, Any]], count: int) -> tuple[str, ...]:
    if count == 1:
        return (key,)
    names = []
    for i in range(count):
        meta = bands[i] if i < len(bands) else {}
        name = meta.get("common_name") or meta.get("eo:common_name") or meta.get("name") or f"b{i + 1}"
        names.append(f"{key}_{str(name).lower()}")
    return tuple(names)


def _common_names(bands: Sequence[Mapping[str, Any]], count: int) -> tuple[str | None, ...]:
    """Each band's STAC common name (``common_name``, or ``eo:common_name`` in STAC 1.1 ``bands``), where given."""
    out: list[str | None] = []
    for i in range(count):
        meta = bands[i] if i < len(bands) and isinstance(bands[i], Mapping) else {}
        name = meta.get("common_name") or meta.get("eo:common_name")
        out.append(str(name).lower() if name else None)
    return tuple(out)


def _all_bands(fields: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every band object of an asset: ``bands``, ``eo:bands`` and ``raster:bands`` (scale lives in the last)."""
    out = []
    for name in ("bands", "eo:bands", "raster:bands"):
        value = fields.get(name)
        if isinstance(value, list):
            out += [b for b in value if isinstance(b, Mapping)]
    return out


def _first_number(fields: Sequence[Mapping[str, Any]], *names: str) -> float | None:
    for f in fields:
        for band in [f, *_all_bands(f)]:
            for name in names:
                value = band.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    return float(value)
    return None


def _categorical(fields: Sequence[Mapping[str, Any]]) -> bool:
    for f in fields:
        for band in [f, *_all_bands(f)]:
            if any(k in band for k in ("classification:classes", "classification:bitfields")):
                return True
    return False


def _metadata_resolution(item: pystac.Item, key: str, fields: Sequence[Mapping[str, Any]]) -> float | None:
    """Native pixel size in metres from metadata, or None."""
    crs = item_crs(item, key)
    transform = next((f["proj:transform"] for f in fields if isinstance(f.get("proj:transform"), list)), None)
    if transform is None and isinstance(item.properties.get("proj:transform"), list) and len(item.assets) == 1:
        transform = item.properties["proj:transform"]
    if transform is not None and len(transform) >= 6 and crs is not None:
        pixel = abs(float(transform[4])) or abs(float(transform[0]))
        return pixel * _METRES_PER_DEGREE if crs.is_geographic else pixel
    size = _first_number(fields, "spatial_resolution", "raster:spatial_resolution", "gsd")
    if size is None and isinstance(item.properties.get("gsd"), int | float):
        size = float(item.properties["gsd"])
    if size is not None and crs is not None and crs.is_geographic and size < 1.0:
        size *= _METRES_PER_DEGREE
    return size


def describe_assets(
    items: Sequence[pystac.Item],
    keys: Sequence[str],
    *,
    collection: str,
    item_assets: Mapping[str, Any],
    preset: str | None,
    signer: Signer | None,
) -> tuple[tuple[AssetSpec, ...], float | None]:
    """The asset specs (band names, categorical, scale) and the finest native resolution in metres.

    ``items`` are matched items of the collection, best first; the first whose
    files can be read answers what the metadata does not.
    """
    item = items[0]
    specs = []
    resolutions = []
    for key in keys:
        fields = _asset_fields(item, key, item_assets)
        bands = next((_band_list(f) for f in fields if _band_list(f)), [])
        count = len(bands) if bands else None
        res = _metadata_resolution(item, key, fields)
        if count is None or res is None:
            count_read, res_read = _probe(items, key, signer)
            count = count if count is not None else count_read
            res = res if res is not None else res_read
        resolutions.append(res)
        info = asset_info(preset, collection, key)
        harmonizable = info.s2_offset or (key in S2_REFLECTANCE and "sentinel-2" in collection.lower())
        specs.append(
            AssetSpec(
                key=key,
                names=_band_names(key, bands, count),
                categorical=info.categorical or _categorical(fields),
                s2_offset=harmonizable,
                scale=info.scale if info.scale is not None else _first_number(fields, "scale", "raster:scale"),
                offset=info.offset if info.offset is not None else _first_number(fields, "offset", "raster:offset"),
                common_names=_common_names(bands, count),
            )
        )
    known = [r for r in resolutions if r is not None and r > 0]
    return tuple(specs), (min(known) if known else None)


def _probe(items: Sequence[pystac.Item], key: str, signer: Signer | None) -> tuple[int, float]:
    """Band count and pixel size (metres) of ``key`` from the first readable item's file header."""
    errors = []
    for item in items[:3]:
        if key not in item.assets:
            continue
        href = item.assets[key].get_absolute_href() or item.assets[key].href
        try:
            with gdal_env([href]), rasterio.open(signer(href) if signer else href) as src:
                res = abs(src.transform.e) or abs(src.transform.a)
                metres = res * _METRES_PER_DEGREE if src.crs is not None and src.crs.is_geographic else res
                return src.count, metres
        except Exception as exc:  # noqa: BLE001 - try the next item
            errors.append(f"{item.id}: {' '.join(str(exc).split())[:200]}")
    raise SourceError(f"cannot read asset {key!r} of the first matching items ({'; '.join(errors) or 'none has it'})")


def mask_asset(available: Sequence[str]) -> str | None:
    """The collection's cloud-mask asset key among ``available`` (Sentinel-2 ``scl``/``SCL``, Landsat ``qa_pixel``)."""
    return next((key for key in available if mask_kind(key) is not None), None)


def item_hrefs(item: pystac.Item, keys: Sequence[str]) -> dict[str, str]:
    """Absolute hrefs of the item's assets among ``keys``."""
    out = {}
    for key in keys:
        asset = item.assets.get(key)
        if asset is not None:
            out[key] = asset.get_absolute_href() or asset.href
    return out
