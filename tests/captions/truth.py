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
import functools
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

AMOUNT_BANDS = {
    "all": (0.995, 1.0),
    "nearly all": (0.90, 0.995),
    "most": (0.75, 0.90),
    "more than half": (0.5, 0.75),
    "about half": (0.45, 0.5),
    "about two fifths": (0.36, 0.45),
    "about a third": (0.29, 0.36),
    "about a quarter": (0.225, 0.29),
    "about a fifth": (0.175, 0.225),
    "about a sixth": (0.14, 0.175),
    "about a tenth": (0.075, 0.14),
    "a small share": (0.03, 0.075),
    "a sliver": (0.005, 0.03),
}
"""The README's table of share words, written out here: each phrase and the band of shares it may describe."""
SIZE_ORDER = list(AMOUNT_BANDS)
"""Phrases from the largest to the smallest."""
ADVERB_BANDS = {"entirely": (0.995, 1.0), "almost entirely": (0.90, 0.995), "mostly": (0.5, 0.90)}
AMOUNT_MEANING = {**AMOUNT_BANDS, **ADVERB_BANDS}


def in_band(phrase: str, value: float) -> bool:
    """Whether ``value`` lies in the phrase's band (bounds inclusive, "more than half" strictly above one half)."""
    low, high = AMOUNT_MEANING[phrase]
    if phrase in ("more than half", "mostly"):
        return 0.5 < value <= high + 1e-9
    return low - 1e-9 <= value <= high + 1e-9


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


def parse_shares(text: str, names: set[str]) -> list[tuple[tuple[str, ...], str, int | None]]:
    """The share statements of a caption, in reading order: (class names, phrase, exact percent or None).

    They read "croplands (more than half, 58%)", "grassland and savanna (about a fifth each)" or "only X".
    """
    name = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    phrase = "|".join(re.escape(p) for p in sorted(AMOUNT_BANDS, key=len, reverse=True))
    group = rf"((?:{name})(?:(?:, | and )(?:{name}))*)"
    found = []
    for m in re.finditer(rf"(?<![\w-]){group} \(({phrase})( each)?(?:, (\d+)%)?\)", text):
        members = tuple(re.findall(rf"(?:{name})", m.group(1)))
        found.append((members, m.group(2), int(m.group(4)) if m.group(4) else None))
    for m in re.finditer(rf"\bonly ({name})\b", text):
        found.append(((m.group(1),), "all", None))
    return found


def check_shares(text: str, shares: dict[str, float]) -> int:
    """Parse-back of share words against the true shares: bands, order, exact percentages, close shares.

    Every phrase must lie in its band for the mean of the classes it names;
    classes must come largest first; two classes named within 3 points must
    have one phrase; an exact percentage is the class's share rounded.
    Returns the statements checked.
    """
    statements = parse_shares(text, set(shares))
    assert statements, f"no share statement in {text!r}"
    phrase_of: dict[str, str] = {}
    previous = 2.0
    for members, phrase, exact in statements:
        values = [shares[n] for n in members]
        mean = sum(values) / len(values)
        assert in_band(phrase, mean), f"{phrase!r} for {members} at {values}: {text}"
        assert max(values) <= previous + 1e-9, f"classes out of order at {members}: {text}"
        previous = min(values)
        if exact is not None:
            assert len(members) == 1 and exact == round(100 * values[0]), (members, exact, values, text)
        for n in members:
            phrase_of[n] = phrase
    for a, b in itertools.combinations(phrase_of, 2):
        if abs(shares[a] - shares[b]) <= 0.03 + 1e-9:
            assert phrase_of[a] == phrase_of[b], f"{a} {shares[a]:.3f} and {b} {shares[b]:.3f} worded apart: {text}"
    return len(statements)


def check_quadrants(text: str, regions: dict[str, dict[str, float]], names: set[str]) -> int:
    """ "X dominates REGION" (largest there and above one half in each quadrant) and "X is the largest class in
    REGION" (largest in each quadrant); returns the statements checked."""
    name = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    region = "|".join(re.escape(r) for r in sorted(REGION_MEANING, key=len, reverse=True))
    checked = 0
    for m in re.finditer(rf"({name}) (dominates?|(?:is|are) the largest class in) ({region})\b", text):
        cls, verb, where = m.group(1), m.group(2), REGION_MEANING[m.group(3)]
        for q in where:
            shares = regions[q]
            assert _dominant(shares, cls), (cls, q, shares, text)
            if verb.startswith("dominate"):
                assert shares[cls] > 0.5, (cls, q, shares, text)
        checked += 1
    return checked


def _dominant(shares: dict[str, float], name: str) -> bool:
    value = shares.get(name, 0.0)
    return value > 0 and all(value > v for other, v in shares.items() if other != name)


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
        assert f"imaged on {truth.date.day} {truth.date:%B} {truth.date.year}" in caption, caption
    else:
        assert "imaged on" not in caption, caption
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


# The embedded MODIS map around a site, read cell by cell with rasterio (not geosample's code).

MODIS = Path(__file__).parents[2] / "geosample" / "data" / "layers" / "modis_igbp_2019_0p05deg.tif"
COMPASS8 = ("north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west")


def _crosswalk() -> dict[int, str]:
    data = yaml.safe_load(TAXONOMY_FILE.read_text(encoding="utf-8"))
    return {int(k): CLASSES[str(v)][0] for k, v in data["mappings"]["modis-igbp"].items()}


@functools.cache
def modis_around(lon: float, lat: float, chip_size_m: float) -> dict:
    """Shares of the classes of the cells whose centres lie within the documented near radius, and per sector.

    Near radius: half the chip side plus two cells of 0.05° of latitude (110.574 km per degree). Sectors: the
    compass point nearest to the bearing of a cell's centre, over cells not overlapping the chip.
    """
    import rasterio

    names = _crosswalk()
    radius = chip_size_m / 2000 + 2 * 0.05 * 110.574
    search = 150.0
    kx, ky = 111.320 * math.cos(math.radians(lat)), 110.574
    half = chip_size_m / 2000
    counts: dict[str, int] = {}
    sectors: dict[str, dict[str, int]] = {}
    under: set[str] = set()
    nearest: dict[str, tuple[float, float]] = {}
    with rasterio.open(MODIS) as src:
        row, col = src.index(lon, lat)
        reach_r, reach_c = int(search / (0.05 * ky)) + 2, int(search / (0.05 * kx)) + 2
        window = rasterio.windows.Window(col - reach_c, row - reach_r, 2 * reach_c + 1, 2 * reach_r + 1)
        data = src.read(1, window=window, boundless=True, fill_value=255)
        transform = src.transform
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                value = int(data[i, j])
                if value == 255:
                    continue
                clon, clat = transform * (col - reach_c + j + 0.5, row - reach_r + i + 0.5)
                dx, dy = (clon - lon) * kx, (clat - lat) * ky
                cls = names[value]
                overlaps = abs(dx) - 0.025 * kx < half and abs(dy) - 0.025 * ky < half
                if overlaps:
                    under.add(cls)
                # The nearest point of the cell to the site, and the distance to it.
                px = math.copysign(max(abs(dx) - 0.025 * kx, 0.0), dx)
                py = math.copysign(max(abs(dy) - 0.025 * ky, 0.0), dy)
                gap = math.hypot(px, py)
                if gap <= search and (cls not in nearest or gap < nearest[cls][0]):
                    if px == 0 and py == 0:
                        px, py = dx, dy
                    nearest[cls] = (gap, math.degrees(math.atan2(px, py)) % 360)
                if abs(dx) > radius or abs(dy) > radius:
                    continue
                counts[cls] = counts.get(cls, 0) + 1
                if not overlaps:
                    sector = COMPASS8[int(((math.degrees(math.atan2(dx, dy)) % 360) + 22.5) // 45) % 8]
                    sectors.setdefault(sector, {})
                    sectors[sector][cls] = sectors[sector].get(cls, 0) + 1
    total = sum(counts.values())
    plurality = {}
    for sector, found in sectors.items():
        best = max(found.values())
        winners = [c for c, n in found.items() if n == best]
        if len(winners) == 1:
            plurality[sector] = winners[0]
    return {"near": {c: n / total for c, n in counts.items()}, "sectors": plurality, "radius_km": radius,
            "under": under, "nearest": {c: v for c, v in nearest.items() if c not in under}}  # fmt: skip
