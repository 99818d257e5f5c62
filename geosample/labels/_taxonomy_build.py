"""Check a taxonomy file and build a :class:`Taxonomy` from it, reporting every problem with its line.

One :class:`_Builder` reads one file: the header, the class tree, classes it
attaches under a base taxonomy's classes (``extend:``), declared schemes and
the crosswalks. An extension's base is found and built first (recursively), and
the extension's classes and crosswalks are merged into a copy of it.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from geosample.labels._schemes import BUILTIN_SCHEMES, NODATA, OSM_SCHEME
from geosample.labels._taxonomy_yaml import LineList, LineMap, Problem, read_yaml
from geosample.labels.taxonomy import TaxonClass, Taxonomy, builtin_taxonomies

TOP_KEYS = (
    "id",
    "version",
    "title",
    "description",
    "language",
    "levels",
    "extends",
    "classes",
    "extend",
    "schemes",
    "mappings",
)
CLASS_KEYS = ("code", "name", "definition", "lcml", "corine", "color", "children")
ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]*")
CODE_RE = re.compile(r"[A-Za-z0-9]+(\.[A-Za-z0-9]+)*")
SCHEME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
LCML_RE = re.compile(r"LC_[A-Za-z]+Element")
COLOR_RE = re.compile(r"#[0-9a-fA-F]{6}")
LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
OSM_KEY_RE = re.compile(r"[A-Za-z0-9_:.-]+(=[^=\s][^=]*)?")
MAX_EXTENDS_DEPTH = 8


@dataclasses.dataclass
class Built:
    """The outcome of building one file: the taxonomy (None if it has problems), its problems, files read."""

    taxonomy: Taxonomy | None
    problems: list[Problem]
    files: list[Path]


def build(path: Path, *, stack: tuple[Path, ...] = ()) -> Built:
    """Check ``path`` (and the taxonomy it extends) and build it when there are no problems."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Built(None, [Problem(file, 0, "file does not exist; check the path")], [])
    except IsADirectoryError:
        return Built(None, [Problem(file, 0, "is a folder; give a taxonomy YAML file")], [])
    except UnicodeDecodeError:
        return Built(None, [Problem(file, 0, "is not UTF-8 text; save it as UTF-8")], [])
    except OSError as exc:
        return Built(None, [Problem(file, 0, f"cannot be read ({exc.strerror})")], [])
    data, problems = read_yaml(text, file)
    if data is None and not problems:
        problems.append(Problem(file, 0, "is empty; see taxonomy/README.md for the format"))
    elif data is not None and not isinstance(data, LineMap):
        problems.append(Problem(file, 1, "must be a mapping with id, version, title, levels and classes"))
    if not isinstance(data, LineMap):
        return Built(None, problems, [path])
    builder = _Builder(path, data, problems, (*stack, path.resolve()))
    taxonomy = builder.run()
    return Built(taxonomy if not problems else None, problems, [path, *builder.base_files])


def _close(word: str, choices: list[str]) -> str:
    matches = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(m) for m in matches)}?)" if matches else ""


class _Builder:
    """Checks and builds one taxonomy file; problems are appended to a shared list."""

    def __init__(self, path: Path, data: LineMap, problems: list[Problem], stack: tuple[Path, ...]) -> None:
        self.path = path
        self.file = str(path)
        self.data = data
        self.problems = problems
        self.stack = stack
        self.base: Taxonomy | None = None
        self.base_files: list[Path] = []
        self.levels: tuple[str, ...] = ()
        self.classes: dict[str, TaxonClass] = {}
        self.class_lines: dict[str, int] = {}
        self.attached: dict[str, list[str]] = {}
        self.roots: list[str] = []
        self.id = ""
        # A value the YAML reader refused (a tag, a recursive alias) reads as None: one problem per line is enough.
        self.quiet_lines = {p.line for p in problems}
        self.base_missing = False

    def problem(self, line: int, message: str) -> None:
        if line not in self.quiet_lines:
            self.problems.append(Problem(self.file, line, message))

    # -- header -------------------------------------------------------------------------------

    def run(self) -> Taxonomy | None:
        data = self.data
        for key in data:
            if key not in TOP_KEYS:
                self.problem(data.line_of(key), f"unknown key {key!r}{_close(str(key), list(TOP_KEYS))}")
        self.id = self.text(data, "id", pattern=ID_RE, hint="lower-case letters, digits, '.', '_', '-'") or ""
        version = self.text(data, "version", pattern=VERSION_RE, hint='e.g. version: "1.0.0"') or ""
        title = self.text(data, "title") or ""
        description = self.text(data, "description", required=False) or ""
        language = self.text(data, "language", required=False, pattern=LANGUAGE_RE, hint="a BCP 47 tag") or "en"
        extends = self.text(data, "extends", required=False)
        if extends is not None:
            self.base = self.resolve_base(extends)
            # Without its base, an extension's parents and targets can't be checked: say nothing of them.
            self.base_missing = self.base is None
        self.levels = self.read_levels()
        roots = data.get("classes")
        if roots is None and extends is None:
            self.problem(data.line, "missing key 'classes' (the class tree)")
        elif roots is not None:
            for item, line in self.items(data, "classes"):
                code = self.read_class(item, line, parent=None, depth=1)
                if code is not None:
                    self.roots.append(code)
        if "extend" in data:
            self.read_extend()
        if extends is not None and "classes" not in data and "extend" not in data:
            self.problem(data.line, "an extension needs 'classes' (new branches) or 'extend' (classes under base ones)")
        self.check_leaves()
        classes = self.merged_classes()
        schemes = self.read_schemes()
        mappings = self.read_mappings(classes, schemes)
        if self.problems:
            return None
        sources = dict(self.base.sources) if self.base else {}
        sources[self.id] = version
        return Taxonomy(
            id=self.id,
            version=version,
            title=title,
            description=description,
            language=language,
            levels=self.levels,
            extends=extends,
            classes=classes,
            mappings=mappings,
            schemes=schemes,
            sources=sources,
            path=self.path,
        )

    def text(
        self, mapping: LineMap, key: str, *, required: bool = True, pattern: re.Pattern | None = None, hint: str = ""
    ) -> str | None:
        """A non-empty text value of ``mapping[key]``, or None with a problem."""
        if key not in mapping:
            if required:
                self.problem(mapping.line, f"missing key {key!r}")
            return None
        value = mapping[key]
        line = mapping.line_of(key)
        if not isinstance(value, str):
            shown = "nothing" if value is None else f"{type(value).__name__} {value!r}"
            self.problem(line, f'{key} must be text, not {shown}; quote it: {key}: "..."')
            return None
        value = value.strip()
        if not value:
            self.problem(line, f"{key} is empty")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(line, f"{key} {value!r} is not valid ({hint})")
            return None
        return value

    def items(self, mapping: LineMap, key: str) -> Iterator[tuple[Any, int]]:
        """The items of a list value with their lines; a problem if it is not a list."""
        value = mapping[key]
        if not isinstance(value, LineList):
            self.problem(mapping.line_of(key), f"{key} must be a list")
            return
        yield from zip(value, value.item_lines, strict=True)

    def read_levels(self) -> tuple[str, ...]:
        data = self.data
        base_levels = self.base.levels if self.base else None
        if "levels" not in data:
            if base_levels is None and "extends" not in data:
                self.problem(data.line, "missing key 'levels' (level names, e.g. levels: [l1, l2, l3])")
            return base_levels or ()
        levels = data["levels"]
        line = data.line_of("levels")
        if not isinstance(levels, LineList) or not levels or not all(isinstance(v, str) and v for v in levels):
            self.problem(line, "levels must be a non-empty list of level names, e.g. [l1, l2, l3]")
            return base_levels or ()
        if len(set(levels)) != len(levels):
            self.problem(line, "levels must be different names")
        if base_levels is not None and tuple(levels) != base_levels:
            self.problem(line, f"levels {list(levels)} differ from the base taxonomy's {list(base_levels)}")
            return base_levels
        return tuple(levels)

    # -- extends ------------------------------------------------------------------------------

    def resolve_base(self, ref: str) -> Taxonomy | None:
        line = self.data.line_of("extends")
        base_id, sep, version = ref.partition("@")
        if not sep or not ID_RE.fullmatch(base_id) or not VERSION_RE.fullmatch(version):
            self.problem(line, f"extends {ref!r} must be '<id>@<version>', e.g. geosample-lulc@1.0.0")
            return None
        if base_id == self.id:
            self.problem(line, f"extends {ref}: an extension needs an id of its own, not its base's")
            return None
        if len(self.stack) > MAX_EXTENDS_DEPTH:
            self.problem(line, f"extends {ref}: more than {MAX_EXTENDS_DEPTH} taxonomies extend each other")
            return None
        found, seen = _find_taxonomy(base_id, version, self.path.parent, exclude=self.path)
        if found is None:
            where = f"; found {', '.join(seen)}" if seen else ""
            self.problem(
                line,
                f"extends {ref}: no taxonomy {base_id} version {version} in {self.path.parent} "
                f"or built in{where}; put the base file beside this one or fix the reference",
            )
            return None
        if found.resolve() in self.stack:
            self.problem(line, f"extends {ref}: circular — {found} extends this file (directly or not)")
            return None
        built = build(found, stack=self.stack)
        self.base_files = built.files
        if built.taxonomy is None:
            self.problems.extend(p for p in built.problems if p not in self.problems)
            self.problem(line, f"extends {ref}: the base taxonomy {found} has problems (listed); fix them first")
        return built.taxonomy

    # -- classes ------------------------------------------------------------------------------

    def read_class(self, item: Any, line: int, *, parent: TaxonClass | None, depth: int) -> str | None:
        """Check one class and its subtree; register them and return the code (None if unusable)."""
        if not isinstance(item, LineMap):
            self.problem(line, "a class must be a mapping with code, name and definition")
            return None
        for key in item:
            if key not in CLASS_KEYS:
                self.problem(item.line_of(key), f"unknown class key {key!r}{_close(str(key), list(CLASS_KEYS))}")
        code = self.text(item, "code", pattern=CODE_RE, hint='dotted letters or digits, e.g. "1.2.3"')
        name = self.text(item, "name") or ""
        definition = self.text(item, "definition") or ""
        if code is None:
            return None
        code_line = item.line_of("code")
        level = self.levels[depth - 1] if depth <= len(self.levels) else f"level {depth}"
        if depth > len(self.levels) and self.levels:
            self.problem(code_line, f"class {code} is at depth {depth}, below the last level {self.levels[-1]}")
        expected = f"{parent.code}." if parent else ""
        if parent and not code.startswith(expected):
            self.problem(code_line, f"code {code!r} must start with its parent's code {expected!r}")
        elif code.count(".") + 1 != depth:
            self.problem(code_line, f"code {code!r} has {code.count('.') + 1} parts but the class is at depth {depth}")
        first = None
        if code in self.class_lines:
            first = f"line {self.class_lines[code]}"
        elif self.base is not None and code in self.base.classes:
            first = f"base taxonomy {self.base.key}"
        if first is not None:
            self.problem(code_line, f"duplicate code {code!r} (first at {first}); codes must be unique")
            return None
        self.class_lines[code] = code_line
        children: list[str] = []
        taxon = TaxonClass(
            code=code,
            name=name,
            definition=definition,
            level=level,
            depth=depth,
            parent=parent.code if parent else None,
            children=(),
            lcml=self.read_lcml(item),
            corine=self.read_corine(item),
            color=self.read_color(item),
            source=self.id,
        )
        self.classes[code] = taxon
        if "children" in item and item["children"] is not None:
            for child, child_line in self.items(item, "children"):
                child_code = self.read_class(child, child_line, parent=taxon, depth=depth + 1)
                if child_code is not None:
                    children.append(child_code)
        self.classes[code] = dataclasses.replace(taxon, children=tuple(children))
        return code

    def read_lcml(self, item: LineMap) -> tuple[str, ...]:
        return self.text_list(item, "lcml", LCML_RE, "an ISO 19144-2 element name such as LC_TreesElement")

    def read_corine(self, item: LineMap) -> tuple[str, ...]:
        codes = self.text_list(item, "corine", None, "", numbers=True)
        for code in codes:
            if code not in BUILTIN_SCHEMES["corine"]:
                close = _close(code, list(BUILTIN_SCHEMES["corine"]))
                self.problem(item.line_of("corine"), f"{code!r} is not a CORINE Land Cover level-3 code{close}")
        return codes

    def text_list(
        self, item: LineMap, key: str, pattern: re.Pattern | None, hint: str, *, numbers: bool = False
    ) -> tuple[str, ...]:
        if key not in item or item[key] is None:
            return ()
        values = item[key]
        line = item.line_of(key)
        if not isinstance(values, LineList):
            example = '"311"' if numbers else "LC_TreesElement"
            self.problem(line, f"{key} must be a list, e.g. {key}: [{example}]")
            return ()
        out = []
        for value, value_line in zip(values, values.item_lines, strict=True):
            if numbers and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
                self.problem(value_line, f"{key} entry {value!r} is not valid ({hint or 'text'})")
                continue
            out.append(value)
        return tuple(out)

    def read_color(self, item: LineMap) -> str | None:
        if "color" not in item or item["color"] is None:
            return None
        color = item["color"]
        if not isinstance(color, str) or not COLOR_RE.fullmatch(color):
            self.problem(item.line_of("color"), f'color {color!r} is not valid; write it as "#rrggbb"')
            return None
        return color.lower()

    def read_extend(self) -> None:
        """Classes attached under existing classes (``extend: [{parent, children}]``)."""
        for entry, line in self.items(self.data, "extend"):
            if not isinstance(entry, LineMap) or "parent" not in entry or "children" not in entry:
                self.problem(line, "each extend entry needs 'parent' (an existing code) and 'children' (classes)")
                continue
            for key in entry:
                if key not in ("parent", "children"):
                    self.problem(entry.line_of(key), f"unknown extend key {key!r}; use parent and children")
            parent_code = self.text(entry, "parent")
            if parent_code is None:
                continue
            parent = self.classes.get(parent_code) or (self.base.classes.get(parent_code) if self.base else None)
            if parent is None and self.base_missing:
                continue
            if parent is None:
                known = list(self.classes) + (list(self.base.classes) if self.base else [])
                self.problem(
                    entry.line_of("parent"), f"extend parent {parent_code!r} is not a class{_close(parent_code, known)}"
                )
                continue
            for child, child_line in self.items(entry, "children"):
                code = self.read_class(child, child_line, parent=parent, depth=parent.depth + 1)
                if code is not None:
                    self.attached.setdefault(parent.code, []).append(code)

    def check_leaves(self) -> None:
        if not self.levels:
            return
        for code, taxon in self.classes.items():
            if not taxon.children and taxon.code not in self.attached and taxon.depth < len(self.levels):
                self.problem(
                    self.class_lines[code],
                    f"class {code} ({taxon.name}) is a leaf at {taxon.level}; every leaf must be at "
                    f"{self.levels[-1]}: add children down to {self.levels[-1]}",
                )

    def merged_classes(self) -> dict[str, TaxonClass]:
        """All classes in tree order: the base's, with attached children, then this file's branches."""
        pool = dict(self.base.classes) if self.base else {}
        for parent, codes in self.attached.items():
            if parent in pool:
                pool[parent] = dataclasses.replace(pool[parent], children=pool[parent].children + tuple(codes))
        pool.update(self.classes)
        for parent, codes in self.attached.items():
            if parent in self.classes:
                pool[parent] = dataclasses.replace(pool[parent], children=pool[parent].children + tuple(codes))
        roots = [c for c in (self.base.classes if self.base else {}) if pool[c].parent is None] + self.roots
        ordered: dict[str, TaxonClass] = {}

        def visit(code: str) -> None:
            ordered[code] = pool[code]
            for child in pool[code].children:
                visit(child)

        for root in roots:
            visit(root)
        return ordered

    # -- schemes and crosswalks ---------------------------------------------------------------

    def read_schemes(self) -> dict[str, dict[str, str]]:
        """Declared schemes (name -> {source value -> label}), merged over the base's."""
        schemes = {name: dict(values) for name, values in (self.base.schemes.items() if self.base else ())}
        if "schemes" not in self.data:
            return schemes
        declared = self.data["schemes"]
        if not isinstance(declared, LineMap):
            self.problem(self.data.line_of("schemes"), "schemes must be a mapping of scheme name -> {title, values}")
            return schemes
        for name, spec in declared.items():
            line = declared.line_of(name)
            if not isinstance(name, str) or not SCHEME_RE.fullmatch(name):
                self.problem(line, f"scheme name {name!r} must be lower-case letters, digits, '-' or '_'")
                continue
            if name in BUILTIN_SCHEMES or name == OSM_SCHEME or name in schemes:
                self.problem(line, f"scheme {name!r} is already defined (built in or by the base); don't declare it")
                continue
            if not isinstance(spec, LineMap) or "values" not in spec:
                self.problem(line, f"scheme {name!r} needs 'values' (a list, or a mapping value -> label)")
                continue
            for key in spec:
                if key not in ("title", "values"):
                    self.problem(spec.line_of(key), f"unknown scheme key {key!r}; use title and values")
            schemes[name] = self.scheme_values(name, spec)
        return schemes

    def scheme_values(self, name: str, spec: LineMap) -> dict[str, str]:
        raw = spec["values"]
        line = spec.line_of("values")
        if isinstance(raw, LineList):
            pairs = [(v, "", ln) for v, ln in zip(raw, raw.item_lines, strict=True)]
        elif isinstance(raw, LineMap):
            pairs = [(k, v, raw.line_of(k)) for k, v in raw.items()]
        else:
            self.problem(line, f"values of scheme {name!r} must be a list or a mapping value -> label")
            return {}
        values: dict[str, str] = {}
        for value, label, value_line in pairs:
            key = self.source_key(value, value_line, name)
            if key is None:
                continue
            if key in values:
                self.problem(value_line, f"value {key!r} is listed twice in scheme {name!r}")
            values[key] = label if isinstance(label, str) else str(label or "")
        return values

    def source_key(self, value: Any, line: int, scheme: str) -> str | None:
        """A crosswalk source value as text (integers are written as numbers in YAML)."""
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.problem(line, f"source value {value!r} of scheme {scheme!r} must be an integer or text")
            return None
        key = str(value).strip()
        if not key:
            self.problem(line, f"empty source value in scheme {scheme!r}")
            return None
        return key

    def read_mappings(
        self, classes: dict[str, TaxonClass], schemes: dict[str, dict[str, str]]
    ) -> dict[str, dict[str, str]]:
        merged = {name: dict(m) for name, m in (self.base.mappings.items() if self.base else ())}
        raw = self.data.get("mappings")
        own: LineMap = raw if isinstance(raw, LineMap) else LineMap(self.data.line_of("mappings"))
        attempted: dict[str, set[str]] = {}
        if raw is not None and not isinstance(raw, LineMap):
            self.problem(self.data.line_of("mappings"), "mappings must be a mapping of scheme -> {source: code}")
        for scheme, entries in own.items():
            line = own.line_of(scheme)
            if not isinstance(scheme, str) or not SCHEME_RE.fullmatch(scheme):
                self.problem(line, f"scheme name {scheme!r} must be lower-case letters, digits, '-' or '_'")
                continue
            if not isinstance(entries, LineMap):
                self.problem(line, f"mapping {scheme!r} must be a mapping of source value -> class code")
                continue
            target = merged.setdefault(scheme, {})
            seen: dict[str, int] = {}
            attempted[scheme] = set()
            for value, code in entries.items():
                value_line = entries.line_of(value)
                key = self.source_key(value, value_line, scheme)
                if key is None:
                    continue
                if key in seen:
                    self.problem(value_line, f"source value {key!r} is mapped twice (first at line {seen[key]})")
                    continue
                seen[key] = value_line
                attempted[scheme].add(key)  # a bad target is one problem, not also an unmapped value
                if self.check_source(scheme, key, value_line, schemes) and self.check_target(
                    scheme, key, code, value_line, classes
                ):
                    target[key] = code
        for scheme, mapping in merged.items():
            self.check_complete(scheme, mapping.keys() | attempted.get(scheme, set()), own, schemes)
        for name in schemes:
            if name not in merged:
                self.problem(self.declared_line(name), f"scheme {name!r} is declared but has no mapping")
        return merged

    def declared_line(self, name: str) -> int:
        declared = self.data.get("schemes")
        return declared.line_of(name) if isinstance(declared, LineMap) else self.data.line

    def check_source(self, scheme: str, key: str, line: int, schemes: dict[str, dict[str, str]]) -> bool:
        known = BUILTIN_SCHEMES.get(scheme) or schemes.get(scheme)
        if known is not None and key not in known:
            if key in NODATA.get(scheme, ()):
                self.problem(line, f"{key} is the no-data value of {scheme}; it must not be mapped — remove it")
            else:
                self.problem(line, f"{key!r} is not a value of scheme {scheme!r}{_close(key, list(known))}")
            return False
        if scheme == OSM_SCHEME and not OSM_KEY_RE.fullmatch(key):
            self.problem(line, f"OSM source {key!r} must be 'key=value' or a bare 'key'")
            return False
        return True

    def check_target(self, scheme: str, key: str, code: Any, line: int, classes: dict[str, TaxonClass]) -> bool:
        if not isinstance(code, str):
            self.problem(line, f'{scheme} {key} -> {code!r}: the target must be a class code in quotes, e.g. "1.2"')
            return False
        if code not in classes:
            if self.base_missing:
                return False
            self.problem(line, f"{scheme} {key} -> {code!r}: no class has that code{_close(code, list(classes))}")
            return False
        return True

    def check_complete(self, scheme: str, mapped: set[str], own: LineMap, schemes: dict[str, dict[str, str]]) -> None:
        known = BUILTIN_SCHEMES.get(scheme) or schemes.get(scheme)
        if known is None or (scheme not in own and self.base is not None):
            return
        missing = [value for value in known if value not in mapped]
        if missing:
            shown = ", ".join(missing[:12]) + (f", … ({len(missing)} in all)" if len(missing) > 12 else "")
            self.problem(own.line_of(scheme), f"scheme {scheme!r} leaves source values unmapped: {shown}")


def _find_taxonomy(taxonomy_id: str, version: str, folder: Path, *, exclude: Path) -> tuple[Path | None, list[str]]:
    """The file of ``taxonomy_id@version``: in ``folder`` first, then among the built-in ones."""
    seen: list[str] = []
    named = [folder / f"{taxonomy_id}.yaml", folder / f"{taxonomy_id}.yml"]
    others = sorted(p for p in [*folder.glob("*.yaml"), *folder.glob("*.yml")] if p not in named)
    builtin = builtin_taxonomies().get(taxonomy_id)
    for candidate in [*named, *others, *([builtin] if builtin else [])]:
        if not candidate.is_file() or candidate.resolve() == exclude.resolve():
            continue
        header = _header(candidate)
        if not header and candidate in named:
            return candidate, seen  # named after the id but unreadable: building it reports why
        if header.get("id") != taxonomy_id:
            continue
        if str(header.get("version")) == version:
            return candidate, seen
        seen.append(f"version {header.get('version')} in {candidate}")
    return None, seen


def _header(path: Path) -> dict[str, Any]:
    """The top-level keys of a YAML file, or {} if it cannot be read (plain safe_load: no lines needed)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
