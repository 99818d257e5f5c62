"""SKOS, TrainingDML-AI and CSV exports, read back with rdflib, the official JSON Schemas and pandas."""

from __future__ import annotations

import io
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rdflib import RDF, SKOS, Graph, Literal, URIRef
from rdflib.compare import isomorphic
from schemas import validate

from geosample.labels import TaxonClass, Taxonomy, load_taxonomy

DATA = Path(__file__).parents[1] / "data" / "taxonomy"
# rdflib's JSON-LD parser uses its own deprecated ConjunctiveGraph internally.
pytestmark = pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
CLC = "http://www.w3.org/2015/03/corine#clc"


def parse(text: str, fmt: str) -> Graph:
    return Graph().parse(data=text, format={"turtle": "turtle", "json-ld": "json-ld"}[fmt])


@pytest.fixture(scope="module", params=["geosample-lulc", "geosample-events"])
def taxonomy(request: pytest.FixtureRequest) -> Taxonomy:
    return load_taxonomy(request.param)


@pytest.fixture(scope="module")
def graphs(taxonomy: Taxonomy) -> dict[str, Graph]:
    return {fmt: parse(taxonomy.to_skos(fmt), fmt) for fmt in ("turtle", "json-ld")}


def test_turtle_and_json_ld_carry_the_same_triples(graphs: dict[str, Graph]) -> None:
    assert len(graphs["turtle"]) > 0
    assert isomorphic(graphs["turtle"], graphs["json-ld"])


def test_one_concept_per_class_with_labels_notation_and_hierarchy(taxonomy: Taxonomy, graphs: dict[str, Graph]) -> None:
    g = graphs["turtle"]
    scheme = URIRef(taxonomy.uri)
    assert (scheme, RDF.type, SKOS.ConceptScheme) in g
    concepts = set(g.subjects(RDF.type, SKOS.Concept))
    assert concepts == {URIRef(taxonomy.concept_uri(code)) for code in taxonomy.classes}
    for taxon in taxonomy.classes.values():
        node = URIRef(taxonomy.concept_uri(taxon.code))
        assert set(g.objects(node, SKOS.prefLabel)) == {Literal(taxon.name, lang="en")}
        assert set(g.objects(node, SKOS.definition)) == {Literal(taxon.definition, lang="en")}
        assert set(g.objects(node, SKOS.notation)) == {Literal(taxon.code)}
        assert (node, SKOS.inScheme, scheme) in g
        broader = set(g.objects(node, SKOS.broader))
        if taxon.parent is None:
            assert not broader and (node, SKOS.topConceptOf, scheme) in g and (scheme, SKOS.hasTopConcept, node) in g
        else:
            assert broader == {URIRef(taxonomy.concept_uri(taxon.parent))}
        assert set(g.objects(node, SKOS.narrower)) == {URIRef(taxonomy.concept_uri(c)) for c in taxon.children}
    assert set(g.subjects(SKOS.topConceptOf, scheme)) == {
        URIRef(taxonomy.concept_uri(c)) for c in taxonomy.codes_at(taxonomy.levels[0])
    }


def test_corine_alignment_as_exact_or_close_matches(taxonomy: Taxonomy, graphs: dict[str, Graph]) -> None:
    g = graphs["json-ld"]
    crosswalk = taxonomy.mapping("corine")
    exact = {(s, o) for s, o in g.subject_objects(SKOS.exactMatch)}
    close = {(s, o) for s, o in g.subject_objects(SKOS.closeMatch)}
    expected_exact = {
        (URIRef(taxonomy.concept_uri(t.code)), URIRef(CLC + c))
        for t in taxonomy.classes.values()
        for c in t.corine
        if crosswalk[c] == t.code
    }
    assert exact == expected_exact and len(exact) == len(crosswalk) == 44  # every target cites its CORINE code
    assert len(exact) + len(close) == sum(len(t.corine) for t in taxonomy.classes.values())
    # 3.1.1 cites 311, which the crosswalk sends to its parent 3.1: a close match only.
    assert (URIRef(taxonomy.concept_uri("3.1.1")), URIRef(CLC + "311")) in close


def test_levels_are_skos_collections(taxonomy: Taxonomy, graphs: dict[str, Graph]) -> None:
    g = graphs["turtle"]
    for level in taxonomy.levels:
        node = URIRef(f"{taxonomy.uri}levels/{level}")
        assert (node, RDF.type, SKOS.Collection) in g
        assert set(g.objects(node, SKOS.member)) == {URIRef(taxonomy.concept_uri(c)) for c in taxonomy.codes_at(level)}


def test_extension_concepts_live_in_their_own_namespace() -> None:
    events = load_taxonomy("geosample-events")
    assert events.concept_uri("1.1") == "https://w3id.org/geosample/taxonomy/geosample-lulc/1.0.0/1.1"
    assert events.concept_uri("E.1") == "https://w3id.org/geosample/taxonomy/geosample-events/1.0.0/E.1"
    assert events.concept_uri("1.3.4").startswith("https://w3id.org/geosample/taxonomy/geosample-events/")
    g = parse(events.to_skos("turtle"), "turtle")
    assert (URIRef(events.uri), URIRef("http://purl.org/dc/terms/source"), URIRef(load_taxonomy().uri)) in g
    # The base concepts carry the same triples as in the base's own export.
    base = parse(load_taxonomy().to_skos("turtle"), "turtle")
    node = URIRef(events.concept_uri("2.1.3"))
    assert set(g.predicate_objects(node)) - {(SKOS.inScheme, URIRef(events.uri))} == set(
        base.predicate_objects(node)
    ) - {(SKOS.inScheme, URIRef(load_taxonomy().uri))}


ANY_TEXT = st.text(min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(name=ANY_TEXT, definition=ANY_TEXT, title=ANY_TEXT)
def test_any_text_survives_both_serialisations(name: str, definition: str, title: str) -> None:
    taxon = TaxonClass("A", name, definition, "l1", 1, None, (), (), (), None, "t")
    tax = Taxonomy("t", "1", title, "", ("l1",), None, {"A": taxon}, {})
    for fmt in ("turtle", "json-ld"):
        g = parse(tax.to_skos(fmt), fmt)
        node = URIRef(tax.concept_uri("A"))
        assert set(g.objects(node, SKOS.prefLabel)) == {Literal(name, lang="en")}
        assert set(g.objects(node, SKOS.definition)) == {Literal(definition, lang="en")}
        assert {str(t) for t in g.objects(URIRef(tax.uri), URIRef("http://purl.org/dc/terms/title"))} == {title}


# TrainingDML-AI 1.1's ai_eoTrainingDataset.json requires type AI_EOTrainingDataset and, through its
# oneOf on ai_trainingDataset.json, type AI_AbstractTrainingDataset: no document satisfies both. The
# classes list is defined by ai_trainingDataset.json, so 1.1 documents are checked against that one.
SCHEMA = {"1.0": "trainingdml-ai-1.0/ai_eoTrainingDataset.json", "1.1": "trainingdml-ai-1.1/ai_trainingDataset.json"}
TYPE = {"1.0": "AI_EOTrainingDataset", "1.1": "AI_AbstractTrainingDataset"}


def _dataset(classes: list, version: str, code: str) -> dict:
    """A minimal training dataset document around a ``classes`` list, with one scene-labelled sample."""
    return {
        "type": TYPE[version],
        "id": "test",
        "name": "test",
        "description": "taxonomy export test",
        "license": "CC-BY-4.0",
        "tasks": [{"type": "AI_EOTask", "id": "scene", "taskType": "Scene Classification"}],
        "classes": classes,
        "numberOfClasses": len(classes),
        "data": [
            {
                "type": "AI_EOTrainingData",
                "id": "s1",
                "dataURL": ["chips/s1.tif"],
                "labels": [{"type": "AI_SceneLabel", "class": code}],
            }
        ],
    }


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_tdml_classes_validate_against_the_official_schema(taxonomy: Taxonomy, version: str) -> None:
    classes = taxonomy.tdml_classes(version=version)
    assert [entry["key"] for entry in classes] == list(taxonomy.classes)
    validate(_dataset(classes, version, "1.1"), SCHEMA[version])
    if version == "1.0":
        assert classes[0] == {"key": "1", "value": taxonomy["1"].name}
    else:
        assert classes[1] == {
            "key": "1.1",
            "name": taxonomy["1.1"].name,
            "level": "l2",
            "parent": "1",
            "definition": taxonomy["1.1"].definition,
            "uri": taxonomy.concept_uri("1.1"),
        }
    level2 = taxonomy.tdml_classes(version=version, level="l2")
    assert [entry["key"] for entry in level2] == taxonomy.codes_at("l2")
    chosen = taxonomy.tdml_classes(version=version, codes=["8.1", "1.1.1"])
    assert [entry["key"] for entry in chosen] == ["1.1.1", "8.1"]  # tree order


def test_the_1_1_schema_rejects_named_values_which_is_why_1_1_entries_have_no_value() -> None:
    """Documents the schema quirk behind the 1.1 entry shape: if the schema is fixed, this test says so."""
    with pytest.raises(jsonschema.ValidationError, match="is valid under each of"):
        validate(_dataset([{"key": "1", "value": "x"}], "1.1", "1"), SCHEMA["1.1"])
    with pytest.raises(jsonschema.ValidationError, match="is not valid under any of the given schemas"):
        validate(
            {**_dataset(["1"], "1.1", "1"), "type": "AI_EOTrainingDataset"},
            "trainingdml-ai-1.1/ai_eoTrainingDataset.json",
        )


def test_csv_round_trips_with_pandas(taxonomy: Taxonomy) -> None:
    frame = pd.read_csv(io.StringIO(taxonomy.to_csv()), dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["code", "name", "level", "parent", "definition", "lcml", "corine", "color"]
    assert list(frame["code"]) == list(taxonomy.classes)
    for row in frame.itertuples(index=False):
        taxon = taxonomy[row.code]
        assert (row.name, row.level, row.parent or None, row.definition, row.color) == (
            taxon.name,
            taxon.level,
            taxon.parent,
            taxon.definition,
            taxon.color,
        )
        assert tuple(filter(None, row.lcml.split(";"))) == taxon.lcml
        assert tuple(filter(None, row.corine.split(";"))) == taxon.corine


def test_csv_quotes_awkward_text() -> None:
    mini = load_taxonomy(DATA / "mini.yaml")
    frame = pd.read_csv(io.StringIO(mini.to_csv()), dtype=str, keep_default_na=False).set_index("code")
    assert frame.loc["B.2", "definition"] == 'Herbaceous plants, "grass" in a broad sense.'
    assert frame.loc["B.1", "corine"] == "311;312" and frame.loc["B.2", "color"] == ""
