"""Single-tile COGs at the speed of the read: GDAL lays out the file once per kind of chip, ISA-L compresses each tile.

A default chip (256 × 256 px, tiles of 256) is one tile, as is any chip up to
256 px a side (224 px for CLIP, say: GDAL pads the tile with zeros, and so
does this module), so its COG is GDAL's header, ghost area, IFD and tag
values, then the one DEFLATE-compressed tile between its size leader and its
4-byte trailer. Everything but the tile and
the chip's origin is the same for every chip of a collection in one UTM zone:
band count, type, CRS, pixel size, nodata, band names, scales, colour table.
So :class:`TileLayout` asks GDAL's COG driver to write that file once (a
template, cached per kind of chip) and keeps its bytes up to the tile; each
chip then costs the predictor (numpy), DEFLATE (ISA-L, 4× faster than GDAL's
libdeflate at the same ratio) and three patched numbers (the origin in the
``ModelTiepoint`` tag, the tile's byte count, its leader).

The files are GDAL's own COGs, byte for byte, except for the compressed
stream: same tags, same layout, same ghost area; any DEFLATE reader reads
them (tested against GDAL's decoding and an independent numpy one). ISA-L
chooses its kernels by CPU and does not promise one compressed stream on every
CPU, so the same pixels may make other bytes (another sha256) on another
machine; on one machine they make the same bytes every time. What the
template cannot serve (a chip of several tiles, which has overviews; an
internal mask; a rotated grid; a layout other than the one checked here)
goes through GDAL whole.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np
from isal import isal_zlib

__all__ = ["TileLayout", "layout_for"]

DEFLATE = 8
"""TIFF Compression code of (Adobe) DEFLATE: a zlib stream per tile."""
ISAL_LEVEL = 1
"""ISA-L's level 1: the compression ratio of libdeflate's level 1 (GDAL's ``level=1``) on imagery, 4× faster."""
_TAGS = {"compression": 259, "tile_width": 322, "tile_length": 323, "tile_offsets": 324, "tile_byte_counts": 325,
         "predictor": 317, "planar": 284, "tiepoint": 33922, "transformation": 34264}  # fmt: skip
_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}
"""Bytes per value of each TIFF field type."""
_GHOST = (b"LAYOUT=IFDS_BEFORE_DATA", b"BLOCK_LEADER=SIZE_AS_UINT4", b"BLOCK_TRAILER=LAST_4_BYTES_REPEATED")
"""What a template's ghost area must say for the tile to be spliced as GDAL writes it."""
MAX_LAYOUTS = 64
"""Templates kept per process (one per kind of chip: collection, UTM zone, band set)."""


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """A one-tile COG template: the bytes before the tile, where its numbers sit, and how the tile is predicted."""

    head: bytes
    """Header, ghost area, IFD and tag values: everything before the tile's 4-byte size leader."""
    tiepoint_at: int
    """Offset in :attr:`head` of the ``ModelTiepoint`` tag's X (then Y) of the raster's upper-left corner."""
    byte_count_at: int
    """Offset in :attr:`head` of the tile's byte count (a LONG in the IFD entry)."""
    predictor: int
    """TIFF predictor: 1 none, 2 horizontal differencing, 3 floating point."""
    dtype: np.dtype
    """Pixel type (little-endian)."""
    tile_shape: tuple[int, int] = (256, 256)
    """Rows and columns of the tile; a smaller chip fills its upper-left corner, the rest zeros as GDAL pads."""

    def encode(self, pixels: np.ndarray, x: float, y: float) -> bytes:
        """The COG of ``pixels`` (bands, rows, columns; at most one tile) with its upper-left corner at ``(x, y)``."""
        pixels = pixels.astype(self.dtype, copy=False)
        bands, rows, cols = pixels.shape
        if (rows, cols) != self.tile_shape:
            padded = np.zeros((bands, *self.tile_shape), dtype=self.dtype)
            padded[:, :rows, :cols] = pixels
            pixels = padded
        tile = isal_zlib.compress(_predict(pixels, self.predictor), ISAL_LEVEL)
        head = bytearray(self.head)
        struct.pack_into("<2d", head, self.tiepoint_at, x, y)
        struct.pack_into("<I", head, self.byte_count_at, len(tile))
        return b"".join((head, struct.pack("<I", len(tile)), tile, tile[-4:]))


_layouts: OrderedDict[Hashable, TileLayout | None] = OrderedDict()
_layouts_lock = threading.Lock()


def layout_for(key: Hashable, template: Callable[[], bytes], origin: tuple[float, float]) -> TileLayout | None:
    """The cached layout of the chips described by ``key``, made from ``template()`` on first use; None if unusable.

    ``key`` must name everything the file holds besides the pixels and the origin; ``template`` writes a COG of
    that kind through GDAL with its upper-left corner at ``origin``.
    """
    with _layouts_lock:
        if key in _layouts:
            _layouts.move_to_end(key)
            return _layouts[key]
    layout = parse_template(template(), origin)
    with _layouts_lock:
        _layouts[key] = layout
        while len(_layouts) > MAX_LAYOUTS:
            _layouts.popitem(last=False)
    return layout


def parse_template(data: bytes, origin: tuple[float, float]) -> TileLayout | None:
    """The layout of a GDAL-written, one-tile, little-endian classic-TIFF COG; None for anything else.

    Checks what the splice relies on: the ghost area's leader and trailer, one IFD holding one DEFLATE tile
    of the image's own size, the tile last in the file, and the origin where ``ModelTiepoint`` keeps it.
    """
    if data[:4] != b"II*\x00" or not all(part in data[8:512] for part in _GHOST):
        return None
    ifd = struct.unpack_from("<I", data, 4)[0]
    (count,) = struct.unpack_from("<H", data, ifd)
    if struct.unpack_from("<I", data, ifd + 2 + 12 * count)[0] != 0:
        return None  # a second IFD: a mask or overviews
    entries: dict[int, tuple[int, int, int]] = {}
    for i in range(count):
        tag, kind, n = struct.unpack_from("<HHI", data, ifd + 2 + 12 * i)
        size = _TIFF_SIZES.get(kind, 0) * n
        at = ifd + 2 + 12 * i + 8
        entries[tag] = (kind, n, at if size <= 4 else struct.unpack_from("<I", data, at)[0])
    if _TAGS["transformation"] in entries or any(_TAGS[t] not in entries for t in ("tiepoint", "tile_offsets")):
        return None
    value = {t: _short_or_long(data, entries.get(_TAGS[t])) for t in ("compression", "planar", "predictor")}
    offsets, counts = entries[_TAGS["tile_offsets"]], entries.get(_TAGS["tile_byte_counts"])
    if value["compression"] != DEFLATE or value["planar"] not in (None, 1) or offsets[1] != 1 or counts is None:
        return None
    if counts[:2] != (4, 1) or offsets[0] != 4:
        return None
    tile_at = struct.unpack_from("<I", data, offsets[2])[0]
    tile_bytes = struct.unpack_from("<I", data, counts[2])[0]
    if tile_at + tile_bytes + 4 != len(data) or struct.unpack_from("<I", data, tile_at - 4)[0] != tile_bytes:
        return None
    kind, n, tiepoint = entries[_TAGS["tiepoint"]]
    if kind != 12 or n != 6 or struct.unpack_from("<6d", data, tiepoint) != (0.0, 0.0, 0.0, *origin, 0.0):
        return None
    dtype = _tile_dtype(data, entries)
    if dtype is None or tiepoint + 48 > tile_at - 4 or counts[2] + 4 > tile_at - 4:
        return None
    shape = (
        _short_or_long(data, entries.get(_TAGS["tile_length"])),
        _short_or_long(data, entries.get(_TAGS["tile_width"])),
    )
    if not all(isinstance(n, int) and n > 0 for n in shape):
        return None
    return TileLayout(data[: tile_at - 4], tiepoint + 24, counts[2], value["predictor"] or 1, dtype, shape)


def _short_or_long(data: bytes, entry: tuple[int, int, int] | None) -> int | None:
    if entry is None:
        return None
    kind, n, at = entry
    if n != 1 or kind not in (3, 4):
        return -1
    return struct.unpack_from("<H" if kind == 3 else "<I", data, at)[0]


def _tile_dtype(data: bytes, entries: dict[int, tuple[int, int, int]]) -> np.dtype | None:
    """The pixel type from BitsPerSample and SampleFormat (every sample alike), little-endian."""

    def values(tag: int) -> tuple[int, ...]:
        kind, n, at = entries[tag]
        return struct.unpack_from(f"<{n}{'H' if kind == 3 else 'I'}", data, at)

    bits = set(values(258)) if 258 in entries else {1}
    formats = set(values(339)) if 339 in entries else {1}
    if len(bits) != 1 or len(formats) != 1:
        return None
    kind = {1: "u", 2: "i", 3: "f"}.get(formats.pop())
    size = bits.pop()
    if kind is None or size % 8:
        return None
    return np.dtype(f"<{kind}{size // 8}")


def _predict(pixels: np.ndarray, predictor: int) -> bytes:
    """The tile's bytes as TIFF stores them before DEFLATE: pixel-interleaved rows, after the predictor.

    Predictor 2 differences each sample from the same sample one pixel to the left (wrapping, as libtiff's
    integer arithmetic does); predictor 3 first splits each row's values into byte planes, most significant
    first, then differences each byte from the one a pixel (``bands`` bytes) before it.
    """
    bands, rows, cols = pixels.shape
    inter = np.ascontiguousarray(pixels.transpose(1, 2, 0))
    if predictor == 1:
        return inter.tobytes()
    if predictor == 2:
        out = np.empty_like(inter)
        out[:, 0] = inter[:, 0]
        np.subtract(inter[:, 1:], inter[:, :-1], out=out[:, 1:])
        return out.tobytes()
    size = inter.dtype.itemsize
    planes = inter.view(np.uint8).reshape(rows, cols * bands, size)[:, :, ::-1]
    row = np.ascontiguousarray(planes.transpose(0, 2, 1)).reshape(rows, size * cols * bands)
    out = np.empty_like(row)
    out[:, :bands] = row[:, :bands]
    np.subtract(row[:, bands:], row[:, :-bands], out=out[:, bands:])
    return out.tobytes()
