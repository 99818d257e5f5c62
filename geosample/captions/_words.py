"""Words for fact-based captions: proportions, compass regions, distances, lists and numbers.

Every phrase carries the range of values it may describe, so a caption that
uses it stays true of the facts; the template backend picks among the
phrases that fit with its seeded random generator.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Phrase:
    """Words that describe a fraction in ``[low, high)`` (``high`` 1.0 is inclusive)."""

    text: str
    low: float
    high: float

    def fits(self, fraction: float) -> bool:
        """Whether the phrase is true of ``fraction``."""
        return self.low <= fraction < self.high or (self.high >= 1.0 and fraction >= 1.0 and self.low <= 1.0)


AMOUNTS = (
    Phrase("all", 0.995, 1.0),
    Phrase("nearly all", 0.90, 0.995),
    Phrase("most", 0.60, 0.90),
    Phrase("more than half", 0.51, 0.75),
    Phrase("about half", 0.42, 0.58),
    Phrase("a large share", 0.30, 0.50),
    Phrase("about a third", 0.27, 0.40),
    Phrase("roughly a quarter", 0.19, 0.31),
    Phrase("roughly a fifth", 0.15, 0.25),
    Phrase("about a tenth", 0.07, 0.13),
    Phrase("a small share", 0.05, 0.15),
    Phrase("a sliver", 0.0, 0.05),
)
"""Quantities of area, as nouns: "most of the scene", "a small share is ..."."""

ADVERBS = (
    Phrase("entirely", 0.995, 1.0),
    Phrase("almost entirely", 0.90, 0.995),
    Phrase("mostly", 0.60, 0.90),
    Phrase("largely", 0.60, 0.90),
)
"""How much of the scene its dominant class covers, as adverbs: "the scene is mostly ..."."""

SOME_SHARE = 0.10
"""Least share of a region for "some X in the south-west"."""

REGION_WORDS: dict[frozenset[str], tuple[str, ...]] = {
    frozenset({"nw", "ne", "sw", "se"}): ("every quadrant", "all four quadrants"),
    frozenset({"nw", "ne"}): ("the north", "the northern half"),
    frozenset({"sw", "se"}): ("the south", "the southern half"),
    frozenset({"nw", "sw"}): ("the west", "the western half"),
    frozenset({"ne", "se"}): ("the east", "the eastern half"),
    frozenset({"nw", "se"}): ("the north-west and south-east quadrants",),
    frozenset({"ne", "sw"}): ("the north-east and south-west quadrants",),
    frozenset({"nw"}): ("the north-west", "the north-west quadrant"),
    frozenset({"ne"}): ("the north-east", "the north-east quadrant"),
    frozenset({"sw"}): ("the south-west", "the south-west quadrant"),
    frozenset({"se"}): ("the south-east", "the south-east quadrant"),
}
"""Groups of quadrants and the words for them; three quadrants are "all but the <fourth>"."""

QUADRANT_NAMES = {"nw": "north-west", "ne": "north-east", "sw": "south-west", "se": "south-east"}


def pick(rng: random.Random, options: Sequence[str]) -> str:
    """One of ``options``, chosen by ``rng``."""
    return options[rng.randrange(len(options))]


def amount(fraction: float, rng: random.Random) -> str:
    """A quantity phrase true of ``fraction``."""
    return pick(rng, [p.text for p in AMOUNTS if p.fits(fraction)])


def adverb(fraction: float, rng: random.Random) -> str | None:
    """An adverb true of the dominant class's ``fraction``, or None when none fits."""
    fitting = [p.text for p in ADVERBS if p.fits(fraction)]
    return pick(rng, fitting) if fitting else None


def region_words(quadrants: frozenset[str], rng: random.Random) -> str:
    """Words for a set of quadrants: "the north", "the south-west", "all but the south-east"."""
    if quadrants in REGION_WORDS:
        return pick(rng, REGION_WORDS[quadrants])
    if len(quadrants) == 3:
        (missing,) = {"nw", "ne", "sw", "se"} - quadrants
        return f"all but the {QUADRANT_NAMES[missing]}"
    raise ValueError(f"no words for quadrants {sorted(quadrants)}")


def is_plural(name: str) -> bool:
    """Whether a name reads as plural for verb agreement: its last word is ("wetlands", "all four quadrants").

    A class name joined by "and" ("forest and woodland") names one category and takes a singular verb.
    """
    last = name.split()[-1] if name.split() else name
    return last.endswith("s") and not last.endswith("ss")


def verbs(name: str) -> dict[str, str]:
    """Verbs agreeing with a class name used as a subject: covers/cover, dominates/dominate..."""
    plural = is_plural(name)
    words = ("covers", "takes", "accounts", "dominates", "prevails")
    return {"is": "are" if plural else "is", **{word: word[:-1] if plural else word for word in words}}


def join(items: Sequence[str], conjunction: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def capital(text: str) -> str:
    """Text with its first letter upper-cased (the rest unchanged)."""
    return text[:1].upper() + text[1:]


def article(word: str) -> str:
    """``a`` or ``an`` for the word that follows."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def km(metres: float) -> str:
    """A length in kilometres for text: 2560 -> "2.56 km", 10000 -> "10 km"."""
    value = metres / 1000.0
    return f"{value:.2f}".rstrip("0").rstrip(".") + " km"


def metres(value: float) -> str:
    """A pixel size for text: 10 -> "10 m", 0.6 -> "0.6 m", 29.97 -> "30 m"."""
    if value >= 5:
        return f"{round(value):d} m"
    return f"{value:.1f}".rstrip("0").rstrip(".") + " m"


def distance(km_value: float) -> str:
    """A distance for text: "about 12 km", "less than 1 km"."""
    if km_value < 1.0:
        return "less than 1 km"
    return f"about {round(km_value):d} km"


def opposite(direction: str) -> str:
    """The opposite compass direction: north-east -> south-west."""
    swap = {"north": "south", "south": "north", "east": "west", "west": "east"}
    return "-".join(swap[part] for part in direction.split("-"))


def utm_words(epsg: int | None) -> str | None:
    """The projection of a UTM/UPS EPSG code in words: "UTM zone 34N (EPSG:32634)"."""
    if epsg is None:
        return None
    if epsg in (32661, 32761):
        return f"UPS {'North' if epsg == 32661 else 'South'} (EPSG:{epsg})"
    if 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760:
        return f"UTM zone {epsg % 100}{'N' if epsg < 32700 else 'S'} (EPSG:{epsg})"
    return f"EPSG:{epsg}"
