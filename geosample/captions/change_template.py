"""Template change captions: what changed between the two samples of a pair.

Pairs with a ``change.parquet`` row are described from it (what the two chips
show: water and vegetation gained or lost, burned area, snow and ice change,
and where in the chip; :data:`OBSERVED_FRAMES`, evidence ``change``). Pairs
labelled from maps of two different years, both finer than the chip, are
described from their label fractions (below; evidence ``map``). Pairs whose
change cannot be told from the data get no captions from ``geosample
caption``; called directly, :func:`change_captions` writes captions that say
so and why (evidence ``unobservable``), never a claim of change or stability.

Label-based captions:

Five focuses (:data:`CHANGE_FOCUSES`): the main change, the largest gain and
where it happened, the largest loss and where, the changes at the finest
level, and the pair itself (place, dates, time apart, the event). Shares are
given as rounded percentages ("about 70%": nearest 5 points, nearest point
below 10%), so two shares at least :data:`~geosample.captions.change.CHANGE_MIN`
apart never read the same; directions use the verbs of :data:`UP` and
:data:`DOWN`; a pair where no class moved by the threshold is "little changed".
Wording is drawn by a generator seeded with the seed and the pair's sample ids.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from geosample.captions import _words as w
from geosample.captions.base import CaptionResult
from geosample.captions.change import CHANGE_MIN, REGION_MIN, ChangeContext, ClassChange, RegionChange
from geosample.captions.context import MONTHS, SampleContext

CHANGE_FOCUSES = ("change", "gain", "loss", "detail", "pair")
FRAMES_PER_FOCUS = 4
UP = ("rose", "grew", "increased", "expanded")
DOWN = ("fell", "shrank", "declined", "decreased")
"""Direction verbs: a class named with one of them moved that way (the report checks it)."""
STABLE = ("little changed", "changed little", "little change")
"""Words of a pair where no class moved by the threshold."""
MAX_CHANGES = 3
"""Most classes named in one caption."""

FRAMES: dict[str, tuple[str, ...]] = {
    "change": (
        "{Cls} {verb} from {a} to {b} of the scene {when}{more}.",
        "{When}, {cls} {verb} from {a} to {b} of the chip{more}.",
        "Change {when}: {cls} went from {a} to {b}{more}.",
        "Comparing the two images, {cls} {verb} from {a} to {b}{more}.",
    ),
    "gain": (
        "The largest gain {when} was in {cls}, which {verb} from {a} to {b}{region}.",
        "{When}, {cls} {verb} the most, from {a} to {b} of the chip{region}.",
        "{Cls} {covers} more of the later image: {b} of the scene against {a} before{region}.",
        "Gain: {cls} {verb} from {a} to {b}{region}.",
    ),
    "loss": (
        "The largest loss {when} was in {cls}, which {verb} from {a} to {b}{region}.",
        "{When}, {cls} {verb} the most, from {a} to {b} of the chip{region}.",
        "{Cls} {covers} less of the later image: {b} of the scene against {a} before{region}.",
        "Loss: {cls} {verb} from {a} to {b}{region}.",
    ),
    "detail": (
        "In detail, {list}.",
        "Class by class, {list}.",
        "At the finest level of the taxonomy, {list}.",
        "Land-cover shifts {when}: {list}.",
    ),
    "stable": (
        "Little changed {when}: {cls} {covers} {a} of the scene before and {b} after.",
        "{When}, the land cover changed little; {cls} still {covers} {b}.",
        "The two images show little change {when}, mostly {cls} ({b}).",
        "Between the two dates the land cover changed little, with {cls} at {b} of the chip.",
    ),
    "no-gain": (
        "No class gained {threshold} or more of the scene {when}; {cls} {covers} {b}.",
        "{When}, no land-cover class grew by {threshold} of the chip or more.",
        "No gain of {threshold} or more in any class {when}; {cls} remains at {b}.",
        "Gains {when} stay under {threshold} of the chip for every class.",
    ),
    "no-loss": (
        "No class lost {threshold} or more of the scene {when}; {cls} {covers} {b}.",
        "{When}, no land-cover class shrank by {threshold} of the chip or more.",
        "No loss of {threshold} or more in any class {when}; {cls} remains at {b}.",
        "Losses {when} stay under {threshold} of the chip for every class.",
    ),
    "pair-event": (
        "A before/after pair in {where}: imaged {first} and {last}, {gap} apart, around {event}.",
        "Two images of one site in {where}, taken before and after {event} ({first}; {last}).",
        "Pixel-aligned {size} chips of {where} imaged {first} and {last}, on either side of {event}.",
        "A site in {where} seen {first} and again {last}, {gap} later, after {event}.",
    ),
    "pair-revisit": (
        "A revisit pair in {where}: imaged {first} and {last}, {gap} apart.",
        "Two images of one site in {where}, {gap} apart ({first}; {last}).",
        "Pixel-aligned {size} chips of {where} imaged {first} and {last}, images {step} of a time series.",
        "A site in {where} seen {first} and again {last}, {gap} later.",
    ),
    "no-labels": (
        "Two images of one site in {where} {when}; no land-cover labels say what changed.",
        "A {size} chip of {where} imaged {first} and {last}.",
        "The same {size} square of {where}, imaged {gap} apart.",
        "An image pair of {where} (imaged {first}, {last}) without labels to compare.",
    ),
}
"""Sentence frames per focus, and for pairs with no change or no labels."""

OBSERVED_WORDS = {
    "water_gain": "open water appeared on {p}",
    "water_loss": "open water receded from {p}",
    "vegetation_loss": "vegetation was lost on {p}",
    "vegetation_gain": "vegetation grew on {p}",
    "burned": "{p} burned",
    "snow_ice_change": "snow and ice changed on {p}",
}
"""Each ``change.parquet`` share in words; ``{p}`` is "about 45% of the clear pixels"."""
LAVA_EVENTS = frozenset({"volcano", "eruption", "volcanic_eruption"})
"""Event types whose burn signal (dNBR) may be fresh lava or ash as well as fire: said so in the caption."""
BURNED_BY_LAVA = "{p} burned or now lie under dark lava or ash"
GAINS = ("water_gain", "vegetation_gain")
LOSSES = ("vegetation_loss", "water_loss", "burned", "snow_ice_change")

OBSERVED_FRAMES: dict[str, tuple[str, ...]] = {
    "change": (
        "{When}, {main}{more}.",
        "Comparing the two images, {main} {when}{more}.",
        "Measured change {when}: {main}{more}.",
    ),
    "gain": (
        "The largest gain {when}: {item}.",
        "{When}, {item}.",
        "Gain measured on the images: {item}, {when}.",
    ),
    "loss": (
        "The largest loss {when}: {item}.",
        "{When}, {item}.",
        "Loss measured on the images: {item}, {when}.",
    ),
    "detail": (
        "Change by type {when}: {list}; {valid} of the pixels were clear in both images.",
        "Measured on both chips ({valid} of the pixels clear in both): {list}.",
        "In detail, {list}, {when}.",
    ),
    "none": (
        "No change covering {threshold} or more of the clear pixels was measured {when}.",
        "{When}, the images show no change on {threshold} or more of the clear pixels.",
        "Between the two images, no measured change reaches {threshold} of the clear pixels.",
    ),
    "no-gain": (
        "Neither open water nor vegetation gained {threshold} or more of the clear pixels {when}.",
        "{When}, no gain of water or vegetation reached {threshold} of the clear pixels.",
        "No measured gain reaches {threshold} of the clear pixels {when}.",
    ),
    "no-loss": (
        "No loss of vegetation or water and no burn reached {threshold} of the clear pixels {when}.",
        "{When}, no measured loss reached {threshold} of the clear pixels.",
        "Losses measured {when} stay under {threshold} of the clear pixels.",
    ),
    "unobservable": (
        "Whether the land cover changed {when} cannot be told from the data used: {reason}.",
        "The change {when} is not observable here: {reason}.",
        "Neither change nor stability can be stated {when}: {reason}.",
        "What happened to the land cover {when} is not known from these data, as {reason}.",
    ),
}
"""Frames of captions made from ``change.parquet`` (and of pairs whose change cannot be observed)."""


def percent(fraction: float) -> str:
    """A share for text: "about 70%" (nearest 5 points; nearest point below 10%), "almost none" below 0.5%."""
    if fraction < 0.005:
        return "almost none"
    value = round(fraction * 100) if fraction < 0.1 else 5 * round(fraction * 20)
    return f"about {value}%"


def when(context: ChangeContext) -> str:
    """When the change happened: "after the wildfire of 12 July 2021", "between May 2020 and May 2022"."""
    if context.event_words:
        return f"after {context.event_words}"
    first, last = context.dates
    if first and last:
        return f"between {MONTHS[first.month - 1]} {first.year} and {MONTHS[last.month - 1]} {last.year}"
    a, b = _years(context.before), _years(context.after)
    if a and b and a != b:
        return f"between {a} and {b}"
    return "between the two images"


def _years(sample: SampleContext) -> str | None:
    start, end = sample.span
    if start is None or end is None:
        return None
    return str(start.year) if start.year == end.year else f"{start.year}–{end.year}"


def moment(sample: SampleContext) -> str:
    """When one image was taken, with its preposition: "on 9 May 2021", "in 2021", "in 1999–2025"."""
    if sample.date is not None:
        return f"on {_date(sample.date)}"
    years = _years(sample)
    return f"in {years}" if years else "at an unknown time"


def gap(days: int | None) -> str:
    """A time span in words: "about 6 months", "about 2 years", "12 days"."""
    if days is None:
        return "some time"
    if days < 60:
        return f"{days} days"
    months = round(days / 30.44)
    if months < 22:
        return f"about {months} months"
    return f"about {round(days / 365.25)} years"


def _date(value: object) -> str:
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}" if value is not None else "an unknown date"  # type: ignore[attr-defined]


def _where(context: ChangeContext) -> str:
    sample = context.after
    if sample.country and sample.continent and "open ocean" not in sample.continent:
        return f"{sample.country}, {sample.continent}"
    return sample.country or sample.continent or "an unmapped area"


def _region(region: RegionChange | None, change: ClassChange, rng: random.Random, form: int) -> str:
    """Where the change was largest (", mostly in the eastern half"), when that area moved by REGION_MIN."""
    if region is None or abs(region.after - region.before) < REGION_MIN:
        return ""
    if (region.after - region.before) * change.delta <= 0:
        return ""
    area = "the centre" if not region.quadrants else w.region_words(region.quadrants, rng)
    forms = (
        f", most of all in {area}, where its share is now {percent(region.after)}",
        f"; {area} changed most, from {percent(region.before)} to {percent(region.after)}",
        f", mostly in {area}",
    )
    return forms[form % len(forms)]


def _clause(change: ClassChange, rng: random.Random) -> str:
    verb = w.pick(rng, UP if change.delta > 0 else DOWN)
    return f"{change.name} {verb} from {percent(change.before)} to {percent(change.after)}"


def _fill(frame: str, context: ChangeContext, **values: str) -> str:
    moment_words = when(context)
    text = frame.format(
        when=moment_words,
        When=w.capital(moment_words),
        where=_where(context),
        first=moment(context.before),
        last=moment(context.after),
        gap=gap(context.days_apart),
        size=w.km(context.after.chip_size_m),
        event=context.event_words or "the event",
        step=" and ".join(str(i + 1) for i in context.revisit_index) if context.revisit_index else "1 and 2",
        threshold=f"{round(CHANGE_MIN * 100)}%",
        **values,
    )
    return w.capital(text)


def _dominant(context: ChangeContext, level: str) -> ClassChange:
    return max(context.changes[level], key=lambda c: (c.after, c.code))


def _values(change: ClassChange, rng: random.Random) -> dict[str, str]:
    verb = w.pick(rng, UP if change.delta > 0 else DOWN)
    return {"cls": change.name, "Cls": w.capital(change.name), "verb": verb, "covers": w.verbs(change.name)["covers"],
            "a": percent(change.before), "b": percent(change.after)}  # fmt: skip


def change(context: ChangeContext, variant: int, rng: random.Random) -> str:
    """The main change at the coarsest level (and the next one), or "little changed"."""
    level = context.levels[0]
    moved = context.significant(level) or context.significant(context.levels[-1])
    if not moved:
        return _fill(FRAMES["stable"][variant], context, **_values(_dominant(context, level), rng))
    more = f", while {_clause(moved[1], rng)}" if len(moved) > 1 else ""
    return _fill(FRAMES["change"][variant], context, more=more, **_values(moved[0], rng))


def _extreme(context: ChangeContext, variant: int, rng: random.Random, sign: int) -> str:
    level = context.levels[0]
    for at in (level, context.levels[-1]):
        moved = [c for c in context.significant(at) if c.delta * sign > 0]
        if moved:
            top = max(moved, key=lambda c: (c.delta * sign, c.code))
            region = _region(context.where.get(at, {}).get(top.code), top, rng, variant)
            name = "gain" if sign > 0 else "loss"
            return _fill(FRAMES[name][variant], context, region=region, **_values(top, rng))
    frame = FRAMES["no-gain" if sign > 0 else "no-loss"][variant]
    return _fill(frame, context, **_values(_dominant(context, level), rng))


def gain(context: ChangeContext, variant: int, rng: random.Random) -> str:
    """The class that gained most, and where."""
    return _extreme(context, variant, rng, 1)


def loss(context: ChangeContext, variant: int, rng: random.Random) -> str:
    """The class that lost most, and where."""
    return _extreme(context, variant, rng, -1)


def detail(context: ChangeContext, variant: int, rng: random.Random) -> str:
    """The changes at the finest level, or the stable classes there with their shares."""
    level = context.levels[-1]
    moved = context.significant(level)[:MAX_CHANGES]
    if moved:
        listed = w.join([_clause(c, rng) for c in moved])
    else:
        kept = sorted(context.changes[level], key=lambda c: (-c.after, c.code))[:MAX_CHANGES]
        listed = w.join([f"{c.name} stayed at {percent(c.after)}" for c in kept if c.after >= 0.005])
        listed = listed or "the land cover changed little"
    return _fill(FRAMES["detail"][variant], context, list=listed)


def pair(context: ChangeContext, variant: int, rng: random.Random) -> str:
    """Where and when the two images were taken, and the event between them."""
    return _fill(FRAMES["pair-event" if context.kind == "event" else "pair-revisit"][variant], context)


WRITERS: dict[str, Callable[[ChangeContext, int, random.Random], str]] = {
    "change": change,
    "gain": gain,
    "loss": loss,
    "detail": detail,
    "pair": pair,
}


def _pct(share: float) -> str:
    return f"{percent(share)} of the clear pixels"


def _words(context: ChangeContext, column: str) -> str:
    """How a ``change.parquet`` column reads for this pair: after an eruption, a burn signal may be lava or ash."""
    if column == "burned" and (context.event_type or "").lower() in LAVA_EVENTS:
        return BURNED_BY_LAVA
    return OBSERVED_WORDS[column]


def _observed_item(context: ChangeContext, column: str, share: float, rng: random.Random, where: bool = True) -> str:
    text = _words(context, column).format(p=_pct(share))
    region = context.observed.where(column) if context.observed is not None and where else frozenset()
    if region and region != frozenset({"nw", "ne", "sw", "se"}):
        text += f", mostly in {w.region_words(region, rng)}"
    return text


def _observed_caption(context: ChangeContext, focus: str, variant: int, rng: random.Random) -> str:
    observed = context.observed
    assert observed is not None
    moved = observed.significant()
    frames = OBSERVED_FRAMES
    variant %= len(frames["change"])
    if focus == "pair":
        return pair(context, variant, rng)
    if focus == "detail":
        listed = [_words(context, k).format(p=_pct(float(v))) for k, v in observed.shares.items() if v is not None]
        valid = percent(observed.valid_fraction) if observed.valid_fraction is not None else "an unknown share"
        return _fill(frames["detail"][variant], context, list=w.join(listed) or "nothing measurable", valid=valid)
    if not moved:
        return _fill(frames["none"][variant], context)
    if focus == "change":
        main = _observed_item(context, moved[0][0], moved[0][1], rng)
        more = (
            f", while {_observed_item(context, moved[1][0], moved[1][1], rng, where=False)}" if len(moved) > 1 else ""
        )
        return _fill(frames["change"][variant], context, main=main, more=more)
    kinds = GAINS if focus == "gain" else LOSSES
    found = [(k, v) for k, v in moved if k in kinds]
    if not found:
        return _fill(frames["no-gain" if focus == "gain" else "no-loss"][variant], context)
    return _fill(frames[focus][variant], context, item=_observed_item(context, found[0][0], found[0][1], rng))


def change_captions(context: ChangeContext, n: int, seed: int) -> CaptionResult:
    """``n`` captions of a pair with their focuses and evidence.

    From ``change.parquet`` when the pair has a row there; from the labels
    when they can show change; otherwise captions that say the change is not
    observable and why (``geosample caption`` does not write those pairs).
    """
    rng = random.Random(f"geosample-change:{seed}:{context.before.sample_id}:{context.after.sample_id}")
    if context.observed is not None or context.unobservable is not None:
        captions, focuses = [], []
        for k in range(n):
            name = CHANGE_FOCUSES[k % len(CHANGE_FOCUSES)]
            variant = k // len(CHANGE_FOCUSES) + rng.randrange(3)
            if context.observed is not None:
                captions.append(_observed_caption(context, name, variant, rng))
            elif name == "pair":
                captions.append(pair(context, variant % FRAMES_PER_FOCUS, rng))
            else:
                frames = OBSERVED_FRAMES["unobservable"]
                frame = frames[(CHANGE_FOCUSES.index(name) + k // len(CHANGE_FOCUSES)) % len(frames)]
                captions.append(_fill(frame, context, reason=context.unobservable or "unknown"))
            focuses.append(name)
        return CaptionResult(captions, focuses, evidence=[context.evidence] * n)
    captions, focuses = _label_captions(context, n, rng)
    return CaptionResult(captions, focuses, evidence=[context.evidence] * n)


def _label_captions(context: ChangeContext, n: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """``n`` captions from the labels of both samples; pairs without labels get captions about the pair only."""
    rounds = -(-n // len(CHANGE_FOCUSES))
    order = {
        focus: rng.sample(range(FRAMES_PER_FOCUS), rounds) if rounds > 1 else [rng.randrange(FRAMES_PER_FOCUS)]
        for focus in CHANGE_FOCUSES[: min(n, len(CHANGE_FOCUSES))]
    }
    captions, focuses = [], []
    for k in range(n):
        name = CHANGE_FOCUSES[k % len(CHANGE_FOCUSES)]
        variant = order[name][k // len(CHANGE_FOCUSES)]
        if not context.has_labels and name != "pair":
            # Without labels the four label focuses share the no-labels frames, one each per round.
            index = (CHANGE_FOCUSES.index(name) + k // len(CHANGE_FOCUSES)) % FRAMES_PER_FOCUS
            captions.append(_fill(FRAMES["no-labels"][index], context))
        else:
            captions.append(WRITERS[name](context, variant, rng))
        focuses.append(name)
    return captions, focuses
