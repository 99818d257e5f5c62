"""The bundled JSON Schemas (``geosample/data/schemas``) in a ``referencing`` registry: nothing is fetched.

Each file is registered under the URL it is published at, so the absolute
``$ref``s between schemas (a STAC item's to GeoJSON, the projection
extension's to PROJJSON, TrainingDML-AI's between its own files) resolve to
the local copies. ``PROVENANCE.md`` beside the schemas says where each came
from and under which licence.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

__all__ = ["STAC_VERSION", "bundled_urls", "describe", "registry", "schema", "stac_core_url", "validator"]

STAC_VERSION = "1.1.0"
STAC_BASE = "https://schemas.stacspec.org/v1.1.0"
TDML_BASE = "https://raw.githubusercontent.com/opengeospatial/TrainingDML-AI_SWG/main/schemas/{version}/json_schema/"
GEOPARQUET_URL = "https://geoparquet.org/schema.json"  # the schema has no $id; a name for it in the registry
_CORE_FOLDER = {"catalog.json": "catalog-spec", "collection.json": "collection-spec"}


def _root() -> Traversable:
    return resources.files("geosample") / "data" / "schemas"


def stac_core_url(kind: str) -> str:
    """The URL of the STAC 1.1.0 core schema of an object ``type`` (``Feature``, ``Catalog``, ``Collection``)."""
    name = {"Feature": "item.json", "Catalog": "catalog.json", "Collection": "collection.json"}[kind]
    return f"{STAC_BASE}/{_CORE_FOLDER.get(name, 'item-spec')}/json-schema/{name}"


@functools.cache
def bundled_urls() -> dict[str, str]:
    """Every bundled schema: published URL → its path under ``geosample/data/schemas``."""
    root = _root()
    urls: dict[str, str] = {}
    for entry in (root / "stac-spec" / "v1.1.0").iterdir():
        if entry.name.endswith(".json"):
            folder = _CORE_FOLDER.get(entry.name, "item-spec")
            urls[f"{STAC_BASE}/{folder}/json-schema/{entry.name}"] = f"stac-spec/v1.1.0/{entry.name}"
    for entry in (root / "geojson").iterdir():
        if entry.name.endswith(".json"):
            urls[f"https://geojson.org/schema/{entry.name}"] = f"geojson/{entry.name}"
    for entry in (root / "stac-extensions").iterdir():
        if entry.name.endswith(".json"):
            name, version = entry.name[: -len(".json")].rsplit("-", 1)
            urls[f"https://stac-extensions.github.io/{name}/{version}/schema.json"] = f"stac-extensions/{entry.name}"
    urls["https://proj.org/schemas/v0.7/projjson.schema.json"] = "projjson/v0.7.json"
    for version in ("1.0", "1.1"):
        for entry in (root / f"trainingdml-ai-{version}").iterdir():
            if entry.name.endswith(".json"):
                urls[TDML_BASE.format(version=version) + entry.name] = f"trainingdml-ai-{version}/{entry.name}"
    urls[GEOPARQUET_URL] = "geoparquet/schema.json"
    return urls


@functools.cache
def schema(url: str) -> dict[str, Any]:
    """The bundled schema published at ``url`` (a trailing ``#`` is ignored); KeyError if none is bundled."""
    path = bundled_urls()[url.rstrip("#")]
    return json.loads((_root() / path).read_text(encoding="utf-8"))


@functools.cache
def registry() -> Registry:
    """Every bundled schema under its URL, plus the JSON Schema meta-schemas (from ``jsonschema``)."""
    from jsonschema_specifications import REGISTRY as META

    pairs = []
    for url in bundled_urls():
        resource = Resource.from_contents(schema(url), default_specification=DRAFT7)
        pairs += [(url, resource), (url + "#", resource)]
    return Registry().with_resources(pairs).combine(META)


@functools.cache
def validator(url: str) -> jsonschema.protocols.Validator:
    """A validator of the bundled schema at ``url`` that resolves every ``$ref`` locally (formats checked)."""
    contents = schema(url)
    cls = jsonschema.validators.validator_for(contents, default=jsonschema.Draft7Validator)
    return cls(contents, registry=registry(), format_checker=cls.FORMAT_CHECKER)


def describe(error: jsonschema.ValidationError, limit: int = 200) -> str:
    """A schema error as ``at PATH: MESSAGE``: the most relevant sub-error of a oneOf/anyOf, values abridged."""
    if error.context:
        error = jsonschema.exceptions.best_match(error.context)
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    message = " ".join(error.message.split())
    shown = repr(error.instance)
    if len(shown) > 60 and message.startswith(shown):
        message = "the value" + message[len(shown) :]
    if len(message) > limit:
        message = message[: limit - 3] + "..."
    return f"at {where}: {message}"
