"""The train/validation/test split of every sample, as ``geosample export`` assigns it (for evaluate and finetune).

The assignment itself lives in :mod:`geosample.export.splits`; this module
only calls it with the settings the dataset's last export recorded (or the
export defaults), so that ``evaluate --split test`` and ``finetune`` see the
very samples an export puts in each split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SPLIT_NAMES = ("train", "validation", "test")
ALIASES = {"validate": "validation", "val": "validation"}  # STAC ml-aoi spells it "validate"


def dataset_splits(ds: Path) -> pd.Series:
    """The split (``train``, ``validation``, ``test``) of every sample of ``ds``, indexed by ``sample_id``."""
    import json

    from geosample._dataset import read_config, read_samples
    from geosample.export import ExportConfig
    from geosample.export._content import BALANCE_FILE, DatasetContent
    from geosample.export._export import resolve_split_res
    from geosample.export.splits import split_samples

    config = read_config(ds)
    recorded = config.get("export") or {}
    settings = next((v for v in recorded.values() if isinstance(v, dict) and "split" in v), {})
    cfg = ExportConfig.from_mapping({k: settings[k] for k in ("split", "split_res", "seed") if k in settings})
    plan = read_samples(ds).sort_values("sample_id", kind="stable").reset_index(drop=True)
    balance_path = Path(ds) / BALANCE_FILE
    balance = json.loads(balance_path.read_text(encoding="utf-8")) if balance_path.is_file() else None
    # Only the plan and its recorded resolutions matter to the split; the other stages' tables are not read.
    content = DatasetContent(Path(ds), plan, (), None, None, None, None, None, balance, config)
    res = resolve_split_res(content, cfg.split_res)
    split = split_samples(plan, cfg.split, res=res, seed=cfg.seed)
    return pd.Series(split.map(lambda s: ALIASES.get(s, s)).to_numpy(), index=plan["sample_id"], name="split")


def normalise(name: str) -> str:
    """A split name as used here (``validate`` → ``validation``)."""
    return ALIASES.get(name, name)
