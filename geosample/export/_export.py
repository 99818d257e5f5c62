"""``geosample.export``: the dataset in the format its users read, with buffered spatial splits.

Every format is written into a staging folder beside the destination and
swapped into place at the end, so a failure leaves the previous export (or
nothing) behind. The settings are recorded in the ``export`` section of
``DS/geosample.yaml``, one entry per format, and the split report (what
:mod:`geosample.export.splits` guarantees, measured on the dataset) in
``DS/report/splits.json``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from geosample import __version__
from geosample._dataset import atomic_path, io_errors_in, read_config, remove_stale, write_section, writes_dataset
from geosample.errors import ConfigError, DatasetError
from geosample.export._content import load_content
from geosample.export._integrity import verify_chips
from geosample.export._records import record_table
from geosample.export.splits import SPLITS, Splits, check_settings, make_splits, parse_fractions

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMATS", "SPLIT_REPORT", "ExportConfig", "ExportResult", "export", "splits_of"]

SPLIT_REPORT = "report/splits.json"
"""The last export's split report, in the dataset folder."""

FORMATS = ("webdataset", "parquet", "stac", "tdml", "gpkg", "croissant")
_WRITERS = {
    "webdataset": "geosample.export.webdataset:write_webdataset",
    "parquet": "geosample.export.parquet:write_parquet",
    "stac": "geosample.export.stac:write_stac",
    "tdml": "geosample.export.tdml:write_tdml",
    "gpkg": "geosample.export.gpkg:write_gpkg",
    "croissant": "geosample.export.croissant:write_croissant",
}
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Everything that determines an export."""

    format: str = "parquet"
    """``webdataset``, ``parquet``, ``stac``, ``tdml``, ``gpkg`` or ``croissant``."""
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Shares of samples in the train, validation and test splits."""
    split_block_km: float | None = None
    """Size of the spatial blocks dealt to splits (H3 cells about this wide); ``None``: chosen from the data."""
    split_res: int | None = None
    """The blocks' H3 resolution, instead of ``split_block_km``."""
    split_buffer_m: float | None = None
    """No chip of one split within this distance of another split's chip; ``None``: one (the largest) chip size."""
    seed: int = 0
    """Seed of the split and of the record order in shards."""
    shard_size: float = 100.0
    """Target size of a WebDataset shard or Parquet file, in MB."""

    def __post_init__(self) -> None:
        """Validate every field; raise ConfigError naming the fix."""
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format!r} is not one of {', '.join(FORMATS)}")
        object.__setattr__(self, "split", parse_fractions(self.split))
        check_settings(self.split_block_km, self.split_res, self.split_buffer_m)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"--seed {self.seed!r} must be an integer")
        if not isinstance(self.shard_size, int | float) or not 0 < float(self.shard_size) <= 1_000_000:
            raise ConfigError(f"--shard-size {self.shard_size!r} must be a positive number of MB, e.g. 100")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ExportConfig:
        """Build from loose values (YAML, CLI): dashes or underscores, ``"0.8,0.1,0.1"`` for the split."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in names:
                raise ConfigError(f"unknown export setting {key!r}; valid settings: {', '.join(sorted(names))}")
            if value is not None:
                kwargs[name] = value
        for name, kind in (("split_res", int), ("seed", int), ("shard_size", float), ("split_block_km", float),
                           ("split_buffer_m", float)):  # fmt: skip
            if name in kwargs:
                try:
                    kwargs[name] = kind(kwargs[name])
                except (TypeError, ValueError):
                    flag = f"--{name.replace('_', '-')}"
                    raise ConfigError(f"{flag} must be a number, not {kwargs[name]!r}") from None
        if "format" in kwargs:
            kwargs["format"] = str(kwargs["format"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values, as recorded in ``DS/geosample.yaml``."""
        out = dataclasses.asdict(self)
        out["split"] = list(self.split)
        return out


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    format: str
    path: Path
    """The export's folder."""
    records: int
    """Records written (a sample, or a sample and one of its chips)."""
    images: int
    """Records with an image."""
    splits: dict[str, int]
    """Records per split."""
    split_res: int
    """The H3 resolution of the splits' blocks."""
    split_report: dict[str, Any]
    """The split report (also in ``DS/report/splits.json``): blocks, buffer, per split sites, strata,
    distance to the other splits, sites moved and dropped for the buffer."""
    missing: list[str]
    """The dataset's stages that have not run, with the commands that run them."""
    files: list[str]
    """The files written, relative to ``path``."""
    invalid: list[str] = dataclasses.field(default_factory=list)
    """Chips left out because they no longer match their sha256 (``skip_invalid``), relative to ``DS``."""


@writes_dataset("export")
def export(
    ds: str | Path,
    out: str | Path | None = None,
    *,
    config: ExportConfig | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    skip_invalid: bool = False,
    **settings: Any,
) -> ExportResult:
    """Export dataset ``ds`` in one format, with buffered, stratified train/validation/test spatial splits.

    Args:
        ds: The dataset folder; it needs a plan, and uses whichever of chips,
            labels and captions exist.
        out: The export's folder; default ``DS/export/<format>``.
        config: A ready :class:`ExportConfig`; otherwise ``settings`` build one
            (``format="webdataset", split="0.7,0.15,0.15"``, ...).
        overwrite: Replace an export made with other settings (or by hand).
        progress: Show a progress bar (default: when stderr is a terminal).
        skip_invalid: Leave out chips whose file no longer matches its sha256 (counted in
            ``invalid``) instead of stopping; by default such a chip stops the export.
        **settings: :class:`ExportConfig` fields, when ``config`` is not given.

    Returns:
        What was written.
    """
    cfg = config if config is not None else ExportConfig.from_mapping(settings)
    ds = Path(ds)
    content, invalid = verify_chips(load_content(ds), skip_invalid=skip_invalid)
    if cfg.format == "tdml" and content.labels is None:
        raise DatasetError(
            f"{ds} has no labels, and a TrainingDML-AI document describes labelled data; "
            f"run 'geosample label {ds}' first"
        )
    destination = Path(out) if out is not None else ds / "export" / cfg.format
    splits = splits_of(content.plan, cfg)
    res = int(splits.report.get("block", {}).get("h3_res", -1))
    recorded = {**cfg.to_dict(), "out": str(destination), "split_res_used": res}
    _check_destination(ds, destination, cfg.format, recorded, overwrite)
    records = record_table(content, splits.split)
    records = records[records["split"].notna()].reset_index(drop=True)  # sites dropped for the buffer
    records.attrs["split_report"] = splits.report  # for the formats that describe the split (card, Croissant)
    module, name = _WRITERS[cfg.format].split(":")
    writer = getattr(importlib.import_module(module), name)
    made_parent = not destination.parent.exists()
    with io_errors_in(destination.parent, "export"):  # -o elsewhere: its folder is named, not the staging one
        destination.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(destination.parent, (f".{destination.name}-????????", f".{destination.name}-old-????????"))
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
        staging.chmod(_folder_mode())
        try:
            writer(content, records, staging, cfg, progress=progress)
            files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
            _swap_in(staging, destination)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if made_parent and not any(destination.parent.iterdir()):
                destination.parent.rmdir()
            raise
    counts = records["split"].value_counts()
    result = ExportResult(
        format=cfg.format,
        path=destination,
        records=len(records),
        images=int(records["path"].notna().sum()),
        splits={s: int(counts.get(s, 0)) for s in SPLITS},
        split_res=res,
        split_report=splits.report,
        missing=content.missing(),
        files=files,
        invalid=invalid,
    )
    with atomic_path(ds / SPLIT_REPORT) as tmp:
        tmp.write_text(json.dumps(splits.report, indent=2) + "\n", encoding="utf-8")
    section = dict(read_config(ds).get("export") or {})
    section.pop(cfg.format, None)  # the latest export comes last: dataset_splits deals with its settings
    section[cfg.format] = {
        **recorded,
        "records": result.records,
        "images": result.images,
        "splits": result.splits,
        "geosample_version": __version__,
    }
    write_section(ds, "export", section)
    return result


def splits_of(samples: pd.DataFrame, cfg: ExportConfig) -> Splits:
    """The samples' splits under ``cfg``'s split settings: the ones every format, evaluate and finetune use."""
    return make_splits(samples, cfg.split, block_km=cfg.split_block_km, res=cfg.split_res,
                       buffer_m=cfg.split_buffer_m, seed=cfg.seed)  # fmt: skip


def _check_destination(ds: Path, out: Path, fmt: str, recorded: dict[str, Any], overwrite: bool) -> None:
    """Refuse a destination that holds the dataset, or another export unless its settings match or ``overwrite``."""
    target, dataset = out.resolve(), ds.resolve()
    if target == dataset or target in dataset.parents:
        raise ConfigError(f"-o {out} would replace the dataset folder {ds}; give a folder of its own for the export")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out} is a file; give a folder for the export")
    if overwrite or not out.exists() or not any(out.iterdir()):
        return
    before = (read_config(ds).get("export") or {}).get(fmt) or {}
    same = {k: before.get(k) for k in recorded} == recorded
    if not same:
        raise DatasetError(
            f"{out} already holds files that this {fmt} export did not write with these settings; "
            "use --overwrite to replace them, or -o to write elsewhere"
        )


def _folder_mode() -> int:
    """The mode a new folder gets under the current umask (``mkdtemp`` makes private ones)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _swap_in(new: Path, old: Path) -> None:
    """Put folder ``new`` where ``old`` is, removing the old one only once the new one is in place."""
    if old.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{old.name}-old-", dir=old.parent))
        old.replace(trash)
        new.replace(old)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        new.replace(old)


def progress_bar(items: Iterable[_T], total: int, enabled: bool | None, desc: str) -> Iterator[_T]:
    """``items`` with a tqdm bar (shown on a terminal by default)."""
    from tqdm.auto import tqdm

    disable = None if enabled is None else not enabled
    yield from tqdm(items, total=total, desc=desc, unit="record", disable=disable, leave=False)


def parse_formats(value: Any, known: tuple[str, ...]) -> list[str]:
    """Formats from ``--format`` values or a config (a string, comma list or list); ``all`` is every one."""
    if value is None:
        raise ConfigError(f"no export format given; add --format ({', '.join(known)} or all)")
    items = [value] if isinstance(value, str) else list(value)
    names = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if "all" in names:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--format {unknown[0]!r} is not one of {', '.join(known)}, all")
    return list(dict.fromkeys(names))
