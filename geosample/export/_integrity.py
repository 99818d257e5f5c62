"""Export only chips that are what fetch wrote: each file's sha256 is checked against ``chips.parquet``.

Paths were checked when the manifest was read (only files under ``DS/chips``,
see :func:`geosample._plan_checks.check_chip_table`); here every chip is
hashed before any export file is written. A chip changed or corrupted since
fetch stops the export with one line naming it and the repair
(``geosample fetch DS``), or, with ``skip_invalid``, is left out and counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from geosample._dataset import CHIPS_FILE
from geosample.errors import DatasetError
from geosample.export._content import DatasetContent

__all__ = ["verify_chips"]

HASH_THREADS = 4


def _digest(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def verify_chips(content: DatasetContent, *, skip_invalid: bool = False) -> tuple[DatasetContent, list[str]]:
    """``content`` with only the chips whose file matches its recorded sha256, and the paths left out.

    Raises:
        DatasetError: A chip does not match (and ``skip_invalid`` is false); the message names it and the fix.
    """
    chips = content.chips
    if chips is None or chips.empty:
        return content, []
    recorded = chips["sha256"].tolist() if "sha256" in chips.columns else [None] * len(chips)
    paths = [content.ds / str(p) for p in chips["path"]]
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        digests = list(pool.map(_digest, paths))
    good = np.array(
        [isinstance(want, str) and got == want for got, want in zip(digests, recorded, strict=True)], dtype=bool
    )
    if good.all():
        return content, []
    bad = [str(chips["path"].iloc[i]) for i in np.flatnonzero(~good)]
    if not skip_invalid:
        first = int(np.flatnonzero(~good)[0])
        why = "cannot be read" if digests[first] is None else "does not match the sha256 recorded in " + CHIPS_FILE
        if not isinstance(recorded[first], str):
            why = f"has no sha256 in {CHIPS_FILE}"
        more = f" ({len(bad) - 1} more chip(s) too)" if len(bad) > 1 else ""
        raise DatasetError(
            f"chip {paths[first]} (sample {chips['sample_id'].iloc[first]}) {why}{more}: changed or corrupted "
            f"since fetch; run 'geosample fetch {content.ds}' to fetch it again, or export with --skip-invalid "
            "to leave such chips out"
        )
    kept = chips[good].reset_index(drop=True)
    return dataclasses.replace(content, chips=kept), bad
