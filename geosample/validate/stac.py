"""Static STAC catalogs on disk: every object against the bundled schemas, links, one root, asset files.

For a catalog folder: each STAC JSON file (item, catalog, collection) is
validated against the STAC 1.1.0 core schema of its type and the bundled
schema of every extension it declares (one it declares but geosample does
not bundle is noted as not checked, never fetched). Then the links: a
``self`` link must be absent or absolute (a relative catalog is written as
pystac's ``SELF_CONTAINED``), relative ``root``/``parent``/``child``/
``item``/``collection`` links must lead to files, every object's ``root``
must be the folder's ``catalog.json``, and following ``child`` and ``item``
links from it must reach every STAC object in the folder. Relative asset
hrefs must lead to files inside the dataset folder (one outside is reported,
never read), with the sha256 of ``file:checksum`` when given.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from geosample._paths import is_inside
from geosample.validate._schemas import bundled_urls, describe, stac_core_url, validator
from geosample.validate.tables import sha256_of

__all__ = ["check_catalog", "find_catalogs"]

STAC_TYPES = ("Feature", "Catalog", "Collection")
TREE_RELS = ("child", "item")
LOCAL_RELS = ("root", "parent", "child", "item", "collection")
MAX_SCHEMA_ERRORS = 3

Report = Callable[[str, str], None]


def find_catalogs(ds: Path) -> list[Path]:
    """The catalog folders of a dataset: ``DS/stac`` and every STAC export under ``DS/export``."""
    roots = [ds / "stac"] if (ds / "stac" / "catalog.json").is_file() else []
    export = ds / "export"
    if export.is_dir():
        roots += sorted(p.parent for p in export.glob("*/catalog.json"))
        roots += sorted(p.parent for p in export.glob("*/*/catalog.json"))
    return roots


def _is_url(href: str) -> bool:
    scheme = urlparse(href).scheme
    return len(scheme) > 1  # not a Windows drive letter


def check_catalog(folder: Path, ds: Path, report: Report, hashes: dict[Path, str], notes: set[str]) -> dict[str, int]:
    """Check one catalog folder; returns the number of objects per STAC type."""
    objects: dict[Path, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            report(_rel(path, ds), f"is not valid JSON ({exc.__class__.__name__})")
            continue
        if isinstance(document, dict) and "stac_version" in document:
            objects[path.resolve()] = document
    counts = dict.fromkeys(STAC_TYPES, 0)
    for path, document in objects.items():
        kind = document.get("type")
        if kind not in STAC_TYPES:
            report(_rel(path, ds), f"has STAC type {kind!r}; a STAC object is a Feature, Catalog or Collection")
            continue
        counts[kind] += 1
        _schemas(path, document, kind, ds, report, notes)
        _links(path, document, folder, ds, report)
        _assets(path, document, ds, report, hashes)
    _reachable(folder, objects, ds, report)
    return counts


def _rel(path: Path, ds: Path) -> str:
    try:
        return path.resolve().relative_to(ds.resolve()).as_posix()
    except ValueError:
        return str(path)


def _schemas(path: Path, document: dict[str, Any], kind: str, ds: Path, report: Report, notes: set[str]) -> None:
    if document.get("stac_version") != "1.1.0":
        report(_rel(path, ds), f"is STAC {document.get('stac_version')!r}; geosample writes and checks STAC 1.1.0")
        return
    urls = [("STAC 1.1.0 " + kind.lower().replace("feature", "item"), stac_core_url(kind))]
    for url in document.get("stac_extensions") or []:
        if not isinstance(url, str) or url.rstrip("#") not in bundled_urls():
            notes.add(f"extension {url} is not bundled with geosample: not checked")
            continue
        urls.append((url.rstrip("#").split("/")[-3] + " extension", url))
    for name, url in urls:
        errors = sorted(validator(url).iter_errors(document), key=lambda e: list(e.absolute_path))
        for error in errors[:MAX_SCHEMA_ERRORS]:
            report(_rel(path, ds), f"{name} schema: {describe(error)}")
        if len(errors) > MAX_SCHEMA_ERRORS:
            report(_rel(path, ds), f"{name} schema: {len(errors) - MAX_SCHEMA_ERRORS} more errors")


def _links(path: Path, document: dict[str, Any], folder: Path, ds: Path, report: Report) -> None:
    root = (folder / "catalog.json").resolve()
    for link in document.get("links") or []:
        rel, href = link.get("rel"), link.get("href")
        if not isinstance(href, str):
            continue
        if rel == "self" and not _is_url(href) and not Path(href).is_absolute():
            report(_rel(path, ds), f"has a relative self link {href!r}; STAC requires an absolute self href "
                                   "(leave it out in a relative catalog)")  # fmt: skip
            continue
        if rel not in LOCAL_RELS or _is_url(href):
            continue
        target = (path.parent / href).resolve()
        if not target.is_file():
            report(_rel(path, ds), f"links {rel} {href!r}, which does not exist")
        elif rel == "root" and target != root:
            report(_rel(path, ds), f"has root {href!r}, not the catalog's root {_rel(root, ds)}")
    if path != root and not any(link.get("rel") == "root" for link in document.get("links") or []):
        report(_rel(path, ds), f"has no root link; link the catalog's root {_rel(root, ds)}")


def _assets(path: Path, document: dict[str, Any], ds: Path, report: Report, hashes: dict[Path, str]) -> None:
    for key, asset in (document.get("assets") or {}).items():
        href = asset.get("href") if isinstance(asset, dict) else None
        if not isinstance(href, str) or _is_url(href):
            continue
        target = path.parent / posixpath.normpath(href) if not Path(href).is_absolute() else Path(href)
        if not is_inside(ds, target):  # never read: a dataset's assets are its own files
            report(_rel(path, ds), f"asset {key!r} points at {href!r}, outside the dataset folder")
            continue
        if not target.is_file():
            report(_rel(path, ds), f"asset {key!r} points at {href!r}, which does not exist")
            continue
        checksum = asset.get("file:checksum")
        if isinstance(checksum, str) and checksum.startswith("1220") and sha256_of(target, hashes) != checksum[4:]:
            report(_rel(path, ds), f"asset {key!r} ({href}) does not match its file:checksum")


def _reachable(folder: Path, objects: dict[Path, dict[str, Any]], ds: Path, report: Report) -> None:
    """Every STAC object of the folder is reached from its ``catalog.json`` through child and item links."""
    root = (folder / "catalog.json").resolve()
    if root not in objects:
        report(_rel(root, ds), "is missing or is not a STAC catalog; the folder has no root")
        return
    seen, todo = {root}, [root]
    while todo:
        path = todo.pop()
        for link in objects[path].get("links") or []:
            href = link.get("href")
            if link.get("rel") in TREE_RELS and isinstance(href, str) and not _is_url(href):
                target = (path.parent / href).resolve()
                if target in objects and target not in seen:
                    seen.add(target)
                    todo.append(target)
    orphans = sorted(set(objects) - seen)
    if orphans:
        report(_rel(orphans[0], ds), f"is not reached from {_rel(root, ds)} through child/item links "
                                     f"({len(orphans)} such object(s)); the catalog must have one root")  # fmt: skip
