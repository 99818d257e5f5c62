"""Per-chip observations: what the chip's own pixels show, measured where they are read.

:func:`observe` is a vectorised function of a chip array and its band names
(plus, optionally, the collection's cloud-mask band read onto the same grid).
It gives the share of nodata pixels, the share of valid pixels that are cloud
or cloud shadow, and the *observed cover*: the share of valid, cloud-free
pixels in each of ``water``, ``vegetation``, ``bare`` and ``snow_ice`` that the
bands can tell apart, for the chip and for each quadrant. ``fetch`` calls it
on every chip it writes; any other read path can call it on its own arrays.

Bands are recognised by their STAC common names (``eo:bands``/``bands``
``common_name``: blue, green, red, nir, nir08, swir16, swir22), by a band name
that is one (``red``, ``visual_red``), or by a Sentinel-2 MSI band id (``B04``).

Cloud, in order of preference:

* ``mask:scl`` — Sentinel-2 L2A scene classification: classes 3 (cloud
  shadow), 8 and 9 (cloud, medium and high probability) and 10 (thin cirrus)
  are cloud; 0 (no data) is nodata (ESA, Sentinel-2 Level-2A ATBD,
  S2-PDGS-MPC-ATBD-L2A, scene classification).
* ``mask:qa_pixel`` — Landsat Collection 2 QA_PIXEL bits 1 (dilated cloud),
  2 (cirrus), 3 (cloud) and 4 (cloud shadow) are cloud; bit 0 (fill) is
  nodata (USGS, Landsat 8-9 Collection 2 Level-2 Science Product Guide,
  LSDS-1619; bit 2 is unused on Landsat 4-7, LSDS-1618).
* ``spectral`` — the first-pass cloud tests of Fmask (Zhu & Woodcock 2012,
  Remote Sens. Environ. 118:83-94) without the thermal test: swir22 > 0.03,
  NDSI < 0.8, NDVI < 0.8, whiteness < 0.7, HOT = blue − 0.5·red − 0.08 > 0 and
  nir/swir16 > 0.75, on surface reflectance. It finds clouds, not their
  shadows (which need the sun's geometry), and needs blue, green, red, nir,
  swir16 and swir22 with a known reflectance scale.

Observed cover (on valid, cloud-free pixels; the first test that claims a
pixel wins, in this order):

* ``snow_ice``: NDSI = (green − swir16)/(green + swir16) > 0.4 with nir > 0.11
  and green > 0.10 (Hall, Riggs & Salomonson 1995, Remote Sens. Environ.
  54:127-140, the MODIS SNOMAP rules); needs green, nir, swir16 as reflectance.
* ``water``: MNDWI = (green − swir16)/(green + swir16) > 0 (Xu 2006, Int. J.
  Remote Sens. 27:3025-3033), or without swir16 NDWI = (green − nir)/(green +
  nir) > 0 (McFeeters 1996, Int. J. Remote Sens. 17:1425-1432). Where snow
  cannot be told apart (no swir16 or no reflectance scale), snow counts as water.
* ``vegetation``: NDVI = (nir − red)/(nir + red) > 0.2, and ``bare`` NDVI ≤ 0.2
  (0.2 is the bare-soil NDVI of Sobrino, Jiménez-Muñoz & Paolini 2004, Remote
  Sens. Environ. 90:434-440). ``bare`` needs the water test too (water has a
  low NDVI). Built-up land is not told apart from bare soil: the usual index,
  NDBI (Zha, Gao & Ni 2003), is positive on both, so ``built`` is never
  observed and built surfaces fall in ``bare`` ("not vegetated").

Every cover class needs cloud screening: without it a cloud would be counted as
cover, so ``observed`` is null. A class missing from ``observed`` was not
observable; pixels no test claimed (e.g. no water test) are the remainder.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "CLASSES",
    "CODE_COLOURS",
    "CODE_NAMES",
    "MASK_BANDS",
    "Observation",
    "ObservationPlan",
    "band_roles",
    "observation_plan",
    "observe",
]

CLASSES = ("water", "vegetation", "bare", "snow_ice", "built")
"""Observed cover classes, as in ``chips.parquet``'s ``observed`` (``built`` is never observable, see above)."""
QUADRANTS = ("nw", "ne", "sw", "se")

NODATA, CLOUD, WATER, VEGETATION, BARE, SNOW_ICE, UNCLAIMED = range(7)
CODE_NAMES = {
    NODATA: "nodata", CLOUD: "cloud", WATER: "water", VEGETATION: "vegetation", BARE: "bare",
    SNOW_ICE: "snow_ice", UNCLAIMED: "unclaimed",
}  # fmt: skip
"""Per-pixel codes of an observation map (``observe(..., with_map=True).classes``)."""
CODE_COLOURS = {
    NODATA: (0, 0, 0, 0), CLOUD: (255, 255, 255, 255), WATER: (31, 120, 180, 255), VEGETATION: (51, 160, 44, 255),
    BARE: (202, 178, 128, 255), SNOW_ICE: (166, 206, 227, 255), UNCLAIMED: (150, 150, 150, 255),
}  # fmt: skip
"""A QGIS-ready colour table for those codes."""
_CLASS_CODE = {"water": WATER, "vegetation": VEGETATION, "bare": BARE, "snow_ice": SNOW_ICE}

# Thresholds (sources in the module docstring and the README).
NDVI_VEGETATION = 0.2
MNDWI_WATER = 0.0
NDWI_WATER = 0.0
NDSI_SNOW = 0.4
NIR_SNOW = 0.11
GREEN_SNOW = 0.10
FMASK_SWIR22 = 0.03
FMASK_NDSI = 0.8
FMASK_NDVI = 0.8
FMASK_WHITENESS = 0.7
FMASK_HOT = 0.08
FMASK_NIR_SWIR16 = 0.75
SCL_CLOUD = (3, 8, 9, 10)
SCL_NODATA = (0,)
QA_CLOUD_BITS = 0b11110  # bits 1-4: dilated cloud, cirrus, cloud, cloud shadow
QA_FILL_BIT = 0b1
_SCL_CLOUD_LUT = np.isin(np.arange(256), SCL_CLOUD)
_SCL_NODATA_LUT = np.isin(np.arange(256), SCL_NODATA)

MASK_BANDS = {"scl": "scl", "qa_pixel": "qa_pixel"}
"""Cloud-mask bands by (lower-case) name: Sentinel-2 L2A's scene classification, Landsat C2's QA_PIXEL."""

COMMON_NAMES = frozenset(
    "coastal blue green red yellow pan rededge rededge071 rededge075 rededge078 nir nir08 nir09 cirrus "
    "swir16 swir22 lwir lwir11 lwir12".split()
)
"""STAC ``eo:bands`` common names."""
_BAND_IDS = {
    "b02": "blue", "b03": "green", "b04": "red", "b08": "nir", "b8a": "nir08", "b11": "swir16", "b12": "swir22",
}  # fmt: skip
"""Sentinel-2 MSI band ids (the same in every Sentinel-2 catalogue) → common names."""
_ROLES = ("blue", "green", "red", "nir", "swir16", "swir22")

_NEEDS = {
    "water": "green and swir16 (or nir)",
    "vegetation": "red and nir",
    "bare": "red, nir, green and swir16 (or nir)",
    "snow_ice": "green, nir and swir16 as reflectance (a known scale)",
    "built": "no band set (built-up land and bare soil cannot be told apart by spectral indices)",
}
_SPECTRAL_NEEDS = "blue, green, red, nir, swir16 and swir22 as reflectance"


def common_name(name: str, common: str | None = None) -> str | None:
    """The common name of one band: its STAC ``common_name``, else what its name says, else None."""
    for text in (common, name):
        if not text:
            continue
        low = str(text).lower()
        tail = low.rsplit("_", 1)[-1]
        for candidate in (low, tail):
            if candidate in COMMON_NAMES:
                return candidate
            if candidate in _BAND_IDS:
                return _BAND_IDS[candidate]
    return None


def band_roles(bands: Sequence[str], common_names: Sequence[str | None] | None = None) -> dict[str, int]:
    """Index of the blue, green, red, nir, swir16 and swir22 bands among ``bands`` (first match).

    ``nir08`` stands in for ``nir`` when there is no broad near-infrared band.
    """
    commons = list(common_names) if common_names is not None else [None] * len(bands)
    found: dict[str, int] = {}
    for i, name in enumerate(bands):
        c = common_name(name, commons[i] if i < len(commons) else None)
        if c is not None and c not in found:
            found[c] = i
    roles = {role: found[role] for role in _ROLES if role in found}
    if "nir" not in roles and "nir08" in found:
        roles["nir"] = found["nir08"]
    return roles


def mask_kind(name: str) -> str | None:
    """``scl`` or ``qa_pixel`` when ``name`` is a cloud-mask band (case-insensitive), else None."""
    return MASK_BANDS.get(str(name).lower())


@dataclasses.dataclass(frozen=True)
class ObservationPlan:
    """What can be observed on chips with given bands: decided once per collection, applied to every chip."""

    roles: tuple[tuple[str, int], ...]
    """(common name, band index) of the recognised reflectance bands."""
    calibrated: bool
    """The recognised bands are reflectance once ``gains``/``offsets`` are applied."""
    mask: str | None
    """``scl``/``qa_pixel``: the cloud-mask band's kind, when there is one."""
    mask_index: int | None
    """Its index among the chip's bands when it is one of them (else it comes as a separate array)."""
    cloud_method: str | None
    """``mask:<band>``, ``spectral`` or None."""
    classes: tuple[str, ...]
    """Observable cover classes."""
    snow_separated: bool
    """Whether the snow test runs before the water and NDVI tests."""

    @property
    def role(self) -> dict[str, int]:
        """Common name → band index."""
        return dict(self.roles)

    def missing(self) -> dict[str, str]:
        """Unobservable things → the bands they need, for messages and the record."""
        out = {c: _NEEDS[c] for c in CLASSES if c not in self.classes}
        if self.cloud_method is None:
            out["cloud"] = f"a cloud-mask band (scl, qa_pixel) or {_SPECTRAL_NEEDS}"
        return out

    def describe(self) -> dict[str, Any]:
        """The plan as YAML-ready values (recorded in ``geosample.yaml``)."""
        return {
            "bands": {name: index for name, index in self.roles},
            "cloud_method": self.cloud_method,
            "classes": list(self.classes),
            "calibrated": self.calibrated,
            "not_observable": self.missing(),
        }


@lru_cache(maxsize=256)
def _plan(
    bands: tuple[str, ...], commons: tuple[str | None, ...], calibrated: tuple[bool, ...], mask: str | None
) -> ObservationPlan:
    roles = band_roles(bands, commons)
    mask_index = next((i for i, b in enumerate(bands) if mask_kind(b) is not None), None)
    kind = mask or (mask_kind(bands[mask_index]) if mask_index is not None else None)
    has = set(roles)
    absolute = bool(roles) and all(calibrated[i] for i in roles.values())
    if kind is not None:
        cloud = f"mask:{kind}"
    elif absolute and has >= set(_ROLES):
        cloud = "spectral"
    else:
        cloud = None
    classes: list[str] = []
    snow = absolute and {"green", "nir", "swir16"} <= has
    water = "green" in has and ("swir16" in has or "nir" in has)
    if cloud is not None:
        if water:
            classes.append("water")
        if {"red", "nir"} <= has:
            classes.append("vegetation")
            if water:
                classes.append("bare")
        if snow:
            classes.append("snow_ice")
    return ObservationPlan(
        tuple(sorted(roles.items())), absolute, kind, mask_index if mask is None else None, cloud, tuple(classes), snow
    )


def observation_plan(
    bands: Sequence[str],
    *,
    common_names: Sequence[str | None] | None = None,
    calibrated: Sequence[bool] | bool = False,
    mask: str | None = None,
) -> ObservationPlan:
    """What chips with these bands can show (cached).

    Args:
        bands: The chip's band names, in file order.
        common_names: Their STAC common names where known (None elsewhere).
        calibrated: Per band (or for all): the values are surface reflectance once the
            chip's gains/offsets are applied (a known scale, or float reflectance).
        mask: ``scl`` or ``qa_pixel`` when the collection's cloud-mask band is read beside the
            chip (not one of ``bands``); a mask band among ``bands`` is found by its name.
    """
    n = len(bands)
    commons = tuple(common_names) if common_names is not None else (None,) * n
    flags = (bool(calibrated),) * n if isinstance(calibrated, bool) else tuple(bool(c) for c in calibrated)
    return _plan(tuple(str(b) for b in bands), commons, flags, mask)


@dataclasses.dataclass
class Observation:
    """What one chip shows."""

    nodata_fraction: float
    """Share of the chip's pixels with no data (in any band, or in the mask band)."""
    cloud_fraction: float | None
    """Share of valid pixels that are cloud or cloud shadow; None when it cannot be measured."""
    cloud_method: str | None
    """``mask:<band>``, ``spectral`` or None."""
    observed: dict[str, float] | None
    """Observable class → share of valid, cloud-free pixels; None when no class is observable (or no pixel is)."""
    observed_quadrants: dict[str, dict[str, float]] | None
    """The same per quadrant ``nw``, ``ne``, ``sw``, ``se``."""
    classes: np.ndarray | None = None
    """Per-pixel codes (:data:`CODE_NAMES`), when asked for."""

    @property
    def valid_fraction(self) -> float:
        """Share of pixels with data."""
        return 1.0 - self.nodata_fraction

    def columns(self) -> dict[str, Any]:
        """The ``chips.parquet`` columns (JSON text for the two objects)."""
        return {
            "nodata_fraction": self.nodata_fraction,
            "cloud_fraction": self.cloud_fraction,
            "cloud_method": self.cloud_method,
            "observed": None if self.observed is None else json.dumps(self.observed),
            "observed_quadrants": None if self.observed_quadrants is None else json.dumps(self.observed_quadrants),
        }


def observe(
    data: np.ndarray,
    bands: Sequence[str],
    *,
    common_names: Sequence[str | None] | None = None,
    gains: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    calibrated: Sequence[bool] | bool | None = None,
    mask: np.ndarray | None = None,
    mask_band: str | None = None,
    plan: ObservationPlan | None = None,
    with_map: bool = False,
) -> Observation:
    """Measure nodata, cloud and observed cover on one chip.

    Args:
        data: (bands, height, width) chip values; a masked array marks nodata (else every pixel is valid).
        bands: Band names in file order.
        common_names: STAC common names of the bands, where known.
        gains: Per band, reflectance = value × gain + offset (default 1).
        offsets: Per band (default 0).
        calibrated: Per band (or for all): the result is surface reflectance; default: the array is float.
        mask: The cloud-mask band on the chip's grid, (height, width), when it is not among ``bands``.
        mask_band: Its name (``scl``, ``SCL``, ``qa_pixel``).
        plan: A ready :func:`observation_plan` (for many chips with the same bands).
        with_map: Also return the per-pixel codes (:attr:`Observation.classes`).
    """
    n_bands, height, width = data.shape
    if plan is None:
        if calibrated is None:
            calibrated = bool(np.issubdtype(data.dtype, np.floating)) or gains is not None
        kind = mask_kind(mask_band) if mask_band is not None else None
        plan = observation_plan(bands, common_names=common_names, calibrated=calibrated, mask=kind)
    invalid = np.ma.getmaskarray(data).any(axis=0) if np.ma.isMaskedArray(data) else np.zeros((height, width), bool)
    values = np.ma.getdata(data)
    cloud = None
    if plan.mask is not None:
        if plan.mask_index is not None:
            mask = values[plan.mask_index]
        if mask is not None:
            if np.ma.isMaskedArray(mask):
                invalid = invalid | np.ma.getmaskarray(mask)
                mask = np.ma.getdata(mask)
            if plan.mask == "scl":
                classes = mask.astype(np.uint8, copy=False)
                invalid = invalid | _SCL_NODATA_LUT[classes]
                cloud = _SCL_CLOUD_LUT[classes]
            else:
                qa = mask.astype(np.uint16, copy=False)
                invalid = invalid | ((qa & QA_FILL_BIT) != 0)
                cloud = (qa & QA_CLOUD_BITS) != 0
    needed = {"green", "red", "nir", "swir16"} if plan.classes else set()
    if plan.cloud_method == "spectral":
        needed = set(_ROLES)
    bands, unit = _reflectance(values, plan.role, needed, gains, offsets, plan.cloud_method == "spectral")
    # Unsigned digital numbers used as they are: never negative (and 0, nodata, is masked), so sums are positive.
    dn = unit != 1.0 and values.dtype.kind == "u"
    if plan.cloud_method == "spectral":
        cloud = _fmask_clouds(bands)
    valid = ~invalid
    n_valid = int(np.count_nonzero(valid))
    total = height * width
    nodata_fraction = 1.0 - n_valid / total if total else 1.0
    cloudy = cloud & valid if cloud is not None else None
    cloud_fraction = None
    if cloudy is not None and n_valid:
        cloud_fraction = int(np.count_nonzero(cloudy)) / n_valid
    if not plan.classes or cloudy is None:
        classes = None
        if with_map:
            classes = np.where(valid, UNCLAIMED, NODATA).astype(np.uint8)
            if cloudy is not None:
                classes[cloudy] = CLOUD
        return Observation(nodata_fraction, cloud_fraction, plan.cloud_method, None, None, classes)
    clear = valid & ~cloudy
    claimed = np.zeros((height, width), dtype=bool)
    found: dict[str, np.ndarray] = {}
    g, n = bands["green"], bands["nir"]
    swir = bands.get("swir16")
    # The tests in order of priority: each claims only pixels no earlier test claimed.
    if "snow_ice" in plan.classes:
        assert swir is not None
        found["snow_ice"] = _above(g, swir, NDSI_SNOW, dn) & (n > NIR_SNOW / unit) & (g > GREEN_SNOW / unit) & clear
        claimed |= found["snow_ice"]
    if "water" in plan.classes:
        wet = _above(g, swir, MNDWI_WATER, dn) if swir is not None else _above(g, n, NDWI_WATER, dn)
        found["water"] = wet & clear & ~claimed
        claimed |= found["water"]
    if "vegetation" in plan.classes:
        red = bands["red"]
        green_leaves = _above(n, red, NDVI_VEGETATION, dn)
        found["vegetation"] = green_leaves & clear & ~claimed
        claimed |= found["vegetation"]
        if "bare" in plan.classes:
            found["bare"] = ~green_leaves & clear & ~claimed
            if not dn:
                found["bare"] &= (n + red) > 0
    h2, w2 = height // 2, width // 2
    parts = ((slice(0, h2), slice(0, w2)), (slice(0, h2), slice(w2, None)), (slice(h2, None), slice(0, w2)),
             (slice(h2, None), slice(w2, None)))  # fmt: skip
    n_clear = [int(np.count_nonzero(clear[p])) for p in parts]
    counts = {c: [int(np.count_nonzero(found[c][p])) for p in parts] for c in plan.classes}
    observed = _shares({c: sum(v) for c, v in counts.items()}, sum(n_clear))
    quadrants = {q: _shares({c: v[i] for c, v in counts.items()}, n_clear[i]) or {} for i, q in enumerate(QUADRANTS)}
    codes = None
    if with_map:
        codes = np.where(valid, UNCLAIMED, NODATA).astype(np.uint8)
        codes[cloudy] = CLOUD
        for name, hit in found.items():
            codes[hit] = _CLASS_CODE[name]
    return Observation(
        nodata_fraction, cloud_fraction, plan.cloud_method, observed, quadrants if observed else None, codes
    )


def _above(a: np.ndarray, b: np.ndarray, threshold: float, positive: bool = False) -> np.ndarray:
    """(a − b)/(a + b) > t, without a division: a·(1 − t) > b·(1 + t) where a + b > 0 (false elsewhere).

    ``positive`` says a and b are never negative (digital numbers), so the sum needs no check.
    """
    t = float(threshold)
    left = a if t == 0.0 else a * np.float32(1.0 - t)
    right = b if t == 0.0 else b * np.float32(1.0 + t)
    out = left > right
    if not positive:
        out &= (a + b) > 0
    return out


def _reflectance(
    values: np.ndarray,
    role: Mapping[str, int],
    needed: set[str],
    gains: Sequence[float] | None,
    offsets: Sequence[float] | None,
    absolute: bool,
) -> tuple[dict[str, np.ndarray], float]:
    """The needed bands as float32, and the reflectance of one unit of them.

    Normalised differences do not change when every band has the same gain and no offset, so then the
    values are used as they are (thresholds on reflectance divide by the gain); else they are converted.
    """
    index = {name: i for name, i in role.items() if name in needed}
    gain = {name: float(gains[i]) if gains is not None else 1.0 for name, i in index.items()}
    offset = {name: float(offsets[i]) if offsets is not None else 0.0 for name, i in index.items()}
    shared = len(set(gain.values())) <= 1 and not any(offset.values()) and not absolute
    unit = next(iter(gain.values()), 1.0) if shared else 1.0
    out = {}
    for name, i in index.items():
        band = values[i].astype(np.float32)
        if not shared:
            if gain[name] != 1.0:
                band *= np.float32(gain[name])
            if offset[name]:
                band += np.float32(offset[name])
        out[name] = band
    return out, unit


def _shares(counts: Mapping[str, int], clear: int) -> dict[str, float] | None:
    if clear == 0:
        return None
    # Truncated (not rounded) to 6 decimals, so the shares never add up to more than 1.
    return {c: float(np.floor(n * 1e6 / clear)) / 1e6 for c, n in counts.items()}


def _fmask_clouds(refl: Mapping[str, np.ndarray]) -> np.ndarray:
    """Fmask's potential cloud pixels without the thermal test (Zhu & Woodcock 2012, eqs. 1-4), on reflectance."""
    blue, green, red, nir = refl["blue"], refl["green"], refl["red"], refl["nir"]
    swir16, swir22 = refl["swir16"], refl["swir22"]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (blue + green + red) / np.float32(3)
        whiteness = (np.abs(blue - mean) + np.abs(green - mean) + np.abs(red - mean)) / mean
        return (
            (swir22 > FMASK_SWIR22)
            & ~_above(green, swir16, FMASK_NDSI)
            & ~_above(nir, red, FMASK_NDVI)
            & (whiteness < FMASK_WHITENESS)
            & (blue - np.float32(0.5) * red - np.float32(FMASK_HOT) > 0)
            & (nir / swir16 > FMASK_NIR_SWIR16)
        )
