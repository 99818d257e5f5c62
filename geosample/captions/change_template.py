"""Template change captions: what changed between the two samples of a pair, from their label fractions.

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
from geosample.captions.change import CHANGE_MIN, REGION_MIN, ChangeContext, ClassChange, RegionChange
from geosample.captions.context import MONTHS

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
        "A before/after pair in {where}: {first} and {last}, {gap} apart, around {event}.",
        "Two images of one site in {where}, taken before and after {event} ({first}; {last}).",
        "Pixel-aligned {size} chips of {where} from {first} and {last}, on either side of {event}.",
        "A site in {where} seen on {first} and again on {last}, {gap} later, after {event}.",
    ),
    "pair-revisit": (
        "A revisit pair in {where}: {first} and {last}, {gap} apart.",
        "Two images of one site in {where}, {gap} apart ({first}; {last}).",
        "Pixel-aligned {size} chips of {where} from {first} and {last}, images {step} of a time series.",
        "A site in {where} seen on {first} and again on {last}, {gap} later.",
    ),
    "no-labels": (
        "Two images of one site in {where} {when}; no land-cover labels say what changed.",
        "A {size} chip of {where} on {first} and on {last}.",
        "The same {size} square of {where}, imaged {gap} apart.",
        "An image pair of {where} ({first}, {last}) without labels to compare.",
    ),
}
"""Sentence frames per focus, and for pairs with no change or no labels."""


def percent(fraction: float) -> str:
    """A share for text: "about 70%" (nearest 5 points; nearest point below 10%), "almost none" below 0.5%."""
    if fraction < 0.005:
        return "almost none"
    value = round(fraction * 100) if fraction < 0.1 else 5 * round(fraction * 20)
    return f"about {value}%"


def when(context: ChangeContext) -> str:
    """When the change happened: "after the wildfire of July 2021", "between May 2020 and May 2022"."""
    if context.event_words:
        return f"after {context.event_words}"
    first, last = context.dates
    if first and last:
        return f"between {MONTHS[first.month - 1]} {first.year} and {MONTHS[last.month - 1]} {last.year}"
    return "between the two images"


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
    moment = when(context)
    first, last = context.dates
    text = frame.format(
        when=moment,
        When=w.capital(moment),
        where=_where(context),
        first=_date(first),
        last=_date(last),
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


def change_captions(context: ChangeContext, n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` captions of a pair and their focuses; pairs without labels get captions about the pair only."""
    rng = random.Random(f"geosample-change:{seed}:{context.before.sample_id}:{context.after.sample_id}")
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
