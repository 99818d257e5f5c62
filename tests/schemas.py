"""Validate documents against the official JSON Schemas bundled with geosample, offline.

The schemas live in ``geosample/data/schemas`` (provenance and licences in
``PROVENANCE.md`` there); the package's ``referencing`` registry maps their
published URLs to the local copies, so nothing is fetched.
"""

from __future__ import annotations

from typing import Any

from geosample.validate._schemas import TDML_BASE, bundled_urls, validator

# Names the tests used when the schemas lived in tests/data/schemas.
_ALIASES = {
    "stac-label-extension.json": "https://stac-extensions.github.io/label/v1.0.1/schema.json",
    "stac-ml-aoi-extension.json": "https://stac-extensions.github.io/ml-aoi/v0.2.0/schema.json",
    "geoparquet-schema.json": "https://geoparquet.org/schema.json",
}


def _url(name: str) -> str:
    if name in _ALIASES:
        return _ALIASES[name]
    if name.startswith("trainingdml-ai-"):
        folder, file = name.split("/", 1)
        return TDML_BASE.format(version=folder.rsplit("-", 1)[-1]) + file
    return name


def validate(document: dict[str, Any], schema: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` is valid.

    ``schema`` is a bundled schema's URL, or one of the old names, e.g.
    ``stac-label-extension.json`` or ``trainingdml-ai-1.1/ai_eoTrainingDataset.json``.
    """
    validator(_url(schema)).validate(document)


def stac_extension_schema(url: str) -> str:
    """The bundled schema for a STAC extension URL listed in an item's ``stac_extensions``."""
    if url.rstrip("#") not in bundled_urls():
        raise KeyError(f"no local copy of {url}")
    return url.rstrip("#")
