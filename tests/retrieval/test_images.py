"""Chips as RGB pictures for image encoders (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from retrieval.chips import SCENE, independent_rgb, write_chips

from geosample.errors import DatasetError
from geosample.retrieval._images import read_chip_rgb, rgb_band_indexes, stretch_to_uint8


@pytest.mark.parametrize(
    ("bands", "wanted", "expected"),
    [
        (["blue", "green", "red", "nir08"], None, [3, 2, 1]),
        (["B02", "B03", "B04", "B08"], None, [3, 2, 1]),
        (["coastal", "Red", "Green", "Blue"], None, [2, 3, 4]),
        (["a", "b", "c"], None, [1, 2, 3]),
        (["pan"], None, [1, 1, 1]),
        (["swir16", "nir08", "red"], ["swir16", "nir08", "red"], [1, 2, 3]),
    ],
)
def test_rgb_bands_by_name(bands: list[str], wanted: list[str] | None, expected: list[int]) -> None:
    assert rgb_band_indexes(bands, wanted, "chip.tif") == expected


def test_unrecognised_bands_ask_for_rgb_bands() -> None:
    with pytest.raises(DatasetError, match="name them with --rgb-bands R,G,B"):
        rgb_band_indexes(["nir08", "swir16", "swir22", "lwir"], None, "chip.tif")
    with pytest.raises(DatasetError, match="has no band\\(s\\) red"):
        rgb_band_indexes(["nir08", "swir16"], ["red", "nir08", "swir16"], "chip.tif")


def test_stretch_by_hand() -> None:
    band = np.arange(100, dtype=np.float64).reshape(10, 10)
    data = np.stack([band, band * 2, np.full_like(band, 7.0)])
    valid = np.ones((10, 10), bool)
    valid[0, 0] = False
    out = stretch_to_uint8(data, valid)
    low, high = np.percentile(band[valid], [2, 98])
    assert out[0, 0].tolist() == [0, 0, 0]  # nodata stays black
    assert out[5, 5, 0] == round((55 - low) / (high - low) * 255)
    assert out[..., 0].max() == 255 and out[..., 0][valid].min() == 0
    np.testing.assert_array_equal(out[..., 0], out[..., 1])  # a band's scale does not matter
    assert (out[..., 2] == 0).all()  # no spread: left black


def test_read_chip_matches_an_independent_read(tmp_path: Path) -> None:
    write_chips(tmp_path, ["s1", "s2"], failed=0)
    for name in ("s1", "s2"):
        path = tmp_path / "chips" / f"{name}.tif"
        np.testing.assert_array_equal(read_chip_rgb(path, ["blue", "green", "red"], None), independent_rgb(path))
    # The whole real scene, nodata (0) outside the footprint.
    rgb = read_chip_rgb(SCENE, ["red", "green", "blue"], None)
    assert rgb.shape == (718, 791, 3) and rgb[0, 0].tolist() == [0, 0, 0] and rgb.max() == 255


def test_unreadable_chip(tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_text("not a tiff")
    with pytest.raises(DatasetError, match="cannot be read"):
        read_chip_rgb(tmp_path / "bad.tif", ["red"], None)
