"""Dataset documents: TrainingDML-AI against its JSON Schema, Croissant with mlcroissant or bundled checks.

A TrainingDML-AI document is validated against the bundled OGC JSON
encoding 1.0 (``AI_EOTrainingDataset``; the 1.1 schema's top level cannot be
satisfied by any document, see README). A Croissant file is checked by
``mlcroissant`` when it is installed (``pip install "geosample[croissant]"``):
its own validator, then the first record of every record set is read, so the
files and columns it names are really there. Without it, the bundled checks
below look at the JSON-LD: the context, the required dataset properties, the
distribution (files there, sha256s matching, globs matching files) and the
record sets (fields typed, sources naming a distribution and a column the
Parquet files have, references to existing fields).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from geosample._paths import is_inside
from geosample.validate._schemas import TDML_BASE, describe, validator
from geosample.validate.tables import sha256_of

__all__ = ["check_croissant", "check_tdml", "croissant_checker", "find_croissant", "find_tdml"]

Report = Callable[[str, str], None]
TDML_SCHEMA = TDML_BASE.format(version="1.0") + "ai_eoTrainingDataset.json"
CROISSANT_1_1 = "http://mlcommons.org/croissant/1.1"
CROISSANT_CONTEXT_TERMS = (
    "cr", "sc", "dct", "rai", "citeAs", "column", "conformsTo", "data", "dataType", "examples", "extract", "field",
    "fileProperty", "fileObject", "fileSet", "format", "includes", "isArray", "jsonPath", "key", "recordSet",
    "references", "regex", "source", "transform",
)  # fmt: skip
DATASET_REQUIRED = ("name", "description", "license", "url", "conformsTo", "distribution", "recordSet")
MAX_ERRORS = 5


def _rel(path: Path, ds: Path) -> str:
    try:
        return path.resolve().relative_to(ds.resolve()).as_posix()
    except ValueError:
        return str(path)


def find_tdml(ds: Path) -> list[Path]:
    """``DS/trainingdml.json`` and every TrainingDML-AI export under ``DS/export``."""
    found = [ds / "trainingdml.json"] if (ds / "trainingdml.json").is_file() else []
    if (ds / "export").is_dir():
        for pattern in ("*/trainingdml.json", "*/*/trainingdml.json"):
            found += sorted((ds / "export").glob(pattern))
    return found


def check_tdml(path: Path, ds: Path, report: Report) -> None:
    """Validate one TrainingDML-AI document against the OGC 1.0 JSON Schema."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        report(_rel(path, ds), f"is not valid JSON ({exc.__class__.__name__}); re-run 'geosample label'")
        return
    errors = sorted(validator(TDML_SCHEMA).iter_errors(document), key=lambda e: list(e.absolute_path))
    for error in errors[:MAX_ERRORS]:
        report(_rel(path, ds), f"TrainingDML-AI 1.0 schema: {describe(error)}")


def find_croissant(ds: Path) -> list[Path]:
    """Every ``croissant.json`` under ``DS/export``."""
    if not (ds / "export").is_dir():
        return []
    return sorted((ds / "export").glob("*/croissant.json")) + sorted((ds / "export").glob("*/*/croissant.json"))


def croissant_checker() -> str:
    """Which checker :func:`check_croissant` uses: ``mlcroissant <version>`` or ``bundled JSON-LD checks``."""
    if importlib.util.find_spec("mlcroissant") is None:
        return "bundled JSON-LD checks"
    from importlib.metadata import version

    return f"mlcroissant {version('mlcroissant')}"


def check_croissant(path: Path, ds: Path, report: Report, hashes: dict[Path, str]) -> None:
    """Check one Croissant file: mlcroissant when installed, else the bundled JSON-LD checks."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        report(_rel(path, ds), f"is not valid JSON ({exc.__class__.__name__}); re-run 'geosample export'")
        return
    if not isinstance(document, dict):
        report(_rel(path, ds), "is not a JSON-LD object")
        return
    if importlib.util.find_spec("mlcroissant") is not None:
        for message in _mlcroissant_problems(path):
            report(_rel(path, ds), message)
    else:
        for message in itertools.islice(_bundled_problems(path, document, hashes), MAX_ERRORS * 4):
            report(_rel(path, ds), message)


def _mlcroissant_problems(path: Path) -> list[str]:
    """The errors of mlcroissant's validator, then any failure to read the first record of a record set."""
    import logging

    import mlcroissant as mlc

    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # its info and warnings are not problems
    try:
        try:
            dataset = mlc.Dataset(jsonld=path)
        except mlc.ValidationError as exc:
            return [f"mlcroissant: {' '.join(line.split())}" for line in str(exc).splitlines() if line.strip()][:10]
        problems = []
        for record_set in dataset.metadata.record_sets:
            try:
                next(iter(dataset.records(record_set.uuid)), None)
            except Exception as exc:  # noqa: BLE001 - any failure to read is the file's problem
                problems.append(f"mlcroissant cannot read record set {record_set.name!r}: {_one_line(exc)}")
        return problems
    finally:
        absl.setLevel(level)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text[:200]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _ref(value: Any) -> str | None:
    return value.get("@id") if isinstance(value, dict) else value if isinstance(value, str) else None


def _bundled_problems(path: Path, doc: dict[str, Any], hashes: dict[Path, str]) -> Iterator[str]:
    """The JSON-LD checks used when mlcroissant is not installed."""
    context = doc.get("@context")
    if not isinstance(context, dict):
        yield "has no JSON-LD @context object"
        context = {}
    if missing := [t for t in CROISSANT_CONTEXT_TERMS if t not in context]:
        yield f"@context lacks the Croissant terms {', '.join(missing)}"
    if doc.get("@type") not in ("sc:Dataset", "Dataset", "https://schema.org/Dataset"):
        yield f"@type is {doc.get('@type')!r}, not sc:Dataset"
    for prop in DATASET_REQUIRED:
        if prop not in doc:
            yield f"has no {prop}, which Croissant 1.1 requires of a dataset"
    if CROISSANT_1_1 not in _as_list(doc.get("conformsTo")):
        yield f"does not declare conformsTo {CROISSANT_1_1}"
    folder = path.parent
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    ids: dict[str, dict[str, Any]] = {}
    for entry in _as_list(doc.get("distribution")):
        uid = entry.get("@id")
        kind = entry.get("@type")
        if not uid or kind not in ("cr:FileObject", "cr:FileSet"):
            yield f"distribution entry {uid or entry.get('name')!r} needs an @id and @type cr:FileObject or cr:FileSet"
            continue
        ids[uid] = entry
        if not entry.get("encodingFormat"):
            yield f"distribution {uid!r} has no encodingFormat"
        if kind == "cr:FileObject":
            url = entry.get("contentUrl")
            local = folder / str(url) if isinstance(url, str) and "://" not in url else None
            if local is not None and not is_inside(folder, local):
                yield f"distribution {uid!r}: contentUrl {url!r} lies outside the Croissant file's folder"
            elif local is not None and not local.is_file():
                yield f"distribution {uid!r}: contentUrl {url!r} does not exist"
            elif local is not None and entry.get("sha256") and sha256_of(local, hashes) != entry["sha256"]:
                yield f"distribution {uid!r}: {url} does not match its sha256"
        else:
            patterns = [str(p) for p in _as_list(entry.get("includes"))]
            if not patterns:
                yield f"distribution {uid!r} (a FileSet) has no includes"
            elif not any(fnmatch.fnmatch(f, p) for f in files for p in patterns):
                yield f"distribution {uid!r}: includes {patterns} match no file"
    fields = {f.get("@id"): f for rs in _as_list(doc.get("recordSet")) for f in _as_list(rs.get("field"))}
    for record_set in _as_list(doc.get("recordSet")):
        yield from _record_set_problems(record_set, ids, fields, folder, files)


def _record_set_problems(
    record_set: dict[str, Any], ids: dict[str, dict[str, Any]], fields: dict[str, Any], folder: Path, files: list[str]
) -> Iterator[str]:
    rid = record_set.get("@id")
    if record_set.get("@type") != "cr:RecordSet" or not rid:
        yield f"record set {rid or record_set.get('name')!r} needs an @id and @type cr:RecordSet"
        return
    has_data = "data" in record_set
    for field in _as_list(record_set.get("field")):
        fid = field.get("@id")
        if field.get("@type") != "cr:Field" or not fid or not str(fid).startswith(f"{rid}/"):
            yield f"record set {rid!r}: field {fid!r} needs @type cr:Field and an @id under {rid}/"
            continue
        if not field.get("dataType"):
            yield f"field {fid!r} has no dataType"
        reference = _ref((field.get("references") or {}).get("field")) if field.get("references") else None
        if field.get("references") and reference not in fields:
            yield f"field {fid!r} references {reference!r}, which is no field"
        source = field.get("source")
        if source is None:
            if not has_data:
                yield f"field {fid!r} has neither a source nor inline data in its record set"
            continue
        target = _ref(source.get("fileSet")) or _ref(source.get("fileObject"))
        if target not in ids:
            yield f"field {fid!r}: source names {target!r}, which is not in the distribution"
            continue
        column = (source.get("extract") or {}).get("column")
        if column is not None:
            yield from _column_problems(fid, column, ids[target], folder, files)


def _column_problems(fid: str, column: str, entry: dict[str, Any], folder: Path, files: list[str]) -> Iterator[str]:
    """The column a field extracts is in the first Parquet file of its distribution."""
    import pyarrow.parquet as pq

    if entry.get("encodingFormat") not in ("application/x-parquet", "application/vnd.apache.parquet"):
        return
    patterns = [str(p) for p in _as_list(entry.get("includes"))] or [str(entry.get("contentUrl"))]
    first = next((f for f in sorted(files) if any(fnmatch.fnmatch(f, p) for p in patterns)), None)
    if first is not None and column not in pq.read_schema(folder / first).names:
        yield f"field {fid!r} extracts column {column!r}, which {first} does not have"
