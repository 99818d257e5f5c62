"""Real change between the chips of a site: ``DS/change.parquet`` and one change mask per pair in ``DS/change/``.

A pair is two consecutive samples of a site at one chip size: an event's
``before`` and ``after`` rows (``plan --events``), or revisits i-1 and i
(``plan --revisits``). Their chips share one pixel grid (checked: a pair
whose chips differ in CRS, transform or size is refused), so change is
measured pixel by pixel on the pixels that are valid and cloud-free in both
chips, from each chip's observation map (written by ``fetch`` beside the
chips of pairs; recomputed from the chip's bands when it is missing):

* ``water_gain``/``water_loss``: water after but not before / before but not after;
* ``vegetation_loss``/``vegetation_gain``: vegetation before but not after / after but not before;
* ``snow_ice_change``: snow or ice in exactly one of the two;
* ``burned``: dNBR = NBR_before − NBR_after ≥ 0.27, NBR = (nir − swir22)/(nir + swir22), the lower bound of
  "moderate-low severity" in Key & Benson (2006, FIREMON Landscape Assessment, USDA Forest Service
  RMRS-GTR-164-CD), where the after chip is as dark as char in red (reflectance ≤ 0.10, the
  char point of the Burned Area Index, Chuvieco, Martín & Palacios 2002, Int. J. Remote Sens. 23:5103-5110)
  and neither chip shows water or snow; cleared or slid ground, which also lowers NBR, is brighter. Null
  without nir, swir22 and a red band with a known reflectance scale.

Each share is of the pair's jointly valid, cloud-free pixels (null when a chip's
bands cannot show that class); a pixel can count in several (flooded forest is
water gain and vegetation loss). The mask gives each pixel one code
(:data:`CHANGE_CODES`; the first that applies of burned, water gain, water loss,
snow/ice gain, snow/ice loss, vegetation loss, vegetation gain), 1 where none
does and 0 where the pair cannot be compared.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geosample._dataset import CHIPS_FILE, atomic_path, read_table
from geosample.errors import DataQualityWarning, DatasetError
from geosample.stac.observe import CLOUD, NODATA, SNOW_ICE, VEGETATION, WATER, band_roles, observe

__all__ = [
    "CHANGE_CODES", "CHANGE_COLOURS", "CHANGE_FILE", "ChangePair", "ChipEvidence", "change", "change_pairs", "measure",
]  # fmt: skip

CHANGE_FILE = "change.parquet"
CHANGE_DIR = "change"
DNBR_MODERATE = 0.27
"""Key & Benson (2006): dNBR from +0.27 is moderate-low severity (and more)."""
CHAR_RED = 0.10
"""Red reflectance of char, the convergence point of the Burned Area Index (Chuvieco et al. 2002)."""
NOT_COMPARED, NO_CHANGE, WATER_GAIN, WATER_LOSS, VEGETATION_LOSS, VEGETATION_GAIN, BURNED, SNOW_GAIN, SNOW_LOSS = range(
    9
)
CHANGE_CODES = {
    NOT_COMPARED: "not_compared", NO_CHANGE: "no_change", WATER_GAIN: "water_gain", WATER_LOSS: "water_loss",
    VEGETATION_LOSS: "vegetation_loss", VEGETATION_GAIN: "vegetation_gain", BURNED: "burned",
    SNOW_GAIN: "snow_ice_gain", SNOW_LOSS: "snow_ice_loss",
}  # fmt: skip
"""Codes of the change masks (band tags ``code_<n>`` and a colour table carry them into QGIS)."""
CHANGE_COLOURS = {
    NOT_COMPARED: (0, 0, 0, 0), NO_CHANGE: (220, 220, 220, 255), WATER_GAIN: (31, 120, 180, 255),
    WATER_LOSS: (166, 206, 227, 255), VEGETATION_LOSS: (255, 127, 0, 255), VEGETATION_GAIN: (51, 160, 44, 255),
    BURNED: (64, 0, 0, 255), SNOW_GAIN: (106, 61, 154, 255), SNOW_LOSS: (202, 178, 214, 255),
}  # fmt: skip
SHARES = ("water_gain", "water_loss", "vegetation_loss", "vegetation_gain", "burned", "snow_ice_change")
QUADRANTS = ("nw", "ne", "sw", "se")
SCHEMA = pa.schema(
    [
        ("site_id", pa.string()),
        ("sample_id_before", pa.string()),
        ("sample_id_after", pa.string()),
        ("kind", pa.string()),
        ("collection", pa.string()),
        *((name, pa.float64()) for name in SHARES),
        ("valid_fraction", pa.float64()),
        ("mask", pa.string()),
        ("quadrants", pa.string()),
    ]
)
"""Columns of ``change.parquet``."""


@dataclasses.dataclass(frozen=True)
class ChangePair:
    """Two consecutive samples of one site (at one chip size)."""

    site_id: str
    before: str
    after: str
    kind: str
    """``event`` or ``revisit``."""


def change_pairs(plan: pd.DataFrame) -> list[ChangePair]:
    """Event (``before`` → ``after``) and revisit (i-1 → i) pairs of the plan, within one chip size."""
    if "site_id" not in plan.columns:
        return []
    keys = ["site_id", "chip_size_m"] if "chip_size_m" in plan.columns else ["site_id"]
    out: list[ChangePair] = []
    if "phase" in plan.columns:
        for _, rows in plan.groupby(keys, sort=True):
            phases = dict(zip(rows["phase"].astype(str), rows["sample_id"].astype(str), strict=False))
            if "before" in phases and "after" in phases:
                out.append(ChangePair(str(rows["site_id"].iloc[0]), phases["before"], phases["after"], "event"))
    elif "revisit_index" in plan.columns:
        for _, rows in plan.groupby(keys, sort=True):
            ordered = rows.sort_values("revisit_index", kind="stable")["sample_id"].astype(str).tolist()
            site = str(rows["site_id"].iloc[0])
            out += [ChangePair(site, a, b, "revisit") for a, b in zip(ordered[:-1], ordered[1:], strict=True)]
    return out


@dataclasses.dataclass
class ChipEvidence:
    """What the change needs of one chip: its grid, class codes, NBR and red reflectance."""

    sample_id: str
    grid: tuple[Any, ...]
    """(CRS, transform, width, height)."""
    codes: np.ndarray | None
    """Per-pixel observation codes (:data:`geosample.stac.observe.CODE_NAMES`); None when clouds are unknown."""
    classes: frozenset[str]
    """The cover classes the chip's bands can show."""
    nbr: np.ndarray | None
    """(nir − swir22)/(nir + swir22), when the chip has both."""
    red: np.ndarray | None
    """Red surface reflectance, when the chip has red with a known scale."""


class PreparedChange:
    """The pairs with chips, checked to be pixel-aligned; :meth:`compute` measures and writes them."""

    def __init__(self, ds: Path, pairs: list[tuple[ChangePair, str, Mapping[str, Any], Mapping[str, Any]]]) -> None:
        self.ds = ds
        self.pairs = pairs
        self.staging: Path | None = None
        self.table: pd.DataFrame | None = None

    def compute(self) -> pd.DataFrame:
        """Measure every pair and write the masks into a staging folder (nothing visible in ``DS`` yet)."""
        self.staging = Path(tempfile.mkdtemp(prefix=".change.", suffix=".tmp", dir=self.ds))
        rows = []
        for pair, collection, before, after in self.pairs:
            a, b = _load(self.ds, before), _load(self.ds, after)
            rel = f"{CHANGE_DIR}/{pair.site_id}/{pair.before}__{pair.after}.tif"
            row, mask = measure(a, b)
            if mask is not None:
                from geosample.stac.grid import ChipGrid
                from geosample.stac.reader import write_class_cog

                crs, transform, width, height = a.grid
                grid = ChipGrid(crs, transform, width, height)
                (self.staging / pair.site_id).mkdir(parents=True, exist_ok=True)
                data = write_class_cog(mask, grid, "change", CHANGE_CODES, CHANGE_COLOURS, nodata=NOT_COMPARED)
                (self.staging / pair.site_id / Path(rel).name).write_bytes(data)
            rows.append({"site_id": pair.site_id, "sample_id_before": pair.before, "sample_id_after": pair.after,
                         "kind": pair.kind, "collection": collection, **row,
                         "mask": rel if mask is not None else None})  # fmt: skip
        self.table = pd.DataFrame(rows, columns=SCHEMA.names)
        return self.table

    def commit(self) -> None:
        """Put the masks and ``change.parquet`` in place (the old ones go)."""
        assert self.staging is not None and self.table is not None
        target = self.ds / CHANGE_DIR
        old = None
        if target.exists():
            old = self.ds / f".{CHANGE_DIR}.old.{os.getpid()}.tmp"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(self.staging, target)
        self.staging = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        table = pa.Table.from_pandas(self.table, schema=SCHEMA, preserve_index=False)
        with atomic_path(self.ds / CHANGE_FILE) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    def discard(self) -> None:
        """Remove the staging folder (after a failure)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


def prepare_change(ds: str | Path, plan: pd.DataFrame) -> PreparedChange | None:
    """The pairs of ``plan`` whose chips exist, checked for pixel alignment; None without pairs or chips.

    Raises:
        DatasetError: If the two chips of a pair are not on one pixel grid (one line naming them and the fix).
    """
    ds = Path(ds)
    pairs = change_pairs(plan)
    if not pairs:
        return None
    chips = read_table(ds, CHIPS_FILE, hint=f"geosample fetch {ds}")
    if chips is None:
        return None
    ok = chips[chips["status"] == "ok"]
    by_collection = {c: rows.set_index("sample_id") for c, rows in ok.groupby("collection", sort=True)}
    found = []
    gone: list[str] = []
    for pair in pairs:
        for collection, rows in by_collection.items():
            if pair.before in rows.index and pair.after in rows.index:
                before, after = rows.loc[pair.before].to_dict(), rows.loc[pair.after].to_dict()
                before["sample_id"], after["sample_id"] = pair.before, pair.after
                missing = [str(r["path"]) for r in (before, after) if not (ds / str(r["path"])).is_file()]
                if missing:
                    gone += missing
                    break
                _check_aligned(ds, pair, before, after)
                found.append((pair, str(collection), before, after))
                break
    if gone:
        warnings.warn(
            f"{len(gone)} chip file(s) of pairs are missing (e.g. {gone[0]}); their change is not measured: "
            f"run 'geosample fetch {ds}' to restore them",
            DataQualityWarning,
            stacklevel=3,
        )
    return PreparedChange(ds, found)


def change(ds: str | Path, plan: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Measure and write ``DS/change.parquet`` and ``DS/change/`` for the pairs of the samples (None without any)."""
    from geosample._dataset import read_samples

    ds = Path(ds)
    prepared = prepare_change(ds, read_samples(ds) if plan is None else plan)
    if prepared is None:
        return None
    try:
        table = prepared.compute()
        prepared.commit()
    finally:
        prepared.discard()
    return table


def _grid_of(path: Path) -> tuple[Any, ...]:
    import rasterio

    with rasterio.open(path) as src:
        return src.crs, src.transform, src.width, src.height


def _check_aligned(ds: Path, pair: ChangePair, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    grids = [_grid_of(ds / str(row["path"])) for row in (before, after)]
    (crs_a, ta, wa, ha), (crs_b, tb, wb, hb) = grids
    same = crs_a == crs_b and (wa, ha) == (wb, hb) and ta.almost_equals(tb, precision=1e-6)
    if not same:
        raise DatasetError(
            f"the chips of site {pair.site_id} are not on one pixel grid ({pair.before}: {_describe(grids[0])}; "
            f"{pair.after}: {_describe(grids[1])}), so their change cannot be measured pixel by pixel; fetch both "
            f"again with one --resolution ('geosample fetch {ds} --overwrite')"
        )


def _describe(grid: tuple[Any, ...]) -> str:
    crs, transform, width, height = grid
    return f"{crs}, {width}x{height} px of {transform.a:g} m from ({transform.c:.1f}, {transform.f:.1f})"


def _load(ds: Path, row: Mapping[str, Any]) -> ChipEvidence:
    """Class codes (from the observation map, else observed anew from the bands), NBR and red reflectance."""
    import rasterio

    bands = [str(b) for b in row["bands"]]
    with rasterio.open(ds / str(row["path"])) as src:
        data = src.read(masked=True)
        gains, offsets = list(src.scales), list(src.offsets)
        grid = (src.crs, src.transform, src.width, src.height)
    scaled = any(g != 1.0 or o != 0.0 for g, o in zip(gains, offsets, strict=True))
    calibrated = np.issubdtype(data.dtype, np.floating) or scaled
    observed = row.get("observed")
    classes = frozenset(json.loads(observed)) if isinstance(observed, str) else frozenset()
    codes = None
    path = row.get("observed_map")
    if isinstance(path, str) and (ds / path).exists():
        with rasterio.open(ds / path) as src:
            codes = src.read(1)
    elif classes:
        # No map (a chip from an older fetch): observe the chip again; only a cloud mask band kept in it, or
        # the spectral test, can screen its clouds.
        obs = observe(data, bands, gains=gains, offsets=offsets, calibrated=bool(calibrated), with_map=True)
        if obs.observed is not None and obs.classes is not None:
            codes, classes = obs.classes, frozenset(obs.observed)
        else:
            classes = frozenset()
    roles = band_roles(bands)
    nbr = red = None
    values = np.ma.getdata(data).astype(np.float32)
    if "nir" in roles and "swir22" in roles:
        nir = values[roles["nir"]] * gains[roles["nir"]] + offsets[roles["nir"]]
        swir = values[roles["swir22"]] * gains[roles["swir22"]] + offsets[roles["swir22"]]
        with np.errstate(divide="ignore", invalid="ignore"):
            nbr = (nir - swir) / (nir + swir)
    if "red" in roles and calibrated:
        red = values[roles["red"]] * gains[roles["red"]] + offsets[roles["red"]]
    return ChipEvidence(str(row["sample_id"]), grid, codes, classes, nbr, red)


def measure(a: ChipEvidence, b: ChipEvidence) -> tuple[dict[str, Any], np.ndarray | None]:
    """The change from chip ``a`` (before) to chip ``b`` (after): the row's shares and quadrants, and the mask."""
    empty: dict[str, Any] = {**dict.fromkeys(SHARES), "valid_fraction": None, "quadrants": None}
    if a.codes is None or b.codes is None:
        return empty, None
    joint = ~np.isin(a.codes, (NODATA, CLOUD)) & ~np.isin(b.codes, (NODATA, CLOUD))
    both = a.classes & b.classes
    tests: dict[str, np.ndarray | None] = dict.fromkeys(SHARES)
    water_a, water_b = a.codes == WATER, b.codes == WATER
    snow_a, snow_b = a.codes == SNOW_ICE, b.codes == SNOW_ICE
    if "water" in both:
        tests["water_gain"] = ~water_a & water_b
        tests["water_loss"] = water_a & ~water_b
    if "vegetation" in both:
        veg_a, veg_b = a.codes == VEGETATION, b.codes == VEGETATION
        tests["vegetation_loss"] = veg_a & ~veg_b
        tests["vegetation_gain"] = ~veg_a & veg_b
    snow_gain = snow_loss = None
    if "snow_ice" in both:
        snow_gain, snow_loss = ~snow_a & snow_b, snow_a & ~snow_b
        tests["snow_ice_change"] = snow_gain | snow_loss
    if a.nbr is not None and b.nbr is not None and b.red is not None and "water" in both:
        with np.errstate(invalid="ignore"):
            dnbr = a.nbr - b.nbr
            burned = (dnbr >= DNBR_MODERATE) & (b.red <= CHAR_RED)
        burned &= ~(water_a | water_b | snow_a | snow_b)
        tests["burned"] = burned
    mask = np.where(joint, NO_CHANGE, NOT_COMPARED).astype(np.uint8)
    order = [("vegetation_gain", VEGETATION_GAIN, tests["vegetation_gain"]),
             ("vegetation_loss", VEGETATION_LOSS, tests["vegetation_loss"]), ("snow_loss", SNOW_LOSS, snow_loss),
             ("snow_gain", SNOW_GAIN, snow_gain), ("water_loss", WATER_LOSS, tests["water_loss"]),
             ("water_gain", WATER_GAIN, tests["water_gain"]), ("burned", BURNED, tests["burned"])]  # fmt: skip
    for _, value, hit in order:  # lowest priority first; each later one overwrites
        if hit is not None:
            mask[hit & joint] = value
    height, width = joint.shape
    h, w = height // 2, width // 2
    regions = {"nw": (slice(0, h), slice(0, w)), "ne": (slice(0, h), slice(w, None)),
               "sw": (slice(h, None), slice(0, w)), "se": (slice(h, None), slice(w, None))}  # fmt: skip

    def shares(region: tuple[slice, slice]) -> dict[str, float | None]:
        n = int(joint[region].sum())
        return {
            name: (None if hit is None or n == 0 else int((hit[region] & joint[region]).sum()) / n)
            for name, hit in tests.items()
        }

    row: dict[str, Any] = shares((slice(None), slice(None)))
    row["valid_fraction"] = float(joint.mean())
    row["quadrants"] = json.dumps({q: shares(r) for q, r in regions.items()})
    return row, mask


def summary(table: pd.DataFrame | None) -> str:
    """One line for the terminal."""
    if table is None:
        return ""
    with_mask = int(table["mask"].notna().sum())
    counts = {name: int((table[name].fillna(0) >= 0.01).sum()) for name in SHARES}
    shown = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n)
    return f"change: {len(table)} pair(s), {with_mask} measured" + (f" ({shown}, ≥ 1 % of the pair)" if shown else "")
