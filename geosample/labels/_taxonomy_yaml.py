"""Read a taxonomy file as plain data, keeping the line of every key and item.

PyYAML's ``safe_load`` drops line numbers and silently keeps the last of two
equal keys. Here the file is only *composed* (parsed into nodes, never
constructed into objects) with the safe loader, and the node tree is turned
into plain values by hand: any tag other than the plain-data ones (``!!python/…``,
``!!binary``, custom tags) is refused, duplicate keys and recursive aliases are
problems, and mappings and lists remember where each entry was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from geosample._config_file import check_node_budget
from geosample.errors import GeosampleError

_CORE = "tag:yaml.org,2002:"
#: Tags that yield plain data. Timestamps are kept as the text written.
_SCALAR_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_SEQ_TAG = f"{_CORE}seq"
_MAP_TAG = f"{_CORE}map"
_MERGE_TAG = f"{_CORE}merge"


@dataclass(frozen=True)
class Problem:
    """One problem in a taxonomy file; ``line`` is 1-based (0: the whole file)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class LineMap(dict):
    """A YAML mapping that knows its own line and the line of each key."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        """Line of ``key`` if present, else of the mapping itself."""
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A YAML sequence that knows its own line and the line of each item."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


def read_yaml(text: str, file: str) -> tuple[Any, list[Problem]]:
    """Plain data (``LineMap``/``LineList``/scalars) from YAML text, and the problems met."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        return None, [Problem(file, line, f"not valid YAML: {exc.problem or exc.context}; fix the syntax")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, 0, f"not valid YAML ({exc}); fix the syntax")]
    if node is None:
        return None, []
    try:  # a few hundred bytes of nested aliases must not expand without bound
        check_node_budget(node, "the file", allow_cycles=True)
    except GeosampleError as exc:
        return None, [Problem(file, 0, str(exc))]
    reader = _NodeReader(file)
    return reader.value(node), reader.problems


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


class _NodeReader:
    """Turns a composed node tree into plain values, collecting problems."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()
        self._done: dict[int, Any] = {}
        self._open: set[int] = set()

    def _problem(self, node: Node, message: str) -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, message))

    def value(self, node: Node) -> Any:
        key = id(node)
        if key in self._done:  # an alias of a node already read: share its value
            return self._done[key]
        if key in self._open:
            self._problem(node, "recursive alias (an anchor used inside itself); write the data out")
            return None
        self._open.add(key)
        try:
            result = self._read(node)
        finally:
            self._open.discard(key)
        self._done[key] = result
        return result

    def _read(self, node: Node) -> Any:
        if isinstance(node, ScalarNode) and node.tag in _SCALAR_TAGS:
            if node.tag.endswith("timestamp"):
                return node.value
            try:
                return self._constructor.construct_object(node)
            except ConstructorError as exc:
                self._problem(node, f"cannot read {node.value!r}: {exc.problem}")
                return None
        if isinstance(node, SequenceNode) and node.tag == _SEQ_TAG:
            items = LineList(node.start_mark.line + 1)
            for child in node.value:
                items.append(self.value(child))
                items.item_lines.append(child.start_mark.line + 1)
            return items
        if isinstance(node, MappingNode) and node.tag == _MAP_TAG:
            return self._mapping(node)
        self._problem(
            node,
            f"tag {_short_tag(node.tag)} is not allowed: taxonomy files hold plain data "
            "(text, numbers, lists and mappings); remove the tag",
        )
        return None

    def _mapping(self, node: MappingNode) -> LineMap:
        mapping = LineMap(node.start_mark.line + 1)
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self._problem(key_node, "merge keys (<<) are not supported; write the keys out")
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(key_node, "a key must be a plain value, not a list or mapping")
                continue
            key = self.value(key_node)
            if key in mapping.key_lines:
                self._problem(
                    key_node,
                    f"duplicate key {key!r} (first at line {mapping.key_lines[key]}); "
                    "YAML would silently keep only the last one: remove or rename one",
                )
                continue
            mapping.key_lines[key] = line
            mapping[key] = self.value(value_node)
        return mapping
