"""What a dataset folder holds: its samples and whichever later stages have run, checked to agree."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from geosample._dataset import (
    CAPTIONS_FILE,
    CHIPS_FILE,
    LABELS_FILE,
    read_config,
    read_reserve,
    read_samples,
    read_table,
)
from geosample.errors import DatasetError

if TYPE_CHECKING:
    import geopandas as gpd

    from geosample.labels.taxonomy import Taxonomy

__all__ = ["CAPTION_COLUMNS_READ", "DatasetContent", "load_content"]

BALANCE_FILE = "report/balance.json"
_CHIP_COLUMNS = ("sample_id", "status", "collection", "path")
_CAPTION_COLUMNS = ("sample_id", "caption_index", "caption")
CAPTION_COLUMNS_READ = (*_CAPTION_COLUMNS, "kind", "backend", "model", "prompt_sha256", "evidence")
"""The columns of ``captions.parquet`` that exports and stats use; the others (tags, usage, cache hits, ...) stay
in the file: at five captions a sample they would be most of the memory the content takes."""
_LABEL_COLUMNS = ("sample_id", "l1", "l1_dominant")


@dataclasses.dataclass(frozen=True)
class DatasetContent:
    """The stages' tables of one dataset folder; a stage that has not run is ``None``."""

    ds: Path
    plan: gpd.GeoDataFrame
    """The dataset's samples (:func:`geosample._dataset.read_samples`: the achieved ``samples.parquet`` after
    fetch, else ``plan.parquet``), sorted by ``sample_id``."""
    dimensions: tuple[str, ...]
    """The plan's stratification dimensions (columns of ``plan``)."""
    labels: pd.DataFrame | None
    chips: pd.DataFrame | None
    """The ``ok`` rows of ``chips.parquet`` (one per sample and collection)."""
    captions: pd.DataFrame | None
    """``captions.parquet``'s scene captions (``kind`` ``scene``), sorted by sample and ``caption_index``; only the
    columns of :data:`CAPTION_COLUMNS_READ`."""
    change_captions: pd.DataFrame | None
    """Its change captions of before/after pairs and revisits (``kind`` ``change``), if any."""
    taxonomy: Taxonomy | None
    """The taxonomy the labels were made with."""
    balance: dict[str, Any] | None
    """``report/balance.json``, the plan's balance report."""
    config: dict[str, Any]
    """Every section of ``geosample.yaml``."""

    @functools.cached_property
    def name(self) -> str:
        """The dataset's name: its folder's."""
        return self.ds.resolve().name

    @property
    def collections(self) -> list[str]:
        """The STAC collections chips were fetched from."""
        return [] if self.chips is None else sorted(self.chips["collection"].dropna().unique())

    @functools.cached_property
    def levels(self) -> list[str]:
        """The taxonomy levels labelled (``l1``, ``l2``, ...)."""
        if self.labels is None:
            return []
        return sorted((c for c in self.labels.columns if c[:1] == "l" and c[1:].isdigit()), key=lambda c: int(c[1:]))

    @property
    def parent_res(self) -> int | None:
        """The H3 resolution of the plan's spacing cells, when the plan recorded one."""
        for resolutions in ((self.balance or {}).get("resolutions"), self.config.get("plan", {}).get("resolutions")):
            if isinstance(resolutions, dict) and isinstance(resolutions.get("parent"), int):
                return int(resolutions["parent"])
        return None

    def missing(self) -> list[str]:
        """The stages whose files are absent, each with the command that makes them."""
        out = []
        if self.chips is None:
            out.append(f"chips (run 'geosample fetch {self.ds}')")
        elif self.chips.empty:
            out.append(f"chips (none fetched yet; run 'geosample fetch {self.ds} --retry-failed')")
        if self.labels is None:
            out.append(f"labels (run 'geosample label {self.ds}')")
        if self.captions is None:
            out.append(f"captions (run 'geosample caption {self.ds}')")
        return out


def load_content(ds: str | Path) -> DatasetContent:
    """Read every stage's table of ``DS`` and check that they describe the plan's samples.

    The tables are kept to the dataset's samples: rows of plan samples that fetch could not get (and
    replaced by reserve sites) stay in their files but out of the content.

    Raises:
        DatasetError: There is no plan, a table cannot be read or lacks its
            columns, names samples the plan does not have, or a chip file is gone.
    """
    ds = Path(ds)
    plan = read_samples(ds).sort_values("sample_id", kind="stable").reset_index(drop=True)
    config = read_config(ds)
    reserve = read_reserve(ds)
    known = set(plan["sample_id"]) | _plan_ids(ds) | (set(reserve["sample_id"]) if reserve is not None else set())
    mine = set(plan["sample_id"])
    labels = _mine(_checked(ds, LABELS_FILE, "geosample label", _LABEL_COLUMNS, known), mine)
    chips = _mine(_checked(ds, CHIPS_FILE, "geosample fetch", _CHIP_COLUMNS, known), mine)
    if chips is not None:
        chips = chips[chips["status"] == "ok"].sort_values(["sample_id", "collection"], kind="stable")
        chips = chips.reset_index(drop=True)
        gone = [p for p in chips["path"] if not (ds / p).is_file()]
        if gone:
            raise DatasetError(
                f"{len(gone)} chip file(s) listed in {ds / CHIPS_FILE} are missing, e.g. {ds / gone[0]}; "
                f"run 'geosample fetch {ds}' again to restore them"
            )
    captions = _checked(ds, CAPTIONS_FILE, "geosample caption", _CAPTION_COLUMNS, known, read=CAPTION_COLUMNS_READ)
    captions = _mine(captions, mine)
    if captions is not None:
        if "kind" in captions:  # a sample's own captions; change captions of before/after pairs go separately
            is_change = captions["kind"] == "change"
            change = captions[is_change].reset_index(drop=True)
            if is_change.any():  # no copy of the scene captions when there is nothing to take out
                captions = captions[~is_change]
        else:
            change = None
        order = ["sample_id", "caption_index"]
        if not pd.MultiIndex.from_frame(captions[order]).is_monotonic_increasing:  # caption writes them sorted
            captions = captions.sort_values(order, kind="stable")
        captions = captions.reset_index(drop=True)
    else:
        change = None
    balance_path = ds / BALANCE_FILE
    balance = json.loads(balance_path.read_text(encoding="utf-8")) if balance_path.is_file() else None
    return DatasetContent(
        ds=ds,
        plan=plan,
        dimensions=_dimensions(plan, balance, config),
        labels=labels,
        chips=chips,
        captions=captions,
        change_captions=change,
        taxonomy=_taxonomy(labels, config),
        balance=balance,
        config=config,
    )


def _plan_ids(ds: Path) -> set[str]:
    """The plan's own sample ids (the content's samples may be the achieved set, a subset with reserves)."""
    import pyarrow.parquet as pq

    return {str(v) for v in pq.read_table(ds / "plan.parquet", columns=["sample_id"]).column(0).to_pylist()}


def _mine(table: pd.DataFrame | None, samples: set[str]) -> pd.DataFrame | None:
    """The rows of the dataset's samples."""
    if table is None:
        return None
    mine = table["sample_id"].isin(samples)
    return table if mine.all() else table[mine].reset_index(drop=True)  # no copy when every row is the dataset's


def _checked(
    ds: Path, name: str, command: str, columns: tuple[str, ...], known: set[str], *, read: tuple[str, ...] | None = None
) -> pd.DataFrame | None:
    """A stage's table, refused when it lacks ``columns`` or names samples the plan does not have.

    ``read``: read only these of its columns (those it has), not all of them.
    """
    table = read_table(ds, name, hint=f"{command} {ds}", columns=read)
    if table is None:
        return None
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise DatasetError(f"{ds / name} has no column {', '.join(absent)}; re-run '{command} {ds}'")
    strangers = set(table["sample_id"]) - known
    if strangers:
        raise DatasetError(
            f"{ds / name} names {len(strangers)} sample(s) that plan.parquet does not have "
            f"(e.g. {sorted(strangers)[0]}): it was made for another plan; re-run '{command} {ds} --overwrite'"
        )
    return table


def _dimensions(plan: pd.DataFrame, balance: dict[str, Any] | None, config: dict[str, Any]) -> tuple[str, ...]:
    """The stratification dimensions: the balance report's, else the plan settings' ``strata``."""
    if balance and isinstance(balance.get("dimensions"), dict):
        names = list(balance["dimensions"])
    else:
        names = [str(s).split("=", 1)[0] for s in config.get("plan", {}).get("strata") or []]
    return tuple(n for n in names if n in plan.columns)


def _taxonomy(labels: pd.DataFrame | None, config: dict[str, Any]) -> Taxonomy | None:
    """The labels' taxonomy: the file the label stage used, else the shipped one named in the labels."""
    if labels is None or labels.empty:
        return None
    from geosample.labels.taxonomy import load_taxonomy

    spec = config.get("label", {}).get("taxonomy")
    if spec and Path(str(spec)).is_file():
        return load_taxonomy(str(spec))
    return load_taxonomy(str(labels["taxonomy"].iloc[0]))
