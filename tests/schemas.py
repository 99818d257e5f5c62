"""Validate documents against the official JSON Schemas in tests/data/schemas, offline.

The schemas' ``$id``/``$ref`` are absolute URLs; a ``referencing`` registry maps
them to the local copies, so nothing is fetched.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent / "data" / "schemas"
TDML_BASE = "https://raw.githubusercontent.com/opengeospatial/TrainingDML-AI_SWG/main/schemas/{version}/json_schema/"


@cache
def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.rglob("*.json"):
        contents = json.loads(path.read_text(encoding="utf-8"))
        uri = contents.get("$id")
        if not uri and path.parent.name.startswith("trainingdml-ai-"):
            uri = TDML_BASE.format(version=path.parent.name.split("-")[-1]) + path.name
        if uri:
            resource = Resource.from_contents(contents)
            resources.append((uri.rstrip("#"), resource))
            resources.append((uri, resource))
    return Registry().with_resources(resources)


def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def validate(document: dict[str, Any], schema: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` is valid.

    ``schema`` is a path under tests/data/schemas, e.g. ``stac-label-extension.json``
    or ``trainingdml-ai-1.1/ai_eoTrainingDataset.json``.
    """
    contents = _schema(schema)
    cls = jsonschema.validators.validator_for(contents)
    cls(contents, registry=_registry(), format_checker=cls.FORMAT_CHECKER).validate(document)


def stac_extension_schema(url: str) -> str:
    """The local schema file for a STAC extension URL listed in an item's ``stac_extensions``."""
    for name in ("stac-label-extension.json", "stac-ml-aoi-extension.json"):
        if _schema(name)["$id"].rstrip("#") == url.rstrip("#"):
            return name
    raise KeyError(f"no local copy of {url}")
