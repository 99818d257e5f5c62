"""One-tile chip COGs (GDAL's layout, ISA-L's DEFLATE) against GDAL's own file, its decoder and a numpy decoder."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine, from_origin

from geosample.stac import _cog
from geosample.stac.grid import ChipGrid
from geosample.stac.observe import CODE_COLOURS, CODE_NAMES
from geosample.stac.reader import _gdal_cog, write_class_cog, write_cog

BANDS = ["blue", "green", "red", "nir", "swir16", "swir22"]


def chip_grid(x: float = 500_000.0, y: float = 5_000_000.0, epsg: int = 32633, size: int = 256) -> ChipGrid:
    return ChipGrid(CRS.from_epsg(epsg), from_origin(x, y, 10.0, 10.0), size, size)


def imagery(dtype: str, bands: int, seed: int = 0, size: int = 256) -> np.ndarray:
    """Smooth fields plus noise, as reflectance looks to DEFLATE; the type's extremes in a corner (wrap-around)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    if np.dtype(dtype).kind == "f":
        base = 0.2 + 0.1 * np.sin(x / 17.0)[None] * np.cos(y / 23.0)[None] + rng.normal(0, 0.01, (bands, size, size))
        return base.astype(dtype)
    info = np.iinfo(dtype)
    base = 1500 + 700 * np.sin(x / 97.0) * np.cos(y / 61.0) + rng.normal(0, 120, (bands, size, size))
    if info.max < 10_000:
        base = base * (info.max / 4_000)
    out = base.clip(max(info.min, 0), min(info.max, 10_000)).astype(dtype)
    out[:, 0, :4] = [info.min, info.max, info.min, info.max]
    return out


def gdal_file(pixels: np.ndarray, grid: ChipGrid, nodata: float | None, names: list[str], **meta: object) -> bytes:
    """What GDAL's COG driver writes for the same chip and metadata (the reference)."""
    profile = {
        "driver": "COG", "width": grid.width, "height": grid.height, "count": pixels.shape[0],
        "dtype": pixels.dtype.name, "crs": grid.crs, "transform": grid.transform, "nodata": nodata,
        "compress": "deflate", "level": 1, "predictor": 3 if pixels.dtype.kind == "f" else 2, "blocksize": 256,
        "overview_resampling": "average",
    }  # fmt: skip

    def describe(dst: object) -> None:
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)  # type: ignore[attr-defined]
        for key, value in meta.items():
            setattr(dst, key, value)

    return _gdal_cog(pixels, profile, describe)


def tile_of(blob: bytes) -> tuple[int, int]:
    """The tile's offset and size, as GDAL reports them."""
    with MemoryFile(blob) as mem, mem.open() as src:
        return int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1)), int(
            src.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1)
        )


def described(blob: bytes) -> dict[str, object]:
    with MemoryFile(blob) as mem, mem.open() as src:
        return {
            "profile": {k: v for k, v in src.profile.items() if k != "nodata"}, "nodata": repr(src.nodata),
            "descriptions": src.descriptions, "scales": src.scales, "offsets": src.offsets,
            "tags": [src.tags(i) for i in range(1, src.count + 1)], "structure": src.tags(ns="IMAGE_STRUCTURE"),
            "overviews": src.overviews(1), "colorinterp": src.colorinterp,
        }  # fmt: skip


def read(blob: bytes) -> np.ndarray:
    with MemoryFile(blob) as mem, mem.open() as src:
        return src.read()


@pytest.mark.parametrize(
    ("dtype", "bands"),
    [
        ("uint8", 3),
        ("uint16", 1),
        ("uint16", 3),
        ("uint16", 6),
        ("int16", 4),
        ("uint32", 2),
        ("int32", 3),
        ("float32", 6),
        ("float64", 2),
    ],  # fmt: skip
)
def test_one_tile_chip_is_gdals_file_with_another_deflate_stream(dtype: str, bands: int) -> None:
    grid = chip_grid(499_870.0, 5_123_450.0)
    pixels = imagery(dtype, bands)
    names = BANDS[:bands]
    nodata = float("nan") if pixels.dtype.kind == "f" else 0
    scales, offsets = [1e-4] * bands, [-0.1] * bands
    ours = write_cog(np.ma.MaskedArray(pixels), grid, names, nodata=nodata, scales=scales, offsets=offsets)
    theirs = gdal_file(pixels, grid, nodata, names, scales=tuple(scales), offsets=tuple(offsets))
    # GDAL decodes the same pixels, and describes the file as it describes its own: a COG, same tags.
    np.testing.assert_array_equal(read(ours), pixels)
    assert described(ours) == described(theirs)
    assert described(ours)["structure"]["LAYOUT"] == "COG"
    # Byte for byte GDAL's up to the tile, but for the tile's byte count (in the IFD) and its size leader.
    at, size = tile_of(ours)
    their_at, their_size = tile_of(theirs)
    assert at == their_at and len(ours) == at + size + 4
    head = at - 4
    counts = [q for q in range(head - 3) if struct.unpack_from("<I", ours, q)[0] == size
              and struct.unpack_from("<I", theirs, q)[0] == their_size]  # fmt: skip
    assert len(counts) == 1
    q = counts[0]
    assert ours[:q] == theirs[:q] and ours[q + 4 : head] == theirs[q + 4 : head]
    assert struct.unpack_from("<I", ours, head)[0] == size and ours[-4:] == ours[at + size - 4 : at + size]
    # Compressed about as well as GDAL's libdeflate at the same level.
    assert size < 1.05 * their_size


@pytest.mark.parametrize(
    ("size", "dtype", "bands"), [(224, "uint16", 3), (16, "uint16", 3), (100, "float32", 2), (5, "uint8", 1)]
)
def test_chips_smaller_than_a_tile_are_gdals_padded_tile(size: int, dtype: str, bands: int) -> None:
    """A 224-px (CLIP) or 16-px chip is one padded tile: GDAL's file up to the tile, the same pixels, zeros around."""
    grid = chip_grid(size=size)
    pixels = imagery(dtype, bands, size=size)
    names = BANDS[:bands]
    nodata = float("nan") if pixels.dtype.kind == "f" else 0
    ours = write_cog(np.ma.MaskedArray(pixels), grid, names, nodata=nodata)
    theirs = gdal_file(pixels, grid, nodata, names)
    np.testing.assert_array_equal(read(ours), pixels)
    assert described(ours) == described(theirs)
    at, size_ = tile_of(ours)
    assert at == tile_of(theirs)[0] and len(ours) == at + size_ + 4
    if dtype == "uint16":
        raw = np.frombuffer(zlib.decompress(ours[at : at + size_]), dtype="<u2").reshape(256, 256, bands)
        tile = np.cumsum(raw, axis=1, dtype=np.uint16).transpose(2, 0, 1)
        np.testing.assert_array_equal(tile[:, :size, :size], pixels)
        assert not tile[:, size:, :].any() and not tile[:, :, size:].any()


def test_integer_tile_decodes_with_plain_zlib_and_a_running_sum() -> None:
    """An independent decoder: zlib, then undo the horizontal differencing per band with a wrapping cumsum."""
    pixels = imagery("uint16", 3, seed=4)
    blob = write_cog(np.ma.MaskedArray(pixels), chip_grid(), ["r", "g", "b"], nodata=0)
    at, size = tile_of(blob)
    raw = np.frombuffer(zlib.decompress(blob[at : at + size]), dtype="<u2").reshape(256, 256, 3)
    decoded = np.cumsum(raw, axis=1, dtype=np.uint16).transpose(2, 0, 1)
    np.testing.assert_array_equal(decoded, pixels)


def test_float_tile_decodes_with_plain_zlib_and_byte_planes() -> None:
    """Predictor 3 undone by hand: running sum of bytes (stride: the bands), then byte planes back to values."""
    pixels = imagery("float32", 2, seed=5)
    blob = write_cog(np.ma.MaskedArray(pixels), chip_grid(), ["a", "b"], nodata=float("nan"))
    at, size = tile_of(blob)
    rows = np.frombuffer(zlib.decompress(blob[at : at + size]), dtype=np.uint8).reshape(256, 4 * 256 * 2)
    undone = np.cumsum(rows.reshape(256, -1, 2), axis=1, dtype=np.uint8).reshape(256, 4, 256 * 2)
    values = np.ascontiguousarray(undone.transpose(0, 2, 1)[:, :, ::-1]).view("<f4").reshape(256, 256, 2)
    np.testing.assert_array_equal(values.transpose(2, 0, 1), pixels)


def test_masked_pixels_are_nodata_and_the_origin_is_each_chips_own() -> None:
    names = ["red", "green", "blue"]
    for k, (x, y) in enumerate([(300_000.0, 4_000_000.0), (300_010.0, 4_002_560.0), (612_345.0, 5_432_100.0)]):
        grid = chip_grid(x, y)
        pixels = imagery("uint16", 3, seed=k)
        mask = np.zeros_like(pixels, dtype=bool)
        mask[:, 100:120, 7:90] = True
        ours = write_cog(np.ma.MaskedArray(pixels, mask), grid, names, nodata=0)
        np.testing.assert_array_equal(read(ours), np.where(mask, 0, pixels))
        with MemoryFile(ours) as mem, mem.open() as src:
            assert src.transform == grid.transform and src.crs == grid.crs and src.nodata == 0
    # Another zone is another template; the chip there has that zone's CRS.
    grid = chip_grid(epsg=32734)
    with MemoryFile(write_cog(np.ma.MaskedArray(imagery("uint16", 3)), grid, names, nodata=0)) as mem:
        with mem.open() as src:
            assert src.crs.to_epsg() == 32734


def test_class_map_keeps_its_colour_table_and_code_names() -> None:
    grid = chip_grid(250_000.0, 6_000_000.0)
    codes = np.random.default_rng(2).integers(0, 7, (256, 256)).astype(np.uint8)
    ours = write_class_cog(codes, grid, "observed", CODE_NAMES, CODE_COLOURS)
    np.testing.assert_array_equal(read(ours)[0], codes)
    with MemoryFile(ours) as mem, mem.open() as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.descriptions == ("observed",)
        assert src.tags(1) == {f"code_{k}": v for k, v in CODE_NAMES.items()}
        table = src.colormap(1)
        assert all(table[k] == tuple(v) for k, v in CODE_COLOURS.items())


def test_what_one_tile_cannot_hold_is_gdals_throughout() -> None:
    names = ["red", "green", "blue"]
    # A chip of 4 tiles has an overview: GDAL writes it, with libdeflate (the same bytes as GDAL alone).
    big = chip_grid(size=512)
    pixels = imagery("uint16", 3, size=512)
    blob = write_cog(np.ma.MaskedArray(pixels), big, names, nodata=0)
    assert blob == gdal_file(pixels, big, 0, names)
    assert described(blob)["overviews"] == [2]
    # No nodata value: an internal mask (a second IFD), GDAL's file.
    small = chip_grid()
    pixels = imagery("uint16", 3)
    mask = np.zeros_like(pixels, dtype=bool)
    mask[:, :5] = True
    with MemoryFile(write_cog(np.ma.MaskedArray(pixels, mask), small, names, nodata=None)) as mem, mem.open() as src:
        assert src.nodata is None
        np.testing.assert_array_equal(src.read_masks(1) == 0, mask[0])
        np.testing.assert_array_equal(src.read(), np.where(mask, 0, pixels))
    # A rotated grid has no ModelTiepoint to patch: GDAL's file.
    rotated = ChipGrid(small.crs, small.transform * Affine.rotation(10.0), 256, 256)
    blob = write_cog(np.ma.MaskedArray(pixels), rotated, names, nodata=0)
    assert blob == gdal_file(pixels, rotated, 0, names)


def test_templates_that_are_not_one_spliceable_tile_are_refused() -> None:
    grid = chip_grid()
    pixels = imagery("uint16", 3)
    origin = (grid.transform.c, grid.transform.f)
    good = gdal_file(pixels, grid, 0, ["a", "b", "c"])
    assert _cog.parse_template(good, origin) is not None
    assert _cog.parse_template(good, (origin[0] + 10, origin[1])) is None  # the origin is not where it is said
    assert _cog.parse_template(good[:-1], origin) is None  # the tile is not the file's end
    plain = good.replace(b"BLOCK_LEADER=SIZE_AS_UINT4", b"BLOCK_LEADER=NONE_________")
    assert _cog.parse_template(plain, origin) is None
    two_tiles = gdal_file(imagery("uint16", 3, size=512), chip_grid(size=512), 0, ["a", "b", "c"])
    assert _cog.parse_template(two_tiles, origin) is None
    with MemoryFile() as mem:  # a plain GeoTIFF: no ghost area, IFD after the data
        with mem.open(driver="GTiff", width=256, height=256, count=1, dtype="uint16", crs=grid.crs,
                      transform=grid.transform, tiled=True, compress="deflate") as dst:  # fmt: skip
            dst.write(pixels[:1])
        assert _cog.parse_template(bytes(mem.getbuffer()), origin) is None


def test_layouts_are_cached_per_kind_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cog, "_layouts", type(_cog._layouts)())
    monkeypatch.setattr(_cog, "MAX_LAYOUTS", 3)
    made = []
    real = _cog.parse_template
    monkeypatch.setattr(_cog, "parse_template", lambda data, origin: made.append(1) or real(data, origin))
    pixels = np.ma.MaskedArray(imagery("uint16", 3))
    for x in (300_000.0, 310_000.0, 320_000.0):
        write_cog(pixels, chip_grid(x), ["r", "g", "b"], nodata=0)
    assert len(made) == 1  # one template for every chip of the zone
    for epsg in (32601, 32602, 32603, 32604):
        write_cog(pixels, chip_grid(epsg=epsg), ["r", "g", "b"], nodata=0)
    assert len(made) == 5 and len(_cog._layouts) == 3
    write_cog(pixels, chip_grid(), ["r", "g", "b"], nodata=1)  # another nodata: another kind
    write_cog(pixels, chip_grid(), ["r", "g", "x"], nodata=1)  # another band name: another kind
    assert len(made) == 7
