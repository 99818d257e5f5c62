"""Export only chips that are what fetch wrote: each file's sha256 is checked against ``chips.parquet``.

Paths were checked when the manifest was read (only files under ``DS/chips``,
see :func:`geosample._plan_checks.check_chip_table`); here every chip is
hashed before any export file is written. A chip changed or corrupted since
fetch stops the export with one line naming it and the repair
(``geosample fetch DS``), or, with ``skip_invalid``, is left out and counted.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from geosample._plan_checks import chip_file_faults
from geosample.errors import DatasetError
from geosample.export._content import DatasetContent

__all__ = ["verify_chips"]

HASH_SLICE = 4096
"""Chips hashed per call of :func:`chip_file_faults`."""


def verify_chips(content: DatasetContent, *, skip_invalid: bool = False) -> tuple[DatasetContent, list[str]]:
    """``content`` with only the chips whose file matches its recorded sha256, and the paths left out.

    Raises:
        DatasetError: A chip does not match (and ``skip_invalid`` is false); the message names it and the fix.
    """
    chips = content.chips
    if chips is None or chips.empty:
        return content, []
    faults = [  # in slices: a thread pool's map makes a future for every item it is given at once
        fault
        for start in range(0, len(chips), HASH_SLICE)
        for fault in chip_file_faults(content.ds, chips.iloc[start : start + HASH_SLICE])
    ]
    good = np.array([fault is None for fault in faults], dtype=bool)
    if good.all():
        return content, []
    bad = [str(chips["path"].iloc[i]) for i in np.flatnonzero(~good)]
    if not skip_invalid:
        first = int(np.flatnonzero(~good)[0])
        more = f" ({len(bad) - 1} more chip(s) too)" if len(bad) > 1 else ""
        raise DatasetError(
            f"chip {content.ds / bad[0]} (sample {chips['sample_id'].iloc[first]}) {faults[first]}{more}: changed or "
            f"corrupted since fetch; run 'geosample fetch {content.ds}' to fetch it again, or export with "
            "--skip-invalid to leave such chips out"
        )
    kept = chips[good].reset_index(drop=True)
    return dataclasses.replace(content, chips=kept), bad
