"""The taxonomy API and the shipped taxonomies' content, checked against independent readings of the files."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosample.errors import TaxonomyError
from geosample.labels import TaxonClass, Taxonomy, load_taxonomy
from geosample.labels.taxonomy import DEFAULT_TAXONOMY, builtin_taxonomies, validate_taxonomy

DATA = Path(__file__).parents[1] / "data" / "taxonomy"
SHIPPED = Path(__file__).parents[2] / "taxonomy"


def raw(path: Path) -> dict:
    """The file as plain PyYAML reads it: the independent view the loader is compared with."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def walk(classes: list[dict], depth: int = 1, parent: str | None = None):
    for entry in classes:
        yield entry, depth, parent
        yield from walk(entry.get("children") or [], depth + 1, entry["code"])


@pytest.fixture(scope="module")
def lulc() -> Taxonomy:
    return load_taxonomy()


@pytest.fixture(scope="module")
def events() -> Taxonomy:
    return load_taxonomy("geosample-events")


# -- the shipped files ----------------------------------------------------------------------------


def test_builtin_taxonomies_are_the_shipped_files_named_after_their_ids() -> None:
    found = builtin_taxonomies()
    assert set(found) == {"geosample-lulc", "geosample-events"}
    for taxonomy_id, path in found.items():
        assert path.resolve() == (SHIPPED / f"{taxonomy_id}.yaml").resolve()
        assert raw(path)["id"] == taxonomy_id
    assert DEFAULT_TAXONOMY == "geosample-lulc"


@pytest.mark.parametrize("name", ["geosample-lulc", "geosample-events"])
def test_shipped_taxonomies_validate_clean(name: str) -> None:
    assert validate_taxonomy(SHIPPED / f"{name}.yaml") == []


def test_default_taxonomy_matches_its_file(lulc: Taxonomy) -> None:
    data = raw(SHIPPED / "geosample-lulc.yaml")
    entries = list(walk(data["classes"]))
    assert lulc.key == "geosample-lulc@1.0.0" and lulc.levels == ("l1", "l2", "l3") and lulc.extends is None
    assert list(lulc.classes) == [e["code"] for e, _, _ in entries]  # tree order
    for entry, depth, parent in entries:
        taxon = lulc[entry["code"]]
        assert (taxon.name, taxon.definition, taxon.depth, taxon.parent) == (
            entry["name"],
            entry["definition"],
            depth,
            parent,
        )
        assert taxon.level == f"l{depth}" and taxon.source == "geosample-lulc"
        assert taxon.children == tuple(c["code"] for c in entry.get("children") or [])
        assert taxon.lcml == tuple(entry.get("lcml", [])) and taxon.corine == tuple(entry.get("corine", []))
    for scheme, mapping in data["mappings"].items():
        assert lulc.mapping(scheme) == {str(k): v for k, v in mapping.items()}


def test_default_taxonomy_size_colours_leaves_and_definitions(lulc: Taxonomy) -> None:
    counts = [len(lulc.codes_at(level)) for level in lulc.levels]
    assert 6 <= counts[0] <= 10 and 20 <= counts[1] <= 30 and 60 <= counts[2] <= 120
    for taxon in lulc.classes.values():
        assert taxon.color is not None and len(taxon.color) == 7
        assert taxon.lcml, taxon.code
        assert all(name.startswith("LC_") and name.endswith("Element") for name in taxon.lcml)
        assert (taxon.depth == 3) == (not taxon.children), f"{taxon.code} is a leaf above l3 or has children at l3"
        # One sentence: ends with a full stop and has no other sentence break.
        assert taxon.definition.endswith(".") and ". " not in taxon.definition, taxon.code
    covered = {lulc.lineage(code)[0] for code in lulc.codes_at("l3")}
    assert covered == set(lulc.codes_at("l1"))


def test_standard_crosswalks_cover_every_source_class(lulc: Taxonomy) -> None:
    from geosample.layers import IGBP_CLASSES

    assert set(lulc.mapping("esa-worldcover")) == {str(v) for v in (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)}
    assert set(lulc.mapping("modis-igbp")) == {str(v) for v in IGBP_CLASSES}  # the embedded layer's values
    assert "255" not in lulc.mapping("modis-igbp")
    assert set(lulc.mapping("dynamic-world")) == {str(v) for v in range(9)}
    corine = lulc.mapping("corine")
    assert len(corine) == 44 and all(len(code) == 3 and code[0] in "12345" for code in corine)
    raster = lulc.mapping("corine-raster")
    assert [raster[str(i)] for i in range(1, 45)] == [corine[code] for code in sorted(corine)]
    # A class that cites a CORINE code is where the CORINE crosswalk sends that code.
    for code, target in corine.items():
        assert code in lulc[target].corine, (code, target)


def test_osm_crosswalk_uses_tag_syntax(lulc: Taxonomy) -> None:
    osm = lulc.mapping("osm")
    keys = {tag.partition("=")[0] for tag in osm}
    assert {"landuse", "natural", "water", "waterway", "building", "highway", "aeroway", "leisure"} <= keys
    assert "building" in osm  # a bare key: any building


def test_extension_merges_into_its_base(lulc: Taxonomy, events: Taxonomy) -> None:
    assert events.extends == "geosample-lulc@1.0.0" and events.levels == lulc.levels
    assert dict(events.sources) == {"geosample-lulc": "1.0.0", "geosample-events": "1.0.0"}
    added = [c for c in events.classes.values() if c.source == "geosample-events"]
    assert {c.code for c in added} == set(events.classes) - set(lulc.classes)
    assert all(c.code.startswith("E") for c in added if c.code != "1.3.4")
    # The attached class sits under its base parent, right after the parent's own children.
    assert events["1.3"].children == (*lulc["1.3"].children, "1.3.4")
    order = list(events.classes)
    assert order.index("1.3.4") == order.index(lulc["1.3"].children[-1]) + 1
    assert events.ancestor("1.3.4", "l1") == "1" and events["1.3.4"].level == "l3"
    assert events.codes_at("l1") == [*lulc.codes_at("l1"), "E"]
    assert events.lineage("E.4.2") == ["E", "E.4", "E.4.2"]
    # Crosswalks: the base's, plus the extension's entries.
    assert events.mapping("esa-worldcover") == lulc.mapping("esa-worldcover")
    assert events.mapping("osm") == {**lulc.mapping("osm"), "geological=volcanic_lava_field": "E.4.1"}
    assert events.mapping("events")["volcano"] == "E.4" and events.mapping("events")["flood"] == "E.1.1"
    assert set(events.mapping("events")) == set(raw(SHIPPED / "geosample-events.yaml")["schemes"]["events"]["values"])
    for code in lulc.classes:  # base classes are unchanged, but for the attached children
        if code != "1.3":
            assert events[code] == lulc[code]


# -- the query API --------------------------------------------------------------------------------


def test_ancestor_is_the_code_prefix(events: Taxonomy) -> None:
    for taxon in events.classes.values():
        parts = taxon.code.split(".")
        for depth, level in enumerate(events.levels, start=1):
            expected = ".".join(parts[:depth]) if depth <= len(parts) else None
            assert events.ancestor(taxon.code, level) == expected
        assert events.lineage(taxon.code) == [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def test_hand_checked_lookups(lulc: Taxonomy) -> None:
    assert lulc.ancestor("3.1.2", "l2") == "3.1" and lulc.ancestor("3.1.2", "l3") == "3.1.2"
    assert lulc.ancestor("5", "l3") is None
    assert lulc.lineage("8.2.3") == ["8", "8.2", "8.2.3"]
    assert lulc.codes_at("l1") == [str(i) for i in range(1, 9)]
    values = np.array([0, 10, 95, 100, 255, 10], dtype=np.uint8)
    assert lulc.lookup_table("esa-worldcover", values) == {10: "3", 95: "5.2.4", 100: "4.3.2"}
    assert lulc.lookup_table("modis-igbp", range(256)) == {
        int(k): v for k, v in raw(SHIPPED / "geosample-lulc.yaml")["mappings"]["modis-igbp"].items()
    }
    assert lulc.lookup_table("corine", [311, 999]) == {311: "3.1"}


OSM_CASES = [
    ({"landuse": "forest"}, "3"),
    ({"natural": "wetland", "wetland": "mangrove"}, "5.2.4"),  # the deeper class wins
    ({"natural": "water", "water": "lake"}, "8.1.3"),
    ({"building": "house"}, "1.1.2"),
    ({"building": "church"}, "1.1"),  # bare key: any value
    ({"building": "no"}, None),
    ({"landuse": "residential", "building": "church"}, "1.1"),  # key=value beats a bare key
    ({"aeroway": "hangar"}, "1.2.4"),
    ({"landuse": "farmland;meadow"}, "2.3.1"),  # multi-valued tag
    ({"highway": "footway"}, None),
    ({"name": "Somewhere"}, None),
    ({}, None),
    ({"building": float("nan"), "landuse": None}, None),  # missing values from a table
]


@pytest.mark.parametrize(("tags", "expected"), OSM_CASES, ids=[str(t) for t, _ in OSM_CASES])
def test_osm_code(lulc: Taxonomy, tags: dict[str, str], expected: str | None) -> None:
    assert lulc.osm_code(tags) == expected


def test_osm_ties_go_to_the_entry_listed_first() -> None:
    mini = load_taxonomy(DATA / "mini.yaml")
    # landuse=grass (B.2) and natural=wood (B.1) are both level 2; landuse=grass is listed first.
    assert mini.osm_code({"natural": "wood", "landuse": "grass"}) == "B.2"
    assert mini.osm_code({"natural": "bare_rock"}) == "B"  # bare key


def test_unknown_code_level_and_scheme_are_explained(lulc: Taxonomy) -> None:
    with pytest.raises(TaxonomyError, match=r"unknown class code '3\.9' in geosample-lulc@1\.0\.0; did you mean"):
        lulc["3.9"]
    with pytest.raises(TaxonomyError, match="did you mean 6.1.1"):
        lulc["Bare rock"]
    with pytest.raises(TaxonomyError, match="unknown level 'l4'.*levels are l1, l2, l3"):
        lulc.codes_at("l4")
    with pytest.raises(TaxonomyError, match="no crosswalk for scheme 'glc'; it has: corine, corine-raster"):
        lulc.mapping("glc")
    with pytest.raises(TaxonomyError, match="maps text values"):
        lulc.lookup_table("osm", [1])
    with pytest.raises(TaxonomyError, match="not an integer"):
        lulc.lookup_table("esa-worldcover", [10.5])
    assert isinstance(lulc["1"], TaxonClass) and "1" in lulc and "9" not in lulc and len(lulc) == len(list(lulc))


def test_taxonomy_is_immutable(lulc: Taxonomy) -> None:
    with pytest.raises(AttributeError):
        lulc.id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        lulc.classes["1"] = lulc["2"]  # type: ignore[index]
    with pytest.raises(TypeError):
        lulc.mappings["osm"]["x=y"] = "1"  # type: ignore[index]
    copy = lulc.mapping("osm")
    copy["x=y"] = "1"
    assert "x=y" not in lulc.mapping("osm")


# -- loading --------------------------------------------------------------------------------------


def test_load_by_id_version_path_and_instance(lulc: Taxonomy) -> None:
    assert load_taxonomy("geosample-lulc@1.0.0") == lulc
    assert load_taxonomy(SHIPPED / "geosample-lulc.yaml") == lulc
    assert load_taxonomy(str(SHIPPED / "geosample-lulc.yaml")) == lulc
    assert load_taxonomy(lulc) is lulc
    with pytest.raises(TaxonomyError, match="is version 1.0.0, not 2.0.0"):
        load_taxonomy("geosample-lulc@2.0.0")
    with pytest.raises(TaxonomyError, match="unknown taxonomy 'corine-lulc'.*geosample-events"):
        load_taxonomy("corine-lulc")
    with pytest.raises(TaxonomyError, match="does not exist"):
        load_taxonomy("missing/taxonomy.yaml")


def test_extends_is_resolved_beside_the_file_first(tmp_path: Path) -> None:
    base = raw(SHIPPED / "geosample-lulc.yaml")
    base["title"] = "A local copy of the base"
    base["classes"][0]["name"] = "Built-up land"
    (tmp_path / "my-base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    shutil.copy(SHIPPED / "geosample-events.yaml", tmp_path / "events.yaml")
    local = load_taxonomy(tmp_path / "events.yaml")
    assert local["1"].name == "Built-up land"
    (tmp_path / "my-base.yaml").unlink()
    assert load_taxonomy(tmp_path / "events.yaml")["1"].name == "Artificial surfaces"  # the built-in base


def test_cache_sees_edited_files(tmp_path: Path) -> None:
    path = tmp_path / "mini.yaml"
    shutil.copy(DATA / "mini.yaml", path)
    first = load_taxonomy(path)
    assert load_taxonomy(path) is first
    path.write_text(path.read_text().replace("name: Trees", "name: Woods"))
    assert load_taxonomy(path)["B.1"].name == "Woods"


def test_invalid_file_raises_one_line_naming_the_first_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    text = (DATA / "mini.yaml").read_text()
    path.write_text(text.replace('color: "#00ff00"', 'color: "green"').replace('3: "B.2"', '3: "B.9"'))
    line = text.splitlines().index('    color: "#00ff00"') + 1
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy(path)
    message = str(info.value)
    assert "\n" not in message
    assert f"{path}:{line}: color 'green' is not valid" in message and "(and 1 more)" in message
    assert f"geosample taxonomy validate {path}" in message


# -- to_dict / from_dict --------------------------------------------------------------------------


def test_to_dict_round_trips_through_json(events: Taxonomy) -> None:
    data = events.to_dict()
    again = Taxonomy.from_dict(json.loads(json.dumps(data)))
    assert again == events and again.to_dict() == data
    assert [c["code"] for c in data["classes"]] == list(events.classes)
    with pytest.raises(TaxonomyError, match="not a taxonomy dictionary"):
        Taxonomy.from_dict({"id": "x"})


TEXT = st.text(
    alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"], include_characters='"\\\t\n'),
    min_size=1,
    max_size=24,
).filter(lambda s: s.strip() == s and s)


@st.composite
def taxonomies(draw: st.DrawFn) -> dict:
    """A random valid taxonomy in the file format: 1-3 levels, every leaf at the last level."""
    n_levels = draw(st.integers(1, 3))
    levels = [f"level{i}" for i in range(1, n_levels + 1)]

    def tree(prefix: str, depth: int) -> list[dict]:
        count = draw(st.integers(1, 3))
        out = []
        for i in range(1, count + 1):
            code = f"{prefix}{draw(st.sampled_from('ABCxyz'))}{i}" if depth == 1 else f"{prefix}.{i}"
            entry = {"code": code, "name": draw(TEXT), "definition": draw(TEXT)}
            if draw(st.booleans()):
                entry["color"] = "#" + draw(st.text(alphabet="0123456789abcdef", min_size=6, max_size=6))
            if draw(st.booleans()):
                entry["lcml"] = draw(st.lists(st.sampled_from(["LC_TreesElement", "LC_WaterBodyElement"]), max_size=2))
            if draw(st.booleans()):
                entry["corine"] = draw(st.lists(st.sampled_from(["111", "311", "523"]), max_size=2, unique=True))
            if depth < n_levels:
                entry["children"] = tree(code, depth + 1)
            out.append(entry)
        return out

    classes = tree("", 1)
    codes = [entry["code"] for entry, _, _ in walk(classes)]
    values = draw(st.lists(st.integers(0, 300), min_size=1, max_size=6, unique=True))
    mapping = {value: draw(st.sampled_from(codes)) for value in values}
    return {
        "id": "random",
        "version": "1.0.0",
        "title": draw(TEXT),
        "levels": levels,
        "classes": classes,
        "schemes": {"legend": {"values": values}},
        "mappings": {"legend": mapping},
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=taxonomies())
def test_random_taxonomies_load_and_round_trip(data: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        assert validate_taxonomy(path) == []
        tax = load_taxonomy(path)
    entries = list(walk(data["classes"]))
    assert list(tax.classes) == [e["code"] for e, _, _ in entries]
    for entry, depth, parent in entries:
        taxon = tax[entry["code"]]
        assert (taxon.name, taxon.definition, taxon.parent, taxon.depth) == (
            entry["name"],
            entry["definition"],
            parent,
            depth,
        )
        assert taxon.color == entry.get("color")
    assert tax.lookup_table("legend", range(301)) == data["mappings"]["legend"]
    again = Taxonomy.from_dict(json.loads(json.dumps(tax.to_dict())))
    assert again == tax and again.to_dict() == tax.to_dict()
