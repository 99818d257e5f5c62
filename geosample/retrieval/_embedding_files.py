"""Reading precomputed embeddings: ``.npy`` plus an ids file, or Parquet with ids and an embedding column."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geosample.errors import ConfigError
from geosample.retrieval.encoders import Embeddings

EMBEDDING_COLUMNS = ("embedding", "embeddings", "vector", "features")


def read_embeddings(path: str | Path, ids_path: str | Path | None, keys: Sequence[str], flag: str) -> Embeddings:
    """Embeddings keyed by the ``keys`` columns; ``flag`` names the option the file came from, for messages."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag} {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if ids_path is None:
            ids_flag = flag.replace("embeddings", "ids")
            raise ConfigError(f"{flag} {path} is a .npy array without ids; give {ids_flag} FILE with its row keys")
        vectors = _load_npy(path, flag)
        ids = read_ids(ids_path, keys, flag.replace("embeddings", "ids"))
        if len(ids) != len(vectors):
            raise ConfigError(
                f"{flag} {path} has {len(vectors)} rows but its ids file {ids_path} has {len(ids)}; "
                "they must match line for line"
            )
    elif suffix in (".parquet", ".pq", ".geoparquet"):
        ids, vectors = _load_parquet(path, keys, flag)
    else:
        raise ConfigError(f"{flag} {path}: unknown format {suffix!r}; use .npy (with an ids file) or .parquet")
    _check_vectors(vectors, path, flag)
    duplicated = ids.duplicated(list(keys))
    if duplicated.any():
        first = ids[duplicated].iloc[0].tolist()
        raise ConfigError(f"{flag} {path} repeats the key {first} ({int(duplicated.sum())} repeated rows); keep one")
    return Embeddings(ids.reset_index(drop=True), vectors)


def read_ids(path: str | Path, keys: Sequence[str], flag: str) -> pd.DataFrame:
    """Row keys from a text file (one per line; ``sample_id,caption_index`` for texts), ``.npy`` or Parquet."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag} {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        table = pd.read_parquet(path)
        missing = [k for k in keys if k not in table.columns]
        if missing:
            raise ConfigError(f"{flag} {path} has no column(s) {', '.join(missing)}; it needs {', '.join(keys)}")
        frame = table[list(keys)].copy()
    elif suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.dtype.names:
            missing = [k for k in keys if k not in array.dtype.names]
            if missing:
                raise ConfigError(f"{flag} {path} has no field(s) {', '.join(missing)}; it needs {', '.join(keys)}")
            frame = pd.DataFrame({k: array[k] for k in keys})
        else:
            frame = pd.DataFrame(array.reshape(len(array), -1), columns=None)
            if frame.shape[1] != len(keys):
                raise ConfigError(f"{flag} {path} must have {len(keys)} column(s) per row: {', '.join(keys)}")
            frame.columns = list(keys)
    else:
        frame = _read_text_ids(path, keys, flag)
    return _typed_keys(frame, keys, path, flag)


def _typed_keys(frame: pd.DataFrame, keys: Sequence[str], path: Path, flag: str) -> pd.DataFrame:
    """Key columns as strings, ``caption_index`` as int64."""
    frame = frame.reset_index(drop=True)
    for key in keys:
        if key != "caption_index":
            frame[key] = frame[key].astype(str)
            continue
        try:
            frame[key] = frame[key].astype(np.int64)
        except (TypeError, ValueError):
            raise ConfigError(f"{flag} {path}: caption_index must be whole numbers") from None
    return frame


def _read_text_ids(path: Path, keys: Sequence[str], flag: str) -> pd.DataFrame:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    rows = [line.replace("\t", ",").replace(" ", ",").split(",") for line in lines]
    rows = [[part for part in row if part] for row in rows]
    if rows and rows[0][0] == keys[0]:
        rows = rows[1:]
    bad = next((i for i, row in enumerate(rows) if len(row) != len(keys)), None)
    if bad is not None:
        raise ConfigError(f"{flag} {path}: line {bad + 1} must hold {' and '.join(keys)}, not {rows[bad]}")
    return pd.DataFrame(rows, columns=list(keys))


def _load_npy(path: Path, flag: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        raise ConfigError(f"{flag} {path} is not a numeric .npy array ({exc})") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"{flag} {path} must be a 2-D numeric array (rows × dimensions), not {array.shape}")
    return np.asarray(array, dtype=np.float32)


def _load_parquet(path: Path, keys: Sequence[str], flag: str) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"{flag} {path} cannot be read as Parquet ({exc.__class__.__name__})") from None
    missing = [k for k in keys if k not in table.column_names]
    if missing:
        raise ConfigError(f"{flag} {path} has no column(s) {', '.join(missing)}; it needs {', '.join(keys)}")
    lists = [f.name for f in table.schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)] + [
        f.name for f in table.schema if pa.types.is_large_list(f.type)
    ]
    named = [c for c in EMBEDDING_COLUMNS if c in lists]
    if named:
        column = named[0]
    elif len(lists) == 1:
        column = lists[0]
    else:
        found = ", ".join(lists) or "none"
        raise ConfigError(
            f"{flag} {path}: cannot tell which column holds the embeddings (list columns: {found}); name it 'embedding'"
        )
    vectors = _list_column_to_matrix(table.column(column).combine_chunks(), path, column, flag)
    return _typed_keys(table.select(list(keys)).to_pandas(), keys, path, flag), vectors


def _list_column_to_matrix(array: pa.Array, path: Path, column: str, flag: str) -> np.ndarray:
    if array.null_count:
        raise ConfigError(f"{flag} {path}: column {column!r} has {array.null_count} empty row(s); fill or drop them")
    if len(array) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
    else:
        lengths = np.diff(array.offsets.to_numpy())
        if lengths.min() != lengths.max():
            raise ConfigError(
                f"{flag} {path}: embeddings in {column!r} have different lengths ({lengths.min()}–{lengths.max()})"
            )
        width = int(lengths[0])
    values = array.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise ConfigError(f"{flag} {path}: column {column!r} holds {values.type}, not numbers")
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(array), width)


def _check_vectors(vectors: np.ndarray, path: Path, flag: str) -> None:
    if len(vectors) == 0:
        raise ConfigError(f"{flag} {path} holds no embeddings")
    largest = np.abs(vectors).max(axis=1)  # NaN propagates; inf stays inf; 0 only for a zero vector
    bad = ~np.isfinite(largest)
    if bad.any():
        raise ConfigError(
            f"{flag} {path}: {int(bad.sum())} row(s) hold NaN or infinite values (first: row "
            f"{int(np.flatnonzero(bad)[0])}); fix or drop them"
        )
    zero = largest == 0
    if zero.any():
        raise ConfigError(
            f"{flag} {path}: {int(zero.sum())} row(s) are all zeros (first: row {int(np.flatnonzero(zero)[0])}); "
            "a zero vector has no direction for cosine similarity"
        )
