"""Train/validate/test splits that are spatially disjoint and stratified like the plan.

Samples are grouped by their H3 parent cell at ``res`` (all samples of a site
share their cell, so a site never straddles two splits), and whole parent
cells are dealt to the splits. Each cell counts for the stratum most of its
samples belong to; within every stratum the cells are dealt so that each
split's share of the stratum's samples comes as close to its fraction as
whole cells allow, while the same rule over all strata so far keeps the
totals on target when strata are too small to split (a stratum of one cell).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from geosample.errors import ConfigError, DatasetError

__all__ = [
    "DEFAULT_SPLIT_RES",
    "SPLITS",
    "dataset_splits",
    "h3_parents",
    "parse_fractions",
    "split_cells",
    "split_samples",
]

SPLITS = ("train", "validate", "test")
"""Split names, as the STAC ``ml-aoi`` extension spells them."""
DEFAULT_SPLIT_RES = 5
"""Parent resolution used when the plan did not record its own (event plans)."""

_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(0xF) << _RES_SHIFT


def parse_fractions(value: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or three numbers) as the train, validate and test fractions; they must sum to 1."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"--split {value!r} must be three numbers, train,validate,test, e.g. 0.8,0.1,0.1") from None
    if len(numbers) != 3:
        raise ConfigError(f"--split {value!r} must be three numbers, train,validate,test, e.g. 0.8,0.1,0.1")
    if any(not np.isfinite(n) or n < 0 for n in numbers) or abs(sum(numbers) - 1.0) > 1e-6:
        raise ConfigError(f"--split {value!r} must be three fractions of at least 0 that sum to 1, e.g. 0.8,0.1,0.1")
    return numbers  # type: ignore[return-value]


def h3_parents(cells: Sequence[str] | np.ndarray, res: int) -> np.ndarray:
    """The parent cell at ``res`` of every H3 cell (hex strings), as uint64 indexes.

    A parent index is the cell's index with the resolution field set to
    ``res`` and the digits below it set to 7 (the H3 index layout).
    """
    index = np.fromiter((int(c, 16) for c in cells), dtype=np.uint64, count=len(cells))
    own = (index & _RES_MASK) >> _RES_SHIFT
    if (own < res).any():
        raise DatasetError(
            f"the plan's H3 cells are as coarse as resolution {int(own.min())}; "
            f"choose a split resolution of at most {int(own.min())}"
        )
    unused = np.uint64((1 << (3 * (15 - res))) - 1)
    return (index & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT) | unused


def split_cells(
    cell_stratum: np.ndarray, cell_size: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Deal cells to splits: the index in ``SPLITS`` of every cell.

    Args:
        cell_stratum: The stratum (any label) of every cell.
        cell_size: The number of samples in every cell.
        fractions: The wanted share of samples per split.
        rng: Orders the strata and the cells of each stratum (ties in size).

    Each cell goes to the split furthest below its share, measured in samples
    within the cell's stratum plus the same over every cell dealt so far.
    Strata come in random order, their cells largest first.
    """
    share = np.asarray(fractions, dtype=np.float64)
    open_ = share > 0
    out = np.empty(len(cell_stratum), dtype=np.int64)
    strata, inverse = np.unique(cell_stratum, return_inverse=True)
    total_count = np.zeros(share.size)
    total_n = 0.0
    for s in rng.permutation(strata.size):
        members = np.flatnonzero(inverse == s)
        members = members[rng.permutation(members.size)]
        members = members[np.argsort(-cell_size[members], kind="stable")]
        count = np.zeros(share.size)
        n = 0.0
        for cell in members:
            size = float(cell_size[cell])
            need = share * (n + size) - count + share * (total_n + size) - total_count
            choice = int(np.argmax(np.where(open_, need, -np.inf)))
            out[cell] = choice
            count[choice] += size
            total_count[choice] += size
            n += size
            total_n += size
    return out


def split_samples(
    samples: pd.DataFrame,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    res: int = DEFAULT_SPLIT_RES,
    seed: int = 0,
) -> pd.Series:
    """The split (``train``, ``validate`` or ``test``) of every sample of a plan.

    Args:
        samples: Plan rows with ``site_id``, ``h3`` and ``stratum``.
        fractions: Shares of train, validate and test samples; they sum to 1.
        res: H3 resolution of the cells that are kept whole (at most the samples').
        seed: Same plan, fractions, resolution and seed give the same splits.

    Returns:
        The split of each sample, indexed like ``samples``.
    """
    fractions = parse_fractions(fractions)
    if not 0 <= res <= 15:
        raise ConfigError(f"--split-res {res} is out of range; H3 resolutions run from 0 to 15")
    if samples.empty:
        return pd.Series([], index=samples.index, dtype=object, name="split")
    first = samples.drop_duplicates("site_id")
    site_parent = pd.Series(h3_parents(first["h3"].to_numpy(), res), index=first["site_id"].to_numpy())
    parent = site_parent.loc[samples["site_id"].to_numpy()].to_numpy()
    cells, cell_of_sample = np.unique(parent, return_inverse=True)
    size = np.bincount(cell_of_sample, minlength=cells.size)
    # Each cell's stratum: the one most of its samples have (the first in name order on a tie).
    votes = pd.DataFrame({"cell": cell_of_sample, "stratum": samples["stratum"].astype(str).to_numpy()})
    counts = votes.groupby(["cell", "stratum"]).size().reset_index(name="n")
    counts = counts.sort_values(["cell", "n", "stratum"], ascending=[True, False, True], kind="stable")
    cell_stratum = counts.drop_duplicates("cell").set_index("cell")["stratum"].reindex(range(cells.size)).to_numpy()
    choice = split_cells(cell_stratum, size, fractions, np.random.default_rng(seed))
    return pd.Series(np.asarray(SPLITS, dtype=object)[choice[cell_of_sample]], index=samples.index, name="split")


def dataset_splits(ds: str | Path) -> pd.Series:
    """The split of every sample of dataset ``ds`` as ``geosample export`` deals it, indexed by ``sample_id``.

    With the split settings (fractions, resolution, seed) of the last export recorded in the dataset's
    ``geosample.yaml``, or export's defaults when none is; values are :data:`SPLITS`. For evaluate and
    finetune, so that they see the very samples an export puts in each split: the one place outside
    :func:`geosample.export.export` that computes a dataset's splits.
    """
    import dataclasses
    import json

    from geosample._dataset import read_config, read_plan
    from geosample.export._content import BALANCE_FILE, DatasetContent
    from geosample.export._export import ExportConfig, resolve_split_res

    ds = Path(ds)
    config = read_config(ds)
    known = {f.name for f in dataclasses.fields(ExportConfig)} - {"format"}
    recorded = [v for v in (config.get("export") or {}).values() if isinstance(v, dict) and "split" in v]
    cfg = ExportConfig.from_mapping({k: v for k, v in (recorded[-1] if recorded else {}).items() if k in known})
    plan = read_plan(ds).sort_values("sample_id", kind="stable").reset_index(drop=True)
    balance_path = ds / BALANCE_FILE
    balance = json.loads(balance_path.read_text(encoding="utf-8")) if balance_path.is_file() else None
    # Only the plan and its recorded resolutions decide the splits; the other stages' tables are not read.
    content = DatasetContent(ds=ds, plan=plan, dimensions=(), labels=None, chips=None, captions=None,
                             change_captions=None, taxonomy=None, balance=balance, config=config)  # fmt: skip
    split = split_samples(plan, cfg.split, res=resolve_split_res(content, cfg.split_res), seed=cfg.seed)
    return pd.Series(split.to_numpy(), index=pd.Index(plan["sample_id"], name="sample_id"), name="split")
