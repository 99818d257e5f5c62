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


_ABOVE_HALF = 0.5 + 1e-9

# One phrase per band of shares, the bands touching without overlap, so a share has exactly one wording and a
# larger share never gets a smaller word. Each band holds the fraction its words name (a third: 0.29-0.36).
AMOUNTS = (
    Phrase("all", 0.995, 1.0),
    Phrase("nearly all", 0.90, 0.995),
    Phrase("most", 0.75, 0.90),
    Phrase("more than half", _ABOVE_HALF, 0.75),
    Phrase("about half", 0.45, _ABOVE_HALF),
    Phrase("about two fifths", 0.36, 0.45),
    Phrase("about a third", 0.29, 0.36),
    Phrase("about a quarter", 0.225, 0.29),
    Phrase("about a fifth", 0.175, 0.225),
    Phrase("about a sixth", 0.14, 0.175),
    Phrase("about a tenth", 0.075, 0.14),
    Phrase("a small share", 0.03, 0.075),
    Phrase("a sliver", 0.005, 0.03),
)
"""Quantities of area, as nouns ("most of the area", "about a third is ..."); below 0.5 % a class is not named."""

ADVERBS = (
    Phrase("entirely", 0.995, 1.0),
    Phrase("almost entirely", 0.90, 0.995),
    Phrase("mostly", _ABOVE_HALF, 0.90),
)
"""How much its largest class covers, as adverbs ("the area is mostly ..."): only above one half."""

DOMINANT_SHARE = 0.5
"""A class "dominates" (or an area is "mostly" it) only when it covers more than this."""
CLOSE_POINTS = 0.03
"""Classes whose shares differ by at most this are given one wording (the wording of their mean share)."""
MIN_NAMED = 0.005
"""Least share of a class that a caption names."""


def amount_words(fraction: float) -> str:
    """The one quantity phrase of :data:`AMOUNTS` whose band holds ``fraction``."""
    for phrase in AMOUNTS:
        if phrase.fits(fraction):
            return phrase.text
    return AMOUNTS[-1].text


def adverb_words(fraction: float) -> str | None:
    """The adverb of :data:`ADVERBS` whose band holds ``fraction`` (None at or below one half)."""
    return next((p.text for p in ADVERBS if p.fits(fraction)), None)


@dataclasses.dataclass(frozen=True)
class ShareGroup:
    """Classes named together with one quantity phrase: those within :data:`CLOSE_POINTS` of a neighbour."""

    names: tuple[str, ...]
    shares: tuple[float, ...]

    @property
    def mean(self) -> float:
        """The mean share of the group, which its wording describes."""
        return sum(self.shares) / len(self.shares)

    @property
    def words(self) -> str:
        """The group's quantity phrase."""
        return amount_words(self.mean)


def share_groups(shares: Sequence[tuple[str, float]]) -> list[ShareGroup]:
    """Classes in order of share (largest first, ties by name), chained into groups of close shares.

    Two classes whose shares differ by at most :data:`CLOSE_POINTS` fall in one
    group (single linkage along the sorted shares), so they are never given
    different-sized words; classes under :data:`MIN_NAMED` are left out.
    """
    ordered = sorted(((n, float(f)) for n, f in shares if f >= MIN_NAMED), key=lambda kv: (-kv[1], kv[0]))
    groups: list[list[tuple[str, float]]] = []
    for name, fraction in ordered:
        if groups and groups[-1][-1][1] - fraction <= CLOSE_POINTS + 1e-12:
            groups[-1].append((name, fraction))
        else:
            groups.append([(name, fraction)])
    return [ShareGroup(tuple(n for n, _ in g), tuple(f for _, f in g)) for g in groups]


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
