"""The parameters of ``geosample fetch``, as one typed, frozen object."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

from rasterio.enums import Resampling

from geosample._coerce import as_float as _as_float
from geosample._coerce import as_int as _as_int
from geosample.errors import ConfigError

LOCAL_ASSETS = "allow_local_assets"
"""The key of ``--allow-local-assets`` in the fetch section of ``DS/geosample.yaml`` (never in a FetchConfig)."""
SortOrder = Literal["cloud", "time"]
SIGNERS = ("planetary-computer", "none")
RESAMPLINGS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode")


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """Everything that determines which chips ``fetch`` writes and how it runs."""

    stac: str | None = None
    """A STAC API root URL, a static ``catalog.json`` (path or URL) or a stac-geoparquet file."""
    collection: tuple[str, ...] = ()
    """Collection ids; several give one chip per sample and collection."""
    assets: tuple[str, ...] | None = None
    """Asset keys, in output band order; default: the preset's, else every raster data asset of the item."""
    resolution: float | None = None
    """Output pixel size in metres; default: the finest requested asset's native size, rounded to 2 digits."""
    resampling: str = "nearest"
    """Resampling of continuous assets; categorical ones (classification, QA) always use nearest."""
    max_cloud: float | None = None
    """Skip items whose ``eo:cloud_cover`` exceeds this percentage (items without one are kept)."""
    sort: SortOrder = "cloud"
    """Best item among those covering the whole chip: least cloud, or nearest the window's middle."""
    mosaic: bool = False
    """Fill a chip from several items when none covers it alone (first valid pixel wins)."""
    preview: bool = False
    """Also write an RGB PNG per chip, with a 2–98 percentile stretch."""
    harmonize: bool | None = None
    """Remove the +1000 offset of Sentinel-2 processing baseline 04.00+ (default: the preset's choice)."""
    scale: bool = False
    """Apply each asset's scale/offset (``raster:bands`` or the preset's), writing float32."""
    workers: int = 4
    """Concurrent read tasks (threads, or Dask tasks in flight)."""
    sign: str | None = None
    """Sign asset URLs just before each read: ``planetary-computer``, or ``none`` (overrides a preset)."""
    retry_failed: bool = False
    """Also retry samples whose chip is ``failed`` or ``no_item``."""
    limit: int | None = None
    """Only the first N samples of the plan (in ``sample_id`` order)."""
    dask_scheduler: str | None = None
    """``local`` (a LocalCluster) or ``tcp://HOST:PORT``; default: a local thread pool."""
    preset: str | None = None
    """A named source (see :mod:`geosample.stac.presets`) filling ``stac``, ``collection``, ``assets``, ..."""
    retries: int = 5
    """HTTP retries (with backoff) for STAC requests, and read retries per source."""
    timeout: float = 60.0
    """Seconds before a STAC request is abandoned (and retried)."""
    observe: bool = True
    """Measure nodata, cloud and observed cover on every chip (see :mod:`geosample.stac.observe`)."""
    max_chip_cloud: float | None = None
    """Reject a chip whose measured cloud fraction (0–1) is above this, and try the next candidate item."""
    min_valid: float | None = None
    """Reject a chip whose share of valid pixels (0–1) is below this, and try the next candidate item."""
    substitute: bool | None = None
    """Replace a failed site by the next unused reserve site of its stratum and time bin (see
    :mod:`geosample.stac.substitute`); ``None``: when the plan has reserves (``DS/reserve.parquet``)."""

    def __post_init__(self) -> None:
        """Validate every field; raise ConfigError naming the fix."""
        if self.resolution is not None and not (
            isinstance(self.resolution, int | float) and math.isfinite(self.resolution) and self.resolution > 0
        ):
            raise ConfigError(f"--resolution {self.resolution!r} must be a positive number of metres, e.g. 10")
        if self.max_cloud is not None and not (isinstance(self.max_cloud, int | float) and 0 <= self.max_cloud <= 100):
            raise ConfigError(f"--max-cloud {self.max_cloud!r} is out of range; give a percentage from 0 to 100")
        if self.sort not in ("cloud", "time"):
            raise ConfigError(f"--sort {self.sort!r} is not one of cloud, time")
        if self.resampling not in RESAMPLINGS:
            raise ConfigError(f"--resampling {self.resampling!r} is not one of {', '.join(RESAMPLINGS)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 1 <= self.workers <= 1024:
            raise ConfigError(f"--workers {self.workers!r} is out of range; use 1 to 1024")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise ConfigError(f"--limit {self.limit!r} must be a positive number of samples")
        if self.sign is not None and self.sign not in SIGNERS:
            raise ConfigError(f"--sign {self.sign!r} is not one of {', '.join(SIGNERS)}")
        if self.dask_scheduler is not None and not (
            self.dask_scheduler == "local" or self.dask_scheduler.startswith(("tcp://", "tls://", "inproc://"))
        ):
            raise ConfigError(f"--dask-scheduler {self.dask_scheduler!r} must be 'local' or an address tcp://HOST:PORT")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not 0 <= self.retries <= 20:
            raise ConfigError(f"retries {self.retries!r} is out of range 0–20")
        if not (isinstance(self.timeout, int | float) and self.timeout > 0):
            raise ConfigError(f"timeout {self.timeout!r} must be a positive number of seconds")
        for name, value in (("--max-chip-cloud", self.max_chip_cloud), ("--min-valid", self.min_valid)):
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0
            ):
                raise ConfigError(f"{name} {value!r} is out of range; give a fraction from 0 to 1, e.g. 0.2")
        if self.max_chip_cloud is not None and not self.observe:
            raise ConfigError("--max-chip-cloud needs the chip observations; drop --no-observe")
        if len(set(self.collection)) != len(self.collection):
            raise ConfigError(f"--collection repeats a collection: {list(self.collection)}")
        if self.assets is not None:
            if not self.assets:
                raise ConfigError("--assets is empty; give asset keys such as red,green,blue")
            if len(set(self.assets)) != len(self.assets):
                raise ConfigError(f"--assets repeats a key: {list(self.assets)}")

    @property
    def resampling_method(self) -> Resampling:
        """:attr:`resampling` as rasterio's enum."""
        return Resampling[self.resampling]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FetchConfig:
        """Build from loose values (YAML, CLI): dashes or underscores, comma strings for lists."""
        names = {f.name for f in dataclasses.fields(cls)}
        aliases = {"collections": "collection", "asset": "assets", "dask": "dask_scheduler"}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            name = aliases.get(name, name)
            if name not in names:
                raise ConfigError(f"unknown fetch setting {key!r}; valid settings: {', '.join(sorted(names))}")
            if value is not None:
                kwargs[name] = value
        for name in ("collection", "assets"):
            if name in kwargs:
                kwargs[name] = _as_tuple(kwargs[name], f"--{name}")
        for name in ("resolution", "max_cloud", "timeout", "max_chip_cloud", "min_valid"):
            if name in kwargs:
                kwargs[name] = _as_float(kwargs[name], f"--{name.replace('_', '-')}")
        for name in ("workers", "limit", "retries"):
            if name in kwargs:
                kwargs[name] = _as_int(kwargs[name], f"--{name}")
        for name in ("mosaic", "preview", "harmonize", "scale", "retry_failed", "observe", "substitute"):
            if name in kwargs and not isinstance(kwargs[name], bool):
                raise ConfigError(f"{name} must be true or false, not {kwargs[name]!r}")
        for name in ("stac", "sort", "sign", "dask_scheduler", "preset", "resampling"):
            if name in kwargs:
                kwargs[name] = str(kwargs[name])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values, as recorded in ``DS/geosample.yaml``."""
        out = dataclasses.asdict(self)
        out["collection"] = list(self.collection)
        out["assets"] = list(self.assets) if self.assets is not None else None
        return out


def local_assets_consent(given: FetchConfig, recorded: Mapping[str, Any], flag: bool) -> bool:
    """Whether this fetch may read local asset paths anywhere (``--allow-local-assets``).

    Only the command line grants it (a config file cannot: :mod:`geosample._config_file`); a fetch that
    grants it records ``allow_local_assets: true`` in the fetch section of ``DS/geosample.yaml``, and a
    fetch that resumes it (no ``--stac``, ``--collection`` or ``--preset``: the recorded source) keeps it.
    A fetch that names its source again grants it again or not at all.
    """
    if flag:
        return True
    resumed = given.stac is None and not given.collection and given.preset is None
    return resumed and recorded.get(LOCAL_ASSETS) is True


def local_assets_record(allowed: bool) -> dict[str, bool]:
    """What the fetch section records of the consent: ``allow_local_assets: true``, or nothing."""
    return {LOCAL_ASSETS: True} if allowed else {}


def _as_tuple(value: object, flag: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple):
        out: list[str] = []
        for item in value:
            out.extend(_as_tuple(str(item), flag))
        return tuple(out)
    raise ConfigError(f"{flag} expects a list or a comma-separated string, not {value!r}")
