"""The crash-safe chip manifest: ``DS/chips.parquet`` plus an append-only journal.

Each finished chip is one JSON line appended to ``DS/.chips.journal`` (after
its file has been renamed into place), and the journal is folded into
``chips.parquet`` from time to time by an atomic rewrite. Killed at any
moment, the Parquet file is the last complete rewrite, the journal holds
every chip finished since (a torn last line is ignored), and the next run
replays it. Rows are keyed by (``sample_id``, ``collection``); the latest
wins, so replaying twice changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geosample._dataset import CHIPS_FILE, atomic_path, dataset_lock
from geosample._plan_checks import check_chip_table
from geosample.errors import DatasetError

__all__ = ["JOURNAL_FILE", "SCHEMA", "Manifest", "dataset_lock"]  # dataset_lock: from geosample._dataset

JOURNAL_FILE = ".chips.journal"
KEY = ["sample_id", "collection"]

SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("collection", pa.string()),
        ("item_id", pa.string()),
        ("item_datetime", pa.timestamp("us", tz="UTC")),
        ("cloud_cover", pa.float64()),
        ("path", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("bands", pa.list_(pa.string())),
        ("sha256", pa.string()),
        ("preview", pa.string()),
        ("resolution", pa.float64()),
        ("item_start_datetime", pa.timestamp("us", tz="UTC")),
        ("item_end_datetime", pa.timestamp("us", tz="UTC")),
        ("nodata_fraction", pa.float64()),
        ("cloud_fraction", pa.float64()),
        ("cloud_method", pa.string()),
        ("observed", pa.string()),
        ("observed_quadrants", pa.string()),
        ("observed_map", pa.string()),
        ("replaces", pa.string()),
    ]
)
"""Columns of ``chips.parquet`` (DESIGN.md, plus ``preview``, ``resolution`` and ``observed_map``)."""
COLUMNS = SCHEMA.names
TIMESTAMPS = ("item_datetime", "item_start_datetime", "item_end_datetime")
ADDED = frozenset(SCHEMA.names[SCHEMA.get_field_index("item_start_datetime") :])
"""Columns added after the first release: a ``chips.parquet`` without them is read with them null."""


def _pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas keeping integer columns integer (nullable) where they have nulls."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _to_table(rows: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(rows[COLUMNS], schema=SCHEMA, preserve_index=False)


def _frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    records = list(records)
    if not records:
        return _pandas(SCHEMA.empty_table())
    data = {name: [r.get(name) for r in records] for name in COLUMNS}
    for name in TIMESTAMPS:
        data[name] = [pd.Timestamp(v) if v is not None else None for v in data[name]]
    table = pa.Table.from_pydict(data, schema=SCHEMA)
    return _pandas(table)


class Manifest:
    """The rows of ``DS/chips.parquet`` and the journal of rows added since it was written."""

    def __init__(self, ds: str | Path) -> None:
        self.ds = Path(ds)
        self.path = self.ds / CHIPS_FILE
        self.journal = self.ds / JOURNAL_FILE
        self._base = self._read_parquet()
        self._new: list[dict[str, Any]] = self._read_journal()
        check_chip_table(self.ds, self.table(), str(self.path))
        self._fd: int | None = None
        self.last_compact = time.monotonic()
        self.compact_seconds = 0.0

    def _read_parquet(self) -> pd.DataFrame:
        if not self.path.exists():
            return _pandas(SCHEMA.empty_table())
        try:
            table = pq.read_table(self.path)
        except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
            raise DatasetError(
                f"{self.path} cannot be read ({exc.__class__.__name__}); delete it to fetch every chip again"
            ) from None
        missing = [c for c in COLUMNS if c not in table.column_names]
        if set(missing) - ADDED:
            raise DatasetError(f"{self.path} lacks columns {missing}; delete it to fetch every chip again")
        for name in missing:
            table = table.append_column(SCHEMA.field(name), pa.nulls(len(table), SCHEMA.field(name).type))
        return _pandas(table.select(COLUMNS).cast(SCHEMA))

    def _read_journal(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        rows = []
        with open(self.journal, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill
                if isinstance(row, dict) and row.get("sample_id") is not None:
                    rows.append(row)
        return rows

    def table(self) -> pd.DataFrame:
        """Every row, the latest per (sample_id, collection), sorted by that key."""
        frame = pd.concat([self._base, _frame(self._new)], ignore_index=True) if self._new else self._base.copy()
        frame = frame.drop_duplicates(KEY, keep="last")
        return frame.sort_values(KEY, kind="stable").reset_index(drop=True)

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Journal rows (one JSON line each, flushed to the OS at once)."""
        lines = []
        for row in rows:
            record = {k: row.get(k) for k in COLUMNS}
            for name in TIMESTAMPS:
                if record[name] is not None:
                    record[name] = pd.Timestamp(record[name]).isoformat()
            self._new.append(record)
            lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False, default=_json_default))
        if not lines:
            return
        if self._fd is None:
            self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._fd, ("\n".join(lines) + "\n").encode("utf-8"))

    def compact(self) -> pd.DataFrame:
        """Rewrite ``chips.parquet`` with every row (atomically), then empty the journal."""
        started = time.monotonic()
        frame = self.table()
        with atomic_path(self.path) as tmp:
            pq.write_table(_to_table(frame), tmp, compression="zstd")
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()
        self._base, self._new = frame, []
        self.last_compact = time.monotonic()
        self.compact_seconds = self.last_compact - started
        return frame

    def maybe_compact(self, min_interval: float = 10.0) -> None:
        """Compact if the last compaction is long enough ago (at least 20× its own cost)."""
        if self._new and time.monotonic() - self.last_compact >= max(min_interval, 20 * self.compact_seconds):
            self.compact()

    def close(self) -> None:
        """Close the journal file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot journal {type(value).__name__}")
