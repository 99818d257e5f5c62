"""Named imagery sources: a STAC API, a collection, default assets and how to treat each asset.

A preset fills the settings the user leaves out (``--stac``, ``--collection``,
``--assets``, ``--harmonize``, ``--sign``, ``--resolution``) and knows, per
asset key, whether it is categorical (read with nearest resampling), whether
it carries Sentinel-2's processing-baseline offset, and its scale/offset.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from geosample.errors import ConfigError

__all__ = ["PRESETS", "AssetInfo", "Preset", "apply_preset", "get_preset", "needs_harmonize"]

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"

S2_BASELINE_04_START = dt.datetime(2022, 1, 25, tzinfo=dt.UTC)
"""Scenes processed from this day carry processing baseline 04.00 or later (and its +1000 offset)."""
S2_OFFSET = 1000
"""The BOA_ADD_OFFSET of baseline 04.00+ reflectance digital numbers, removed by harmonisation."""


@dataclasses.dataclass(frozen=True)
class AssetInfo:
    """How to treat one asset key."""

    categorical: bool = False
    """Class codes or bit flags: always read with nearest resampling."""
    s2_offset: bool = False
    """A Sentinel-2 L2A reflectance band that carries the +1000 offset from baseline 04.00."""
    scale: float | None = None
    """Multiplier to physical units (overrides ``raster:bands``)."""
    offset: float | None = None
    """Added after ``scale`` (overrides ``raster:bands``)."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named source and its defaults."""

    name: str
    """What ``--preset`` takes."""
    description: str
    """One line for the README and ``--help``."""
    stac: str
    """STAC API root."""
    collection: str
    """Collection id."""
    assets: tuple[str, ...]
    """Default asset keys, in band order."""
    harmonize: bool = False
    """Default of ``--harmonize``."""
    sign: str | None = None
    """Default of ``--sign``."""
    resolution: float | None = None
    """Default of ``--resolution`` (metres), where the native size is in degrees or uneven."""
    asset_info: Mapping[str, AssetInfo] = dataclasses.field(default_factory=dict)
    """Per asset key; keys not listed are continuous, without scale."""


_S2_ES_BANDS = (
    "coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09", "swir16",
    "swir22",
)  # fmt: skip
_S2_PC_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
S2_REFLECTANCE = frozenset(_S2_ES_BANDS + _S2_PC_BANDS)
"""Asset keys of Sentinel-2 L2A reflectance bands (Earth Search and Planetary Computer names)."""

# Reflectance = DN * 1e-4 once the baseline offset is removed (so offset 0, not raster:bands' -0.1).
_S2_REFL = AssetInfo(s2_offset=True, scale=1e-4, offset=0.0)
# Landsat Collection 2 Level-2 surface reflectance and surface temperature (USGS product guide).
_LS_SR = AssetInfo(scale=2.75e-5, offset=-0.2)
_LS_ST = AssetInfo(scale=0.00341802, offset=149.0)
_CATEGORICAL = AssetInfo(categorical=True)


def _info(mapping: Mapping[str, AssetInfo]) -> Mapping[str, AssetInfo]:
    return MappingProxyType(dict(mapping))


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in (
            Preset(
                "earth-search-s2",
                "Sentinel-2 L2A COGs on AWS through Element 84's Earth Search (no signing)",
                EARTH_SEARCH,
                "sentinel-2-l2a",
                ("red", "green", "blue", "nir"),
                harmonize=True,
                asset_info=_info({**{k: _S2_REFL for k in _S2_ES_BANDS}, "scl": _CATEGORICAL}),
            ),
            Preset(
                "pc-s2",
                "Sentinel-2 L2A on Microsoft Planetary Computer (SAS-signed)",
                PLANETARY_COMPUTER,
                "sentinel-2-l2a",
                ("B04", "B03", "B02", "B08"),
                harmonize=True,
                sign="planetary-computer",
                asset_info=_info({**{k: _S2_REFL for k in _S2_PC_BANDS}, "SCL": _CATEGORICAL}),
            ),
            Preset(
                "pc-landsat",
                "Landsat Collection 2 Level-2 on Microsoft Planetary Computer (SAS-signed)",
                PLANETARY_COMPUTER,
                "landsat-c2-l2",
                ("red", "green", "blue", "nir08"),
                sign="planetary-computer",
                asset_info=_info(
                    {
                        **{k: _LS_SR for k in ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")},
                        "lwir11": _LS_ST,
                        "lwir": _LS_ST,
                        **{k: _CATEGORICAL for k in ("qa_pixel", "qa_radsat", "qa_aerosol", "qa")},
                    }
                ),
            ),
            Preset(
                "pc-naip",
                "NAIP aerial imagery (USA, ~0.6 m, R,G,B,NIR) on Microsoft Planetary Computer (SAS-signed)",
                PLANETARY_COMPUTER,
                "naip",
                ("image",),
                sign="planetary-computer",
            ),
            Preset(
                "pc-worldcover",
                "ESA WorldCover 10 m land cover on Microsoft Planetary Computer (SAS-signed)",
                PLANETARY_COMPUTER,
                "esa-worldcover",
                ("map",),
                sign="planetary-computer",
                resolution=10.0,
                asset_info=_info({"map": _CATEGORICAL}),
            ),
            Preset(
                "pc-cop-dem",
                "Copernicus DEM GLO-30 on Microsoft Planetary Computer (SAS-signed)",
                PLANETARY_COMPUTER,
                "cop-dem-glo-30",
                ("data",),
                sign="planetary-computer",
                resolution=30.0,
            ),
        )
    }
)
"""Every preset by name."""


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or a ConfigError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown --preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def apply_preset(values: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the settings a preset provides where ``values`` leaves them unset (None or empty)."""
    out = dict(values)
    name = out.get("preset")
    if not name:
        return out
    preset = get_preset(str(name))
    defaults: dict[str, Any] = {
        "stac": preset.stac,
        "collection": (preset.collection,),
        "assets": preset.assets,
        "harmonize": preset.harmonize,
        "sign": preset.sign,
        "resolution": preset.resolution,
    }
    for key, value in defaults.items():
        given = out.get(key)
        if given is None or (isinstance(given, list | tuple) and not given):
            out[key] = value
    return out


def asset_info(preset: str | None, collection: str, key: str) -> AssetInfo:
    """What the preset (if it is for ``collection``) knows about asset ``key``."""
    if preset:
        p = get_preset(preset)
        if p.collection == collection:
            return p.asset_info.get(key, AssetInfo())
    return AssetInfo()


def needs_harmonize(properties: Mapping[str, Any], datetime: dt.datetime | None) -> bool:
    """Whether a Sentinel-2 L2A item's reflectance still carries the +1000 offset of baseline 04.00+.

    ``s2:processing_baseline`` decides (04.00 and later), falling back to the
    date (from 25 January 2022); Earth Search's ``earthsearch:boa_offset_applied:
    true`` means the offset was already removed.
    """
    if properties.get("earthsearch:boa_offset_applied") is True:
        return False
    baseline = properties.get("s2:processing_baseline", properties.get("sentinel:processing_baseline"))
    if baseline is not None:
        try:
            return float(baseline) >= 4.0
        except (TypeError, ValueError):
            pass
    return datetime is not None and datetime >= S2_BASELINE_04_START
