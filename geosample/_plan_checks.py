"""The plan validator: every stage checks ``plan.parquet`` before it uses a row of it.

Plans are shared between people and tools, so a plan is untrusted input.
:func:`plan_problems` lists everything wrong with one (``geosample validate``
prints the list); :func:`check_plan`, which :func:`geosample._dataset.read_plan`
calls for every stage, raises the first problem as one line and repairs the
one thing that can be repaired (an absent or empty ``h3``, recomputed from
lon/lat with a warning). The rules:

- the plan has at least one row and the columns every stage needs;
- ``sample_id``: text, unique (also ignoring case, for case-insensitive file
  systems), and a safe file name: :data:`geosample._paths.NAME_RULE`;
  ``site_id`` (when present) follows the same rule;
- ``lon`` in [-180, 180] and ``lat`` in [-90, 90], finite;
- ``epsg``: an EPSG code of a projected CRS in metres that can hold the chip centre;
- ``chip_size_m``: finite, from :data:`MIN_CHIP_SIZE_M` to :data:`MAX_CHIP_SIZE_M` (as ``plan --chip-size``);
- ``start_datetime`` ≤ ``end_datetime``, both set;
- ``h3`` a valid H3 cell (``h3_res``, when present, an integer 0–15);
- ``geometry`` (when present) a non-empty footprint within lon/lat bounds.

Other columns (``inclusion_prob``, ``reserve_rank``, ``replaces``, strata,
event and revisit columns, ...) pass through unchecked. The pixel budget of
a chip depends on the fetch resolution, so fetch checks it
(:func:`check_pixel_budget`) before it reads anything.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geosample._paths import MAX_NAME_LENGTH, NAME_PATTERN, NAME_RULE, name_problem
from geosample.errors import ConfigError, DataQualityWarning, PlanError, UnsafeInputError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = [
    "MAX_CHIP_PIXELS",
    "MAX_CHIP_SIZE_M",
    "MIN_CHIP_SIZE_M",
    "REQUIRED_COLUMNS",
    "PlanProblem",
    "check_chip_table",
    "check_pixel_budget",
    "chip_table_problems",
    "empty_h3",
    "check_plan",
    "chip_file_faults",
    "file_sha256",
    "plan_problems",
]

REQUIRED_COLUMNS = ("sample_id", "lon", "lat", "epsg", "chip_size_m", "start_datetime", "end_datetime")
"""Columns every stage relies on; ``h3`` is recomputed when absent."""
MIN_CHIP_SIZE_M = 1.0
MAX_CHIP_SIZE_M = 1_000_000.0
"""Chip sides outside these bounds (metres) are refused, as by ``geosample plan --chip-size``."""
MAX_CHIP_PIXELS = 8192 * 8192
"""Largest chip ``fetch`` makes: 8192 × 8192 pixels (67 Mpx, 134 MB per 16-bit band)."""
DEFAULT_H3_RES = 9
"""Resolution of recomputed ``h3`` cells when the plan has no ``h3_res``."""
ROWS_SHOWN = 20
"""Problems listed one by one per rule; further rows of the same rule are counted."""


@dataclasses.dataclass(frozen=True)
class PlanProblem:
    """One thing wrong with a plan: where (row, sample id, column) and what."""

    message: str
    """What is wrong, as a sentence fragment (``"lon is NaN"``)."""
    row: int | None = None
    """The row's position in the file (0-based), or None for the whole table."""
    sample_id: str | None = None
    """The row's ``sample_id`` when it has a usable one."""
    column: str | None = None
    """The column at fault."""
    count: int = 1
    """How many rows it stands for: 1, or for the entry that counts the rows not listed, those rows."""

    def __str__(self) -> str:
        if self.row is None:
            return self.message
        who = f" (sample_id {_short(self.sample_id)})" if self.sample_id is not None else ""
        return f"row {self.row}{who}: {self.message}"


def plan_problems(plan: pd.DataFrame, *, rows_shown: int = ROWS_SHOWN) -> list[PlanProblem]:
    """Everything wrong with ``plan``, table-level problems first, then rule by rule.

    At most ``rows_shown`` rows are listed per rule; one more problem counts the rest.
    An empty or missing ``h3`` is not a problem here (:func:`check_plan` recomputes it).
    """
    if len(plan) == 0:
        return [PlanProblem("holds no samples (an empty plan); make one with 'geosample plan'")]
    problems: list[PlanProblem] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in plan.columns]
    if missing:
        problems.append(PlanProblem(f"lacks column(s) {', '.join(missing)}", column=missing[0]))
    ids = plan["sample_id"] if "sample_id" in plan.columns else pd.Series([None] * len(plan), index=plan.index)
    report = functools.partial(_report, problems, ids, rows_shown)
    if "sample_id" in plan.columns:
        _check_ids(ids, "sample_id", report, unique=True)
    if "site_id" in plan.columns:
        _check_ids(plan["site_id"], "site_id", report, unique=False)
    lon = _numbers(plan, "lon", report)
    lat = _numbers(plan, "lat", report)
    if lon is not None:
        out = np.isfinite(lon) & ((lon < -180) | (lon > 180))
        report(out, "lon", lambda i: f"lon {float(lon[i])!r} is outside -180..180")
    if lat is not None:
        out = np.isfinite(lat) & ((lat < -90) | (lat > 90))
        report(out, "lat", lambda i: f"lat {float(lat[i])!r} is outside -90..90")
    epsg = _numbers(plan, "epsg", report)
    if epsg is not None:
        _check_epsg(epsg, lon, lat, report)
    size = _numbers(plan, "chip_size_m", report)
    if size is not None:
        bad = np.isfinite(size) & ((size < MIN_CHIP_SIZE_M) | (size > MAX_CHIP_SIZE_M))
        limits = f"{MIN_CHIP_SIZE_M:g}..{MAX_CHIP_SIZE_M:g} m"
        report(bad, "chip_size_m", lambda i: f"chip_size_m {float(size[i]):g} is outside {limits}")
    _check_times(plan, report)
    _check_h3(plan, report)
    _check_geometry(plan, report)
    return problems


def check_plan(plan: gpd.GeoDataFrame, where: str) -> gpd.GeoDataFrame:
    """``plan`` if it is usable (with ``h3`` recomputed where absent or empty), else a :class:`PlanError`.

    Args:
        plan: The plan table.
        where: The file it came from, for the messages (``DS/plan.parquet``).

    Raises:
        PlanError: One line: the first problem, how many more there are, and the fix.
    """
    problems = plan_problems(plan, rows_shown=1)
    if problems:
        first, more = problems[0], _more(problems)
        raise PlanError(f"{where}: {first}{more}; fix the plan or make a new one with 'geosample plan'")
    return _with_h3(plan, where)


def chip_pixels(chip_size_m: np.ndarray | float, resolution: float) -> np.ndarray:
    """Pixels of a chip ``chip_size_m`` on a side at ``resolution`` metres (as ``fetch``'s chip grid rounds)."""
    side = np.maximum(np.rint(np.asarray(chip_size_m, dtype=np.float64) / float(resolution)), 1.0)
    return side * side


def check_pixel_budget(samples: pd.DataFrame, resolution: float, flag: str = "--resolution") -> None:
    """Refuse chips over :data:`MAX_CHIP_PIXELS` pixels at ``resolution`` before anything is read.

    Raises:
        ConfigError: Naming the largest chip, its size in pixels and the coarsest resolution that fits.
    """
    if not (isinstance(resolution, int | float) and math.isfinite(resolution) and resolution > 0):
        raise ConfigError(f"{flag} {resolution!r} must be a positive number of metres, e.g. 10")
    if len(samples) == 0:
        return
    sizes = samples["chip_size_m"].to_numpy(dtype=np.float64)
    pixels = chip_pixels(sizes, resolution)
    worst = int(np.argmax(pixels))
    if pixels[worst] <= MAX_CHIP_PIXELS:
        return
    side = int(math.isqrt(int(pixels[worst])))
    limit = int(math.isqrt(MAX_CHIP_PIXELS))
    finest = sizes[worst] / limit
    raise ConfigError(
        f"{flag} {resolution:g} m makes the chip of sample {_short(samples['sample_id'].iloc[worst])} "
        f"({sizes[worst]:g} m) {side} × {side} pixels, over the limit of {limit} × {limit}; "
        f"use {flag} {_round_up(finest)} or coarser, or plan smaller chips"
    )


_CHIP_PATH = re.compile(rf"chips(?:/{NAME_PATTERN.pattern}){{1,3}}")


def chip_table_problems(ds: str | Path, table: pd.DataFrame, *, rows_shown: int = ROWS_SHOWN) -> list[PlanProblem]:
    """Everything unsafe in a chips manifest (``chips.parquet`` rows): ids, and files outside ``DS/chips``.

    Stages read and send the files a manifest names (export copies chips,
    caption sends previews to a model endpoint), so a manifest from someone
    else must not name ``/home/me/.ssh/id_rsa`` or ``../../secret``, nor a link
    out of the folder. The rules: ``sample_id`` and ``collection`` (where set)
    are safe names (:data:`geosample._paths.NAME_RULE`); ``path`` and
    ``preview`` (where set) are ``chips/...`` paths of safe names, and no folder
    or file on them is a symbolic link leading out of ``DS/chips``. At most
    ``rows_shown`` rows are listed per rule; one more problem counts the rest.
    """
    from geosample._paths import folder_test

    ds = Path(ds)
    in_chips = folder_test(ds, "chips")
    problems: list[PlanProblem] = []
    ids = table["sample_id"] if "sample_id" in table.columns else pd.Series([None] * len(table), index=table.index)
    report = functools.partial(_report, problems, ids, rows_shown)
    for column in ("sample_id", "collection"):
        if column not in table.columns:
            continue
        values = table[column]
        shown = values.iloc
        text = _is_text(values)
        as_text = values.where(text, "").astype(str)
        fine = as_text.str.fullmatch(NAME_PATTERN.pattern).to_numpy(dtype=bool) & (as_text.str.len() <= MAX_NAME_LENGTH)
        bad = ~values.isna().to_numpy() & ~(text & fine)
        report(bad, column, lambda i, c=column, v=shown: f"{c} {_short(v[i])} {name_problem(v[i])}")
    parents: dict[str, bool] = {}
    for column in ("path", "preview"):
        if column not in table.columns:
            continue
        values = table[column]
        shown = values.iloc
        present = ~values.isna().to_numpy()
        text = _is_text(values)
        form = text & values.where(text, "").astype(str).str.fullmatch(_CHIP_PATH.pattern).to_numpy(dtype=bool)
        report(present & ~form, column, lambda i, c=column, v=shown: f"{c} {_short(v[i])} is not a file under chips/")
        out = np.zeros(len(values), dtype=bool)
        for i in np.flatnonzero(form):
            value = shown[int(i)]
            parent = value.rsplit("/", 1)[0]
            if parent not in parents:
                parents[parent] = in_chips(parent)
            out[i] = not parents[parent] or (os.path.islink(ds / value) and not in_chips(value))
        report(out, column, lambda i, c=column, v=shown: f"{c} {v[i]!r} leads out of {ds / 'chips'}")
    return problems


def check_chip_table(ds: str | Path, table: pd.DataFrame, where: str) -> None:
    """Refuse a chips manifest with any problem of :func:`chip_table_problems`.

    Raises:
        UnsafeInputError: The first problem, how many more there are, and the fix (delete the manifest, fetch again).
    """
    problems = chip_table_problems(ds, table, rows_shown=1)
    if problems:
        first, more = problems[0], _more(problems)
        raise UnsafeInputError(
            f"{where} row {first.row}: {first.message}{more}; the manifest is damaged or was made elsewhere: "
            f"delete it and run 'geosample fetch {ds}' again"
        )


HASH_THREADS = 4
"""Files hashed at once by :func:`chip_file_faults`."""


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of the file at ``path`` (read in blocks)."""
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def chip_file_faults(
    ds: str | Path, chips: pd.DataFrame, *, digest: Callable[[Path], str] = file_sha256
) -> list[str | None]:
    """For each row of a chips manifest, what is wrong with its file: None when it is what fetch wrote.

    A fault is a phrase that follows the file's name: ``lies outside DS/chips``, ``has no sha256 in
    chips.parquet``, ``is missing``, ``cannot be read``, ``does not match its sha256 in chips.parquet``.
    The files are hashed on :data:`HASH_THREADS` threads with ``digest`` (a caching one, say).
    Both ``geosample export`` (before it writes anything) and ``geosample validate`` ask this.
    """
    from concurrent.futures import ThreadPoolExecutor

    from geosample._paths import folder_test

    ds = Path(ds)
    paths = chips["path"].tolist()
    recorded = chips["sha256"].tolist() if "sha256" in chips.columns else [None] * len(chips)
    in_chips = folder_test(ds, "chips")

    def fault(path: object, want: object) -> str | None:
        if not in_chips(path):
            return f"lies outside {ds / 'chips'}"
        if not isinstance(want, str) or len(want) != 64:
            return "has no sha256 in chips.parquet"
        try:
            got = digest(ds / str(path))
        except FileNotFoundError:
            return "is missing"
        except OSError:
            return "cannot be read"
        return None if got == want else "does not match its sha256 in chips.parquet"

    if len(paths) <= 1:
        return [fault(p, w) for p, w in zip(paths, recorded, strict=True)]
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        return list(pool.map(fault, paths, recorded))


# ------------------------------------------------------------------------------------------ the rules

_Report = Callable[[np.ndarray, str, Callable[[int], str]], None]


def _report(
    problems: list[PlanProblem], ids: pd.Series, rows_shown: int,
    bad: np.ndarray, column: str, message: Callable[[int], str],
) -> None:  # fmt: skip
    rows = np.flatnonzero(np.asarray(bad, dtype=bool))
    for i in rows[:rows_shown]:
        sample_id = ids.iloc[int(i)]
        shown = sample_id if isinstance(sample_id, str) else None
        problems.append(PlanProblem(message(int(i)), int(i), shown, column))
    if len(rows) > rows_shown:
        problems.append(
            PlanProblem(
                f"{len(rows)} rows in all break the rule above on {column}", column=column, count=len(rows) - rows_shown
            )
        )


def _is_text(values: pd.Series) -> np.ndarray:
    """Which values are ``str`` (vectorised where the column is all text, as it is in every sound plan)."""
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return ~values.isna().to_numpy()
    return np.array([isinstance(v, str) for v in values.tolist()], dtype=bool)


def _check_ids(ids: pd.Series, column: str, report: _Report, *, unique: bool) -> None:
    values = ids.iloc  # read only for the rows reported
    text = _is_text(ids)
    null = ids.isna().to_numpy()
    report(null, column, lambda i: f"{column} is missing (null)")
    report(~text & ~null, column, lambda i: f"{column} {values[i]!r} is {type(values[i]).__name__}, not text")
    as_text = ids.where(text, "").astype(str)
    fine = as_text.str.fullmatch(NAME_PATTERN.pattern).to_numpy(dtype=bool) & (as_text.str.len() <= MAX_NAME_LENGTH)
    report(
        text & ~fine, column, lambda i: f"{column} {name_problem(values[i])}; {column}s must be {NAME_RULE}"
    )  # fmt: skip
    if not unique:
        return
    usable = text & fine
    ok = as_text[usable]
    first_row = {}
    dup = np.zeros(len(ids), dtype=bool)
    dup[np.flatnonzero(usable)[ok.duplicated(keep="first").to_numpy()]] = True
    if dup.any():
        for pos, value in zip(np.flatnonzero(usable), ok.tolist(), strict=True):
            first_row.setdefault(value, pos)
        report(dup, column, lambda i: f"{column} repeats row {first_row[values[i]]}; every sample needs its own id")
    folded = ok.str.lower()
    case = np.zeros(len(ids), dtype=bool)
    case[np.flatnonzero(usable)[(folded.duplicated(keep="first") & ~ok.duplicated(keep="first")).to_numpy()]] = True
    if case.any():
        by_fold = {}
        for pos, value in zip(np.flatnonzero(usable), folded.tolist(), strict=True):
            by_fold.setdefault(value, pos)
        report(
            case, column,
            lambda i: f"{column} differs only in case from row {by_fold[values[i].lower()]}'s; on case-insensitive "
            "file systems (macOS, Windows) their files would overwrite each other",
        )  # fmt: skip


def _numbers(plan: pd.DataFrame, column: str, report: _Report) -> np.ndarray | None:
    """The column as float64 with the rows that are not finite numbers reported; None if it is absent."""
    if column not in plan.columns:
        return None
    raw = plan[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    report(~np.isfinite(values), column, lambda i: f"{column} {_plain(raw.iloc[i])!r} is not a finite number")
    return values


@functools.lru_cache(maxsize=512)
def _epsg_problem(code: int) -> str | None:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        crs = CRS.from_epsg(code)
    except CRSError:
        return f"epsg {code} is not an EPSG code pyproj knows"
    if not crs.is_projected:
        return f"epsg {code} ({crs.name}) is not a projected CRS; chips need one in metres (the UTM zone)"
    units = {(a.unit_name or "").lower() for a in crs.axis_info[:2]}
    if not units <= {"metre", "meter"}:
        return f"epsg {code} ({crs.name}) is not in metres"
    return None


def _check_epsg(epsg: np.ndarray, lon: np.ndarray | None, lat: np.ndarray | None, report: _Report) -> None:
    finite = np.isfinite(epsg)
    integral = finite & (epsg == np.round(epsg)) & (epsg > 0) & (epsg < 2**31)
    report(finite & ~integral, "epsg", lambda i: f"epsg {float(epsg[i]):g} is not an EPSG code")
    codes = np.where(integral, epsg, 0).astype(np.int64)
    for code in np.unique(codes[integral]):
        rows = integral & (codes == code)
        problem = _epsg_problem(int(code))
        if problem is not None:
            report(rows, "epsg", lambda i, p=problem: p)
            continue
        if lon is None or lat is None:
            continue
        usable = rows & np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
        if not usable.any():
            continue
        from geosample.sampling._geometry import _to_crs

        with np.errstate(all="ignore"):
            x, y = _to_crs(int(code)).transform(lon[usable], lat[usable])
        far = np.zeros(len(epsg), dtype=bool)
        far[np.flatnonzero(usable)] = ~(np.isfinite(x) & np.isfinite(y))
        report(far, "epsg", lambda i, c=int(code): f"the chip centre cannot be projected to epsg {c}")


def _check_times(plan: pd.DataFrame, report: _Report) -> None:
    times = {}
    for column in ("start_datetime", "end_datetime"):
        if column not in plan.columns:
            continue
        raw = plan[column]
        try:
            parsed = pd.to_datetime(raw, utc=True, errors="coerce")
        except (TypeError, ValueError, OverflowError):
            parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
        unusable = parsed.isna().to_numpy()
        report(unusable, column, lambda i, c=column, v=raw: f"{c} {_plain(v.iloc[i])!r} is not a date and time")
        times[column] = parsed
    if len(times) == 2:
        start, end = times["start_datetime"], times["end_datetime"]
        late = (start > end).fillna(False).to_numpy(dtype=bool)
        report(late, "start_datetime", lambda i: f"start_datetime {start.iloc[i]} is after end_datetime {end.iloc[i]}")


def empty_h3(plan: pd.DataFrame) -> np.ndarray:
    """Rows whose ``h3`` is absent, null or blank (to recompute)."""
    if "h3" not in plan.columns:
        return np.ones(len(plan), dtype=bool)
    values = plan["h3"]
    text = _is_text(values)
    blank = np.zeros(len(values), dtype=bool)
    blank[text] = values[text].astype(str).str.strip().eq("").to_numpy(dtype=bool)
    return values.isna().to_numpy() | blank


def _check_h3(plan: pd.DataFrame, report: _Report) -> None:
    if "h3_res" in plan.columns:
        res = pd.to_numeric(plan["h3_res"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        shown = plan["h3_res"].tolist()
        bad = ~(np.isfinite(res) & (res == np.round(res)) & (res >= 0) & (res <= 15))
        report(bad, "h3_res", lambda i: f"h3_res {_plain(shown[i])!r} is not an H3 resolution (0–15)")
    if "h3" not in plan.columns:
        return
    values = plan["h3"]
    empty = empty_h3(plan)
    text = _is_text(values) & ~empty
    bad = ~empty & ~text
    bad[text] = ~valid_h3_cells(values[text].astype(str).to_numpy())
    report(bad, "h3", lambda i: f"h3 {_short(values.iloc[i])} is not a valid H3 cell (leave it empty to recompute it)")


_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", dtype=np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", dtype=np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16)


def valid_h3_cells(cells: np.ndarray) -> np.ndarray:
    """Which hex strings are valid H3 cells (``h3.is_valid_cell``'s rules, vectorised over the 64-bit index).

    A cell index (H3 v4) has the high bit 0, mode 1 (bits 59-62), reserved bits 56-58 zero, a
    resolution r (52-55), a base cell below 122 (45-51), digits 0-6 for resolutions 1..r and 7
    below, and under a pentagon base cell a first non-zero digit other than 1 (the deleted subsequence).
    """
    from geosample.sampling._h3 import _PENTAGON_BASE_CELLS

    n = len(cells)
    if n == 0:
        return np.zeros(0, dtype=bool)
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.array(cells, type=pa.string())
    lengths = pc.utf8_length(text)
    fits = pc.and_(pc.and_(pc.greater_equal(lengths, 1), pc.less_equal(lengths, 16)), pc.string_is_ascii(text))
    ok = fits.to_numpy(zero_copy_only=False)
    # Left-padded to 16 ASCII characters each, the strings are one contiguous (n, 16) byte block.
    padded = pc.utf8_lpad(pc.if_else(fits, text, pa.scalar("x")), 16, "0")
    offset = padded.offset * 16
    data = np.frombuffer(padded.buffers()[2], dtype=np.uint8)[offset : offset + 16 * n]
    nibbles = _HEX[data.reshape(n, 16)]
    ok &= (nibbles != 255).all(axis=1)
    nibbles = np.where(nibbles == 255, 0, nibbles).astype(np.uint64)
    index = np.zeros(n, dtype=np.uint64)
    for k in range(16):
        index = (index << np.uint64(4)) | nibbles[:, k]
    ok &= (index >> np.uint64(63)) == 0
    ok &= ((index >> np.uint64(59)) & np.uint64(0xF)) == 1
    ok &= ((index >> np.uint64(56)) & np.uint64(0x7)) == 0
    res = ((index >> np.uint64(52)) & np.uint64(0xF)).astype(np.int64)
    base = ((index >> np.uint64(45)) & np.uint64(0x7F)).astype(np.int64)
    ok &= base < 122
    pentagon = np.isin(base, _PENTAGON_BASE_CELLS)
    first_nonzero = np.zeros(n, dtype=np.int64)
    for r in range(1, 16):
        digit = ((index >> np.uint64(3 * (15 - r))) & np.uint64(7)).astype(np.int64)
        used = r <= res
        ok &= np.where(used, digit <= 6, digit == 7)
        first_nonzero = np.where(used & (first_nonzero == 0) & (digit != 0), digit, first_nonzero)
    ok &= ~(pentagon & (first_nonzero == 1))
    return ok


def _check_geometry(plan: pd.DataFrame, report: _Report) -> None:
    import geopandas as gpd

    if not isinstance(plan, gpd.GeoDataFrame) or plan._geometry_column_name not in plan.columns:
        return
    geometry = plan.geometry
    missing = (geometry.isna() | geometry.is_empty).to_numpy(dtype=bool)
    report(missing, "geometry", lambda i: "geometry (the chip footprint) is empty")
    bounds = geometry.bounds.to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        outside = ~missing & ~(
            np.isfinite(bounds).all(axis=1)
            & (bounds[:, 0] >= -180) & (bounds[:, 2] <= 180) & (bounds[:, 1] >= -90) & (bounds[:, 3] <= 90)
        )  # fmt: skip
    report(outside, "geometry", lambda i: f"geometry bounds {tuple(bounds[i])} lie outside lon -180..180, lat -90..90")


def _with_h3(plan: gpd.GeoDataFrame, where: str) -> gpd.GeoDataFrame:
    """The plan with ``h3`` recomputed from lon/lat where it is absent or empty, saying so once."""
    empty = empty_h3(plan)
    if not empty.any():
        return plan
    import h3

    res = (
        pd.to_numeric(plan["h3_res"], errors="coerce").fillna(DEFAULT_H3_RES).astype(int).to_numpy()
        if "h3_res" in plan.columns
        else np.full(len(plan), DEFAULT_H3_RES)
    )
    had = "h3" in plan.columns
    lon = plan["lon"].to_numpy(dtype=np.float64)
    lat = plan["lat"].to_numpy(dtype=np.float64)
    cells = plan["h3"].astype(object).to_numpy(copy=True) if had else np.full(len(plan), None, dtype=object)
    for i in np.flatnonzero(empty):
        cells[i] = h3.latlng_to_cell(float(lat[i]), float(lon[i]), int(res[i]))
    plan = plan.copy()
    plan["h3"] = cells
    what = "has no h3 column" if not had else f"has {int(empty.sum())} empty h3 value(s)"
    at = "" if "h3_res" in plan.columns else f" at resolution {DEFAULT_H3_RES}"
    warnings.warn(
        f"{where} {what}; recomputed from lon/lat{at}",
        DataQualityWarning,
        stacklevel=4,
    )
    return plan


def _more(problems: list[PlanProblem]) -> str:
    """`` (N more problem(s) after it)`` for the problems after the first, counting the rows not listed."""
    n = sum(p.count for p in problems[1:])
    return f" ({n} more problem(s) after it)" if n else ""


def _plain(value: Any) -> Any:
    """A table value as plain Python (numpy scalars unwrapped), for messages."""
    return value.item() if isinstance(value, np.generic) else value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:60] + "...'"


def _round_up(value: float) -> str:
    """``value`` rounded up to two significant digits, as text."""
    if value <= 0:
        return "1"
    exponent = math.floor(math.log10(value)) - 1
    step = 10.0**exponent
    return f"{math.ceil(value / step - 1e-9) * step:.{max(0, -exponent)}f}"
