"""Broken copies of the shipped taxonomies: every problem found, each with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geosample.errors import TaxonomyError
from geosample.labels import load_taxonomy
from geosample.labels.taxonomy import validate_taxonomy

SHIPPED = Path(__file__).parents[2] / "taxonomy"
DATA = Path(__file__).parents[1] / "data" / "taxonomy"
FILES = {
    "lulc": SHIPPED / "geosample-lulc.yaml",
    "events": SHIPPED / "geosample-events.yaml",
    "mini": DATA / "mini.yaml",
}


def edit(source: str, edits: list[tuple[str, str]]) -> str:
    text = FILES[source].read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, f"{old!r} is not in {source}"
        text = text.replace(old, new, 1)
    return text


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line containing ``needle``: where the edit landed, found independently."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} occurs {len(hits)} times"
    return hits[nth - 1]


# (id, file, edits, needle of the problem line, nth occurrence, message fragment or
# (fragment with {first}, needle of the line that {first} stands for))
CASES = [
    (
        "duplicate code",
        "lulc",
        [('code: "1.1.2"', 'code: "1.1.1"')],
        'code: "1.1.1"',
        2,
        ("duplicate code '1.1.1' (first at line {first})", 'code: "1.1.1"'),
    ),
    (
        "mapping to an unknown code",
        "lulc",
        [('"122": "1.2.2"', '"122": "1.2.9"')],
        '"122": "1.2.9"',
        1,
        "corine 122 -> '1.2.9': no class has that code",
    ),
    (
        "unmapped WorldCover class",
        "lulc",
        [('    95: "5.2.4"              # Mangroves\n', "")],
        "  esa-worldcover:",
        1,
        "scheme 'esa-worldcover' leaves source values unmapped: 95",
    ),
    (
        "duplicate YAML key",
        "lulc",
        [('    10: "4.2"                # grasslands\n', '    10: "4.2"\n    10: "4.2.1"\n')],
        '    10: "4.2.1"',
        1,
        ("duplicate key 10 (first at line {first})", '    10: "4.2"'),
    ),
    (
        "bad colour",
        "lulc",
        [('color: "#ff4d4d"', 'color: "#ff4d4"')],
        'color: "#ff4d4"',
        1,
        "color '#ff4d4' is not valid; write it as \"#rrggbb\"",
    ),
    (
        "IGBP no-data value mapped",
        "lulc",
        [('    16: "6"                  # barren\n', '    16: "6"\n    255: "8"\n')],
        '    255: "8"',
        1,
        "255 is the no-data value of modis-igbp; it must not be mapped",
    ),
    (
        "value outside a built-in scheme",
        "lulc",
        [('    20: "4.1"                # Shrubland\n', '    20: "4.1"\n    15: "4.1"\n')],
        '    15: "4.1"',
        1,
        "'15' is not a value of scheme 'esa-worldcover'",
    ),
    (
        "target not quoted",
        "lulc",
        [('    12: "2.1"                # croplands', "    12: 2.1")],
        "    12: 2.1",
        1,
        "modis-igbp 12 -> 2.1: the target must be a class code in quotes",
    ),
    (
        "source value mapped twice",
        "lulc",
        [('    "111": "1.1.1"', '    "111": "1.1.1"\n    111: "1.1"')],
        '    111: "1.1"',
        1,
        "source value '111' is mapped twice",
    ),
    (
        "leaf above the last level",
        "lulc",
        [('  - code: "2"\n', '  - code: "9"\n    name: Other\n    definition: Anything else.\n  - code: "2"\n')],
        'code: "9"',
        1,
        "class 9 (Other) is a leaf at l1; every leaf must be at l3",
    ),
    (
        "code not under its parent's",
        "lulc",
        [('code: "1.4.2"', 'code: "2.4.9"')],
        'code: "2.4.9"',
        1,
        "code '2.4.9' must start with its parent's code '1.4.'",
    ),
    (
        "misspelt class key",
        "mini",
        [("    definition: Vegetation of any kind.", "    defnition: Vegetation of any kind.")],
        "defnition:",
        1,
        "unknown class key 'defnition' (did you mean 'definition'?)",
    ),
    (
        "unquoted version",
        "mini",
        [("version: 0.1.0", "version: 0.1")],
        "version: 0.1",
        1,
        "version must be text, not float 0.1; quote it",
    ),
    (
        "CORINE alignment to a code that does not exist",
        "mini",
        [('corine: ["311", "312"]', 'corine: ["311", "319"]')],
        'corine: ["311", "319"]',
        1,
        "'319' is not a CORINE Land Cover level-3 code",
    ),
    (
        "LCML element misspelt",
        "mini",
        [("lcml: [LC_TreesElement]", "lcml: [LC_Trees]")],
        "lcml: [LC_Trees]",
        1,
        "lcml entry 'LC_Trees' is not valid",
    ),
    (
        "OSM tag syntax",
        "mini",
        [('"landuse=grass": "B.2"', '"landuse = grass": "B.2"')],
        '"landuse = grass"',
        1,
        "OSM source 'landuse = grass' must be 'key=value' or a bare 'key'",
    ),
    (
        "declared scheme incompletely mapped",
        "mini",
        [('    7: "B"\n', "")],
        "  toy:",
        2,
        "scheme 'toy' leaves source values unmapped: 7",
    ),
    (
        "recursive alias",
        "mini",
        [("lcml: [LC_BuildingsElement]", "lcml: &loop [*loop]")],
        "&loop",
        1,
        "recursive alias",
    ),
    (
        "merge key",
        "mini",
        [('  - code: "B"\n', '  - <<: {lcml: [LC_TreesElement]}\n    code: "B"\n')],
        "<<:",
        1,
        "merge keys (<<) are not supported",
    ),
    (
        "unknown top-level key",
        "mini",
        [("levels: [coarse, fine]", "levels: [coarse, fine]\nlevel: [coarse]")],
        "level: [coarse]",
        1,
        "unknown key 'level' (did you mean 'levels'?)",
    ),
    (
        "extension: missing parent",
        "events",
        [('parent: "1.3"', 'parent: "1.9"')],
        'parent: "1.9"',
        1,
        "extend parent '1.9' is not a class",
    ),
    (
        "extension: child code outside its parent",
        "events",
        [('code: "1.3.4"', 'code: "1.4.4"')],
        'code: "1.4.4"',
        1,
        "code '1.4.4' must start with its parent's code '1.3.'",
    ),
    (
        "extension: base code reused",
        "events",
        [('code: "1.3.4"', 'code: "1.3.3"')],
        'code: "1.3.3"',
        1,
        "duplicate code '1.3.3' (first at base taxonomy geosample-lulc@1.0.0)",
    ),
    (
        "extension: unmapped event type",
        "events",
        [('    drought: "E.5.2"\n', "")],
        "  events:",
        2,
        "scheme 'events' leaves source values unmapped: drought",
    ),
    (
        "extension: unknown base version",
        "events",
        [("extends: geosample-lulc@1.0.0", "extends: geosample-lulc@9.9.9")],
        "extends:",
        1,
        "extends geosample-lulc@9.9.9: no taxonomy geosample-lulc version 9.9.9",
    ),
    (
        "extension: its base's id",
        "events",
        [("id: geosample-events", "id: geosample-lulc")],
        "extends:",
        1,
        "an extension needs an id of its own",
    ),
    (
        "extension: other levels",
        "events",
        [("extends: geosample-lulc@1.0.0", "extends: geosample-lulc@1.0.0\nlevels: [a, b, c]")],
        "levels: [a, b, c]",
        1,
        "levels ['a', 'b', 'c'] differ from the base taxonomy's ['l1', 'l2', 'l3']",
    ),
]


@pytest.mark.parametrize(
    ("source", "edits", "needle", "nth", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_copy_reports_the_problem_at_its_line(
    tmp_path: Path, source: str, edits: list[tuple[str, str]], needle: str, nth: int, message: str | tuple[str, str]
) -> None:
    text = edit(source, edits)
    path = tmp_path / FILES[source].name
    path.write_text(text, encoding="utf-8")
    line = line_of(text, needle, nth)
    if isinstance(message, tuple):
        message = message[0].format(first=line_of(text, message[1]))
    problems = validate_taxonomy(path)
    assert any(p.file == str(path) and p.line == line and message in p.message for p in problems), "\n".join(
        map(str, problems)
    )
    with pytest.raises(TaxonomyError, match="is invalid"):
        load_taxonomy(path)


def test_python_tag_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = edit(
        "lulc",
        [
            (
                "title: geosample land use / land cover taxonomy",
                f'title: !!python/object/apply:os.system ["touch {marker}"]',
            )
        ],
    )
    path = tmp_path / "tagged.yaml"
    path.write_text(text)
    problems = validate_taxonomy(path)
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (line_of(text, "!!python"), "tag !!python/object/apply")
    ]
    with pytest.raises(TaxonomyError, match="tag !!python/object/apply:os.system is not allowed"):
        load_taxonomy(path)
    assert not marker.exists()
    assert validate_taxonomy(_write(tmp_path, "x.yaml", "id: !!binary aGVsbG8=\n"))[0].message.startswith(
        "tag !!binary is not allowed"
    )


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_all_problems_are_reported_in_line_order(tmp_path: Path) -> None:
    text = edit(
        "lulc",
        [
            ('color: "#ff4d4d"', 'color: "red"'),
            ('"122": "1.2.2"', '"122": "9.9"'),
            ('    95: "5.2.4"              # Mangroves\n', ""),
        ],
    )
    path = _write(tmp_path, "three.yaml", text)
    problems = validate_taxonomy(path)
    assert [p.line for p in problems] == sorted(
        [line_of(text, 'color: "red"'), line_of(text, '"122": "9.9"'), line_of(text, "  esa-worldcover:")]
    )
    assert str(problems[0]) == f"{path}:{problems[0].line}: {problems[0].message}"


def test_yaml_syntax_error_is_reported_where_yaml_sees_it(tmp_path: Path) -> None:
    text = edit("mini", [("levels: [coarse, fine]", "levels: [coarse, fine")])
    path = _write(tmp_path, "syntax.yaml", text)
    with pytest.raises(yaml.MarkedYAMLError) as info:
        yaml.safe_load(text)
    (problem,) = validate_taxonomy(path)
    assert problem.line == info.value.problem_mark.line + 1 and problem.message.startswith("not valid YAML")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("- id: x\n", "must be a mapping"),
        ("id: x\nversion: '1'\ntitle: t\nlevels: [a]\n", "missing key 'classes'"),
        ("id: Bad Id\nversion: '1'\ntitle: t\nlevels: [a]\nclasses: []\n", "id 'Bad Id' is not valid"),
    ],
)
def test_degenerate_files(tmp_path: Path, text: str, message: str) -> None:
    problems = validate_taxonomy(_write(tmp_path, "t.yaml", text))
    assert any(message in p.message for p in problems), problems


def test_missing_file_is_a_problem_of_the_whole_file(tmp_path: Path) -> None:
    (problem,) = validate_taxonomy(tmp_path / "nope.yaml")
    assert problem.line == 0 and str(problem) == f"{tmp_path / 'nope.yaml'}: file does not exist; check the path"


def test_circular_extends(tmp_path: Path) -> None:
    head = "version: '1'\ntitle: t\nclasses:\n  - {code: '{c}', name: n, definition: d.}\n"
    _write(tmp_path, "a.yaml", "id: a\nextends: b@1\n" + head.replace("{c}", "A"))
    _write(tmp_path, "b.yaml", "id: b\nextends: a@1\n" + head.replace("{c}", "B"))
    problems = validate_taxonomy(tmp_path / "a.yaml")
    assert any("circular" in p.message and p.line == 2 for p in problems), problems


def test_extension_of_a_broken_base_lists_the_base_problems(tmp_path: Path) -> None:
    base = _write(tmp_path, "mini.yaml", edit("mini", [('color: "#00ff00"', 'color: "#00ff0"')]))
    _write(tmp_path, "mini-ext.yaml", (DATA / "mini-ext.yaml").read_text())
    problems = validate_taxonomy(tmp_path / "mini-ext.yaml")
    assert problems[0].file == str(tmp_path / "mini-ext.yaml") and "has problems" in problems[0].message
    assert any(p.file == str(base) and "color '#00ff0'" in p.message for p in problems)


def test_base_found_by_id_in_another_file_of_the_folder_and_version_checked(tmp_path: Path) -> None:
    _write(tmp_path, "renamed-base.yaml", (DATA / "mini.yaml").read_text())
    ext = _write(tmp_path, "ext.yaml", (DATA / "mini-ext.yaml").read_text())
    assert validate_taxonomy(ext) == []
    _write(tmp_path, "ext.yaml", ext.read_text().replace("mini@0.1.0", "mini@0.2.0"))
    (problem,) = validate_taxonomy(ext)
    assert "no taxonomy mini version 0.2.0" in problem.message and "found version 0.1.0 in" in problem.message


def test_base_named_after_its_id_but_broken_is_reported_not_skipped(tmp_path: Path) -> None:
    _write(tmp_path, "mini.yaml", "id: !!python/name:os.system mini\n")
    _write(tmp_path, "mini-ext.yaml", (DATA / "mini-ext.yaml").read_text())
    problems = validate_taxonomy(tmp_path / "mini-ext.yaml")
    assert any(p.file == str(tmp_path / "mini.yaml") and "tag !!python/name:os.system" in p.message for p in problems)
