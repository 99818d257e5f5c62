"""A chip's grid (CRS, bounds, shape, transform): from fetch's STAC item when it has one, else the GeoTIFF.

Reading the item's ``proj:*`` fields is a small JSON read; opening the
GeoTIFF costs a GDAL open. Opens skip GDAL's listing of the chip's folder
(``GDAL_DISABLE_READDIR_ON_OPEN``), which otherwise grows with the number of
chips beside it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioIOError

from geosample.errors import DatasetError

__all__ = ["ChipGrid", "chip_grid", "open_raster"]


@dataclasses.dataclass(frozen=True)
class ChipGrid:
    """Where a chip's pixels lie."""

    epsg: int | None
    bounds: tuple[float, float, float, float]
    """West, south, east, north in the chip's CRS."""
    shape: tuple[int, int]
    """Rows, columns."""
    transform: tuple[float, ...]
    """The six affine coefficients (a, b, c, d, e, f)."""


@contextmanager
def open_raster(path: str | Path) -> Iterator[Any]:
    """``rasterio.open`` for reading without listing the file's folder; an unreadable chip is a DatasetError."""
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        try:
            src = rasterio.open(path)
        except RasterioIOError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise DatasetError(
                f"chip {path} cannot be read ({reason}); fetch it again with 'geosample fetch --overwrite'"
            ) from None
        with src:
            yield src


def chip_grid(ds: Path, row: Mapping[str, Any]) -> ChipGrid:
    """The grid of the ``ok`` chip of manifest ``row``."""
    item = ds / "stac" / str(row["collection"]) / f"{row['sample_id']}.json"
    if item.is_file():
        props = json.loads(item.read_text(encoding="utf-8")).get("properties", {})
        code = props.get("proj:code") or (f"EPSG:{props['proj:epsg']}" if props.get("proj:epsg") else None)
        if code and str(code).upper().startswith("EPSG:") and all(k in props for k in ("proj:bbox", "proj:shape")):
            return ChipGrid(
                epsg=int(str(code).split(":")[1]),
                bounds=tuple(float(v) for v in props["proj:bbox"][:4]),  # type: ignore[arg-type]
                shape=(int(props["proj:shape"][0]), int(props["proj:shape"][1])),
                transform=tuple(float(v) for v in props.get("proj:transform", [])[:6]),
            )
    with open_raster(ds / row["path"]) as src:
        return ChipGrid(
            epsg=src.crs.to_epsg() if src.crs is not None else None,
            bounds=tuple(src.bounds),
            shape=(src.height, src.width),
            transform=tuple(src.transform)[:6],
        )
