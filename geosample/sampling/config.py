"""The parameters of ``geosample plan``, as one typed, frozen object."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from geosample._coerce import as_float
from geosample._coerce import as_int as _as_int
from geosample.errors import ConfigError

TimeBinning = Literal["year", "season", "month"]
RevisitStep = Literal["years", "months"]
EVENT_DIMENSIONS = ("event_type", "event_year")
ALLOCATIONS = ("equal", "proportional", "sqrt", "heterogeneity")
BUILTIN_DIMENSIONS = ("continent", "country", "climate", "landcover")
MAX_RESERVE = 10.0
"""Most reserve sites per planned site (``--reserve``): beyond it the reserves outnumber what they stand in for."""


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """Everything that determines a plan; same config and seed, same plan."""

    samples: int = 1000
    """Number of sites (rows = sites × chip sizes)."""
    res: int = 9
    """H3 resolution of the samples (0–15); a chip is centred on its cell's centre."""
    seed: int = 0
    """Random seed."""
    aoi: str = "world"
    """``world`` (all land but Antarctica), a vector file, ISO 3166 alpha-3 codes, or ``bbox:W,S,E,N``."""
    strata: tuple[str, ...] = ("continent", "climate", "landcover")
    """Stratification dimensions: built-in names or ``NAME=PATH[:COLUMN]`` user layers."""
    allocation: str = "equal"
    """``equal``, ``proportional``, ``sqrt``, ``heterogeneity`` or a CSV of weights per stratum."""
    parent_res: int | None = None
    """H3 resolution of the spacing cells; ``None`` picks one that holds 4× the samples."""
    max_per_parent: int = 1
    """At most this many sites per parent cell (a spacing rule by count)."""
    min_distance_m: float | None = None
    """No two sites closer than this (metres, great circle), also across parent-cell edges; ``None`` is the
    chip diagonal of the largest chip size (so no two chips overlap), ``0`` turns the distance rule off."""
    start: dt.date = dt.date(2020, 1, 1)
    """First day of the imagery period."""
    end: dt.date = dt.date(2024, 12, 31)
    """Last day of the imagery period."""
    time_bins: TimeBinning = "year"
    """Temporal bins balanced within every stratum; seasons follow the hemisphere."""
    window_days: int | None = None
    """Length of each sample's time window inside its bin; ``None`` uses the whole bin."""
    chip_size: tuple[float, ...] = (2560.0,)
    """Chip side(s) in metres; several give one row per site and size."""
    land_only: bool = True
    """Keep only centres on land (inside a Natural Earth country) with data in every layer."""
    revisits: int = 1
    """Time windows per site: a series of this many windows, ``revisit_interval`` steps apart."""
    revisit_step: RevisitStep = "years"
    """Unit of the step between revisits: ``years`` or ``months``."""
    revisit_interval: int = 1
    """Steps between consecutive revisits (e.g. 6 with ``months`` for half-yearly)."""
    events: str | None = None
    """A catalogue of dated events (CSV with lon/lat/date/type, GeoJSON, GeoPackage, GeoParquet): sample around them."""
    before_days: int = 90
    """Length of the ``before`` window, ending ``gap_days`` before the event starts."""
    after_days: int = 90
    """Length of the ``after`` window, starting ``gap_days`` after the event ends."""
    gap_days: int = 0
    """Days skipped on each side of the event itself."""
    event_radius_m: float | None = None
    """Sites lie within this distance of a point event; ``None`` is the largest chip size."""
    reserve: float = 0.5
    """Reserve sites per planned site, drawn with the same rules into ``reserve.parquet`` for ``fetch`` to
    substitute for failed samples (more where a stratum is small, see :mod:`geosample.sampling.reserves`);
    ``0`` draws none."""

    def __post_init__(self) -> None:
        """Validate every field; raise ConfigError naming the fix."""
        _check_int(self.samples, "--samples", 1, 10**8, "ask for at least one sample")
        _check_int(self.res, "--res", 0, 15, "H3 resolutions run from 0 to 15")
        if self.parent_res is not None:
            _check_int(self.parent_res, "--parent-res", 0, 15, "H3 resolutions run from 0 to 15")
            if self.parent_res > self.res:
                raise ConfigError(
                    f"--parent-res {self.parent_res} is finer than --res {self.res}; "
                    "the parent resolution must be coarser than or equal to the sample resolution"
                )
        _check_int(self.max_per_parent, "--max-per-parent", 1, 10**6, "use 1 or more")
        if self.start > self.end:
            raise ConfigError(f"--start {self.start} is after --end {self.end}; swap them")
        if self.time_bins not in ("year", "season", "month"):
            raise ConfigError(f"--time-bins {self.time_bins!r} is not one of year, season, month")
        if self.window_days is not None:
            _check_int(self.window_days, "--window-days", 1, 100_000, "use a positive number of days")
        if not self.chip_size:
            raise ConfigError("--chip-size needs at least one size in metres")
        for size in self.chip_size:
            if not (isinstance(size, int | float) and 1 <= size <= 1_000_000):
                raise ConfigError(f"--chip-size {size!r} is out of range; give metres between 1 and 1000000")
        if len(set(self.chip_size)) != len(self.chip_size):
            raise ConfigError(f"--chip-size repeats a size: {list(self.chip_size)}")
        if not self.strata:
            raise ConfigError("--strata is empty; give at least one dimension, e.g. continent")
        _check_int(self.revisits, "--revisits", 1, 1000, "use 1 (one window per site) or more")
        if self.revisit_step not in ("years", "months"):
            raise ConfigError(f"--revisit-step {self.revisit_step!r} is not one of years, months")
        _check_int(self.revisit_interval, "--revisit-interval", 1, 1200, "use a positive number of steps")
        for flag, value in (("--before-days", self.before_days), ("--after-days", self.after_days)):
            _check_int(value, flag, 1, 100_000, "give the window's length as a positive number of days")
        _check_int(self.gap_days, "--gap-days", 0, 100_000, "use 0 or more days")
        if self.min_distance_m is not None and not (
            isinstance(self.min_distance_m, int | float) and 0 <= self.min_distance_m <= 5_000_000
        ):
            raise ConfigError(
                f"--min-distance-m {self.min_distance_m!r} must be a distance in metres between 0 and 5000000 "
                "(0 turns the distance rule off; leave it out for the chip diagonal)"
            )
        if self.event_radius_m is not None and not (
            isinstance(self.event_radius_m, int | float) and 0 < self.event_radius_m <= 1_000_000
        ):
            raise ConfigError(f"--event-radius-m {self.event_radius_m!r} must be a positive number of metres")
        if isinstance(self.reserve, bool) or not (
            isinstance(self.reserve, int | float) and 0 <= self.reserve <= MAX_RESERVE
        ):
            raise ConfigError(
                f"--reserve {self.reserve!r} is out of range; give 0 (no reserve sites) to {MAX_RESERVE:g} "
                "reserve sites per planned site, e.g. 0.5"
            )
        event_dims = [d for d in self.strata if d in EVENT_DIMENSIONS]
        if event_dims and self.events is None:
            raise ConfigError(f"--strata {','.join(event_dims)} needs --events FILE, a catalogue of dated events")
        if self.events is not None and self.revisits > 1:
            raise ConfigError("--revisits applies to ordinary plans; with --events each site has a before and an after")
        if self.allocation not in ALLOCATIONS and not self.allocation.lower().endswith(".csv"):
            raise ConfigError(
                f"--allocation {self.allocation!r} is not one of {', '.join(ALLOCATIONS)} or a path to a .csv file"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, base_dir: Path | None = None) -> PlanConfig:
        """Build from loose values (YAML, CLI): dashes or underscores, strings for lists and dates.

        Relative paths (AOI, allocation CSV, user layers) are resolved against
        ``base_dir`` when given and the file exists there.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            name = {"n": "samples", "chip_sizes": "chip_size"}.get(name, name)
            if name not in names:
                raise ConfigError(f"unknown plan setting {key!r}; valid settings: {', '.join(sorted(names))}")
            if value is not None:
                kwargs[name] = value
        if "strata" in kwargs:
            kwargs["strata"] = _as_tuple(kwargs["strata"])
        if "chip_size" in kwargs:
            kwargs["chip_size"] = tuple(_as_float(v, "--chip-size") for v in _as_tuple(kwargs["chip_size"]))
        for name in ("start", "end"):
            if name in kwargs:
                kwargs[name] = _as_date(kwargs[name], f"--{name}")
        for name in ("event_radius_m", "min_distance_m"):
            if name in kwargs:
                kwargs[name] = _as_float(kwargs[name], f"--{name.replace('_', '-')}")
        if "reserve" in kwargs:
            kwargs["reserve"] = as_float(kwargs["reserve"], "--reserve")
        if "events" in kwargs:
            kwargs["events"] = str(kwargs["events"])
        if "strata" not in kwargs and "events" in kwargs:
            kwargs["strata"] = ("event_type", "continent")
        for name in (
            "samples", "res", "seed", "parent_res", "max_per_parent", "window_days", "revisits", "revisit_interval",
            "before_days", "after_days", "gap_days",
        ):  # fmt: skip
            if name in kwargs:
                kwargs[name] = _as_int(kwargs[name], f"--{name.replace('_', '-')}")
        if "land_only" in kwargs and not isinstance(kwargs["land_only"], bool):
            raise ConfigError(f"land_only must be true or false, not {kwargs['land_only']!r}")
        for name in ("aoi", "allocation"):
            if name in kwargs:
                kwargs[name] = str(kwargs[name])
        if base_dir is not None:
            kwargs = _resolve_paths(kwargs, base_dir)
        return cls(**kwargs)

    @property
    def spacing_m(self) -> float:
        """The minimum distance between sites in force: ``min_distance_m``, or the default chip diagonal."""
        from geosample.sampling.spacing import default_min_distance_m

        return float(self.min_distance_m) if self.min_distance_m is not None else default_min_distance_m(self.chip_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values, as recorded in ``DS/geosample.yaml``."""
        out = dataclasses.asdict(self)
        out["strata"] = list(self.strata)
        out["chip_size"] = list(self.chip_size)
        out["start"] = self.start.isoformat()
        out["end"] = self.end.isoformat()
        return out


def _check_int(value: object, flag: str, low: int, high: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{flag} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{flag} {value} is out of range {low}–{high}; {fix}")


def _as_tuple(value: object) -> tuple:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, int | float):
        return (value,)
    if isinstance(value, Sequence):
        out: list = []
        for item in value:
            out.extend(_as_tuple(item) if isinstance(item, str) else [item])
        return tuple(out)
    raise ConfigError(f"expected a list or a comma-separated string, not {value!r}")


def _as_float(value: object, flag: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number of metres, not {value!r}") from None


def _as_date(value: object, flag: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"{flag} {value!r} is not a date; use YYYY-MM-DD") from None


def _resolve_paths(kwargs: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    def resolve(text: str) -> str:
        candidate = base_dir / text
        return str(candidate) if not Path(text).is_absolute() and candidate.exists() else text

    if "aoi" in kwargs:
        kwargs["aoi"] = resolve(kwargs["aoi"])
    if "events" in kwargs:
        kwargs["events"] = resolve(kwargs["events"])
    if "allocation" in kwargs and kwargs["allocation"].lower().endswith(".csv"):
        kwargs["allocation"] = resolve(kwargs["allocation"])
    if "strata" in kwargs:
        strata = []
        for item in kwargs["strata"]:
            if "=" in item:
                name, spec = item.split("=", 1)
                path, sep, column = (
                    spec.rpartition(":") if spec.count(":") and not Path(spec).exists() else (spec, "", "")
                )
                strata.append(f"{name}={resolve(path)}{sep}{column}")
            else:
                strata.append(item)
        kwargs["strata"] = tuple(strata)
    return kwargs
