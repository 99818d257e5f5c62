"""Independent checks that a template caption says only true things.

The meanings of proportion words, regions and compass directions are written
down here in plain terms (not taken from geosample), and each caption is
parsed back: every class it names must be a label of the sample, every
proportion must fit the class's share, every region statement must match the
per-quadrant shares, every distance and direction must match an independent
great-circle computation.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

AMOUNT_MEANING = {
    "all": (0.99, 1.0),
    "nearly all": (0.85, 1.0),
    "most": (0.5, 1.0),
    "more than half": (0.5, 1.0),
    "about half": (0.35, 0.65),
    "a large share": (0.25, 0.6),
    "about a third": (0.2, 0.45),
    "roughly a quarter": (0.15, 0.35),
    "roughly a fifth": (0.1, 0.3),
    "about a tenth": (0.05, 0.15),
    "a small share": (0.0, 0.2),
    "a sliver": (0.0, 0.06),
    "entirely": (0.99, 1.0),
    "almost entirely": (0.85, 1.0),
    "mostly": (0.5, 1.0),
    "largely": (0.5, 1.0),
}
Q = ("nw", "ne", "sw", "se")
NAMES = ("north-west", "north-east", "south-west", "south-east")
REGION_MEANING = {
    "every quadrant": set(Q),
    "all four quadrants": set(Q),
    "the northern half": {"nw", "ne"},
    "the southern half": {"sw", "se"},
    "the western half": {"nw", "sw"},
    "the eastern half": {"ne", "se"},
    "the north-west and south-east quadrants": {"nw", "se"},
    "the north-east and south-west quadrants": {"ne", "sw"},
    **{f"all but the {n}": set(Q) - {q} for q, n in zip(Q, NAMES, strict=True)},
    **{f"the {n} quadrant": {q} for q, n in zip(Q, NAMES, strict=True)},
    **{f"the {n}": {q} for q, n in zip(Q, NAMES, strict=True)},
    "the north": {"nw", "ne"},
    "the south": {"sw", "se"},
    "the west": {"nw", "sw"},
    "the east": {"ne", "se"},
    "the centre": {"centre"},
}
DIRECTION_ANGLE = {
    "north": 0, "north-east": 45, "east": 90, "south-east": 135, "south": 180, "south-west": 225, "west": 270,
    "north-west": 315,
}  # fmt: skip
R_KM = 6371.0088


@dataclass
class Truth:
    """What is true of one sample, computed by the test."""

    all_class_names: set[str]
    """Every class name of the taxonomy (lower case)."""
    label_names: set[str] = field(default_factory=set)
    """Names of the sample's labels at any level."""
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    """Level -> label name -> whole-chip fraction."""
    regions: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Level -> region -> class name -> fraction."""
    places: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """Place name -> (distance km, bearing place->sample, bearing sample->place)."""
    country: str | None = None
    climate: str | None = None
    date: dt.date | None = None
    season: str | None = None
    resolution: str | None = None


def haversine_bearing(lon1: float, lat1: float, lon2: float, lat2: float) -> tuple[float, float]:
    """Distance (km) and initial bearing (degrees) from point 1 to point 2, written out from the formulas."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    d = 2 * R_KM * math.asin(math.sqrt(min(1.0, a)))
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return d, math.degrees(math.atan2(y, x)) % 360


def _mask(text: str, phrases, prefix: str) -> tuple[str, list[str]]:
    """Replace phrases (longest first, whole words) with numbered tokens."""
    found: list[str] = []
    for phrase in sorted(phrases, key=len, reverse=True):
        pattern = re.compile(r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])")

        def sub(match: re.Match, phrase: str = phrase) -> str:
            found.append(phrase)
            return f"<{prefix}{len(found) - 1}>"

        text = pattern.sub(sub, text)
    return text, found


def class_names_in(caption: str, truth: Truth) -> list[str]:
    """Class names in the caption, in reading order."""
    text, found = _mask(caption.lower(), truth.all_class_names, "c")
    return [found[int(i)] for i in re.findall(r"<c(\d+)>", text)]


def check_class_names(caption: str, truth: Truth) -> None:
    for name in class_names_in(caption, truth):
        assert name in truth.label_names, f"{name!r} is not a label of the sample: {caption}"


def _clauses(caption: str, truth: Truth) -> tuple[list[str], list[str], list[str]]:
    text = caption.lower()
    text, classes = _mask(text, truth.all_class_names, "c")
    text, regions = _mask(text, REGION_MEANING, "r")
    clauses = [c.strip() for c in re.split(r",|;|\.|\band\b|:", text) if c.strip()]
    return clauses, classes, regions


def check_composition(caption: str, truth: Truth) -> int:
    """Every (proportion, class) pair fits the class's share at some level; returns the pairs checked."""
    clauses, classes, _ = _clauses(caption, truth)
    checked = 0
    for clause in clauses:
        ids = [int(i) for i in re.findall(r"<c(\d+)>", clause)]
        if not ids:
            continue
        assert len(ids) == 1, clause
        name = classes[ids[0]]
        phrases = sorted(AMOUNT_MEANING, key=len, reverse=True)
        phrase = next((p for p in phrases if re.search(rf"(?<![\w-]){p}(?![\w-])", clause)), None)
        assert phrase is not None, f"no proportion for {name!r} in {caption!r}"
        low, high = AMOUNT_MEANING[phrase]
        fractions = [s[name] for s in truth.shares.values() if name in s]
        assert fractions, f"{name!r} is not a label: {caption}"
        assert any(low - 1e-9 <= f <= high + 1e-9 for f in fractions), f"{phrase!r} {name!r} but {fractions}: {caption}"
        checked += 1
    return checked


def _dominant(shares: dict[str, float], name: str) -> bool:
    value = shares.get(name, 0.0)
    return value > 0 and all(value > v for other, v in shares.items() if other != name)


def check_layout(caption: str, truth: Truth) -> int:
    """Every (class, region) statement holds at one level; returns the statements checked."""
    clauses, classes, regions = _clauses(caption, truth)
    statements = []
    for clause in clauses:
        cls = [int(i) for i in re.findall(r"<c(\d+)>", clause)]
        reg = [int(i) for i in re.findall(r"<r(\d+)>", clause)]
        if not cls and not reg:
            continue
        if not reg and "at the centre" not in clause:
            raise AssertionError(f"a class without a region in {caption!r}: {clause!r}")
        assert len(cls) == 1, clause
        where = REGION_MEANING[regions[reg[0]]] if reg else {"centre"}
        statements.append((classes[cls[0]], where, "some" in clause.split()))
    assert statements, caption
    for by_region in truth.regions.values():
        ok = True
        for name, where, some in statements:
            for region in where:
                shares = by_region.get(region, {})
                if some:
                    ok &= shares.get(name, 0.0) >= 0.05
                else:
                    ok &= _dominant(shares, name)
        if ok:
            return len(statements)
    raise AssertionError(f"layout statements hold at no level: {caption!r} {truth.regions}")


def _direction_ok(word: str, bearing: float) -> bool:
    diff = abs((DIRECTION_ANGLE[word] - bearing + 180) % 360 - 180)
    return diff <= 22.5 + 1.0


def check_geography(caption: str, truth: Truth) -> int:
    """Distances, directions, country, climate and season; returns the place statements checked."""
    checked = 0
    km_mentions = len(re.findall(r"\d+ km|less than 1 km", caption))
    for name, (distance, from_place, to_place) in truth.places.items():
        label = re.escape(name) + r"(?: \([^)]*\))?"
        for m in re.finditer(rf"about (\d+) km ([a-z-]+) of {label}", caption):
            assert abs(int(m.group(1)) - distance) <= 0.5 + 1e-6, (m.group(0), distance)
            assert _direction_ok(m.group(2), from_place), (m.group(0), from_place)
            checked += 1
        for m in re.finditer(rf"{label} (?:lies|is) about (\d+) km to the ([a-z-]+)", caption):
            assert abs(int(m.group(1)) - distance) <= 0.5 + 1e-6, (m.group(0), distance)
            assert _direction_ok(m.group(2), to_place), (m.group(0), to_place)
            checked += 1
        for _ in re.finditer(rf"less than 1 km from {label}|{label} is less than 1 km away", caption):
            assert distance < 1.0
            checked += 1
    assert checked == km_mentions, f"unverified distances in {caption!r} (places {list(truth.places)})"
    if truth.country:
        assert truth.country in caption, caption
    letters = re.findall(r"Köppen ([A-E])", caption)
    assert letters == ([truth.climate] if truth.climate else []), caption
    seasons = re.findall(r"\b(winter|spring|summer|autumn)\b", caption)
    assert seasons == ([truth.season] if truth.season else []), caption
    if truth.date is not None:
        assert f"{truth.date.day} {truth.date:%B} {truth.date.year}" in caption, caption
    return checked


def check_overview(caption: str, truth: Truth) -> None:
    """The first class named is the largest label at some level; the others are labels."""
    names = class_names_in(caption, truth)
    if not truth.shares:
        assert not names, caption
        return
    assert names, caption
    assert any(s and max(s, key=s.get) == names[0] for s in truth.shares.values()), (caption, truth.shares)
    check_class_names(caption, truth)


# The taxonomy read with plain PyYAML, and share roll-ups written out here.

TAXONOMY_FILE = Path(__file__).parents[2] / "taxonomy" / "geosample-lulc.yaml"
SEASONS_NORTH = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring", 6: "summer",
                 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}  # fmt: skip
FLIP = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring"}


def _classes() -> dict[str, tuple[str, str | None]]:
    """Code -> (lower-case name, parent code), read from the taxonomy YAML with plain PyYAML."""
    out: dict[str, tuple[str, str | None]] = {}

    def walk(nodes: list, parent: str | None) -> None:
        for node in nodes:
            out[str(node["code"])] = (node["name"].lower(), parent)
            walk(node.get("children", []), str(node["code"]))

    walk(yaml.safe_load(TAXONOMY_FILE.read_text(encoding="utf-8"))["classes"], None)
    return out


CLASSES = _classes()
ALL_NAMES = {name for name, _ in CLASSES.values()}


def _at_depth(code: str, depth: int) -> str:
    chain = [code]
    while CLASSES[chain[-1]][1] is not None:
        chain.append(CLASSES[chain[-1]][1])
    chain.reverse()
    return chain[depth - 1] if len(chain) >= depth else code


def roll(fractions: dict[str, float], depth: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for code, value in fractions.items():
        key = _at_depth(code, depth)
        out[key] = out.get(key, 0.0) + value
    return out


def season_of(month: int, lat: float) -> str | None:
    if abs(lat) < 23.44:
        return None
    season = SEASONS_NORTH[month]
    return season if lat >= 0 else FLIP[season]
