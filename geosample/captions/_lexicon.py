"""Words that name land-cover classes, for the hallucination check of ``report/captions.json``.

Terms come from the taxonomy itself (every class name, lower-cased, in
singular and plural, and the parts of names joined by "and" or commas, such
as "forest" and "woodland" from "Forest and woodland"), plus common synonyms
for the classes of the built-in ``geosample-lulc`` taxonomy ("cropland",
"fields", "conifers", "lake"...).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from geosample.captions.context import display_name

if TYPE_CHECKING:
    from geosample.labels.taxonomy import Taxonomy

SYNONYMS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "geosample-lulc": {
        "1": ("built-up", "built up", "built-up area", "built-up areas"),
        # Not "town", "city" or "village": captions use them for places nearby, and GeoNames names contain them.
        "1.1": ("urban", "urban area", "urban areas", "settlement", "settlements", "residential", "houses", "suburb",
                "suburbs"),
        "1.2.1": ("industrial", "factory", "factories", "warehouse", "warehouses"),
        "1.2.2": ("road", "roads", "railway", "railways", "highway", "highways", "motorway", "motorways"),
        "1.2.3": ("port", "harbour", "harbor", "docks"),
        "1.2.4": ("airport", "runway", "runways", "airfield"),
        "1.2.5": ("solar farm", "solar panels", "wind farm", "wind turbines", "power plant"),
        "1.3.1": ("quarry", "quarries", "open-pit mine", "open pit mine", "mining"),
        "1.3.2": ("landfill", "landfills"),
        "1.4.1": ("urban park", "urban parks", "cemetery"),
        "1.4.2": ("golf course", "stadium", "sports ground", "sports fields"),
        "2": ("agriculture", "agricultural land", "farmland", "farmlands", "farms"),
        "2.1": ("cropland", "croplands", "crops", "crop fields", "fields", "arable fields", "ploughed fields"),
        "2.1.3": ("rice", "paddy", "paddies", "paddy fields"),
        "2.1.4": ("greenhouse", "greenhouses", "polytunnels"),
        "2.2.1": ("vineyard", "vines"),
        "2.2.2": ("orchard", "orchards"),
        "2.2.3": ("olive", "olives"),
        "2.2.4": ("plantation", "plantations", "oil palm", "tea plantation", "rubber plantation"),
        "2.3.1": ("pasture", "meadow", "meadows", "hayfields", "rangeland", "grazing land"),
        "3": ("forest", "forests", "forested", "woods", "trees", "tree cover", "wooded"),
        "3.1": ("broadleaf forest", "broadleaf trees", "deciduous forest", "deciduous trees"),
        "3.1.1": ("rainforest", "rain forest", "tropical forest"),
        "3.2": ("conifer", "conifers", "coniferous", "coniferous forest", "needleleaf forest", "pine", "pines",
                "spruce", "taiga"),
        "3.4.3": ("clear-cut", "clear-cuts", "clearcut", "clearcuts", "logged"),
        "4.1": ("shrub", "shrubs", "scrub", "scrubland", "bushes", "bushland"),
        "4.1.3": ("maquis", "garrigue", "chaparral"),
        "4.1.4": ("heath", "moor", "moorland"),
        "4.2": ("grass", "grasses", "grassy", "prairie", "prairies"),
        "4.2.2": ("savannah", "savannahs"),
        "4.2.3": ("steppe", "steppes"),
        "4.3": ("tundra",),
        "5": ("marsh", "marshes", "marshland", "swamp", "swamps", "bog", "bogs", "fen", "fens"),
        "5.2.3": ("tidal flat", "mudflat", "mudflats"),
        "6": ("bare ground", "bare land", "barren", "barren land"),
        "6.1.1": ("rock", "rocks", "rocky", "cliff", "cliffs"),
        "6.2.1": ("beach", "dune", "sand dunes"),
        "6.2.2": ("desert", "deserts", "sand sea", "erg"),
        "6.3.3": ("bare soil",),
        "7": ("snow", "ice", "glacier", "ice cap"),
        "8": ("water", "waters", "open water", "water body", "water bodies"),
        "8.1.1": ("river", "stream", "creek"),
        "8.1.3": ("lake", "pond"),
        "8.1.4": ("reservoir", "dam lake"),
        "8.2.3": ("ocean", "open sea", "the sea", "seawater"),
    }
}  # fmt: skip
_GENERIC = {"areas", "area", "land", "units", "sites", "site", "other", "vegetation", "surfaces", "cover"}
_WORD = re.compile(r"\w+(?:[-'’]\w+)*")


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".!?:"


def _variants(term: str) -> set[str]:
    out = {term}
    if term.endswith("s") and not term.endswith("ss") and len(term) > 3:
        out.add(term[:-1])
    elif not term.endswith("s"):
        out.add(term + "s")
    return out


class Lexicon:
    """Terms naming each class of a taxonomy, and which of a caption's terms its labels support."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        terms: dict[str, set[str]] = {}

        def add(term: str, code: str) -> None:
            for variant in _variants(term.strip().lower()):
                if variant and variant not in _GENERIC:
                    terms.setdefault(variant, set()).add(code)

        for code, taxon in taxonomy.classes.items():
            name = display_name(taxon.name).lower()
            add(name, code)
            for part in re.split(r",\s*|\s+and\s+", name):
                if part != name and part.split()[-1] not in _GENERIC:
                    add(part, code)
        for source, synonyms in SYNONYMS.items():
            if source in taxonomy.sources:
                for code, words in synonyms.items():
                    if code in taxonomy.classes:
                        for word in words:
                            add(word, code)
        self.terms = {term: frozenset(codes) for term, codes in terms.items()}
        # Terms as word tuples: a caption is matched word by word, longest term first.
        self._by_words = {tuple(_WORD.findall(term)): term for term in self.terms}
        sizes: dict[str, set[int]] = {}
        for words in self._by_words:
            sizes.setdefault(words[0], set()).add(len(words))
        self._sizes = {first: sorted(found, reverse=True) for first, found in sizes.items()}
        self._firsts = frozenset(self._sizes)
        self._lineage = {code: tuple(taxonomy.lineage(code)) for code in taxonomy.classes}

    def mentions(self, text: str) -> list[tuple[str, frozenset[str]]]:
        """Terms of ``text`` that name classes (longest match first), with the codes each may mean.

        A capitalised match inside a sentence is taken for a proper name
        ("Lake Placid", "Black Forest") and skipped.
        """
        original = _WORD.findall(text)
        words = [word.lower() for word in original]
        if self._firsts.isdisjoint(words):
            return []
        found = []
        starts: list[int] | None = None
        i = 0
        while i < len(words):
            for size in self._sizes.get(words[i], ()):
                term = self._by_words.get(tuple(words[i : i + size]))
                if term is not None:
                    proper = False
                    if original[i][0].isupper():
                        starts = starts if starts is not None else [m.start() for m in _WORD.finditer(text)]
                        proper = not _sentence_start(text, starts[i])
                    if not proper:
                        found.append((term, self.terms[term]))
                    i += size
                    break
            else:
                i += 1
        return found

    def support(self, labels: Iterable[Iterable[str]]) -> Support:
        """What a sample's labels (one code list per level, coarsest first) support, for :meth:`unsupported`."""
        levels = [list(level) for level in labels]
        allowed: set[str] = set()
        for level in levels:
            for code in level:
                allowed.update(self._lineage.get(code, (code,)))
        return Support(frozenset(allowed), frozenset(levels[-1]) if levels else frozenset())

    def supported(self, codes: Iterable[str], support: Support) -> bool:
        """Whether a term meaning any of ``codes`` is supported.

        A class is supported when it is a label or the ancestor of one, or when
        one of its ancestors is among the finest labels, standing for detail the
        label source could not resolve ("savanna" under a "grassland" label).
        """
        for code in codes:
            if code in support.allowed:
                return True
            if not support.unresolved.isdisjoint(self._lineage.get(code, ())[:-1]):
                return True
        return False

    def unsupported(self, text: str, labels: Support | Iterable[Iterable[str]]) -> list[str]:
        """The class terms of ``text`` that the labels do not support, in order of appearance."""
        support = labels if isinstance(labels, Support) else self.support(labels)
        return [term for term, codes in self.mentions(text) if not self.supported(codes, support)]


@dataclasses.dataclass(frozen=True)
class Support:
    """Classes a sample's labels support: the labels with their ancestors, and the finest labels."""

    allowed: frozenset[str]
    unresolved: frozenset[str]
