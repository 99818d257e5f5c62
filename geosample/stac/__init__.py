"""The ``fetch`` stage: image chips for every sample from STAC archives.

Search (:mod:`.search`), the chip grid (:mod:`.grid`), reads onto it
(:mod:`.reader`), the crash-safe manifest (:mod:`.journal`), the output
catalog (:mod:`.catalog`) and named sources (:mod:`.presets`).
"""

from __future__ import annotations

from geosample.stac.config import FetchConfig
from geosample.stac.fetch import fetch
from geosample.stac.grid import ChipGrid, chip_grid
from geosample.stac.reader import read_onto_grid
from geosample.stac.search import find_items

__all__ = ["ChipGrid", "FetchConfig", "chip_grid", "fetch", "find_items", "read_onto_grid"]
