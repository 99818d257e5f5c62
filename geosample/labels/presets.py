"""Named label sources: annual 10 m land-cover maps through STAC, labelled from the map of each sample's year.

``geosample label DS --preset io-lulc-annual-v02`` fills ``--source``,
``--stac``, ``--asset``, ``--scheme`` and ``--sign`` (flags given win, e.g.
``--stac`` for a mirror). The preset also knows the product's years, so a
sample whose window lies further than ``--max-year-gap`` years from every map
is refused before anything is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from geosample.errors import ConfigError

__all__ = ["LABEL_PRESETS", "LabelPreset", "get_label_preset"]

PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"


@dataclasses.dataclass(frozen=True)
class LabelPreset:
    """An annual land-cover product on a STAC API."""

    name: str
    """What ``--preset`` takes."""
    description: str
    """One line for the README and ``--help``."""
    stac: str
    """STAC API root."""
    collection: str
    """Collection id (the source is ``stac:<collection>``)."""
    asset: str
    """Asset key of the land-cover COG."""
    scheme: str
    """The taxonomy crosswalk of its values."""
    years: tuple[int, ...]
    """The years it has a map for."""
    resolution_m: float
    """Pixel size on the ground."""
    sign: str | None = None
    """Default ``--sign``."""


LABEL_PRESETS: Mapping[str, LabelPreset] = MappingProxyType(
    {
        p.name: p
        for p in (
            LabelPreset(
                "io-lulc-annual-v02",
                "Impact Observatory / Esri 10 m annual land use land cover v02, 2017-2023 (Planetary Computer)",
                PLANETARY_COMPUTER,
                "io-lulc-annual-v02",
                "data",
                "io-lulc",
                tuple(range(2017, 2024)),
                10.0,
                sign="planetary-computer",
            ),
            LabelPreset(
                "esa-worldcover",
                "ESA WorldCover 10 m, 2020 (v100) and 2021 (v200) (Planetary Computer)",
                PLANETARY_COMPUTER,
                "esa-worldcover",
                "map",
                "esa-worldcover",
                (2020, 2021),
                10.0,
                sign="planetary-computer",
            ),
        )
    }
)
"""Every label preset by name."""


def get_label_preset(name: str) -> LabelPreset:
    """The preset called ``name``, or a ConfigError listing the known ones."""
    try:
        return LABEL_PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown label --preset {name!r}; known presets: {', '.join(LABEL_PRESETS)}") from None
