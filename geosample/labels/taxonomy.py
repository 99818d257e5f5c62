"""Label taxonomies: a tree of class codes at named levels, with crosswalks from source schemes.

A taxonomy is read from a YAML file (see ``taxonomy/README.md``) with
:func:`load_taxonomy`, which also resolves ``extends`` (a taxonomy that adds
classes to another without copying it) and checks everything first;
:func:`validate_taxonomy` lists every problem with its file and line. The
result is an immutable :class:`Taxonomy` that labelling code queries: the
ancestor of a class at a level, the crosswalk of a scheme as a raster lookup
table, the class of a set of OpenStreetMap tags.
"""

from __future__ import annotations

import difflib
import functools
import os
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosample.errors import TaxonomyError

if TYPE_CHECKING:
    from geosample.labels._taxonomy_yaml import Problem

DEFAULT_TAXONOMY = "geosample-lulc"
#: Namespace of the SKOS concepts: ``<base><id>/<version>/<code>``.
URI_BASE = "https://w3id.org/geosample/taxonomy/"


@dataclass(frozen=True)
class TaxonClass:
    """One class of a taxonomy."""

    code: str
    """Dotted code, e.g. ``"1.2.3"``; a child's code starts with its parent's."""
    name: str
    definition: str
    """One sentence saying what the class covers."""
    level: str
    """Name of its level, e.g. ``"l2"``."""
    depth: int
    """1 for top-level classes."""
    parent: str | None
    children: tuple[str, ...]
    lcml: tuple[str, ...]
    """ISO 19144-2 (LCML) basic elements the class is made of, e.g. ``LC_TreesElement``."""
    corine: tuple[str, ...]
    """CORINE Land Cover level-3 codes the class corresponds to."""
    color: str | None
    """Map colour ``"#rrggbb"`` (QGIS styles, plots)."""
    source: str
    """Id of the taxonomy file that defined the class (the base or an extension)."""

    def to_dict(self) -> dict[str, Any]:
        """The class as JSON-friendly values."""
        return {
            "code": self.code,
            "name": self.name,
            "definition": self.definition,
            "level": self.level,
            "depth": self.depth,
            "parent": self.parent,
            "children": list(self.children),
            "lcml": list(self.lcml),
            "corine": list(self.corine),
            "color": self.color,
            "source": self.source,
        }


@dataclass(frozen=True)
class Taxonomy:
    """A loaded, checked taxonomy (extension classes and crosswalks merged in); immutable."""

    id: str
    version: str
    title: str
    description: str
    levels: tuple[str, ...]
    extends: str | None
    """``"<id>@<version>"`` of the taxonomy this one extends, or None."""
    classes: Mapping[str, TaxonClass]
    """Every class by code, in tree order (depth first)."""
    mappings: Mapping[str, Mapping[str, str]]
    """Crosswalks: scheme -> {source value as text -> class code (any level)}."""
    schemes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Schemes declared in the files (beyond the built-in ones): name -> {source value -> label}."""
    sources: Mapping[str, str] = field(default_factory=dict)
    """Id -> version of this taxonomy and of those it extends (for concept URIs)."""
    language: str = "en"
    """Language of names and definitions (BCP 47)."""
    path: Path | None = field(default=None, compare=False)
    """The file it was loaded from."""

    def __post_init__(self) -> None:
        freeze = types.MappingProxyType
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "classes", freeze(dict(self.classes)))
        object.__setattr__(self, "mappings", freeze({s: freeze(dict(m)) for s, m in self.mappings.items()}))
        object.__setattr__(self, "schemes", freeze({s: freeze(dict(v)) for s, v in self.schemes.items()}))
        object.__setattr__(self, "sources", freeze(dict(self.sources) or {self.id: self.version}))

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Taxonomy({self.key!r}, {len(self.classes)} classes, schemes={sorted(self.mappings)})"

    @property
    def key(self) -> str:
        """``"<id>@<version>"``, as recorded in ``labels.parquet``."""
        return f"{self.id}@{self.version}"

    @property
    def uri(self) -> str:
        """URI of the taxonomy as a SKOS concept scheme (TrainingDML-AI ``classificationScheme``)."""
        return f"{URI_BASE}{self.id}/{self.version}/"

    def concept_uri(self, code: str) -> str:
        """URI of a class as a SKOS concept, in the namespace of the file that defined it."""
        source = self[code].source
        return f"{URI_BASE}{source}/{self.sources.get(source, self.version)}/{code}"

    def __getitem__(self, code: str) -> TaxonClass:
        try:
            return self.classes[code]
        except KeyError:
            raise TaxonomyError(f"unknown class code {code!r} in {self.key}{self._suggest(code)}") from None

    def __contains__(self, code: object) -> bool:
        return code in self.classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    def _suggest(self, code: str) -> str:
        matches = difflib.get_close_matches(str(code), list(self.classes), n=3, cutoff=0.6)
        by_name = [c.code for c in self.classes.values() if c.name.lower() == str(code).lower()]
        hits = list(dict.fromkeys(by_name + matches))
        return f"; did you mean {', '.join(hits)}?" if hits else "; see 'geosample taxonomy show'"

    def depth_of(self, level: str) -> int:
        """Depth (1-based) of a level name; a :class:`TaxonomyError` listing the levels if unknown."""
        try:
            return self.levels.index(level) + 1
        except ValueError:
            raise TaxonomyError(f"unknown level {level!r} in {self.key}; levels are {', '.join(self.levels)}") from None

    def codes_at(self, level: str) -> list[str]:
        """Codes of the classes at ``level``, in tree order."""
        depth = self.depth_of(level)
        return [c.code for c in self.classes.values() if c.depth == depth]

    def ancestor(self, code: str, level: str) -> str | None:
        """The class at ``level`` that contains ``code`` (``code`` itself at its own level).

        None when ``code`` is coarser than ``level`` (a level-1 class has no level-3 ancestor).
        """
        depth = self.depth_of(level)
        taxon = self[code]
        if taxon.depth < depth:
            return None
        while taxon.depth > depth:
            taxon = self.classes[taxon.parent]  # type: ignore[index]
        return taxon.code

    def lineage(self, code: str) -> list[str]:
        """Codes from the top-level class down to ``code``."""
        taxon = self[code]
        chain = [taxon.code]
        while taxon.parent is not None:
            taxon = self.classes[taxon.parent]
            chain.append(taxon.code)
        return chain[::-1]

    def mapping(self, scheme: str) -> dict[str, str]:
        """The crosswalk of ``scheme`` (a copy): source value as text -> class code."""
        try:
            return dict(self.mappings[scheme])
        except KeyError:
            have = ", ".join(sorted(self.mappings)) or "none"
            raise TaxonomyError(f"{self.key} has no crosswalk for scheme {scheme!r}; it has: {have}") from None

    def lookup_table(self, scheme: str, values: Iterable[int]) -> dict[int, str]:
        """Class codes for the numeric source values (e.g. a raster's) that the crosswalk maps.

        Values the crosswalk does not map are left out, so the caller can report them.
        """
        mapping = self.mapping(scheme)
        if not all(key.lstrip("-").isdigit() for key in mapping):
            raise TaxonomyError(
                f"scheme {scheme!r} maps text values, not raster values; use it with a vector or tag source"
            )
        table: dict[int, str] = {}
        for value in values:
            number = int(value)
            if number != value:
                raise TaxonomyError(f"source value {value!r} is not an integer; class rasters hold integer values")
            code = mapping.get(str(number))
            if code is not None:
                table[number] = code
        return table

    @functools.cached_property
    def _osm_index(self) -> tuple[dict[tuple[str, str], tuple[int, int, str]], dict[str, tuple[int, int, str]]]:
        """OSM crosswalk as (key, value) and bare-key lookups -> (depth, -rank, code), most specific first."""
        pairs: dict[tuple[str, str], tuple[int, int, str]] = {}
        keys: dict[str, tuple[int, int, str]] = {}
        for rank, (tag, code) in enumerate(self.mapping("osm").items()):
            entry = (self.classes[code].depth, -rank, code)
            key, sep, value = tag.partition("=")
            if sep:
                pairs[(key, value)] = entry
            else:
                keys[key] = entry
        return pairs, keys

    def osm_code(self, tags: Mapping[str, str]) -> str | None:
        """The class of an OpenStreetMap feature from its tags, or None if no tag is mapped.

        A ``key=value`` match wins over a bare ``key`` match; among several, the
        deepest class wins, then the entry listed first in the crosswalk.
        Multi-valued tags (``"farmland;meadow"``) are tried value by value;
        values that are not text (None, NaN from a table) count as absent.
        """
        pairs, keys = self._osm_index
        present = {key: value.strip() for key, value in tags.items() if isinstance(value, str)}  # NaN etc.: no tag
        hits = [
            pairs[(key, part.strip())]
            for key, value in present.items()
            for part in value.split(";")
            if (key, part.strip()) in pairs
        ]
        if not hits:
            hits = [keys[key] for key, value in present.items() if key in keys and value not in ("", "no")]
        return max(hits)[2] if hits else None

    def to_dict(self) -> dict[str, Any]:
        """The whole taxonomy as JSON-friendly values; :meth:`from_dict` reads it back."""
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "description": self.description,
            "language": self.language,
            "levels": list(self.levels),
            "extends": self.extends,
            "sources": dict(self.sources),
            "classes": [c.to_dict() for c in self.classes.values()],
            "mappings": {scheme: dict(m) for scheme, m in self.mappings.items()},
            "schemes": {scheme: dict(v) for scheme, v in self.schemes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: Path | None = None) -> Taxonomy:
        """A taxonomy from :meth:`to_dict`'s output (not the YAML file format: use :func:`load_taxonomy`)."""
        try:
            classes = {}
            for entry in data["classes"]:
                taxon = TaxonClass(
                    **{**entry, **{k: tuple(entry[k]) for k in ("children", "lcml", "corine")}},
                )
                classes[taxon.code] = taxon
            return cls(
                id=data["id"],
                version=data["version"],
                title=data["title"],
                description=data.get("description", ""),
                language=data.get("language", "en"),
                levels=tuple(data["levels"]),
                extends=data.get("extends"),
                classes=classes,
                mappings=data.get("mappings", {}),
                schemes=data.get("schemes", {}),
                sources=data.get("sources", {}),
                path=path,
            )
        except (KeyError, TypeError) as exc:
            raise TaxonomyError(f"not a taxonomy dictionary (from Taxonomy.to_dict): {exc}") from None

    # Exports (implemented in _taxonomy_export; imported on use).

    def to_skos(self, fmt: str = "turtle") -> str:
        """The taxonomy as a SKOS concept scheme, ``fmt`` ``"turtle"`` or ``"json-ld"``."""
        from geosample.labels._taxonomy_export import to_skos

        return to_skos(self, fmt)

    def tdml_classes(
        self, *, version: str = "1.1", level: str | None = None, codes: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """The ``classes`` list of an OGC TrainingDML-AI training dataset (``version`` "1.1" or "1.0").

        All classes by default, or those at ``level``, or those in ``codes``; always in tree order.
        """
        from geosample.labels._taxonomy_export import tdml_classes

        return tdml_classes(self, version=version, level=level, codes=codes)

    def to_csv(self) -> str:
        """One CSV row per class: code, name, level, parent, definition, lcml, corine, color."""
        from geosample.labels._taxonomy_export import to_csv

        return to_csv(self)


def builtin_taxonomies() -> dict[str, Path]:
    """The taxonomies shipped with geosample: id -> file (the file is named after the id)."""
    folder = Path(str(resources.files("geosample.taxonomies")))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def validate_taxonomy(path: str | Path) -> list[Problem]:
    """Every problem in a taxonomy file (and in the taxonomy it extends), in file and line order."""
    from geosample.labels._taxonomy_build import build  # the builder imports this module's types

    path = Path(path)
    built = build(path)
    own = str(path)
    return sorted(built.problems, key=lambda p: (p.file != own, p.file, p.line))


_CACHE: dict[Path, tuple[tuple[tuple[Path, int, int], ...], Taxonomy]] = {}


def _stamps(files: Iterable[Path]) -> tuple[tuple[Path, int, int], ...]:
    out = []
    for path in files:
        stat = path.stat()
        out.append((path, stat.st_mtime_ns, stat.st_size))
    return tuple(out)


def load_taxonomy(spec: str | Path | Taxonomy | None = None) -> Taxonomy:
    """A checked taxonomy.

    Args:
        spec: None for the default built-in taxonomy (``geosample-lulc``); a
            built-in id (``"geosample-events"``) or ``"id@version"``; a path to a
            taxonomy YAML file; or a :class:`Taxonomy`, returned as is. An
            ``extends`` reference is looked for beside the file first, then among
            the built-in taxonomies.

    Raises:
        TaxonomyError: the file or id is unknown, or the file has problems (the
            message names the first with its line; ``geosample taxonomy validate``
            lists them all).
    """
    if isinstance(spec, Taxonomy):
        return spec
    path, version = _locate(DEFAULT_TAXONOMY if spec is None else spec)
    key = path.resolve()
    cached = _CACHE.get(key)
    try:
        if cached is not None and _stamps(p for p, _, _ in cached[0]) == cached[0]:
            taxonomy = cached[1]
        else:
            taxonomy = _load_file(path)
    except OSError:
        taxonomy = _load_file(path)
    if version is not None and taxonomy.version != version:
        raise TaxonomyError(
            f"taxonomy {taxonomy.id} is version {taxonomy.version}, not {version}; "
            f"use {taxonomy.key} or give the path of the version you need"
        )
    return taxonomy


def _load_file(path: Path) -> Taxonomy:
    from geosample.labels._taxonomy_build import build  # the builder imports this module's types

    built = build(path)
    if built.taxonomy is None:
        problems = sorted(built.problems, key=lambda p: (p.file != str(path), p.file, p.line))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TaxonomyError(
            f"taxonomy {path} is invalid: {problems[0]}{more}; run 'geosample taxonomy validate {path}'"
        )
    _CACHE[path.resolve()] = (_stamps(built.files), built.taxonomy)
    return built.taxonomy


def _locate(spec: str | Path) -> tuple[Path, str | None]:
    """The file for a path or built-in id, and the version asked for with ``id@version``."""
    text = os.fspath(spec)
    is_path = isinstance(spec, Path) or os.sep in text or text.endswith((".yaml", ".yml")) or Path(text).exists()
    builtin = builtin_taxonomies()
    if is_path:
        path = Path(text)
        if not path.exists():
            raise TaxonomyError(
                f"taxonomy file {path} does not exist; give a taxonomy YAML file or a built-in id "
                f"({', '.join(builtin)})"
            )
        if path.is_dir():
            raise TaxonomyError(f"{path} is a folder; give a taxonomy YAML file")
        return path, None
    taxonomy_id, _, version = text.partition("@")
    if taxonomy_id not in builtin:
        raise TaxonomyError(
            f"unknown taxonomy {text!r}: not a file and not a built-in id ({', '.join(builtin)}); "
            "give the path of a taxonomy YAML file"
        )
    return builtin[taxonomy_id], version or None
