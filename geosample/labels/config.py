"""The parameters of ``geosample label``, as one typed, frozen object."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geosample.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    """Everything that determines a dataset's labels."""

    taxonomy: str | None = None
    """A taxonomy file or the id of a shipped one; ``None`` is the built-in ``geosample-lulc``."""
    source: str = "embedded"
    """``embedded`` (MODIS IGBP 2019, offline), a land-cover raster, ``PATH:COLUMN`` (vector) or ``stac:COLLECTION``."""
    scheme: str | None = None
    """The taxonomy crosswalk for the source's values (``esa-worldcover``, ``corine``, ``osm``, ...)."""
    min_fraction: float = 0.05
    """A class is a label of a chip when it covers at least this fraction of the chip's valid area."""
    resolution: float | None = None
    """Label pixel size in metres; ``None`` uses the source's own (32–2048 pixels across a chip)."""
    stac: str | None = None
    """STAC API (or static catalogue) for a ``stac:COLLECTION`` source."""
    asset: str | None = None
    """Asset key of the land-cover COG in the STAC items of a ``stac:`` source; ``None`` picks the only raster."""
    sign: str | None = None
    """Sign asset URLs of a ``stac:`` source before reading: ``planetary-computer`` (its assets need it)."""
    workers: int | None = None
    """Threads reading the source (or Dask tasks in flight); default: 1 for a local file, 8 for ``stac:``."""
    dask_scheduler: str | None = None
    """``local`` (a LocalCluster of this machine's cores) or ``tcp://HOST:PORT``; default: threads here."""
    preset: str | None = None
    """An annual land-cover product (``io-lulc-annual-v02``, ``esa-worldcover``) filling source, stac, asset, scheme."""
    max_year_gap: int = 2
    """Most years between a sample's window and the map year used for it (annual ``stac:`` sources)."""

    def __post_init__(self) -> None:
        """Fill what a preset provides; validate every field; raise ConfigError naming the fix."""
        if self.preset is not None:
            from geosample.labels.presets import get_label_preset

            preset = get_label_preset(self.preset)
            filled = {
                "source": f"stac:{preset.collection}" if self.source == "embedded" else self.source,
                "stac": self.stac or preset.stac,
                "asset": self.asset or preset.asset,
                "scheme": self.scheme or preset.scheme,
                "sign": self.sign or preset.sign,
            }
            for name, value in filled.items():
                object.__setattr__(self, name, value)
        if isinstance(self.max_year_gap, bool) or not isinstance(self.max_year_gap, int) or self.max_year_gap < 0:
            raise ConfigError(f"--max-year-gap {self.max_year_gap!r} must be a whole number of years, 0 or more")
        if not isinstance(self.min_fraction, int | float) or not 0.0 < float(self.min_fraction) <= 1.0:
            raise ConfigError(f"--min-fraction {self.min_fraction!r} must lie in (0, 1], e.g. 0.05 for 5 %")
        if self.resolution is not None and (
            not isinstance(self.resolution, int | float) or not 0.0 < float(self.resolution) <= 100_000
        ):
            raise ConfigError(f"--resolution {self.resolution!r} must be a positive number of metres")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 1 <= self.workers <= 256
        ):
            raise ConfigError(f"--workers {self.workers!r} must be an integer from 1 to 256")
        if self.dask_scheduler is not None and not (
            self.dask_scheduler == "local" or self.dask_scheduler.startswith(("tcp://", "tls://", "inproc://"))
        ):
            raise ConfigError(f"--dask-scheduler {self.dask_scheduler!r} must be 'local' or an address tcp://HOST:PORT")
        if not self.source:
            raise ConfigError("--source is empty; use 'embedded', a raster path, PATH:COLUMN or stac:COLLECTION")
        if self.source.startswith("stac:") and not self.stac:
            raise ConfigError(f"--source {self.source} needs --stac URL, the STAC API to search")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, base_dir: Path | None = None) -> LabelConfig:
        """Build from loose values (YAML, CLI); relative source/taxonomy paths resolve against ``base_dir``."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in names:
                raise ConfigError(f"unknown label setting {key!r}; valid settings: {', '.join(sorted(names))}")
            if value is not None:
                kwargs[name] = value
        for name in ("min_fraction", "resolution"):
            if name in kwargs:
                kwargs[name] = _as_float(kwargs[name], f"--{name.replace('_', '-')}")
        for name in ("workers", "max_year_gap"):
            if name in kwargs:
                try:
                    kwargs[name] = int(kwargs[name])
                except (TypeError, ValueError):
                    flag = f"--{name.replace('_', '-')}"
                    raise ConfigError(f"{flag} must be an integer, not {kwargs[name]!r}") from None
        for name in ("taxonomy", "source", "scheme", "stac", "asset", "sign", "preset", "dask_scheduler"):
            if name in kwargs:
                kwargs[name] = str(kwargs[name])
        if base_dir is not None:
            for name in ("taxonomy", "source"):
                if name in kwargs:
                    kwargs[name] = _resolve(kwargs[name], base_dir)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values, as recorded in ``DS/geosample.yaml``."""
        return dataclasses.asdict(self)


def _as_float(value: object, flag: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number, not {value!r}") from None


def _resolve(text: str, base_dir: Path) -> str:
    head = text.rpartition(":")[0] if ":" in text and not Path(text).exists() else text
    candidate = base_dir / head
    if head and not Path(head).is_absolute() and candidate.exists():
        return str(candidate) + text[len(head) :]
    return text
