"""``export --format webdataset``: tar shards of about ``--shard-size`` MB per split.

Each record is ``<key>.tif`` (the chip GeoTIFF), ``<key>.png`` (its preview,
when fetch made one), ``<key>.json`` (location, time, strata, labels, image,
provenance) and ``<key>.txt`` (the captions, one per line, when the dataset
has captions), consecutive in the tar as WebDataset expects. Records are
shuffled (seeded) before sharding, so every shard mixes places and strata.
``dataset.json`` lists the shards of each split with a brace pattern.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geosample._paths import check_name
from geosample.export._content import DatasetContent
from geosample.export._export import ExportConfig, progress_bar
from geosample.export._records import iter_rows, record_metadata
from geosample.export.splits import SPLITS

__all__ = ["write_webdataset"]

BLOCK = 512
INDEX_FILE = "dataset.json"


def write_webdataset(
    content: DatasetContent, records: pd.DataFrame, out: Path, cfg: ExportConfig, *, progress: bool | None = None
) -> None:
    """Write the shards and ``dataset.json`` into the empty folder ``out``."""
    limit = cfg.shard_size * 1e6
    rng = np.random.default_rng(cfg.seed)
    with_text = content.captions is not None
    index: dict[str, Any] = {}
    bar = progress_bar(range(len(records)), len(records), progress, "webdataset")
    for split in SPLITS:
        mine = np.flatnonzero((records["split"] == split).to_numpy())
        order = mine[rng.permutation(len(mine))]  # positions in records, shuffled (no copy of the split's rows)
        shards: list[str] = []
        writer: tarfile.TarFile | None = None
        size = 0.0
        for row in iter_rows(records, order):
            members = _members(row, content, with_text)
            record_size = sum(_tar_size(len(data)) for _, data in members)
            if writer is None or (size > 0 and size + record_size > limit):
                if writer is not None:
                    writer.close()
                shards.append(f"{split}-{len(shards):06d}.tar")
                writer = tarfile.open(out / shards[-1], "w", format=tarfile.GNU_FORMAT)
                size = 0.0
            for name, data in members:
                _add(writer, name, data)
            size += record_size
            next(bar, None)
        if writer is not None:
            writer.close()
        index[split] = {
            "records": len(order),
            "images": int(records["path"].iloc[mine].notna().sum()),
            "shards": shards,
            "url": _brace(split, len(shards)),
        }
    (out / INDEX_FILE).write_text(json.dumps(_index_doc(content, cfg, index), indent=1) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_readme(content, index), encoding="utf-8")


def _members(row: Mapping[str, Any], content: DatasetContent, with_text: bool) -> list[tuple[str, bytes]]:
    """The record's files: (member name, contents)."""
    key = row["key"]
    files: list[tuple[str, bytes]] = []
    names = {}
    if isinstance(row["path"], str):
        files.append((f"{key}.tif", (content.ds / row["path"]).read_bytes()))
        names["image"] = f"{key}.tif"
        if isinstance(row["preview"], str) and (content.ds / row["preview"]).is_file():
            files.append((f"{key}.png", (content.ds / row["preview"]).read_bytes()))
            names["preview"] = f"{key}.png"
    if with_text:
        names["captions"] = f"{key}.txt"
    doc = record_metadata(row, content, {**names, "metadata": f"{key}.json"})
    files.append((f"{key}.json", json.dumps(doc, ensure_ascii=False).encode("utf-8")))
    if with_text:
        text = "".join(" ".join(str(c).split()) + "\n" for c in row["captions"])
        files.append((f"{key}.txt", text.encode("utf-8")))
    return files


def _tar_size(n_bytes: int) -> int:
    """Bytes a member of ``n_bytes`` takes in a tar: a header block and whole data blocks."""
    return BLOCK + -(-n_bytes // BLOCK) * BLOCK


def _add(writer: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add one member with fixed owner and time, so the same records give the same shard."""
    info = tarfile.TarInfo(check_name(name, "WebDataset member name"))  # no '/' or '..': nothing extracts elsewhere
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    writer.addfile(info, io.BytesIO(data))


def _brace(split: str, n: int) -> str | None:
    if n == 0:
        return None
    if n == 1:
        return f"{split}-000000.tar"
    return f"{split}-{{000000..{n - 1:06d}}}.tar"


def _index_doc(content: DatasetContent, cfg: ExportConfig, index: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "webdataset",
        "dataset": content.name,
        "splits": index,
        "split_settings": {
            "fractions": list(cfg.split),
            "seed": cfg.seed,
            "block_km": cfg.split_block_km,
            "block_h3_res": cfg.split_res,
            "buffer_m": cfg.split_buffer_m,
        },
        "fields": {
            "tif": "the chip, a Cloud-Optimized GeoTIFF in the sample's UTM zone",
            "png": "an RGB preview of the chip (when fetch made one)",
            "json": "location, time window, strata, labels, image metadata and provenance",
            "txt": "captions, one per line",
        },
        "collections": content.collections,
        "missing": content.missing(),
    }


def _readme(content: DatasetContent, index: dict[str, Any]) -> str:
    lines = [
        f"# {content.name}: WebDataset shards",
        "",
        "| split | records | images | shards |",
        "| --- | --- | --- | --- |",
    ]
    for split, info in index.items():
        lines.append(f"| {split} | {info['records']} | {info['images']} | {info['url'] or '-'} |")
    lines += [
        "",
        "```python",
        "import json",
        "",
        "import webdataset as wds",
        "",
        f'train = wds.WebDataset("{index["train"]["url"] or "train-000000.tar"}", shardshuffle=100).shuffle(1000)',
        "for sample in train:",
        '    meta = json.loads(sample["json"])',
        '    captions = sample["txt"].decode().splitlines() if "txt" in sample else []',
        "```",
        "",
        "Splits are spatially disjoint (whole H3 parent cells) and stratified like the plan; "
        "`dataset.json` lists every shard.",
    ]
    if content.missing():
        lines += ["", "Not in this dataset yet: " + "; ".join(content.missing()) + "."]
    return "\n".join(lines) + "\n"
