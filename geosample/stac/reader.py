"""Reading rasters onto a chip grid, and writing chips as COGs and PNG previews.

Reads go through GDAL with the settings that make remote Cloud-Optimized
GeoTIFFs fast (:data:`GDAL_DEFAULTS`). A source in the chip's CRS whose extent
holds the whole chip is read with one windowed, resampled ``read``; anything
else (another CRS, a partial overlap) through a ``WarpedVRT``. Either way GDAL
fetches and decodes only the tiles under the chip, from the overview level
nearest the chip's resolution. A :class:`DatasetCache` keeps sources open
between chips, so tiles decoded for one chip serve its neighbours from GDAL's
(bounded) block cache.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.env import set_gdal_config
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geosample.stac._cog import layout_for
from geosample.stac._hrefs import REMOTE_SCHEMES
from geosample.stac.grid import ChipGrid

__all__ = [
    "GDAL_DEFAULTS",
    "DatasetCache",
    "ReadError",
    "gdal_env",
    "preview_png",
    "read_onto_grid",
    "write_class_cog",
    "write_cog",
]

Signer = Callable[[str], str]

GDAL_DEFAULTS: dict[str, str] = {
    # Opening a remote file must not list its "directory" to look for sidecars (one request per open saved).
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # No HEAD request before the first range GET; signed URLs often refuse HEAD anyway.
    "CPL_VSIL_CURL_USE_HEAD": "NO",
    # A COG's header, IFDs and tile index come in one 32 KiB request.
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    # Adjacent tiles come in one range request; parallel ranges share one HTTP/2 connection.
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    # Raw bytes downloaded, shared by all open files and bounded; no per-file cache on top (a per-file cache
    # times the files each thread keeps open would grow with the number of sources).
    "CPL_VSIL_CURL_CACHE_SIZE": str(64 << 20),
    "VSI_CACHE": "FALSE",
    # Throttling and server errors are retried by GDAL with exponential backoff.
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_HTTP_TIMEOUT": "60",
}
"""GDAL configuration for remote COG reads; a variable already set in the environment wins."""

BLOCK_CACHE_BYTES = 256 << 20
"""GDAL's cache of decoded blocks, shared by every open source of the process: bounded, so memory stays flat."""

RASTER_EXTENSIONS = (".tif", ".tiff", ".TIF", ".TIFF", ".jp2", ".JP2", ".vrt", ".png", ".jpg")

# Errors that retrying cannot fix: the file is not there, or access is refused (a signer may fix 403).
_PERMANENT = ("HTTP response code: 404", "HTTP response code: 410")
# A file GDAL cannot recognise: permanent for a local file. GDAL says so too of a remote file whose header
# requests failed after a first answer (429, 5xx, a dropped connection, past its own retries), so a remote
# one is read once more.
_UNRECOGNISED = "not recognized as being in a supported"
_FORBIDDEN = ("HTTP response code: 403", "HTTP response code: 401", "HTTP response code: 409")


class ReadError(OSError):
    """A source could not be read onto the grid (after retries); the message is one line."""


def gdal_options(hrefs: Sequence[str] = (), **overrides: str) -> dict[str, str]:
    """The GDAL settings for reading ``hrefs``: :data:`GDAL_DEFAULTS`, minus what the environment sets.

    ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` (no request for sidecar files with other
    extensions) is set to the extensions of ``hrefs`` when they all have one.
    """
    options = {k: v for k, v in GDAL_DEFAULTS.items() if k not in os.environ}
    suffixes = {PurePosixPath(urlparse(h).path).suffix for h in hrefs}
    if hrefs and "" not in suffixes and "CPL_VSIL_CURL_ALLOWED_EXTENSIONS" not in os.environ:
        options["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = ",".join(sorted(suffixes | set(RASTER_EXTENSIONS)))
    options.update(overrides)
    return options


def gdal_env(hrefs: Sequence[str] = (), **overrides: str) -> rasterio.Env:
    """A ``rasterio.Env`` with :func:`gdal_options`, the block cache bounded first; enter it once per task."""
    bound_block_cache()
    return rasterio.Env(**gdal_options(hrefs, **overrides))


def bound_block_cache() -> None:
    """Cap GDAL's block cache at :data:`BLOCK_CACHE_BYTES` for the process (unless ``GDAL_CACHEMAX`` is set).

    Set process-wide, not in a ``rasterio.Env``: leaving an Env restores GDAL's
    default (5 % of RAM), which threads still reading would then fill.
    """
    if "GDAL_CACHEMAX" not in os.environ:
        set_gdal_config("GDAL_CACHEMAX", BLOCK_CACHE_BYTES)


def _vsi(href: str) -> str:
    return f"/vsicurl/{href}" if href.startswith(("http://", "https://")) else href


def _is_remote(href: str) -> bool:
    """A URL of a scheme geosample reads remotely (``REMOTE_SCHEMES``, as the href policy), or a GDAL /vsi path."""
    return urlparse(href).scheme.lower() in REMOTE_SCHEMES or href.startswith("/vsi")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _resolution_m(src: DatasetReader) -> float:
    """The source's pixel height in metres (degrees converted at the equator's 111.32 km)."""
    res = abs(src.transform.e) or abs(src.transform.a)
    return res * 111_320.0 if src.crs is not None and src.crs.is_geographic else res


class DatasetCache:
    """Open sources (and their overview levels), least recently used closed first; close with :meth:`close`.

    Not thread-safe: one per thread. At most ``max_open`` sources (an overview
    level counts as one) are open at once: the least recently used is closed
    before another is opened. ``signer`` turns an asset href into a readable
    URL; it is called each time a source is opened, so a long run always reads
    with a fresh token (and a 403 reopens with a new one).
    """

    def __init__(self, signer: Signer | None = None, max_open: int = 32) -> None:
        self.signer = signer
        self.max_open = max_open
        self._open: OrderedDict[tuple[str, int | None], DatasetReader] = OrderedDict()
        self._facts: dict[int, dict[Hashable, Any]] = {}
        self.opens = 0

    def get(self, href: str, target_res_m: float | None = None) -> DatasetReader:
        """The open source for ``href``, at the coarsest overview still finer than ``target_res_m``."""
        base = self._get(href, None)
        if target_res_m is None:
            return base
        level = _overview_level(base, target_res_m)
        return base if level is None else self._get(href, level)

    def _get(self, href: str, level: int | None) -> DatasetReader:
        key = (href, level)
        src = self._open.get(key)
        if src is not None:
            self._open.move_to_end(key)
        else:
            while self._open and len(self._open) >= self.max_open:
                old = self._open.popitem(last=False)[1]
                self._facts.pop(id(old), None)
                old.close()
            url = self.signer(href) if self.signer is not None else href
            kwargs: dict[str, Any] = {} if level is None else {"overview_level": level}
            src = rasterio.open(url, **kwargs)
            self.opens += 1
            self._open[key] = src
        return src

    def facts(self, src: DatasetReader) -> dict[Hashable, Any]:
        """What has been worked out about an open source (its CRS against a grid's, its mask kind), kept with it.

        A source's CRS, transform and masks do not change while it is open: each chip read from it
        asks GDAL (and compares CRSs) once, not once per chip.
        """
        return self._facts.setdefault(id(src), {})

    def drop(self, href: str) -> None:
        """Close every open level of ``href`` (after an error, so the next try reopens it)."""
        for key in [k for k in self._open if k[0] == href]:
            src = self._open.pop(key)
            self._facts.pop(id(src), None)
            with contextlib.suppress(Exception):
                src.close()

    def close(self) -> None:
        """Close all open sources."""
        for src in self._open.values():
            with contextlib.suppress(Exception):
                src.close()
        self._open.clear()
        self._facts.clear()

    def __enter__(self) -> DatasetCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _overview_level(src: DatasetReader, target_res_m: float) -> int | None:
    """Index of the coarsest overview whose pixels are still at most ``target_res_m``, or None."""
    res = _resolution_m(src)
    if target_res_m < 2.0 * res:
        return None
    factors = src.overviews(1)
    best = None
    for i, factor in enumerate(factors):
        if res * factor <= target_res_m * (1.0 + 1e-6):
            best = i
    return best


def _window_inside(src: DatasetReader, grid: ChipGrid, facts: dict[Hashable, Any]) -> Window | None:
    """The grid's extent as a (fractional) window of ``src`` when ``src`` holds all of it in the same CRS.

    ``facts``: the source's :meth:`DatasetCache.facts`, where its transform and CRS match are kept.
    """
    gt = grid.transform
    st = facts.get("transform")
    if st is None:
        st = facts["transform"] = src.transform
    aligned = facts.get(("crs", grid.epsg))
    if aligned is None:
        aligned = facts[("crs", grid.epsg)] = (
            src.crs is not None and st.b == 0 and st.d == 0 and st.a > 0 and st.e < 0 and src.crs == grid.crs
        )
    if not aligned:
        return None
    col = (gt.c - st.c) / st.a
    row = (gt.f - st.f) / st.e
    width = grid.width * gt.a / st.a
    height = grid.height * gt.e / st.e
    eps = 1e-6
    if col < -eps or row < -eps or col + width > src.width + eps or row + height > src.height + eps:
        return None
    return Window(max(col, 0.0), max(row, 0.0), width, height)


def _read_one(
    src: DatasetReader,
    grid: ChipGrid,
    bands: Sequence[int] | None,
    resampling: Resampling,
    nodata: float | None,
    facts: dict[Hashable, Any],
) -> np.ma.MaskedArray:
    """One source onto the grid, masked where it has no data.

    The mask is GDAL's (the bands' nodata, alpha or mask band). Where GDAL's mask is a plain comparison with
    an integer nodata value, or the alpha band of a warp, it is computed here from the pixels already read:
    asking GDAL for it would read (or warp) the window a second time for the same answer. ``facts``: the
    source's :meth:`DatasetCache.facts`.
    """
    indexes = list(bands) if bands else list(range(1, src.count + 1))
    window = _window_inside(src, grid, facts)
    shape = (len(indexes), grid.height, grid.width)
    if window is not None and (nodata is None or nodata == src.nodata):
        # Resampled reads of GDAL's mask follow the data's resampling only for nearest: elsewhere ask GDAL.
        kind = None
        if resampling == Resampling.nearest:
            key = ("mask", *indexes)
            if key not in facts:  # None (ask GDAL) is a kind too, so a .get() would not tell it from unknown
                facts[key] = _mask_kind(src, indexes)
            kind = facts[key]
        if kind is None:
            out = src.read(indexes, window=window, out_shape=shape, resampling=resampling, masked=True)
            return np.ma.MaskedArray(out.data, mask=np.ma.getmaskarray(out))
        data = src.read(indexes, window=window, out_shape=shape, resampling=resampling)
        return np.ma.MaskedArray(data, mask=_nodata_mask(data, src, indexes, kind))
    src_nodata = nodata if nodata is not None else src.nodata
    vrt_options: dict[str, Any] = {
        "crs": grid.crs, "transform": grid.transform, "width": grid.width, "height": grid.height,
        "resampling": resampling,
    }  # fmt: skip
    if src_nodata is None:
        vrt_options["add_alpha"] = True
    else:
        vrt_options["src_nodata"] = src_nodata
        vrt_options["nodata"] = src_nodata
    with WarpedVRT(src, **vrt_options) as vrt:
        if src_nodata is None and _is_alpha_mask(vrt, indexes):
            # The warp's alpha band is GDAL's mask of every band: warped with the data, in one pass.
            data = vrt.read([*indexes, vrt.count])
            return np.ma.MaskedArray(data[:-1], mask=np.broadcast_to(data[-1] == 0, data[:-1].shape).copy())
        kind = _mask_kind(vrt, indexes) if src_nodata is not None else None
        if kind is None:
            out = vrt.read(indexes, masked=True)
            return np.ma.MaskedArray(out.data, mask=np.ma.getmaskarray(out))
        data = vrt.read(indexes)
        return np.ma.MaskedArray(data, mask=_nodata_mask(data, vrt, indexes, kind))


def _mask_kind(src: DatasetReader | WarpedVRT, indexes: Sequence[int]) -> str | None:
    """``nodata`` or ``valid`` when GDAL's mask of every band in ``indexes`` is computable from the pixels.

    ``valid``: GDAL says every pixel is valid (no nodata, no mask band). ``nodata``: the mask is "pixel ≠
    nodata" with an integer nodata value the integer band can hold, compared exactly, as GDAL does. Float
    bands (GDAL compares with a tolerance) and mask or alpha bands are left to GDAL (None).
    """
    flags = src.mask_flag_enums
    kinds = set()
    for i in indexes:
        band = flags[i - 1]
        if band == [MaskFlags.all_valid]:
            kinds.add("valid")
            continue
        value = src.nodatavals[i - 1]
        dtype = np.dtype(src.dtypes[i - 1])
        if band != [MaskFlags.nodata] or dtype.kind not in "ui" or value is None or not float(value).is_integer():
            return None
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            return None
        kinds.add("nodata")
    return "nodata" if "nodata" in kinds else "valid"


def _nodata_mask(data: np.ndarray, src: DatasetReader | WarpedVRT, indexes: Sequence[int], kind: str) -> np.ndarray:
    """GDAL's nodata mask (True: no data) of ``data``, read from ``indexes`` of ``src``; see :func:`_mask_kind`."""
    if kind == "valid":
        return np.zeros(data.shape, dtype=bool)
    values = [src.nodatavals[i - 1] for i in indexes]
    if len(set(values)) == 1:
        return data == np.asarray(values[0]).astype(data.dtype)
    mask = np.zeros(data.shape, dtype=bool)
    for b, value in enumerate(values):
        if value is not None:
            mask[b] = data[b] == np.asarray(value).astype(data.dtype)
    return mask


def _is_alpha_mask(vrt: WarpedVRT, indexes: Sequence[int]) -> bool:
    """Whether GDAL's mask of every band in ``indexes`` is the warp's alpha band (the last one)."""
    flags = vrt.mask_flag_enums
    alpha = vrt.count
    return (
        max(indexes) < alpha
        and all(set(flags[i - 1]) == {MaskFlags.per_dataset, MaskFlags.alpha} for i in indexes)
        and vrt.colorinterp[alpha - 1] == ColorInterp.alpha
    )


def _retry_delay(attempt: int) -> float:
    return min(8.0, 0.25 * 2.0**attempt)


def read_onto_grid(
    hrefs: Sequence[str],
    grid: ChipGrid,
    *,
    bands: Sequence[int] | None = None,
    resampling: Resampling | str = Resampling.nearest,
    nodata: float | None = None,
    cache: DatasetCache | None = None,
    signer: Signer | None = None,
    retries: int = 3,
) -> np.ma.MaskedArray:
    """Read rasters onto a chip grid; several hrefs make a mosaic where the first valid pixel wins.

    Args:
        hrefs: Local paths or URLs of the sources, best first.
        grid: The target grid (see :func:`geosample.stac.grid.chip_grid`).
        bands: 1-based band indexes to read from each source; all bands by default.
        resampling: How to resample (``nearest`` for categorical data such as land cover).
        nodata: The value that marks missing pixels in the sources; their own nodata by default.
        cache: Open sources to reuse (and keep open) across calls; otherwise opened and closed here.
        signer: Turns an href into a readable URL just before each open (e.g. a SAS-token signer).
        retries: Further attempts after a transient error (network, 5xx, 429); a retry bypasses
            GDAL's cache of the failed file. 404s fail at once, 403s retry only with a signer; a
            file GDAL does not recognise fails at once if local and after one more read if remote
            (GDAL says so too of a remote header whose requests all failed).

    Returns:
        A (bands, height, width) masked array, masked where no source has valid data; its
        ``fill_value`` is the sources' nodata when they have one.

    Raises:
        ReadError: If a source cannot be opened or read; the message names the href.
    """
    out, fill = read_with_nodata(
        hrefs, grid, bands=bands, resampling=resampling, nodata=nodata, cache=cache, signer=signer, retries=retries
    )
    if fill is not None:
        out.fill_value = fill
    return out


def read_with_nodata(
    hrefs: Sequence[str],
    grid: ChipGrid,
    *,
    bands: Sequence[int] | None = None,
    resampling: Resampling | str = Resampling.nearest,
    nodata: float | None = None,
    cache: DatasetCache | None = None,
    signer: Signer | None = None,
    retries: int = 3,
) -> tuple[np.ma.MaskedArray, float | None]:
    """:func:`read_onto_grid`, also returning the sources' nodata value (None where they have none)."""
    if not hrefs:
        raise ValueError("read_onto_grid needs at least one href")
    method = Resampling[resampling] if isinstance(resampling, str) else resampling
    with contextlib.ExitStack() as stack:
        if cache is None:
            # Called on its own, the read gets the remote-COG settings; a task (with its cache) has them already.
            stack.enter_context(gdal_env(hrefs))
            cache = stack.enter_context(DatasetCache(signer))
        elif signer is not None and cache.signer is None:
            cache.signer = signer
        out, fill = _read_with_retry(cache, hrefs[0], grid, bands, method, nodata, retries)
        fill = nodata if nodata is not None else fill
        for href in hrefs[1:]:
            if not out.mask.any():
                break
            part, src_nodata = _read_with_retry(cache, href, grid, bands, method, nodata, retries)
            fill = fill if fill is not None else src_nodata
            take = out.mask & ~part.mask
            out.data[take] = part.data[take]
            out.mask &= ~take
    return out, fill


def _read_with_retry(
    cache: DatasetCache,
    href: str,
    grid: ChipGrid,
    bands: Sequence[int] | None,
    resampling: Resampling,
    nodata: float | None,
    retries: int,
) -> tuple[np.ma.MaskedArray, float | None]:
    for attempt in range(retries + 1):
        try:
            if attempt == 0:
                src = cache.get(href, grid.resolution)
                return _read_one(src, grid, bands, resampling, nodata, cache.facts(src)), src.nodata
            # GDAL remembers a failed file; this href (signed or not) must be fetched afresh.
            url = cache.signer(href) if cache.signer is not None else href
            with rasterio.Env(CPL_VSIL_CURL_NON_CACHED=":".join({_vsi(href), _vsi(url)})):
                src = cache.get(href, grid.resolution)
                return _read_one(src, grid, bands, resampling, nodata, cache.facts(src)), src.nodata
        except (RasterioError, OSError) as exc:
            cache.drop(href)
            message = _one_line(exc)
            permanent = (
                any(p in message for p in _PERMANENT)
                or (cache.signer is None and any(p in message for p in _FORBIDDEN))
                or (_UNRECOGNISED in message and (attempt > 0 or not _is_remote(href)))
            )
            if permanent or attempt == retries:
                raise ReadError(f"{href}: {message}") from None
            time.sleep(_retry_delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def write_cog(
    data: np.ma.MaskedArray,
    grid: ChipGrid,
    band_names: Sequence[str],
    *,
    nodata: float | None = None,
    categorical: bool = False,
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
) -> bytes:
    """Encode a chip as a tiled, DEFLATE-compressed Cloud-Optimized GeoTIFF, in memory.

    Masked pixels are written as ``nodata``; without one, an internal mask marks them.
    ``scales``/``offsets`` (per band: physical value = value × scale + offset) are written as
    GDAL's band scale and offset. The bytes are deterministic on one machine (no timestamps), so
    equal pixels give equal sha256s there. A chip of one tile (up to 256 × 256 px) is GDAL's COG with its
    tile compressed by ISA-L (see :mod:`geosample.stac._cog`); larger chips (with overviews) are
    GDAL's throughout. ISA-L picks its kernels by CPU and does not promise the same compressed
    stream on every CPU: chips made on two machines may differ in bytes, never in pixels.
    """
    count = data.shape[0]
    dtype = data.dtype
    mask = np.ma.getmaskarray(data)
    fill = nodata if nodata is not None else 0
    masked = bool(mask.any())
    filled = np.where(mask, np.asarray(fill, dtype=dtype), data.data) if masked else data.data
    profile: dict[str, Any] = {
        "driver": "COG", "width": grid.width, "height": grid.height, "count": count, "dtype": dtype.name,
        "crs": grid.crs, "transform": grid.transform, "nodata": nodata, "compress": "deflate", "level": 1,
        "predictor": 3 if np.issubdtype(dtype, np.floating) else 2, "blocksize": COG_BLOCK,
        "overview_resampling": "nearest" if categorical else "average",
    }  # fmt: skip

    def describe(dst: Any) -> None:
        for i, name in enumerate(band_names, start=1):
            dst.set_band_description(i, name)
        if scales is not None:
            dst.scales = tuple(float(s) for s in scales)
        if offsets is not None:
            dst.offsets = tuple(float(o) for o in offsets)

    if nodata is None and masked:
        # An internal mask is a second IFD and tile: GDAL writes the whole file.
        def with_mask(dst: Any) -> None:
            describe(dst)
            dst.write_mask(np.where(mask.any(axis=0), 0, 255).astype(np.uint8))

        return _gdal_cog(filled, profile, with_mask)
    kind = ("chip", tuple(band_names), repr(nodata), categorical,
            None if scales is None else tuple(float(s) for s in scales),
            None if offsets is None else tuple(float(o) for o in offsets))  # fmt: skip
    return _cog(filled, grid, profile, describe, kind)


def write_class_cog(
    codes: np.ndarray,
    grid: ChipGrid,
    description: str,
    names: Mapping[int, str],
    colours: Mapping[int, tuple[int, int, int, int]],
    *,
    nodata: int = 0,
) -> bytes:
    """Encode a uint8 class map as a COG with a colour table (QGIS shows it paletted) and one tag per code.

    Each code's name is a band tag ``code_<value>=<name>``; ``nodata`` marks pixels without a class.
    """
    profile: dict[str, Any] = {
        "driver": "COG", "width": grid.width, "height": grid.height, "count": 1, "dtype": "uint8",
        "crs": grid.crs, "transform": grid.transform, "nodata": nodata, "compress": "deflate", "level": 1,
        "predictor": 2, "blocksize": COG_BLOCK, "overview_resampling": "nearest",
    }  # fmt: skip
    colormap = {int(k): tuple(int(c) for c in v) for k, v in colours.items()}
    tags = {f"code_{int(k)}": str(v) for k, v in names.items()}

    def describe(dst: Any) -> None:
        dst.set_band_description(1, description)
        dst.write_colormap(1, colormap)
        dst.update_tags(1, **tags)

    kind = ("classes", description, nodata, tuple(sorted(colormap.items())), tuple(sorted(tags.items())))
    return _cog(np.asarray(codes, dtype=np.uint8)[np.newaxis], grid, profile, describe, kind)


COG_BLOCK = 256
"""Tile size of the chips' COGs."""


def _cog(
    pixels: np.ndarray, grid: ChipGrid, profile: dict[str, Any], describe: Callable[[Any], None], kind: Hashable
) -> bytes:
    """The COG of ``pixels`` (bands, rows, columns): a cached one-tile layout for a chip of one tile, else GDAL's."""
    transform = grid.transform
    if grid.width <= COG_BLOCK and grid.height <= COG_BLOCK and transform.b == transform.d == 0:
        origin = (transform.c, transform.f)
        key = (kind, grid.width, grid.height, pixels.shape[0], pixels.dtype.str, grid.crs, transform.a, transform.e)
        layout = layout_for(key, lambda: _gdal_cog(np.ones_like(pixels), profile, describe), origin)
        if layout is not None:
            return layout.encode(pixels, *origin)
    return _gdal_cog(pixels, profile, describe)


def _gdal_cog(pixels: np.ndarray, profile: dict[str, Any], describe: Callable[[Any], None]) -> bytes:
    """The COG of ``pixels`` as GDAL's COG driver writes it with ``profile``; ``describe`` adds the metadata."""
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dst:
            dst.write(pixels)
            describe(dst)
        return bytes(memfile.getbuffer())


def preview_png(
    data: np.ma.MaskedArray, rgb: Sequence[int] = (0, 1, 2), percentiles: tuple[float, float] = (2, 98)
) -> bytes:
    """An RGB (or grey) PNG of a chip: each band stretched between its 2nd and 98th percentile; no data transparent."""
    idx = [i for i in rgb if i < data.shape[0]] or [0]
    if len(idx) < 3:
        idx = [idx[0]] * 3
    planes = []
    valid = ~np.ma.getmaskarray(data[idx]).any(axis=0)
    for i in idx:
        band = np.asarray(data.data[i], dtype=np.float64)
        values = band[valid & np.isfinite(band)]
        lo, hi = np.percentile(values, percentiles) if values.size else (0.0, 1.0)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        planes.append(np.clip((band - lo) * scale, 0, 255).astype(np.uint8))
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    image = np.stack([*planes, alpha])
    with warnings.catch_warnings(), MemoryFile() as memfile:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memfile.open(driver="PNG", width=image.shape[2], height=image.shape[1], count=4, dtype="uint8") as dst:
            dst.write(image)
        return bytes(memfile.getbuffer())
