"""``geosample validate``: everything in a dataset folder checked offline, one line per problem.

Tables against DESIGN.md's columns and types (:mod:`.tables`), every chip's
sha256, every STAC object under ``DS/stac`` and in STAC exports against the
bundled STAC 1.1 and extension schemas with its links (:mod:`.stac`),
TrainingDML-AI documents against the OGC schema and Croissant files with
mlcroissant or the bundled checks (:mod:`.documents`). Nothing is written
and nothing is fetched.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from geosample.errors import DatasetError
from geosample.validate import documents, stac, tables

__all__ = ["Problem", "ValidationReport", "validate"]


@dataclasses.dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one file."""

    path: str
    """The file, relative to the dataset folder (or as given when outside it)."""
    message: str
    """What is wrong and what to do."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate` checked and found."""

    ds: Path
    problems: list[Problem]
    """Every problem, file by file, in the order found."""
    checked: dict[str, int]
    """What was checked: rows per table, ``chips``, ``stac objects``, ``trainingdml``, ``croissant``."""
    notes: list[str]
    """What could not be checked, and with which tools."""

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def summary(self) -> str:
        """One line: what was checked, and how many problems."""
        parts = [f"{n} {what}" for what, n in self.checked.items()]
        verdict = "no problems" if self.ok else f"{len(self.problems)} problem(s)"
        return f"{self.ds}: checked {', '.join(parts) or 'nothing'}: {verdict}"


def validate(ds: str | Path) -> ValidationReport:
    """Check every file of dataset ``ds`` that geosample writes, offline.

    Raises:
        DatasetError: ``ds`` is not a folder.
    """
    ds = Path(ds)
    if not ds.is_dir():
        raise DatasetError(f"dataset folder {ds} does not exist; give the folder 'geosample plan -o' made")
    problems: list[Problem] = []
    notes: set[str] = set()
    hashes: dict[Path, str] = {}

    def report(path: str, message: str) -> None:
        problems.append(Problem(path, message))

    rows = tables.check_tables(ds, report, hashes)
    checked = {f"{name} rows": n for name, n in rows.items()}
    if "chips.parquet" in rows:
        checked["chip files"] = len(hashes)
    objects = 0
    for folder in stac.find_catalogs(ds):
        objects += sum(stac.check_catalog(folder, ds, report, hashes, notes).values())
    if objects:
        checked["STAC objects"] = objects
    tdml = documents.find_tdml(ds)
    for path in tdml:
        documents.check_tdml(path, ds, report)
    if tdml:
        checked["TrainingDML-AI documents"] = len(tdml)
    croissant = documents.find_croissant(ds)
    for path in croissant:
        documents.check_croissant(path, ds, report, hashes)
    if croissant:
        checked["Croissant files"] = len(croissant)
        notes.add(f"Croissant checked with {documents.croissant_checker()}")
    return ValidationReport(ds=ds, problems=problems, checked=checked, notes=sorted(notes))
