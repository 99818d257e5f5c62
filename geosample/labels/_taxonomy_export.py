"""Taxonomy exports: SKOS (Turtle, JSON-LD), the OGC TrainingDML-AI ``classes`` list, CSV.

SKOS is written by hand (no RDF library at run time): the graph is small and
regular, so it is first listed as nodes (subject, type, [(predicate, object)])
and then serialised; both serialisations carry the same triples.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from geosample.errors import TaxonomyError
from geosample.labels.taxonomy import URI_BASE

if TYPE_CHECKING:
    from geosample.labels.taxonomy import Taxonomy

PREFIXES = {
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "dcterms": "http://purl.org/dc/terms/",
    "owl": "http://www.w3.org/2002/07/owl#",
}
#: The W3C SKOS rendering of the CORINE Land Cover nomenclature (concepts ``clc111`` ...).
CORINE_NS = "http://www.w3.org/2015/03/corine#clc"
SKOS_FORMATS = ("turtle", "json-ld")
TDML_VERSIONS = ("1.1", "1.0")
CSV_COLUMNS = ("code", "name", "level", "parent", "definition", "lcml", "corine", "color")


@dataclass(frozen=True)
class Iri:
    """An IRI object."""

    value: str


@dataclass(frozen=True)
class Literal:
    """A text literal, with a language tag or none."""

    value: str
    language: str | None = None


Node = tuple[str, str, list[tuple[str, Iri | Literal]]]


def skos_nodes(taxonomy: Taxonomy) -> list[Node]:
    """The SKOS graph: the concept scheme, one concept per class, one collection per level."""
    lang = taxonomy.language
    scheme = taxonomy.uri
    corine = taxonomy.mappings.get("corine", {})
    head: list[tuple[str, Iri | Literal]] = [
        ("dcterms:title", Literal(taxonomy.title, lang)),
        ("owl:versionInfo", Literal(taxonomy.version)),
    ]
    if taxonomy.description:
        head.append(("dcterms:description", Literal(taxonomy.description, lang)))
    if taxonomy.extends:
        base_id, _, base_version = taxonomy.extends.partition("@")
        head.append(("dcterms:source", Iri(f"{URI_BASE}{base_id}/{base_version}/")))
    head += [
        ("skos:hasTopConcept", Iri(taxonomy.concept_uri(c.code))) for c in taxonomy.classes.values() if c.depth == 1
    ]
    nodes: list[Node] = [(scheme, "skos:ConceptScheme", head)]
    for taxon in taxonomy.classes.values():
        props: list[tuple[str, Iri | Literal]] = [
            ("skos:prefLabel", Literal(taxon.name, lang)),
            ("skos:definition", Literal(taxon.definition, lang)),
            ("skos:notation", Literal(taxon.code)),
            ("skos:inScheme", Iri(scheme)),
        ]
        if taxon.parent is None:
            props.append(("skos:topConceptOf", Iri(scheme)))
        else:
            props.append(("skos:broader", Iri(taxonomy.concept_uri(taxon.parent))))
        props += [("skos:narrower", Iri(taxonomy.concept_uri(child))) for child in taxon.children]
        for code in taxon.corine:
            relation = "skos:exactMatch" if corine.get(code) == taxon.code else "skos:closeMatch"
            props.append((relation, Iri(f"{CORINE_NS}{code}")))
        if taxon.lcml:
            props.append(("skos:scopeNote", Literal(f"ISO 19144-2 LCML elements: {', '.join(taxon.lcml)}", "en")))
        nodes.append((taxonomy.concept_uri(taxon.code), "skos:Concept", props))
    for level in taxonomy.levels:
        members = [("skos:member", Iri(taxonomy.concept_uri(code))) for code in taxonomy.codes_at(level)]
        nodes.append((f"{scheme}levels/{level}", "skos:Collection", [("skos:prefLabel", Literal(level)), *members]))
    return nodes


def to_skos(taxonomy: Taxonomy, fmt: str = "turtle") -> str:
    """SKOS as Turtle or JSON-LD text."""
    if fmt == "turtle":
        return _turtle(skos_nodes(taxonomy))
    if fmt == "json-ld":
        return _json_ld(skos_nodes(taxonomy))
    raise TaxonomyError(f"unknown SKOS format {fmt!r}; use one of {', '.join(SKOS_FORMATS)}")


_TURTLE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _turtle_string(text: str) -> str:
    out = []
    for char in text:
        if char in _TURTLE_ESCAPES:
            out.append(_TURTLE_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _turtle_object(obj: Iri | Literal) -> str:
    if isinstance(obj, Iri):
        return f"<{obj.value}>"
    return _turtle_string(obj.value) + (f"@{obj.language}" if obj.language else "")


def _turtle(nodes: list[Node]) -> str:
    lines = [f"@prefix {prefix}: <{iri}> ." for prefix, iri in PREFIXES.items()]
    for subject, rdf_type, props in nodes:
        lines.append("")
        lines.append(f"<{subject}> a {rdf_type} ;")
        for i, (predicate, obj) in enumerate(props):
            end = " ." if i == len(props) - 1 else " ;"
            lines.append(f"    {predicate} {_turtle_object(obj)}{end}")
        if not props:
            lines[-1] = lines[-1][:-2] + " ."
    return "\n".join(lines) + "\n"


def _json_ld(nodes: list[Node]) -> str:
    graph = []
    for subject, rdf_type, props in nodes:
        node: dict[str, Any] = {"@id": subject, "@type": rdf_type}
        for predicate, obj in props:
            value: dict[str, str]
            if isinstance(obj, Iri):
                value = {"@id": obj.value}
            else:
                value = {"@value": obj.value, **({"@language": obj.language} if obj.language else {})}
            node.setdefault(predicate, []).append(value)
        graph.append(node)
    return json.dumps({"@context": PREFIXES, "@graph": graph}, indent=2, ensure_ascii=False) + "\n"


def tdml_classes(
    taxonomy: Taxonomy, *, version: str = "1.1", level: str | None = None, codes: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """The ``classes`` of an OGC TrainingDML-AI training dataset, one entry per class.

    All classes in tree order by default; ``level`` keeps those at one level,
    ``codes`` those listed (say, the classes a dataset uses), in tree order.

    Scene labels (``AI_SceneLabel.class``) refer to an entry by its ``key``, the class code.

    * ``"1.0"``: ``NamedValue`` entries ``{"key": code, "value": name}``, as the 1.0 schema requires.
    * ``"1.1"``: ``{"key": code, "name", "level", "parent", "definition", "uri"}``. The 1.1 schema's
      ``classes`` items are ``oneOf`` [object, string, NamedValue]; a NamedValue is also an object,
      so it matches twice and fails ``oneOf``. These entries are plain objects (no ``value``), valid.
    """
    if version not in TDML_VERSIONS:
        raise TaxonomyError(f"unknown TrainingDML-AI version {version!r}; use one of {', '.join(TDML_VERSIONS)}")
    wanted = None if codes is None else {taxonomy[code].code for code in codes}
    selected = taxonomy.codes_at(level) if level is not None else list(taxonomy.classes)
    codes = [code for code in selected if wanted is None or code in wanted]
    if version == "1.0":
        return [{"key": code, "value": taxonomy[code].name} for code in codes]
    return [
        {
            "key": code,
            "name": taxonomy[code].name,
            "level": taxonomy[code].level,
            "parent": taxonomy[code].parent,
            "definition": taxonomy[code].definition,
            "uri": taxonomy.concept_uri(code),
        }
        for code in codes
    ]


def tdml_document(taxonomy: Taxonomy, *, version: str = "1.1", level: str | None = None) -> str:
    """The TrainingDML-AI dataset properties about classes, as JSON, ready to merge into a dataset document."""
    classes = tdml_classes(taxonomy, version=version, level=level)
    document = {"classificationScheme": taxonomy.uri, "numberOfClasses": len(classes), "classes": classes}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def to_csv(taxonomy: Taxonomy) -> str:
    """One row per class; ``lcml`` and ``corine`` lists are joined with ``;``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for taxon in taxonomy.classes.values():
        writer.writerow(
            [
                taxon.code,
                taxon.name,
                taxon.level,
                taxon.parent or "",
                taxon.definition,
                ";".join(taxon.lcml),
                ";".join(taxon.corine),
                taxon.color or "",
            ]
        )
    return buffer.getvalue()
