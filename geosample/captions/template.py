"""The ``template`` backend: offline, deterministic captions built only from a sample's facts.

Each caption has a focus (:data:`FOCUSES`, the default mix: four visual ones
and one of context):

- ``overview``: the cover of the chip (or of the map cells around it) and the
  nearest other cover;
- ``composition``: the share of each class, in the words of
  :data:`~geosample.captions._words.AMOUNTS`, largest first;
- ``layout``: where the classes lie (quadrants of the chip, or compass sectors
  around it);
- ``surroundings``: the land cover within about 50 km and the nearest cells of
  other classes, from the embedded MODIS map;
- ``place``: country and continent, nearest place and city, climate, and the
  acquisition date, the image's period or the planned window;
- ``acquisition`` (not in the default mix): sensor, pixel size and date.

Cover statements use the finest evidence there is (``SampleContext``): the
chip's observed cover where it was measured, map labels of the chip where the
map is at least 8 times finer than the chip, otherwise the map describes the
cells around the chip and the captions say so ("the map cells around the
chip"). Each caption records which evidence it used (``evidence``). Wording
choices (sentence frames, region words) are drawn by a generator seeded with
``seed`` and the sample id; what makes captions of different samples distinct
is their facts, not the wording.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from geosample.captions import _words as w
from geosample.captions.base import CaptionResult
from geosample.captions.context import (
    CLIMATE_NAMES,
    MONTHS,
    OBSERVED_WORDS,
    QUADRANTS,
    ClassShare,
    SampleContext,
)
from geosample.captions.gazetteer import COMPASS, Place
from geosample.errors import ConfigError

if TYPE_CHECKING:
    from geosample.captions.change import ChangeContext

TEMPLATE_VERSION = 2
FOCUSES = ("overview", "composition", "layout", "surroundings", "place")
"""The default focus mix: four visual captions and one with place, climate and time."""
VISUAL_FOCUSES = ("overview", "composition", "layout", "surroundings")
CONTEXT_FOCUSES = ("place", "acquisition")
"""Focuses that carry place, climate or acquisition facts rather than what is visible."""
ALL_FOCUSES = (*VISUAL_FOCUSES, *CONTEXT_FOCUSES)
FRAMES_PER_FOCUS = 3
MAX_CAPTIONS = 20
CITY_REACH_KM = 300.0
"""The nearest city is named when it is this close."""
MAX_LISTED = 4
"""Most classes named in a composition caption."""
DISAGREE = 0.5
"""Observed cover and the map disagree strongly when their cover shares differ by this much (total variation)."""
MAP_COVER = {"1": "built", "2": "vegetation", "3": "vegetation", "4": "vegetation", "5": "vegetation",
             "6": "bare", "7": "snow_ice", "8": "water"}  # fmt: skip
"""Observed cover class each first-level class of ``geosample-lulc`` would show (for the disagreement check)."""
OBSERVED_CODES = {"water": "8", "bare": "6", "snow_ice": "7", "built": "1"}
"""``geosample-lulc`` class each observed cover word names (for the hallucination check)."""

FRAMES: dict[str, tuple[str, ...]] = {
    "overview-observed": (
        "An image {cover}{landuse}{nearest}.",
        "Seen from above, the chip is {cover}{landuse}{nearest}.",
        "A {size} chip that is {cover}{landuse}{nearest}.",
    ),
    "overview-map": (
        "A chip {cover}, by the {source} map{nearest}.",
        "A {size} chip {cover}, as the {source} map shows{nearest}.",
        "By the {source} map, a chip {cover}{nearest}.",
    ),
    "overview-cells": (
        "A chip in {under}, as the {res} cells of the {source} map around it show{nearest}.",
        "The {source} map's {res} cells around this chip are {under}{nearest}.",
        "Land mapped as {under} in {res} cells around the chip ({source}){nearest}.",
    ),
    "composition-observed": (
        "Measured on the image, the valid pixels are {clauses}{unclaimed}{landuse}.",
        "Observed cover of the chip: {clauses}{unclaimed}{landuse}.",
        "Of the chip's cloud-free pixels, {clauses}{unclaimed}{landuse}.",
    ),
    "composition-map": (
        "Land cover of the chip by the {source} map: {clauses}.",
        "By area, the {source} map gives the chip {clauses}.",
        "The chip's cover by the {source} map: {clauses}.",
    ),
    "composition-cells": (
        "Within about {near} of the site, the {source} map shows {clauses}{wide}.",
        "The {source} map's cells within about {near} of the chip are {clauses}{wide}.",
        "Around the chip, to about {near}, the {source} map gives {clauses}{wide}.",
    ),
    "layout-quadrants": (
        "Layout{by}: {clauses}.",
        "Across the chip{by}, {clauses}.",
        "Seen from above{by}, {clauses}.",
    ),
    "layout-sectors": (
        "Around the chip, by share of {source} cells, {clauses}{nearest}.",
        "Of the {source} cells within about {near}, {clauses}{nearest}.",
        "On the {source} map, by share of cells, {clauses}{nearest}.",
    ),
    "surroundings": (
        "Farther out, within about {wide}, the {source} map shows {clauses}{nearest}.",
        "The wider surroundings, to about {wide}, are {clauses} on the {source} map{nearest}.",
        "Within about {wide} of the site the {source} map gives {clauses}{nearest}.",
    ),
    "layout-mixed": (
        "By the {source} map, no single labelled class is the largest in any quadrant of the chip.",
        "Across the chip ({source} map), no quadrant has a labelled class larger than all the others.",
        "The {source} map spreads the labelled classes through every quadrant of the chip, none leading in any.",
    ),
    "no-surroundings": (
        "No map of the land around this {size} chip is available.",
        "The land around this {size} chip is not mapped in the data.",
        "Nothing is known of the land around this {size} chip.",
    ),
    "no-cover": (
        "A {size} chip whose land cover no map or observation gives.",
        "No map or observation gives the land cover of this {size} chip.",
        "The cover of this {size} chip is not known from the data.",
    ),
    "acquisition": (
        "{Sensor} image at {res} per pixel, {width} × {height} pixels across {size}{when}.",
        "Captured by {sensor}{when}; each pixel covers {res} and the chip spans {size}.",
        "A {size}-wide chip from the {collection} collection at {res} per pixel{when}.",
    ),
    "acquisition-nochip": (
        "Imagery of a {size}-wide square is planned {window}.",
        "A {size} chip, with imagery to come {window}.",
        "The chip spans {size}; its imagery is planned {window}.",
    ),
}
"""Sentence frames per focus and evidence."""

TEMPLATES_SHA256 = hashlib.sha256(
    json.dumps(
        {
            "version": TEMPLATE_VERSION,
            "frames": FRAMES,
            "amounts": [(p.text, p.low, p.high) for p in w.AMOUNTS],
            "adverbs": [(p.text, p.low, p.high) for p in w.ADVERBS],
            "close": w.CLOSE_POINTS,
            "regions": sorted((sorted(k), v) for k, v in w.REGION_WORDS.items()),
        },
        sort_keys=True,
    ).encode()
).hexdigest()
"""Hash of every frame and phrase table: the ``prompt_sha256`` of template captions."""


def _change_sha256() -> str:
    from geosample.captions import change_template as ct

    material = {"version": TEMPLATE_VERSION, "frames": ct.FRAMES, "up": ct.UP, "down": ct.DOWN,
                "threshold": ct.CHANGE_MIN, "region": ct.REGION_MIN, "observed": ct.OBSERVED_FRAMES}  # fmt: skip
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def check_focus(focus: Sequence[str] | str | None) -> tuple[str, ...]:
    """A focus mix from a list or a comma-separated string; :class:`ConfigError` names unknown focuses."""
    if focus is None:
        return FOCUSES
    items = [f.strip() for f in focus.split(",")] if isinstance(focus, str) else [str(f).strip() for f in focus]
    items = [f for f in items if f]
    unknown = [f for f in items if f not in ALL_FOCUSES]
    if not items or unknown:
        raise ConfigError(
            f"--focus {','.join(unknown) if unknown else '(empty)'}: choose focuses among {', '.join(ALL_FOCUSES)} "
            f"(default {','.join(FOCUSES)})"
        )
    return tuple(items)


class TemplateCaptioner:
    """Offline captions from the facts alone; the same seed gives the same captions."""

    name = "template"

    def __init__(self, seed: int = 0, focus: Sequence[str] | str | None = None) -> None:
        self.seed = int(seed)
        self.focus = check_focus(focus)
        self.model = f"geosample-template-v{TEMPLATE_VERSION}"
        mix = "" if self.focus == FOCUSES else ":" + ",".join(self.focus)
        self.prompt_sha256 = (
            TEMPLATES_SHA256 if not mix else hashlib.sha256((TEMPLATES_SHA256 + mix).encode()).hexdigest()
        )
        self.change_prompt_sha256 = _change_sha256()

    def __repr__(self) -> str:
        return f"TemplateCaptioner(seed={self.seed}, focus={','.join(self.focus)})"

    def caption(self, contexts: Sequence[SampleContext], n: int) -> list[list[str]]:
        """``n`` captions per context."""
        return [result.captions for result in self.caption_results(contexts, n)]

    def caption_results(self, contexts: Sequence[SampleContext], n: int) -> list[CaptionResult]:
        """``n`` captions per context, with the focus and evidence of each."""
        if not 1 <= n <= MAX_CAPTIONS:
            raise ConfigError(f"-n {n}: the template backend writes 1 to {MAX_CAPTIONS} captions per sample")
        return [self._one(context, n) for context in contexts]

    def caption_changes(self, contexts: Sequence[ChangeContext], n: int) -> list[CaptionResult]:
        """``n`` change captions per pair of samples, with the focus and evidence of each."""
        from geosample.captions.change_template import change_captions

        if not 1 <= n <= MAX_CAPTIONS:
            raise ConfigError(f"-n {n}: the template backend writes 1 to {MAX_CAPTIONS} captions per pair")
        return [change_captions(context, n, self.seed) for context in contexts]

    def _one(self, context: SampleContext, n: int) -> CaptionResult:
        rng = random.Random(f"geosample-template:{self.seed}:{context.sample_id}")
        start = {focus: rng.randrange(FRAMES_PER_FOCUS) for focus in dict.fromkeys(self.focus)}
        seen: dict[str, int] = {}
        captions, focus, evidence = [], [], []
        for k in range(n):
            name = self.focus[k % len(self.focus)]
            # A focus that comes round again takes the next frame.
            variant = (start[name] + seen.get(name, 0)) % FRAMES_PER_FOCUS
            seen[name] = seen.get(name, 0) + 1
            text, used = WRITERS[name](context, variant, rng)
            captions.append(text)
            focus.append(name)
            evidence.append(used)
        return CaptionResult(captions, focus, evidence=evidence)


# --- shares in words -------------------------------------------------------------------------------------------


def share_list(shares: Sequence[ClassShare], limit: int = MAX_LISTED, exact: bool = False) -> str:
    """Classes with their shares in words, largest first, close shares grouped: "croplands (more than half), ...".

    ``exact`` adds the largest class's share as a whole percentage ("more than half, 58%") when it stands alone.
    """
    groups = w.share_groups([(c.name, c.fraction) for c in shares])
    if len(groups) == 1 and len(groups[0].names) == 1 and groups[0].words == "all":
        return f"only {groups[0].names[0]}"
    parts, named = [], 0
    for k, group in enumerate(groups):
        if named >= limit:
            break
        if len(group.names) == 1 and exact and k == 0:
            parts.append(f"{group.names[0]} ({group.words}, {round(100 * group.shares[0])}%)")
        elif len(group.names) == 1:
            parts.append(f"{group.names[0]} ({group.words})")
        else:
            parts.append(f"{w.join(list(group.names))} ({group.words} each)")
        named += len(group.names)
    return w.join(parts)


def cover_words(shares: Sequence[ClassShare]) -> str:
    """The cover of an area in a phrase: "mostly croplands, with mixed forest (about a quarter)", ordered by share."""
    groups = w.share_groups([(c.name, c.fraction) for c in shares])
    if not groups:
        return "of unknown cover"
    first = groups[0]
    adverb = w.adverb_words(first.mean) if len(first.names) == 1 else None
    rest = [c for c in shares if c.name not in first.names]
    if adverb is not None:
        tail = f", with {share_list(rest, MAX_LISTED - 1)}" if rest and share_list(rest, 2) else ""
        return f"{adverb} {first.names[0]}{tail}"
    return f"of {share_list(shares, MAX_LISTED)}"


def _observed_shares(shares: dict[str, float] | None) -> tuple[ClassShare, ...]:
    items = [ClassShare(OBSERVED_CODES.get(k, k), OBSERVED_WORDS.get(k, k), v) for k, v in (shares or {}).items()]
    return tuple(sorted(items, key=lambda c: (-c.fraction, c.name)))


def _map_name(context: SampleContext) -> str:
    """The labels' map in words: "the ESA WorldCover 2021", "MODIS 2019"."""
    source = context.label_source or "land-cover"
    name = source.split("@")[0]
    words = {"modis-igbp": "MODIS 2019", "esa-worldcover": "ESA WorldCover", "io-lulc-annual-v02": "Impact Observatory"}
    text = words.get(name, name)
    if context.map_year is not None and not text.endswith(str(context.map_year)):
        text = f"{text} {context.map_year}"
    return text


def _km(value: float) -> str:
    """A distance to a map boundary: "less than 1 km", "about 7 km", "about 35 km" (5 km steps from 20 km)."""
    if value < 1.0:
        return "less than 1 km"
    if value < 20.0:
        return f"about {round(value)} km"
    return f"about {5 * round(value / 5)} km"


def _radius(value: float) -> str:
    return f"{round(value)} km"


def _nearest_words(context: SampleContext, k: int = 1, skip: int = 0, lead: str = "; the nearest") -> str:
    """Where the ``k`` nearest other covers after ``skip`` begin ("; the nearest open water begins about 12 km ...")."""
    s = context.surroundings
    if s is None:
        return ""
    found = s.nearest[skip : skip + k]
    if not found:
        if skip == 0:
            return f", with no other class on the map within {_radius(150)}"
        return ""
    parts = [f"{n.name} {'begin' if w.is_plural(n.name) else 'begins'} {_km(n.distance_km)} to the {n.direction}"
             for n in found]  # fmt: skip
    return f"{lead} {w.join(parts)}"


def _chip_evidence(context: SampleContext) -> str:
    """Which evidence describes the chip itself: ``observed``, ``map`` (a fine map) or ``cells`` (coarse)."""
    if context.has_observed:
        return "observed"
    if context.has_labels and not context.map_is_coarse:
        return "map"
    return "cells"


def _disagreement(context: SampleContext) -> str:
    """A clause saying that the observed cover and a fine map disagree strongly, or ""."""
    if not (context.has_observed and context.has_labels) or context.taxonomy is None:
        return ""
    if not context.taxonomy.startswith("geosample-lulc@"):
        return ""
    observed = dict(context.observed or {})
    implied: dict[str, float] = {}
    for c in context.labels_at(context.levels[0]):
        cover = MAP_COVER.get(c.code.split(".")[0])
        if cover in observed:
            implied[cover] = implied.get(cover, 0.0) + c.fraction
    total_o, total_m = sum(observed.values()), sum(implied.values())
    if total_o <= 0 or total_m <= 0:
        return ""
    tv = 0.5 * sum(abs(observed.get(k, 0.0) / total_o - implied.get(k, 0.0) / total_m) for k in observed)
    if tv < DISAGREE:
        return ""
    top = context.labels_at(context.levels[0])[0]
    seen = _observed_shares(context.observed)[0]
    return f"; the image and the map disagree here: the map gives mostly {top.name}, the image {seen.name}"


# --- the focuses -----------------------------------------------------------------------------------------------


def overview(context: SampleContext, variant: int, rng: random.Random) -> tuple[str, str]:
    """The cover of the chip (or of the map cells around it) and the nearest other cover."""
    kind = _chip_evidence(context)
    nearest = _nearest_words(context, 2)
    size = w.km(context.chip_size_m)
    if kind == "observed":
        landuse, evidence = "", "observed"
        if context.has_labels and not context.map_is_coarse:
            top = context.labels_at(context.levels[-1])[0]
            landuse = f", where the {_map_name(context)} map's largest class is {top.name}"
            evidence = "observed+map"
        cover = cover_words(_observed_shares(context.observed))
        frame = FRAMES["overview-observed"][variant]
        return w.capital(frame.format(cover=cover, landuse=landuse, nearest=nearest, size=size)), evidence
    if kind == "map":
        cover = cover_words(context.labels_at(context.levels[-1]))
        frame = FRAMES["overview-map"][variant]
        return w.capital(frame.format(cover=cover, source=_map_name(context), nearest=nearest, size=size)), "map"
    under, source, res = _under(context)
    if not under:
        return _no_cover(context, variant), "none"
    frame = FRAMES["overview-cells"][variant]
    return w.capital(frame.format(under=under, source=source, res=res, nearest=nearest)), "map"


def _under(context: SampleContext) -> tuple[str, str, str]:
    """The classes of the coarse map cells under the chip, the map's name and its cell size in words."""
    if context.has_labels and context.map_is_coarse:
        names = [c.name for c in context.labels_at(context.levels[-1])]
        res = context.map_resolution_m or 0.0
        return w.join(names), _map_name(context), f"~{res / 1000:.1f} km"
    s = context.surroundings
    if s is None or not s.under:
        return "", "", ""
    return w.join([c.name for c in s.under]), "MODIS 2019", "~5.6 km"


def _no_cover(context: SampleContext, variant: int = 0) -> str:
    return FRAMES["no-cover"][variant % FRAMES_PER_FOCUS].format(size=w.km(context.chip_size_m))


def composition(context: SampleContext, variant: int, rng: random.Random) -> tuple[str, str]:
    """The share of each class, in words, largest first."""
    kind = _chip_evidence(context)
    if kind == "observed":
        shares = _observed_shares(context.observed)
        claimed = sum(c.fraction for c in shares)
        unclaimed = "" if claimed >= 0.95 else f"; {w.amount_words(1 - claimed)} of them no test could class"
        landuse, evidence = "", "observed"
        if context.has_labels and not context.map_is_coarse:
            landuse = f"; by the {_map_name(context)} map, {share_list(context.labels_at(context.levels[-1]), 3)}"
            landuse += _disagreement(context)
            evidence = "observed+map"
        frame = FRAMES["composition-observed"][variant]
        return w.capital(
            frame.format(clauses=share_list(shares, exact=True), unclaimed=unclaimed, landuse=landuse)
        ), evidence
    if kind == "map":
        frame = FRAMES["composition-map"][variant]
        clauses = share_list(context.labels_at(context.levels[-1]), exact=True)
        return w.capital(frame.format(source=_map_name(context), clauses=clauses)), "map"
    s = context.surroundings
    if s is None or not s.near:
        return _no_cover(context, variant), "none"
    # The wider window's two largest classes as whole percentages: finer-grained than the near window's cells.
    top = [f"{c.name} {round(100 * c.fraction)}%" for c in s.wide[:2] if round(100 * c.fraction) > 0]
    wide = f"; within about {_radius(s.wide_km)}, {w.join(top)}" if top else ""
    if len(s.wide) == 1:
        wide += _nearest_words(context, 1, 0, lead=", and the nearest")
    frame = FRAMES["composition-cells"][variant]
    text = frame.format(near=_radius(s.near_km), source="MODIS 2019", clauses=share_list(s.near, exact=True), wide=wide)
    return w.capital(text), "map"


def layout(context: SampleContext, variant: int, rng: random.Random) -> tuple[str, str]:
    """Where the classes lie: quadrants of the chip (observed or a fine map), or compass sectors around it."""
    kind = _chip_evidence(context)
    if kind == "observed" and context.observed_regions:
        regions = {q: _observed_shares(context.observed_regions.get(q)) for q in QUADRANTS}
        text = _quadrant_text(regions, _observed_shares(context.observed), " on the image", variant, rng)
        if text:
            return text, "observed"
    if kind in ("map", "observed") and context.has_labels and not context.map_is_coarse:
        level = context.levels[-1]
        regions = {q: tuple(context.regions.get(level, {}).get(q, ())) for q in QUADRANTS}
        text = _quadrant_text(regions, context.labels_at(level), f" by the {_map_name(context)} map", variant, rng)
        frame = FRAMES["layout-mixed"][variant % FRAMES_PER_FOCUS]
        return text or w.capital(frame.format(source=_map_name(context))), "map"
    s = context.surroundings
    if s is None or not s.sectors:
        return _no_cover(context, variant), "none"
    return _sector_text(context, variant), "map"


def _quadrant_text(
    regions: dict[str, tuple[ClassShare, ...]], whole: Sequence[ClassShare], by: str, variant: int, rng: random.Random
) -> str:
    """The largest class of each quadrant in words ("croplands dominate the north"); "" when no quadrant has one."""
    # Only classes the captions may name (a map's labels: a class under --min-fraction of the chip is no label).
    named = {c.code for c in whole}
    largest: dict[str, ClassShare] = {}
    for q, shares in regions.items():
        if shares and (len(shares) == 1 or shares[0].fraction > shares[1].fraction) and shares[0].code in named:
            largest[q] = shares[0]
    if not largest:
        return ""
    order = {c.name: k for k, c in enumerate(sorted(whole, key=lambda c: (-c.fraction, c.name)))}
    groups: dict[str, list[str]] = {}
    for q in QUADRANTS:
        if q in largest:
            groups.setdefault(largest[q].name, []).append(q)
    clauses = []
    for name in sorted(groups, key=lambda n: (order.get(n, len(order)), n)):
        quads = groups[name]
        region = w.region_words(frozenset(quads), rng)
        shares = [largest[q].fraction for q in quads]
        verb = "dominate" if w.is_plural(name) else "dominates"
        if min(shares) > w.DOMINANT_SHARE:
            clauses.append(f"{name} {verb} {region}")
        else:
            clauses.append(f"{name} {'are' if w.is_plural(name) else 'is'} the largest class in {region}")
    return w.capital(FRAMES["layout-quadrants"][variant].format(by=by, clauses=w.join(clauses)))


def _directions(names: list[str]) -> str:
    """Compass sectors in words, runs of three or more adjacent ones as arcs: "from south-west round to north"."""
    if len(names) == len(COMPASS):
        return "on every side"
    if len(names) == len(COMPASS) - 1:
        (missing,) = set(COMPASS) - set(names)
        return f"on every side but the {missing}"
    held = [d in names for d in COMPASS]
    # Start the walk just after a sector not held, so no run is split across the list's end.
    first = next(k for k in range(len(COMPASS)) if not held[k - 1])
    runs: list[list[str]] = []
    for k in range(first, first + len(COMPASS)):
        if held[k % len(COMPASS)]:
            if runs and runs[-1][-1] == COMPASS[(k - 1) % len(COMPASS)]:
                runs[-1].append(COMPASS[k % len(COMPASS)])
            else:
                runs.append([COMPASS[k % len(COMPASS)]])
    parts = [f"from {run[0]} round to {run[-1]}" if len(run) >= 3 else "to the " + w.join(run) for run in runs]
    return w.join(parts)


def _sector_text(context: SampleContext, variant: int) -> str:
    s = context.surroundings
    assert s is not None
    order = {c.code: k for k, c in enumerate(s.near)}
    groups: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for direction in COMPASS:
        if direction in s.sectors:
            c = s.sectors[direction]
            groups.setdefault(c.code, []).append(direction)
            names[c.code] = c.name
    share = {c.code: c.fraction for c in s.near}
    clauses = []
    for code in sorted(groups, key=lambda c: (order.get(c, len(order)), c)):
        name = names[code]
        verb = "lie" if w.is_plural(name) else "lies"
        clauses.append(f"{name} ({round(100 * share.get(code, 0.0))}%) {verb} {_directions(groups[code])}")
    # The nearest class not named by the sectors: where the next kind of land begins.
    others = [k for k, n in enumerate(s.nearest) if n.code not in groups]
    nearest = _nearest_words(context, 1, others[0], lead="; the nearest") if others else ""
    frame = FRAMES["layout-sectors"][variant]
    return w.capital(
        frame.format(source="MODIS 2019", near=_radius(s.near_km), clauses=w.join(clauses), nearest=nearest)
    )


def surroundings(context: SampleContext, variant: int, rng: random.Random) -> tuple[str, str]:
    """The land cover within about 50 km and the nearest cells of other classes."""
    s = context.surroundings
    if s is None or not s.wide:
        return FRAMES["no-surroundings"][variant % FRAMES_PER_FOCUS].format(size=w.km(context.chip_size_m)), "none"
    nearest = _nearest_words(context, 2, 0, lead="; the nearest") if s.nearest else _nearest_words(context)
    frame = FRAMES["surroundings"][variant]
    text = frame.format(wide=_radius(s.wide_km), source="MODIS 2019", clauses=share_list(s.wide), nearest=nearest)
    return w.capital(text), "map"


# --- place, climate and time ------------------------------------------------------------------------------------


def _latlon(context: SampleContext) -> str:
    """The chip centre: "24.61°N, 78.02°W" (two decimals, about 1 km)."""
    ns, ew = "N" if context.lat >= 0 else "S", "E" if context.lon >= 0 else "W"
    return f"{abs(context.lat):.2f}°{ns}, {abs(context.lon):.2f}°{ew}"


def _where(context: SampleContext) -> str:
    continent = context.continent if context.continent and "open ocean" not in context.continent else None
    country = _with_article(context.country) if context.country else None
    if country and continent:
        return f"{country}, {continent}"
    if country:
        return country
    if context.continent:
        return "the open ocean" if "open ocean" in context.continent else context.continent
    return "an area outside any mapped country"


_PLURAL_COUNTRIES = ("Is.", "Islands", "lands", "Lands", "Maldives", "Philippines", "Bahamas", "Seychelles", "Comoros")
_FORMAL_COUNTRIES = ("United ", "Republic", "Democratic", "Dem. ", "Central African", "Dominican")


def _with_article(country: str) -> str:
    """Country names that take "the" in running text: the United Kingdom, the Netherlands, the Cayman Is."""
    if country.endswith(_PLURAL_COUNTRIES) or country.startswith(_FORMAL_COUNTRIES):
        return f"the {country}"
    return country


def _day(value: object) -> str:
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"  # type: ignore[attr-defined]


def when_words(context: SampleContext) -> str | None:
    """When: "imaged on 9 May 2021", "from imagery of 1 June to 31 August 2021", "for 2021" (a planned window).

    An acquisition date only from a single item ``datetime``; an item's range
    (or a mosaic) as its period; without a chip, the planned window as a window.
    """
    if context.date is not None:
        return f"imaged on {_day(context.date)}"
    if context.period is not None:
        first, last = context.period
        return f"from imagery of the period {_day(first)} to {_day(last)}"
    start, end = context.start_date, context.end_date
    if start is None or end is None:
        return None
    if (start.month, start.day, end.month, end.day) == (1, 1, 12, 31) and start.year == end.year:
        return f"for {start.year}"
    if (start.month, start.day, end.month, end.day) == (1, 1, 12, 31):
        return f"for {start.year} to {end.year}"
    if (start.year, start.month) == (end.year, end.month) and start.day == 1 and end.day == _month_days(end):
        return f"for {MONTHS[start.month - 1]} {start.year}"
    return f"for the window {_day(start)} to {_day(end)}"


def _month_days(day: object) -> int:
    return calendar.monthrange(day.year, day.month)[1]  # type: ignore[attr-defined]


def _season_words(context: SampleContext) -> str | None:
    season = context.season
    if season is None:
        return None
    if context.date is not None:
        return f"in the {context.hemisphere} {season}"
    return f"within the {context.hemisphere} {season}"


def _place_label(place: Place, context: SampleContext) -> str:
    """The place's name, with its region, and its country when that is not the sample's."""
    extra = [place.admin1] if place.admin1 and place.admin1 != place.name else []
    if place.country and context.country_iso3 and place.country_iso3 != context.country_iso3:
        extra.append(place.country)
    return f"{place.name} ({', '.join(extra)})" if extra else place.name


def _from(place: Place, label: str) -> str:
    """Where the sample lies from a place: "about 12 km north-east of X", "less than 1 km from X"."""
    if place.distance_km < 1.0:
        return f"less than 1 km from {label}"
    return f"{w.distance(place.distance_km)} {place.direction} of {label}"


def _towards(place: Place, label: str, verb: str) -> str:
    """Where a place lies from the sample: "X lies about 12 km to the south-west", "X is less than 1 km away"."""
    if place.distance_km < 1.0:
        return f"{label} is less than 1 km away"
    return f"{label} {verb} {w.distance(place.distance_km)} to the {w.opposite(place.direction)}"


def _city_label(city: Place, context: SampleContext) -> str:
    """The city's name, with its country when that is not the sample's."""
    if city.country and context.country_iso3 and city.country_iso3 != context.country_iso3:
        return f"{city.name} ({city.country})"
    return city.name


def place(context: SampleContext, variant: int, rng: random.Random) -> tuple[str, str]:
    """Country and continent, nearest place and city with distance and direction, climate, and when."""
    where = _where(context)
    near_place = context.place
    city = context.city
    if city is not None and (near_place is None or city.name == near_place.name or city.distance_km > CITY_REACH_KM):
        city = None
    climate = (
        f"{w.article(CLIMATE_NAMES[context.climate])} {CLIMATE_NAMES[context.climate]} climate "
        f"(Köppen {context.climate})"
        if context.climate
        else None
    )
    when = when_words(context)
    season = _season_words(context)
    when = f"{when}, {season}" if when and season else when or season
    label = _place_label(near_place, context) if near_place else None
    near = _from(near_place, label) if near_place and label else None
    city_name = _city_label(city, context) if city else None
    city_part = _from(city, city_name) if city and city_name else None
    at = _latlon(context)
    if variant == 0:
        text = f"Located at {at}, " + (f"{near}{f' and {city_part}' if city_part else ''} in " if near else "in ")
        text += where
        text += f", with {climate}" if climate else ""
        text += f"; {when}" if when else ""
    elif variant == 1:
        parts = []
        if near_place is not None and label:
            parts.append(_towards(near_place, label, "lies"))
        if city is not None and city_name:
            parts.append(_towards(city, city_name, "is"))
        parts += [climate] if climate else []
        parts += [when] if when else []
        # No colon before the place: a capitalised name after one would read as a sentence start.
        text = f"In {where}, at {at}, " + "; ".join(parts) if parts else f"A site in {where}, at {at}"
    else:
        text = f"This site, at {at}, lies " + (
            f"{near}{f' and {city_part}' if city_part else ''}, in {where}" if near else f"in {where}"
        )
        text += f", within {climate}" if climate else ""
        text += f"; {when}" if when else ""
    return w.capital(text) + ".", "none"


def acquisition(context: SampleContext, variant: int, rng: random.Random) -> tuple[str, str]:
    """The sensor or collection, pixel size, chip size and date; the planned window without a chip."""
    size = w.km(context.chip_size_m)
    when = when_words(context)
    if context.collection is None or context.resolution_m is None:
        window = when or "within the plan's window"
        return w.capital(FRAMES["acquisition-nochip"][variant].format(size=size, window=window)), "none"
    name = context.sensor or context.collection
    text = FRAMES["acquisition"][variant].format(
        Sensor=w.capital(name),
        sensor=name,
        collection=context.collection,
        res=w.metres(context.resolution_m),
        width=context.width or round(context.chip_size_m / context.resolution_m),
        height=context.height or round(context.chip_size_m / context.resolution_m),
        size=size,
        when=f", {when}" if when else "",
    )
    return w.capital(text), "none"


WRITERS: dict[str, Callable[[SampleContext, int, random.Random], tuple[str, str]]] = {
    "overview": overview,
    "composition": composition,
    "layout": layout,
    "surroundings": surroundings,
    "place": place,
    "acquisition": acquisition,
}
"""What writes each focus: (caption, evidence)."""
