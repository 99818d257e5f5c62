"""The ``template`` backend: offline, deterministic captions built only from a sample's facts.

Five captions per sample, each with its own focus (:data:`FOCUSES`): an
overview, the land-cover composition with proportions in words, the spatial
layout from the per-quadrant fractions, the geographic and seasonal context,
and the sensor and scale. Each focus has four sentence frames and the word
choices inside them vary; a random generator seeded with ``seed`` and the
sample id picks them, so captions do not depend on batch order. Every phrase
is chosen only where it is true of the facts (see ``_words``). With more than
five captions the focuses come round again with frames not used yet.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from geosample.captions import _words as w
from geosample.captions.base import CaptionResult
from geosample.captions.context import CLIMATE_NAMES, MONTHS, QUADRANTS, ClassShare, SampleContext
from geosample.captions.gazetteer import Place
from geosample.errors import ConfigError

if TYPE_CHECKING:
    from geosample.captions.change import ChangeContext

TEMPLATE_VERSION = 1
FOCUSES = ("overview", "composition", "layout", "geography", "sensor")
FRAMES_PER_FOCUS = 4
MAX_CAPTIONS = len(FOCUSES) * FRAMES_PER_FOCUS
CITY_REACH_KM = 300.0
"""The nearest city is named when it is this close."""
MAX_LISTED = 4
"""Most classes named in a composition caption."""

FRAMES: dict[str, tuple[str, ...]] = {
    "overview": (
        "A satellite view of {dominant} in {where}{second}.",
        "Overview: a {size} scene in {where} dominated by {dominant}{second}.",
        "{Where}: a landscape where {dominant} {dominates}{second}.",
        "Remote-sensing scene of {where}, mainly {dominant}{second}.",
    ),
    "overview-nolabels": (
        "A satellite view of {where}, where MODIS maps {centre} at the chip centre.",
        "Overview: a {size} scene in {where}, centred on {centre} according to MODIS.",
        "{Where}: a {size} chip whose centre the MODIS map classes as {centre}.",
        "Remote-sensing scene in {where}; the 2019 MODIS map shows {centre} at its centre.",
    ),
    "composition": (
        "{Clauses}.",
        "Land cover: {clauses}.",
        "By area, {clauses}.",
        "In terms of land cover, {clauses}.",
    ),
    "composition-nolabels": (
        "Land cover at the chip centre, from the 2019 MODIS map: {centre}.",
        "The MODIS 2019 land-cover class at the centre is {centre}.",
        "By the coarse MODIS map, the chip centre falls in {centre}.",
        "Centre land cover (MODIS IGBP, 2019): {centre}.",
    ),
    "layout": (
        "Layout: {clauses}.",
        "Spatially, {clauses}.",
        "Across the chip, {clauses}.",
        "Seen from above, {clauses}.",
    ),
    "layout-nolabels": (
        "The chip is a {size} square centred at {latlon}, projected in {utm}.",
        "Footprint: {size} on each side around {latlon}, {area} in all.",
        "Spatial extent: a square of {area} centred on {latlon}.",
        "Centred at {latlon}, the scene spans {size} from west to east and from north to south.",
    ),
    "sensor": (
        "{Sensor} image at {res} resolution: {width} × {height} pixels covering {size} on a side{acquired}.",
        "Captured by {sensor}{on_date}; each pixel covers {res} and the chip spans {size}.",
        "A {size}-wide chip from the {collection} collection at {res} per pixel, bands {bands}.",
        "Imagery: {collection}, {res} ground sampling distance, {width} pixels across {size}, projected in {utm}.",
    ),
    "sensor-nochip": (
        "A {size} × {size} chip footprint in {utm}, planned for imagery between {start} and {end}.",
        "Planned chip: {size} on a side ({area}), {utm}, imagery window {start} to {end}.",
        "Scale: the chip spans {size} from edge to edge; imagery is to come from {start} to {end}.",
        "Chip geometry: a {area} square projected in {utm}, for the period {start} to {end}.",
    ),
}
"""Sentence frames per focus (and per focus when labels or the chip are missing)."""

CLAUSES = {
    "first": ("{amount} of the scene is {cls}", "{cls} {covers} {amount} of the chip", "the scene is {adverb} {cls}"),
    "next": ("{amount} is {cls}", "{cls} {takes} up {amount}", "{cls} {accounts} for {amount}"),
    "layout": ("{cls} {dominates} {region}", "{cls} {prevails} in {region}", "{region} {region_is} mainly {cls}"),
    "layout-list": ("{cls} in {region}",),
}
"""Clause frames of the composition and layout captions."""

TEMPLATES_SHA256 = hashlib.sha256(
    json.dumps(
        {
            "version": TEMPLATE_VERSION,
            "frames": FRAMES,
            "clauses": CLAUSES,
            "amounts": [(p.text, p.low, p.high) for p in w.AMOUNTS],
            "adverbs": [(p.text, p.low, p.high) for p in w.ADVERBS],
            "regions": sorted((sorted(k), v) for k, v in w.REGION_WORDS.items()),
        },
        sort_keys=True,
    ).encode()
).hexdigest()
"""Hash of every frame and phrase table: the ``prompt_sha256`` of template captions."""


def _change_sha256() -> str:
    from geosample.captions import change_template as ct

    material = {"version": TEMPLATE_VERSION, "frames": ct.FRAMES, "up": ct.UP, "down": ct.DOWN,
                "threshold": ct.CHANGE_MIN, "region": ct.REGION_MIN}  # fmt: skip
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


class TemplateCaptioner:
    """Offline captions from the facts alone; the same seed gives the same captions."""

    name = "template"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.model = f"geosample-template-v{TEMPLATE_VERSION}"
        self.prompt_sha256 = TEMPLATES_SHA256
        self.change_prompt_sha256 = _change_sha256()

    def __repr__(self) -> str:
        return f"TemplateCaptioner(seed={self.seed})"

    def caption(self, contexts: Sequence[SampleContext], n: int) -> list[list[str]]:
        """``n`` captions per context."""
        return [result.captions for result in self.caption_results(contexts, n)]

    def caption_results(self, contexts: Sequence[SampleContext], n: int) -> list[CaptionResult]:
        """``n`` captions per context, with the focus of each."""
        if not 1 <= n <= MAX_CAPTIONS:
            raise ConfigError(f"-n {n}: the template backend writes 1 to {MAX_CAPTIONS} distinct captions per sample")
        return [self._one(context, n) for context in contexts]

    def caption_changes(self, contexts: Sequence[ChangeContext], n: int) -> list[CaptionResult]:
        """``n`` change captions per pair of samples, with the focus of each."""
        from geosample.captions.change_template import change_captions

        if not 1 <= n <= MAX_CAPTIONS:
            raise ConfigError(f"-n {n}: the template backend writes 1 to {MAX_CAPTIONS} distinct captions per pair")
        return [CaptionResult(*change_captions(context, n, self.seed)) for context in contexts]

    def _one(self, context: SampleContext, n: int) -> CaptionResult:
        rng = random.Random(f"geosample-template:{self.seed}:{context.sample_id}")
        rounds = -(-n // len(FOCUSES))
        # Frames per focus, distinct across rounds when there are more captions than focuses.
        order = {
            focus: rng.sample(range(FRAMES_PER_FOCUS), rounds) if rounds > 1 else [rng.randrange(FRAMES_PER_FOCUS)]
            for focus in FOCUSES[:n]
        }
        captions, focus = [], []
        for k in range(n):
            name = FOCUSES[k % len(FOCUSES)]
            variant = order[name][k // len(FOCUSES)]
            captions.append(WRITERS[name](context, variant, rng))
            focus.append(name)
        return CaptionResult(captions, focus)


def _where(context: SampleContext) -> str:
    continent = context.continent if context.continent and "open ocean" not in context.continent else None
    country = _with_article(context.country) if context.country else None
    if country and continent:
        return f"{country}, {continent}"
    return country or continent or "an area outside any mapped country"


_PLURAL_COUNTRIES = ("Is.", "Islands", "lands", "Lands", "Maldives", "Philippines", "Bahamas", "Seychelles", "Comoros")
_FORMAL_COUNTRIES = ("United ", "Republic", "Democratic", "Dem. ", "Central African", "Dominican")


def _with_article(country: str) -> str:
    """Country names that take "the" in running text: the United Kingdom, the Netherlands, the Cayman Is."""
    if country.endswith(_PLURAL_COUNTRIES) or country.startswith(_FORMAL_COUNTRIES):
        return f"the {country}"
    return country


def _finest(context: SampleContext) -> str:
    return context.levels[-1]


def overview(context: SampleContext, variant: int, rng: random.Random) -> str:
    """The scene as a whole: its dominant class and where it is."""
    where = _where(context)
    if not context.has_labels:
        centre = context.centre_landcover or "unclassified land"
        frame = FRAMES["overview-nolabels"][variant]
        return w.capital(
            frame.format(where=where, Where=w.capital(where), size=w.km(context.chip_size_m), centre=centre)
        )
    levels = [level for level in context.levels if context.labels_at(level)]
    level = w.pick(rng, levels)
    labels = context.labels_at(level)
    second = f", with some {labels[1].name}" if len(labels) > 1 else ""
    frame = FRAMES["overview"][variant]
    text = frame.format(
        dominant=labels[0].name,
        where=where,
        Where=w.capital(where),
        second=second,
        size=w.km(context.chip_size_m),
        **w.verbs(labels[0].name),
    )
    return w.capital(text)


def composition(context: SampleContext, variant: int, rng: random.Random) -> str:
    """The share of each labelled class, in words."""
    if not context.has_labels:
        centre = context.centre_landcover or "unclassified land"
        return FRAMES["composition-nolabels"][variant].format(centre=centre)
    labels = context.labels_at(_finest(context))[:MAX_LISTED]
    clauses = [_first_clause(labels[0], rng)]
    for share in labels[1:]:
        clause = w.pick(rng, CLAUSES["next"])
        clauses.append(clause.format(amount=w.amount(share.fraction, rng), cls=share.name, **w.verbs(share.name)))
    body = w.join(clauses)
    frame = FRAMES["composition"][variant]
    return w.capital(frame.format(clauses=body, Clauses=w.capital(body)))


def _first_clause(share: ClassShare, rng: random.Random) -> str:
    adverb = w.adverb(share.fraction, rng)
    options = CLAUSES["first"] if adverb else CLAUSES["first"][:2]
    clause = w.pick(rng, options)
    return clause.format(amount=w.amount(share.fraction, rng), cls=share.name, adverb=adverb, **w.verbs(share.name))


def layout(context: SampleContext, variant: int, rng: random.Random) -> str:
    """Which class dominates which part of the chip, from the per-quadrant fractions."""
    chosen = _layout_level(context)
    if chosen is None:
        return _extent(context, variant)
    level, dominant = chosen
    labels = {c.code: c for c in context.labels_at(level)}
    groups: dict[str, set[str]] = {}
    for quadrant in QUADRANTS:
        code = dominant.get(quadrant)
        if code is not None:
            groups.setdefault(code, set()).add(quadrant)
    as_list = variant == 0
    form = CLAUSES["layout-list"][0] if as_list else w.pick(rng, CLAUSES["layout"])
    clauses = []
    for code, quadrants in groups.items():
        region = w.region_words(frozenset(quadrants), rng)
        region_is = w.verbs(region)["is"]
        clauses.append(
            form.format(cls=labels[code].name, region=region, region_is=region_is, **w.verbs(labels[code].name))
        )
    centre = dominant.get("centre")
    if centre is not None and groups.get(centre) != set(QUADRANTS):
        clauses.append(
            f"{labels[centre].name} at the centre" if as_list else f"the centre is mainly {labels[centre].name}"
        )
    extra = _some(context, level, dominant, labels)
    if extra is not None:
        share, quadrant = extra
        clauses.append(f"with some {share.name} in the {w.QUADRANT_NAMES[quadrant]}")
    body = w.join(clauses[:-1]) + ", " + clauses[-1] if extra is not None and len(clauses) > 1 else w.join(clauses)
    return w.capital(FRAMES["layout"][variant].format(clauses=body))


def _layout_level(context: SampleContext) -> tuple[str, dict[str, str]] | None:
    """The finest level whose region-dominant classes are all labels (else the one naming most regions)."""
    best: tuple[int, str, dict[str, str]] | None = None
    for level in reversed(context.levels):
        labels = {c.code for c in context.labels_at(level)}
        regions = context.regions.get(level, {})
        dominant = {
            region: shares[0].code
            for region, shares in regions.items()
            if shares and shares[0].code in labels and (len(shares) == 1 or shares[0].fraction > shares[1].fraction)
        }
        named = sum(1 for q in QUADRANTS if q in dominant)
        if named == len(QUADRANTS):
            return level, dominant
        if named and (best is None or named > best[0]):
            best = (named, level, dominant)
    return (best[1], best[2]) if best else None


def _some(
    context: SampleContext, level: str, dominant: dict[str, str], labels: dict[str, ClassShare]
) -> tuple[ClassShare, str] | None:
    """A labelled class dominant nowhere, with its largest quadrant share when that is at least "some"."""
    mentioned = set(dominant.values())
    best: tuple[float, str, str] | None = None
    for quadrant in QUADRANTS:
        for share in context.regions.get(level, {}).get(quadrant, ()):
            if share.code in labels and share.code not in mentioned and share.fraction >= w.SOME_SHARE:
                if best is None or share.fraction > best[0]:
                    best = (share.fraction, share.code, quadrant)
    return (labels[best[1]], best[2]) if best else None


def _latlon(context: SampleContext) -> str:
    ns = "N" if context.lat >= 0 else "S"
    ew = "E" if context.lon >= 0 else "W"
    return f"{abs(context.lat):.3f}°{ns}, {abs(context.lon):.3f}°{ew}"


def _area(context: SampleContext) -> str:
    value = (context.chip_size_m / 1000.0) ** 2
    return (f"{value:.2f}".rstrip("0").rstrip(".") if value < 100 else f"{value:.0f}") + " km²"


def _extent(context: SampleContext, variant: int) -> str:
    return FRAMES["layout-nolabels"][variant].format(
        size=w.km(context.chip_size_m),
        latlon=_latlon(context),
        utm=w.utm_words(context.epsg) or "its local UTM zone",
        area=_area(context),
    )


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


def _when(context: SampleContext, rng: random.Random) -> str | None:
    """When the image was taken ("imaged on 14 July 2021, in summer") or is planned for."""
    if context.date is not None:
        text = f"imaged on {context.date.day} {MONTHS[context.date.month - 1]} {context.date.year}"
    elif context.month is not None and context.year is not None:
        text = f"imagery planned for {MONTHS[context.month - 1]} {context.year}"
    elif context.year is not None:
        text = f"imagery planned for {context.year}"
    else:
        text = None
    season = context.season
    if season is None:
        return text
    season_words = w.pick(rng, (f"in {season}", f"during the {context.hemisphere} {season}"))
    return f"{text}, {season_words}" if text else f"imagery planned {season_words}"


def geography(context: SampleContext, variant: int, rng: random.Random) -> str:
    """Country, continent, nearest place and city with distance and direction, climate, month and season."""
    where = _where(context)
    place = context.place
    city = context.city
    if city is not None and (place is None or city.name == place.name or city.distance_km > CITY_REACH_KM):
        city = None
    climate = (
        f"{w.article(CLIMATE_NAMES[context.climate])} {CLIMATE_NAMES[context.climate]} climate "
        f"(Köppen {context.climate})"
        if context.climate
        else None
    )
    when = _when(context, rng)
    label = _place_label(place, context) if place else None
    near = _from(place, label) if place and label else None
    city_name = _city_label(city, context) if city else None
    city_part = _from(city, city_name) if city and city_name else None
    if variant == 0:
        text = "Located " + (f"{near}{f' and {city_part}' if city_part else ''} in " if near else "in ") + where
        text += f", with {climate}" if climate else ""
        text += f"; {when}" if when else ""
    elif variant == 1:
        parts = []
        if place is not None and label:
            parts.append(_towards(place, label, "lies"))
        if city is not None and city_name:
            parts.append(_towards(city, city_name, "is"))
        parts += [climate] if climate else []
        parts += [when] if when else []
        # No colon before the place: a capitalised name after one would read as a sentence start.
        text = f"In {where}, " + "; ".join(parts) if parts else f"A site in {where}"
    elif variant == 2:
        text = "This site lies " + (
            f"{near}{f' and {city_part}' if city_part else ''}, in {where}" if near else f"in {where}"
        )
        text += f", within {climate}" if climate else ""
        text += (f", {when}" if context.date is not None else f", with {when}") if when else ""
    else:
        bits = [where, near, city_part, climate, when]
        text = "Geographic context: " + "; ".join(b for b in bits if b)
    return w.capital(text) + "."


def sensor(context: SampleContext, variant: int, rng: random.Random) -> str:
    """The sensor or collection, resolution, pixels, chip size and date; the planned footprint without a chip."""
    size = w.km(context.chip_size_m)
    utm = w.utm_words(context.epsg) or "its local UTM zone"
    if context.collection is None or context.resolution_m is None:
        start = context.start_date.isoformat() if context.start_date else "the start of the plan"
        end = context.end_date.isoformat() if context.end_date else "its end"
        return FRAMES["sensor-nochip"][variant].format(size=size, utm=utm, start=start, end=end, area=_area(context))
    day = (
        f"{context.date.day} {MONTHS[context.date.month - 1]} {context.date.year}" if context.date is not None else None
    )
    name = context.sensor or context.collection
    bands = w.join(list(context.bands)) if context.bands else "as fetched"
    text = FRAMES["sensor"][variant].format(
        Sensor=w.capital(name),
        sensor=name,
        collection=context.collection,
        res=w.metres(context.resolution_m),
        width=context.width or round(context.chip_size_m / context.resolution_m),
        height=context.height or round(context.chip_size_m / context.resolution_m),
        size=size,
        utm=utm,
        bands=bands,
        acquired=f", acquired on {day}" if day else "",
        on_date=f" on {day}" if day else "",
    )
    return w.capital(text)


WRITERS: dict[str, Callable[[SampleContext, int, random.Random], str]] = {
    "overview": overview,
    "composition": composition,
    "layout": layout,
    "geography": geography,
    "sensor": sensor,
}
