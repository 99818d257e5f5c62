"""The dataset's Parquet tables against DESIGN.md: required columns and their types, then their rows.

Required columns must be there with their type; the optional columns that
other stages add (``inclusion_prob``, ``nodata_fraction``, ``evidence``, ...)
are type-checked when present; any other column is left alone, so a newer
stage's additions never fail an older validator. Row checks cover what the
stages rely on: unique keys, samples the plan knows, shares in [0, 1], JSON
that parses, and every ``ok`` chip's file and sha256. The plan tables (plan,
samples, reserve) are checked row by row by the one plan validator every stage
uses (:func:`geosample._plan_checks.plan_problems`), and ``chips.parquet``'s
ids and paths by the manifest rules every stage applies
(:func:`geosample._plan_checks.chip_table_problems`); here they are listed, all
of them, instead of stopping at the first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geosample._paths import folder_test
from geosample._plan_checks import chip_file_faults, chip_table_problems, empty_h3, file_sha256, plan_problems

__all__ = ["TABLES", "TableSpec", "check_tables", "sha256_of"]

STRING, INT, FLOAT, TIMESTAMP, BOOL, STRINGS, WKB = "string", "int", "float", "timestamp", "bool", "list<string>", "wkb"

PLAN_REQUIRED = {
    "sample_id": STRING, "site_id": STRING, "h3": STRING, "h3_res": INT, "lon": FLOAT, "lat": FLOAT,
    "stratum": STRING, "start_datetime": TIMESTAMP, "end_datetime": TIMESTAMP, "time_bin": STRING,
    "chip_size_m": FLOAT, "epsg": INT, "geometry": WKB,
}  # fmt: skip
PLAN_OPTIONAL = {
    "inclusion_prob": FLOAT, "season": STRING, "revisit_index": INT, "phase": STRING, "event_id": STRING,
    "event_type": STRING, "continent": STRING, "country": STRING, "climate": STRING, "landcover": STRING,
}  # fmt: skip
CHIP_STATUS = ("ok", "no_item", "failed", "cloudy", "nodata")
CHANGE_SHARES = ("water_gain", "water_loss", "vegetation_loss", "vegetation_gain", "burned", "snow_ice_change")
PLAN_TABLES = ("plan.parquet", "samples.parquet", "reserve.parquet")


class TableSpec:
    """A table's required and optional typed columns, its key and the row checks that follow."""

    def __init__(
        self,
        name: str,
        command: str,
        required: Mapping[str, str],
        optional: Mapping[str, str] | None = None,
        key: tuple[str, ...] = ("sample_id",),
    ) -> None:
        self.name, self.command, self.required, self.optional, self.key = name, command, required, optional or {}, key


TABLES = (
    TableSpec("plan.parquet", "geosample plan", PLAN_REQUIRED, PLAN_OPTIONAL),
    TableSpec("samples.parquet", "geosample fetch", PLAN_REQUIRED, PLAN_OPTIONAL),
    TableSpec("reserve.parquet", "geosample plan", {**PLAN_REQUIRED, "reserve_rank": INT}, PLAN_OPTIONAL),
    TableSpec(
        "chips.parquet", "geosample fetch",
        {"sample_id": STRING, "status": STRING, "collection": STRING, "item_id": STRING, "item_datetime": TIMESTAMP,
         "cloud_cover": FLOAT, "path": STRING, "width": INT, "height": INT, "bands": STRINGS, "sha256": STRING},
        {"error": STRING, "preview": STRING, "resolution": FLOAT, "nodata_fraction": FLOAT, "cloud_fraction": FLOAT,
         "cloud_method": STRING, "observed": STRING, "observed_quadrants": STRING, "item_start_datetime": TIMESTAMP,
         "item_end_datetime": TIMESTAMP, "replaces": STRING},
        key=("sample_id", "collection"),
    ),
    TableSpec(
        "labels.parquet", "geosample label",
        {"sample_id": STRING, "l1": STRINGS, "l1_dominant": STRING, "fractions": STRING,
         "quadrant_fractions": STRING, "label_source": STRING, "taxonomy": STRING},
        {"valid_fraction": FLOAT, "label_year": INT, "source_resolution_m": FLOAT},
    ),
    TableSpec(
        "captions.parquet", "geosample caption",
        {"sample_id": STRING, "caption_index": INT, "caption": STRING, "backend": STRING, "model": STRING,
         "prompt_sha256": STRING},
        {"kind": STRING, "evidence": STRING, "focus": STRING, "seed": INT, "tags": STRINGS, "site_id": STRING,
         "sample_id_before": STRING, "sample_id_after": STRING, "usage_prompt_tokens": INT,
         "usage_completion_tokens": INT, "cache_hit": BOOL},
        key=("sample_id", "caption_index", "kind", "sample_id_before"),
    ),
    TableSpec(
        "change.parquet", "geosample label",
        {"site_id": STRING, "sample_id_before": STRING, "sample_id_after": STRING, "kind": STRING,
         **dict.fromkeys(CHANGE_SHARES, FLOAT), "valid_fraction": FLOAT, "mask": STRING},
        {"quadrants": STRING},
        key=("sample_id_before", "sample_id_after"),
    ),
)  # fmt: skip

Report = Callable[[str, str], None]
"""Records one problem: (path relative to DS, message)."""


def check_tables(ds: Path, report: Report, hashes: dict[Path, str]) -> dict[str, int]:
    """Check every table present; returns rows checked per table. ``hashes`` caches file sha256s."""
    checked: dict[str, int] = {}
    known: set[str] | None = None
    for spec in TABLES:
        path = ds / spec.name
        if not path.exists():
            if spec.name == "plan.parquet":
                report(spec.name, f"missing; make the plan with 'geosample plan -o {ds}'")
            continue
        try:
            schema = pq.read_schema(path)
            table = pq.read_table(path).to_pandas() if _typed(spec, schema, report) else None
        except Exception as exc:  # noqa: BLE001 - any reader failure: the file is unusable
            report(spec.name, f"cannot be read as Parquet ({exc.__class__.__name__}); re-run '{spec.command} {ds}'")
            continue
        if table is None:
            continue
        checked[spec.name] = len(table)
        if spec.name in PLAN_TABLES:
            _check_plan(ds, spec.name, schema, table, report)
            ids = set(table["sample_id"].dropna().astype(str))
            known = ids if known is None else known | ids
        else:  # the plan validator checks the plan tables' key
            _check_key(spec, table, report)
        if known is not None and spec.name in ("chips.parquet", "labels.parquet", "captions.parquet"):
            strangers = sorted(set(table["sample_id"].dropna().astype(str)) - known)
            if strangers:
                report(spec.name, f"{len(strangers)} sample(s) are not in the plan (e.g. {strangers[0]}); "
                                  f"it was made for another plan: re-run '{spec.command} {ds}'")  # fmt: skip
        check = _ROW_CHECKS.get(spec.name)
        if check is not None:
            check(ds, spec.name, table, report, hashes)
    _check_substitution(ds, report)
    return checked


def _check_substitution(ds: Path, report: Report) -> None:
    """Reserves, achieved samples and ``replaces`` agree.

    Reserve ids are not plan ids, samples come from the plan or the reserve, a ``replaces`` names a plan
    sample and sits on a reserve's chip, and reserve ranks count from 1.
    """

    def ids(name: str) -> set[str] | None:
        path = ds / name
        if not path.exists():
            return None
        try:
            return {str(v) for v in pq.read_table(path, columns=["sample_id"]).column(0).to_pylist()}
        except Exception:  # noqa: BLE001 - its own check reports an unreadable file
            return None

    plan, reserve, samples = ids("plan.parquet"), ids("reserve.parquet"), ids("samples.parquet")
    if plan is None:
        return
    if reserve is not None and (clash := sorted(plan & reserve)):
        report("reserve.parquet", f"{_few(clash, 'reserve sample ids are also plan ids')}; it belongs to another "
                                  "plan: re-run 'geosample plan'")  # fmt: skip
    if reserve is not None:
        try:
            rank = pq.read_table(ds / "reserve.parquet", columns=["reserve_rank"]).column(0).to_numpy()
        except Exception:  # noqa: BLE001 - a missing column is reported with the table's columns
            rank = None
        if rank is not None and (rank < 1).any():
            report("reserve.parquet", "reserve_rank counts from 1 (the first reserve to use); re-run 'geosample plan'")
    if samples is not None and (strangers := sorted(samples - plan - (reserve or set()))):
        report("samples.parquet", f"{_few(strangers, 'samples are neither in the plan nor in the reserve')}; "
                                  f"re-run 'geosample fetch {ds}'")  # fmt: skip
    chips_path = ds / "chips.parquet"
    if chips_path.exists():
        try:
            chips = pq.read_table(chips_path, columns=["sample_id", "replaces"]).to_pandas()
        except Exception:  # noqa: BLE001 - an old manifest without replaces, or one reported unreadable above
            return
        marked = chips[chips["replaces"].notna()]
        if bad := sorted(set(marked["replaces"].astype(str)) - plan):
            report("chips.parquet", f"{_few(bad, 'replaces values are not plan samples')}; "
                                    f"re-run 'geosample fetch {ds}'")  # fmt: skip
        if odd := sorted(set(marked["sample_id"].astype(str)) - (reserve or set())):
            report("chips.parquet", f"{_few(odd, 'rows with replaces are not reserve samples')}; "
                                    f"re-run 'geosample fetch {ds}'")  # fmt: skip


def _typed(spec: TableSpec, schema: pa.Schema, report: Report) -> bool:
    """Report missing required columns and columns of the wrong type; True when the rows can be checked."""
    names = set(schema.names)
    missing = [c for c in spec.required if c not in names]
    if missing:
        report(spec.name, f"has no column {', '.join(missing)} (DESIGN.md); re-run '{spec.command}'")
    if spec.name == "labels.parquet":  # every level present: l1, l2, ... with l<k>_dominant
        for level in sorted(n for n in names if n[:1] == "l" and n[1:].isdigit()):
            if f"{level}_dominant" not in names:
                report(spec.name, f"has level {level} but no column {level}_dominant; re-run '{spec.command}'")
    wanted = {**spec.optional, **spec.required}
    if spec.name == "labels.parquet":
        for name in names:
            if name[:1] == "l" and name[1:].isdigit():
                wanted[name] = STRINGS
            elif name.endswith("_dominant") and name[:1] == "l":
                wanted[name] = STRING
    ok = not missing
    for name, kind in wanted.items():
        if name in names and not _is(schema.field(name).type, kind):
            report(spec.name, f"column {name} is {schema.field(name).type}, not {kind} (DESIGN.md); "
                              f"re-run '{spec.command}'")  # fmt: skip
            ok = ok and name not in spec.required
    return ok


def _is(kind: pa.DataType, wanted: str) -> bool:
    if pa.types.is_null(kind):  # a column of nulls only: any type
        return True
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return {
        STRING: lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        INT: pa.types.is_integer,
        FLOAT: lambda t: pa.types.is_floating(t),
        TIMESTAMP: lambda t: pa.types.is_timestamp(t) and t.tz in ("UTC", "+00:00", "Etc/UTC", "Z"),
        BOOL: pa.types.is_boolean,
        STRINGS: lambda t: (pa.types.is_list(t) or pa.types.is_large_list(t))
        and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
             or pa.types.is_null(t.value_type)),
        WKB: lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t),
    }[wanted](kind)  # fmt: skip


def _check_key(spec: TableSpec, table: pd.DataFrame, report: Report) -> None:
    key = [c for c in spec.key if c in table]
    if not key:
        return
    duplicated = table[table.duplicated(key, keep=False)]
    if not duplicated.empty:
        first = ", ".join(f"{c}={duplicated.iloc[0][c]}" for c in key)
        report(spec.name, f"{len(duplicated)} rows share their key ({', '.join(key)}), e.g. {first}; "
                          f"re-run '{spec.command}'")  # fmt: skip


def _few(values: pd.Series | list[Any], what: str) -> str:
    values = list(values)
    return f"{len(values)} {what} (e.g. {values[0]})"


def _check_plan(ds: Path, name: str, schema: pa.Schema, table: pd.DataFrame, report: Report) -> None:
    """The GeoParquet metadata, then every row problem of the plan validator, and what only validate checks."""
    from geosample.validate._schemas import GEOPARQUET_URL, validator

    geo = (schema.metadata or {}).get(b"geo")
    if geo is None:
        report(name, "has no GeoParquet 'geo' metadata; re-write it with 'geosample plan'")
    else:
        try:
            errors = list(validator(GEOPARQUET_URL).iter_errors(json.loads(geo)))
        except ValueError:
            errors = ["not JSON"]
        for error in errors[:3]:
            report(name, f"GeoParquet metadata is invalid: {getattr(error, 'message', error)}")
    plan = _with_geometry(name, table, report)
    for problem in plan_problems(plan):
        report(name, f"{problem}; fix the plan or make a new one with 'geosample plan'")
    if (missing := int(empty_h3(plan).sum())) and "h3" in plan:
        report(name, f"{missing} row(s) have no h3 cell (every stage recomputes it from lon/lat, with a warning); "
                     "re-write the plan with 'geosample plan' to store it")  # fmt: skip
    if "inclusion_prob" in table:
        p = table["inclusion_prob"].to_numpy(dtype=float)
        if (bad := ~((p > 0) & (p <= 1))).any():
            report(name, _few(table.loc[bad, "sample_id"], "samples have an inclusion_prob outside (0, 1]"))
    balance = ds / "report" / "balance.json"
    if name == "plan.parquet" and balance.is_file():
        try:
            dims = list(json.loads(balance.read_text(encoding="utf-8")).get("dimensions") or {})
        except ValueError:
            report("report/balance.json", "is not valid JSON; re-run 'geosample plan'")
            dims = []
        for dim in dims:
            if dim not in table:
                report(name, f"has no column {dim}, a stratification dimension of report/balance.json")


def _with_geometry(name: str, table: pd.DataFrame, report: Report) -> pd.DataFrame:
    """The table as a GeoDataFrame (its WKB footprints read), so the plan validator checks them too."""
    import geopandas as gpd

    if "geometry" not in table:
        return table
    try:
        geometry = gpd.GeoSeries.from_wkb(table["geometry"], crs="EPSG:4326")
    except Exception:  # noqa: BLE001 - any decoder failure: not WKB
        report(name, "column geometry does not hold WKB footprints; re-write it with 'geosample plan'")
        return table.drop(columns="geometry")
    return gpd.GeoDataFrame(table.drop(columns="geometry"), geometry=geometry)


def sha256_of(path: Path, cache: dict[Path, str]) -> str:
    """The file's sha256 hex digest, computed once per run."""
    key = path.resolve()
    if key not in cache:
        cache[key] = file_sha256(key)
    return cache[key]


_FAULT_FIXES = {
    "is missing": "(listed in chips.parquet); run 'geosample fetch {ds}' again to restore it",
    "does not match its sha256 in chips.parquet": "(the file changed after fetch); "
    "run 'geosample fetch {ds}' again to re-fetch it",
}
"""What follows a chip file's fault in its line (the others: run fetch again)."""


def _check_chips(ds: Path, name: str, table: pd.DataFrame, report: Report, hashes: dict[Path, str]) -> None:
    unknown = sorted(set(table["status"].dropna()) - set(CHIP_STATUS))
    if unknown:
        report(name, f"unknown status {unknown[0]!r}; a chip's status is one of {', '.join(CHIP_STATUS)}")
    fix = f"the manifest is damaged or was made elsewhere: delete it and run 'geosample fetch {ds}' again"
    for problem in chip_table_problems(ds, table):
        report(name, f"{problem}; {fix}")
    ok = table[table["status"] == "ok"]
    faults = chip_file_faults(ds, ok, digest=lambda path: sha256_of(path, hashes))
    for path, fault in zip(ok["path"], faults, strict=True):
        if fault is not None and not fault.startswith("lies outside"):  # listed above, and never read
            fix = _FAULT_FIXES.get(fault, "in chips.parquet; run 'geosample fetch {ds}' again")
            report(str(path), f"{fault} {fix.format(ds=ds)}")
    for column in ("observed", "observed_quadrants"):
        if column in table:
            _check_json_shares(name, table, column, report, nested=column == "observed_quadrants")
    for column in ("nodata_fraction", "cloud_fraction"):
        if column in table:
            _check_shares(name, table, column, report)


def _check_labels(ds: Path, name: str, table: pd.DataFrame, report: Report, hashes: dict[Path, str]) -> None:
    _check_json_shares(name, table, "fractions", report)
    _check_json_shares(name, table, "quadrant_fractions", report, nested=True)
    if "valid_fraction" in table:
        _check_shares(name, table, "valid_fraction", report)


def _check_captions(ds: Path, name: str, table: pd.DataFrame, report: Report, hashes: dict[Path, str]) -> None:
    empty = table[table["caption"].fillna("").astype(str).str.strip() == ""]
    if not empty.empty:
        report(name, _few(empty["sample_id"], "captions are empty"))
    if "kind" in table and (odd := sorted(set(table["kind"].dropna()) - {"scene", "change"})):
        report(name, f"unknown caption kind {odd[0]!r}; kind is scene or change")


def _check_change(ds: Path, name: str, table: pd.DataFrame, report: Report, hashes: dict[Path, str]) -> None:
    if odd := sorted(set(table["kind"].dropna()) - {"event", "revisit"}):
        report(name, f"unknown kind {odd[0]!r}; a pair is an event or a revisit")
    for column in (*CHANGE_SHARES, "valid_fraction"):
        _check_shares(name, table, column, report)
    in_change = folder_test(ds, "change")
    gone = [m for m in table["mask"].dropna() if not in_change(m) or not (ds / m).is_file()]
    if gone:
        report(name, _few(gone, "change masks are missing or outside the dataset"))


def _check_shares(name: str, table: pd.DataFrame, column: str, report: Report) -> None:
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    bad = np.isfinite(values) & ((values < -1e-9) | (values > 1 + 1e-9))
    if bad.any():
        report(name, _few(table.loc[bad, table.columns[0]], f"rows have {column} outside [0, 1]"))


def _shares(value: Any, nested: bool) -> Iterator[dict[str, Any]]:
    document = json.loads(value)
    if not isinstance(document, dict):
        raise ValueError("not an object")
    yield from (document.values() if nested else [document])


def _check_json_shares(name: str, table: pd.DataFrame, column: str, report: Report, *, nested: bool = False) -> None:
    """A JSON object of shares (or of such objects, by region) in every non-null cell: values in [0, 1], sum ≤ 1."""
    bad = []
    for key, value in zip(table[table.columns[0]], table[column], strict=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        try:
            for shares in _shares(value, nested):
                numbers = [float(v) for v in shares.values()]
                if any(not 0 <= v <= 1 + 1e-6 for v in numbers) or sum(numbers) > 1 + 1e-6:
                    raise ValueError("shares out of range")
        except (ValueError, TypeError, AttributeError):
            bad.append(key)
    if bad:
        report(name, _few(bad, f"rows have a {column} that is not a JSON object of shares in [0, 1] summing to ≤ 1"))


_ROW_CHECKS = {
    "chips.parquet": _check_chips,
    "labels.parquet": _check_labels,
    "captions.parquet": _check_captions,
    "change.parquet": _check_change,
}
