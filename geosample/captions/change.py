"""Pairs of samples of one site and what changed between them: :class:`ChangeContext`.

An event plan (``plan --events``) gives each site a ``before`` and an
``after`` row; a revisit plan (``plan --revisits K``) gives it rows
``revisit_index`` 0..K-1, paired as (i-1, i). Rows pair only with rows of the
same chip size, so a multi-scale plan pairs within each size.

What changed is known from one of two kinds of evidence, in this order:

1. ``change.parquet`` (written by ``geosample label`` from the two chips): the
   shares of the pair's jointly valid, cloud-free pixels that gained or lost
   water or vegetation, burned, or changed snow and ice, per quadrant too
   (:class:`ObservedChange`; evidence ``change``);
2. labels of both samples from maps of different years, each at least 8 times
   finer than the chip (``label_year``, ``source_resolution_m``): each class's
   share before and after and where it moved most (evidence ``map``).

Otherwise the change cannot be told from the data (both phases labelled from
one static map, or from a map coarser than the chip): the pair is
:attr:`ChangeContext.observable` False, and no caption claims change or
stability for it (``geosample caption`` writes none and the report counts it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from geosample.captions.context import MONTHS, QUADRANTS, SampleContext

CHANGE_COLUMNS = ("water_gain", "water_loss", "vegetation_loss", "vegetation_gain", "burned", "snow_ice_change")
"""Share columns of ``change.parquet`` (DESIGN.md)."""
CHANGE_MIN = 0.05
"""Least change of a class's share of the chip (as a fraction) that a caption reports as a change."""
REGION_MIN = 0.10
"""Least change of a class's share of a region for the caption to say where it happened."""
PAIR_COLUMNS = ("site_id", "sample_id_before", "sample_id_after")
"""Columns naming a pair in ``captions.parquet``."""
EVENT_WORDS = {
    "wildfire": "wildfire",
    "fire": "fire",
    "flood": "flood",
    "volcano": "volcanic eruption",
    "eruption": "volcanic eruption",
    "landslide": "landslide",
    "earthquake": "earthquake",
    "storm": "storm",
    "hurricane": "hurricane",
    "tsunami": "tsunami",
    "drought": "drought",
}
"""Event types (``event_type`` of the plan) in words; others are used as given, underscores as spaces."""


class ClassChange(NamedTuple):
    """A class's share of the chip before and after."""

    code: str
    name: str
    before: float
    after: float

    @property
    def delta(self) -> float:
        """``after - before``: positive when the class gained ground."""
        return self.after - self.before


class RegionChange(NamedTuple):
    """Where a class changed most: a set of quadrants (or the centre) and its share there before and after."""

    quadrants: frozenset[str]
    """Quadrants (``nw``...) of the area; empty for the central square."""
    before: float
    after: float


@dataclasses.dataclass(frozen=True)
class ObservedChange:
    """One row of ``change.parquet``: what the two chips show changed, as shares of their jointly valid pixels."""

    shares: Mapping[str, float | None]
    """Column of :data:`CHANGE_COLUMNS` -> share (None where it could not be measured, e.g. ``burned``)."""
    quadrants: Mapping[str, Mapping[str, float]]
    """Quadrant -> column -> share."""
    valid_fraction: float | None

    def significant(self) -> tuple[tuple[str, float], ...]:
        """Changes of at least :data:`CHANGE_MIN`, largest first."""
        found = [(k, float(v)) for k, v in self.shares.items() if v is not None and float(v) >= CHANGE_MIN]
        return tuple(sorted(found, key=lambda kv: (-kv[1], kv[0])))

    def where(self, column: str) -> frozenset[str]:
        """Quadrants holding the change most: those with at least half the largest quadrant's share."""
        values = {q: float(self.quadrants.get(q, {}).get(column) or 0.0) for q in QUADRANTS}
        best = max(values.values(), default=0.0)
        if best < REGION_MIN:
            return frozenset()
        return frozenset(q for q, v in values.items() if v >= best / 2)

    def to_facts(self) -> dict[str, Any]:
        """JSON-ready facts."""
        return {
            "what": "shares of the two chips' jointly valid, cloud-free pixels, measured on the images",
            "valid_fraction": self.valid_fraction,
            **{k: (round(float(v), 3) if v is not None else None) for k, v in self.shares.items()},
            "by_quadrant": {
                q: {k: round(float(v), 3) for k, v in d.items() if v is not None} for q, d in self.quadrants.items()
            },  # fmt: skip
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ObservedChange:
        """From a ``change.parquet`` record."""
        import json

        shares = {k: (None if _text(row.get(k)) is None else float(row[k])) for k in CHANGE_COLUMNS}
        raw = row.get("quadrants")
        quadrants = json.loads(raw) if isinstance(raw, str) and raw else {}
        valid = row.get("valid_fraction")
        return cls(shares, quadrants, None if _text(valid) is None else float(valid))


@dataclasses.dataclass(frozen=True)
class ChangeContext:
    """Two samples of one site, earlier and later, and what changed between them."""

    site_id: str
    before: SampleContext
    after: SampleContext
    kind: str
    """``event`` (a before/after pair) or ``revisit`` (consecutive samples of a series)."""
    event_id: str | None = None
    event_type: str | None = None
    event_date: dt.date | None = None
    revisit_index: tuple[int, int] | None = None
    """The series positions of the two samples (revisit pairs)."""
    levels: tuple[str, ...] = ()
    """Levels the changes are given at: the coarsest and the finest of the taxonomy (empty without labels)."""
    changes: Mapping[str, tuple[ClassChange, ...]] = dataclasses.field(default_factory=dict)
    """Level -> every class present before or after, largest absolute change first."""
    where: Mapping[str, Mapping[str, RegionChange]] = dataclasses.field(default_factory=dict)
    """Level -> class code -> the area where its share changed most in its direction of change."""
    observed: ObservedChange | None = None
    """The pair's row of ``change.parquet``, when the chips were compared."""
    unobservable: str | None = None
    """Why the change cannot be told from the data (None when it can)."""

    @property
    def observable(self) -> bool:
        """Whether the data can tell what changed (observed change, or labels from maps of two years)."""
        return self.unobservable is None

    @property
    def evidence(self) -> str:
        """``change`` (change.parquet), ``map`` (time-matched labels) or ``unobservable``."""
        if self.observed is not None:
            return "change"
        return "map" if self.unobservable is None else "unobservable"

    @property
    def sample_id(self) -> str:
        """The later sample's id: change caption rows are keyed by it."""
        return self.after.sample_id

    @property
    def has_labels(self) -> bool:
        """Whether both samples have labels, so the captions can state what changed."""
        return bool(self.levels)

    @property
    def event_words(self) -> str | None:
        """The event in words: "the wildfire of 15 July 2021"."""
        if self.event_type is None:
            return None
        kind = EVENT_WORDS.get(self.event_type.lower(), self.event_type.replace("_", " ").lower())
        day = self.event_date
        when = f" of {day.day} {MONTHS[day.month - 1]} {day.year}" if day else ""
        return f"the {kind}{when}"

    @property
    def dates(self) -> tuple[dt.date | None, dt.date | None]:
        """Acquisition dates of the two samples (None where an image has no single date)."""
        return self.before.date, self.after.date

    @property
    def days_apart(self) -> int | None:
        """Days between the two samples' dates."""
        first, last = self.dates
        return (last - first).days if first and last else None

    def significant(self, level: str) -> tuple[ClassChange, ...]:
        """Classes whose share changed by at least :data:`CHANGE_MIN`, largest change first."""
        return tuple(c for c in self.changes.get(level, ()) if abs(c.delta) >= CHANGE_MIN)

    def to_facts(self) -> dict[str, Any]:
        """The pair as JSON-ready facts, for prompts and cache keys."""
        first, last = self.dates
        facts: dict[str, Any] = {
            "site_id": self.site_id,
            "kind": self.kind,
            "before": _sample_facts(self.before),
            "after": _sample_facts(self.after),
            "dates": {
                "before": first.isoformat() if first else None,
                "after": last.isoformat() if last else None,
                "days_apart": self.days_apart,
            },  # fmt: skip
        }
        if self.kind == "event":
            facts["event"] = {
                "id": self.event_id,
                "type": self.event_type,
                "date": self.event_date.isoformat() if self.event_date else None,
            }
        else:
            facts["revisit"] = list(self.revisit_index) if self.revisit_index else None
        facts["evidence"] = self.evidence
        if self.unobservable is not None:
            facts["change_not_observable"] = self.unobservable
        if self.observed is not None:
            facts["observed_change"] = self.observed.to_facts()
        if self.has_labels and self.observed is None and self.unobservable is None:
            facts["land_cover_change"] = {
                "threshold": CHANGE_MIN,
                **{
                    level: [
                        {
                            "name": c.name,
                            "before": round(c.before, 3),
                            "after": round(c.after, 3),
                            "change": round(c.delta, 3),
                            **_where_facts(self.where.get(level, {}).get(c.code)),
                        }
                        for c in self.changes[level]
                        if max(c.before, c.after) >= 0.01
                    ]
                    for level in self.levels
                },
            }
        return facts


def _sample_facts(context: SampleContext) -> dict[str, Any]:
    facts = context.to_facts()
    facts.pop("land_cover_map", None)
    facts.pop("surroundings", None)
    return facts


def _where_facts(region: RegionChange | None) -> dict[str, Any]:
    if region is None:
        return {}
    return {
        "most_in": area_name(region.quadrants),
        "there_before": round(region.before, 3),
        "there_after": round(region.after, 3),
    }


def area_name(quadrants: frozenset[str]) -> str:
    """A plain name for an area of the chip: ``centre``, ``ne``, ``ne+se``..."""
    return "centre" if not quadrants else "+".join(q for q in QUADRANTS if q in quadrants)


def pairs(plan: pd.DataFrame) -> pd.DataFrame:
    """The sample pairs of a plan: ``site_id``, ``sample_id_before``, ``sample_id_after``, ``kind``, ``step``.

    Event plans pair each site's ``before`` and ``after`` rows; revisit plans
    pair rows ``revisit_index`` i-1 and i. Rows pair within one chip size. An
    empty table when the plan has neither ``phase`` nor ``revisit_index``.
    """
    columns = [*PAIR_COLUMNS, "kind", "step"]
    if "phase" in plan and plan["phase"].notna().any():
        rows = plan[plan["phase"].isin(["before", "after"])]
        keys = ["site_id", "chip_size_m"]
        before = rows[rows["phase"] == "before"][[*keys, "sample_id"]]
        after = rows[rows["phase"] == "after"][[*keys, "sample_id"]]
        out = before.merge(after, on=keys, suffixes=("_before", "_after"))
        out["kind"], out["step"] = "event", 1
    elif "revisit_index" in plan and plan["revisit_index"].notna().any():
        rows = plan[plan["revisit_index"].notna()].assign(_i=lambda t: t["revisit_index"].astype(np.int64))
        keys = ["site_id", "chip_size_m"]
        earlier = rows[[*keys, "_i", "sample_id"]].assign(_i=lambda t: t["_i"] + 1)
        out = earlier.merge(rows[[*keys, "_i", "sample_id"]], on=[*keys, "_i"], suffixes=("_before", "_after"))
        out["kind"], out["step"] = "revisit", out["_i"]
    else:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    order = pd.Series(np.arange(len(plan)), index=plan["sample_id"].astype(str))
    out = out.assign(_rank=out["sample_id_after"].astype(str).map(order)).sort_values("_rank", kind="stable")
    out["site_id"] = out["site_id"].astype(str)
    return out[columns].reset_index(drop=True)


def unobservable_reason(before: SampleContext, after: SampleContext) -> str | None:
    """Why the labels of a pair cannot show change (None when they can: two map years, both finer than the chip)."""
    if not (before.has_labels and after.has_labels):
        return "the two samples have no land-cover labels to compare"
    for ctx in (before, after):
        if ctx.map_resolution_m is None:
            return "the labels' map resolution is unknown"
        if ctx.map_is_coarse:
            res = round(ctx.map_resolution_m / 1000, 1)
            return f"the labels come from a map of ~{res} km cells, coarser than the chip"
    if before.map_year is None or after.map_year is None:
        return "the labels do not say which map year they come from"
    if before.map_year == after.map_year:
        return f"both samples are labelled from the same {before.map_year} map"
    return None


def change_context(
    before: SampleContext,
    after: SampleContext,
    row: Mapping[str, Any],
    plan_row: Mapping[str, Any],
    observed: Mapping[str, Any] | None = None,
) -> ChangeContext:
    """The :class:`ChangeContext` of a pair (``row`` from :func:`pairs`, ``plan_row`` the later sample's plan row).

    ``observed`` is the pair's ``change.parquet`` record when there is one. The
    label-based changes are filled in whenever both samples have labels (for
    backends and tests); :attr:`ChangeContext.unobservable` says whether they
    may be stated.
    """
    levels: tuple[str, ...] = ()
    changes: dict[str, tuple[ClassChange, ...]] = {}
    where: dict[str, dict[str, RegionChange]] = {}
    if before.has_labels and after.has_labels and before.levels == after.levels:
        levels = tuple(dict.fromkeys((before.levels[0], before.levels[-1])))
        for level in levels:
            changes[level] = class_changes(before, after, level)
            where[level] = {c.code: region_change(before, after, level, c) for c in changes[level]}
    event_date = plan_row.get("event_date")
    index = plan_row.get("revisit_index")
    measured = ObservedChange.from_row(observed) if observed is not None else None
    if measured is not None and all(v is None for v in measured.shares.values()):
        measured = None  # the chips were compared, but their bands cannot tell the cover classes apart
    return ChangeContext(
        site_id=str(row["site_id"]),
        before=before,
        after=after,
        kind=str(row["kind"]),
        event_id=_text(plan_row.get("event_id")),
        event_type=_text(plan_row.get("event_type")),
        event_date=pd.Timestamp(event_date).date() if _text(event_date) else None,
        revisit_index=(int(index) - 1, int(index)) if row["kind"] == "revisit" and _text(index) else None,
        levels=levels,
        changes=changes,
        where=where,
        observed=measured,
        unobservable=None if measured is not None else unobservable_reason(before, after),
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    try:
        if pd.isna(value):  # type: ignore[call-overload]
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def class_changes(before: SampleContext, after: SampleContext, level: str) -> tuple[ClassChange, ...]:
    """Every class present in either sample at ``level``, largest absolute change first (ties by code)."""
    first, last = before.shares.get(level, {}), after.shares.get(level, {})
    names = {c.code: c.name for region in (*before.regions.get(level, {}).values(),
                                           *after.regions.get(level, {}).values()) for c in region}  # fmt: skip
    names.update({c.code: c.name for ctx in (before, after) for c in ctx.labels_at(level)})
    out = [
        ClassChange(code, names.get(code, code), float(first.get(code, 0.0)), float(last.get(code, 0.0)))
        for code in set(first) | set(last)
    ]
    return tuple(sorted(out, key=lambda c: (-abs(c.delta), c.code)))


def region_change(before: SampleContext, after: SampleContext, level: str, change: ClassChange) -> RegionChange:
    """Where ``change``'s class moved most in its direction: a quadrant, a half, three quadrants or the centre.

    The area is the quadrants whose change is at least half the largest one
    (every quadrant when the change is even), or the central square when its
    change exceeds every quadrant's.
    """
    sign = 1.0 if change.delta >= 0 else -1.0

    def share(ctx: SampleContext, region: str) -> float:
        return next((c.fraction for c in ctx.regions.get(level, {}).get(region, ()) if c.code == change.code), 0.0)

    deltas = {r: sign * (share(after, r) - share(before, r)) for r in (*QUADRANTS, "centre")}
    best = max(deltas[q] for q in QUADRANTS)
    if deltas["centre"] > best:
        return RegionChange(frozenset(), share(before, "centre"), share(after, "centre"))
    chosen = frozenset(q for q in QUADRANTS if deltas[q] >= best / 2 and deltas[q] > 0) or frozenset(QUADRANTS)
    first = float(np.mean([share(before, q) for q in chosen]))
    last = float(np.mean([share(after, q) for q in chosen]))
    return RegionChange(chosen, first, last)
