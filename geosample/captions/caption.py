"""``geosample caption``: ``n`` captions per sample from a pluggable backend, into ``DS/captions.parquet``.

The stage builds one :class:`~geosample.captions.context.SampleContext` per
sample still to caption, hands them to the backend in batches, checks what
comes back, and writes the captions table, ``report/captions.json`` and the
``caption`` section of ``geosample.yaml``, each under a temporary name first.
It resumes: ``limit`` captions the first N samples of the plan, and a re-run
skips samples already captioned by the same backend, model, prompt, seed and
``n`` (``overwrite`` re-captions them).

When the plan has ``phase`` (events) or ``revisit_index`` (series), the
stage also writes ``n`` change captions per pair of samples of a site
(:func:`~geosample.captions.change.pairs`), rows of ``kind`` ``change``,
resumable the same way; ``change=False`` skips them.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geosample import __version__
from geosample._dataset import (
    CAPTIONS_FILE,
    LABELS_FILE,
    atomic_path,
    read_samples,
    read_table,
    write_section,
    writes_dataset,
)
from geosample.captions._sources import ContextBuilder, fact_classes
from geosample.captions.base import (
    Captioner,
    CaptionResult,
    ChangeCaptioner,
    change_results_of,
    get_captioner,
    results_of,
)
from geosample.captions.change import PAIR_COLUMNS, change_context, pairs
from geosample.captions.config import CaptionConfig
from geosample.captions.context import load_labels_taxonomy
from geosample.captions.report import caption_report, change_report
from geosample.errors import DataQualityWarning, DatasetError, PluginError, PluginWarning

CHANGE_FILE = "change.parquet"
"""Observed change per pair of a site's chips, written by ``geosample label`` (DESIGN.md)."""
CACHE_DIR = Path(".cache") / "captions"
"""Response cache of model backends, inside ``DS``."""
REPORT_FILE = Path("report") / "captions.json"
SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string()),
        pa.field("caption_index", pa.int32()),
        pa.field("caption", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("model", pa.string()),
        pa.field("prompt_sha256", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("site_id", pa.string()),
        pa.field("sample_id_before", pa.string()),
        pa.field("sample_id_after", pa.string()),
        pa.field("focus", pa.string()),
        pa.field("evidence", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("usage_prompt_tokens", pa.int64()),
        pa.field("usage_completion_tokens", pa.int64()),
        pa.field("cache_hit", pa.bool_()),
    ]
)
"""Columns of ``captions.parquet``: DESIGN.md's six, the kind (``scene`` or ``change``) and the pair (change rows:
the site and both sample ids; ``sample_id`` is the later one's), then focus, the evidence of the caption's cover
statements (``observed``, ``map``, ``observed+map``, ``none``; change rows ``change``, ``map``, ``unobservable``;
null when the backend does not say), seed, tags, token usage and cache hits."""
SCENE, CHANGE = "scene", "change"
_IDENTITY = ["backend", "model", "prompt_sha256", "seed"]


@writes_dataset("caption")
def caption(
    ds: str | Path,
    config: CaptionConfig | None = None,
    *,
    backend: str | Captioner | Callable[..., Any] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    **settings: Any,
) -> pd.DataFrame:
    """Caption the samples of ``DS`` and write ``DS/captions.parquet`` and ``DS/report/captions.json``.

    Args:
        ds: The dataset folder (it must hold a plan; labels and chips add facts).
        config: The caption settings; otherwise ``settings`` build one (``n=5, seed=0, limit=100``...).
        backend: A backend name, dotted path, factory or ready :class:`Captioner`; overrides ``config.backend``.
        overwrite: Re-caption samples that already have captions (from any backend).
        progress: Show a progress bar; ``None`` shows one on a terminal.
        **settings: :class:`CaptionConfig` fields, when ``config`` is not given.

    Returns:
        The whole captions table (one row per caption); ``.attrs["report"]`` holds the report.
    """
    cfg = config if config is not None else CaptionConfig.from_mapping(settings)
    ds = Path(ds)
    plan = read_samples(ds)
    captioner = get_captioner(
        backend if backend is not None else cfg.backend, **cfg.backend_options(), cache_dir=ds / CACHE_DIR
    )
    existing = _read_existing(ds)
    scene_old = existing[existing["kind"] == SCENE] if existing is not None else None
    change_old = existing[existing["kind"] == CHANGE] if existing is not None else None
    order = plan["sample_id"].astype(str).tolist()
    selected = order[: cfg.limit] if cfg.limit is not None else order
    seed = _seed_of(captioner, cfg.seed)
    identity = (captioner.name, captioner.model, captioner.prompt_sha256, seed)
    todo = _todo(ds, scene_old, selected, identity, cfg.n, overwrite)
    pair_todo, pairs_selected = _pairs_todo(ds, plan, change_old, selected, captioner, cfg, seed, overwrite)
    new_change, failed_pairs, change_run = None, [], {}
    if not pair_todo.empty:
        new_change, failed_pairs, change_run = _run_changes(captioner, ds, plan, pair_todo, cfg, progress, seed)
        if failed_pairs and len(failed_pairs) == len(pair_todo) - change_run.get("unobservable", 0):
            raise PluginError(
                f"caption backend {captioner.name!r} captioned none of the {len(failed_pairs)} sample pairs "
                "(see the warnings above); nothing was written"
            )
    unobservable = change_run.get("unobservable", 0)
    if not todo and (new_change is None or new_change.empty) and not failed_pairs:
        table = _restore(ds, existing, order)
        table.attrs["report"] = _saved_report(ds)
        table.attrs["run"] = {"captioned": 0, "skipped": len(selected), "failed": 0}
        if pairs_selected:
            table.attrs["run"].update(pairs_captioned=0, pairs_skipped=pairs_selected - unobservable,
                                      pairs_failed=0, pairs_unobservable=unobservable)  # fmt: skip
        return table
    wanted = set(todo)
    new, failed, run = None, [], {}
    if todo:
        builder = ContextBuilder(ds, plan[plan["sample_id"].astype(str).isin(wanted)])
        new, failed, run = _run(captioner, builder, cfg, progress, seed)
        n_built = len(builder)
        # The builder's tables (chips, labels, places: about 1 GB at 200,000 samples) are not needed by the
        # report below, where the run's memory peaks: let them go, and Arrow's pool hand their pages back.
        del builder
        pa.default_memory_pool().release_unused()
        if failed and len(failed) == n_built:
            raise PluginError(
                f"caption backend {captioner.name!r} captioned none of the {n_built} samples "
                "(see the warnings above); nothing was written"
            )
    if failed or failed_pairs:
        pairs_part = f" and {len(failed_pairs)} of {len(pair_todo)} pairs" if len(pair_todo) else ""
        warnings.warn(
            f"{len(failed)} of {len(todo)} samples{pairs_part} could not be captioned (listed in {REPORT_FILE}); "
            "re-run the same command to retry them",
            DataQualityWarning,
            stacklevel=2,
        )
    keep = scene_old[~scene_old["sample_id"].isin(wanted)] if scene_old is not None else None
    redone = set(zip(pair_todo["sample_id_before"], pair_todo["sample_id_after"], strict=True))
    keep_change = None
    if change_old is not None:
        keys = list(zip(change_old["sample_id_before"], change_old["sample_id_after"], strict=True))
        keep_change = change_old[[key not in redone for key in keys]]
    parts = [t for t in (keep, new, keep_change, new_change) if t is not None and len(t)]
    table = _ordered(pd.concat(parts, ignore_index=True), order)
    labels = read_table(ds, LABELS_FILE, hint=f"geosample label {ds}")
    taxonomy = load_labels_taxonomy(ds, sorted(labels["taxonomy"].dropna().unique())) if labels is not None else None
    scene = table[table["kind"] == SCENE].reset_index(drop=True)
    extra = fact_classes(ds, plan, taxonomy, set(scene["sample_id"].astype(str))) if labels is not None else None
    report = caption_report(
        scene, labels=labels, taxonomy=taxonomy, run=run, failed=failed, extra=extra, semantic=cfg.semantic
    )
    changes = table[table["kind"] == CHANGE].reset_index(drop=True)
    if len(changes) or unobservable:
        observed = read_table(ds, CHANGE_FILE, hint=f"geosample label {ds}")
        report["change"] = change_report(changes, labels=labels, taxonomy=taxonomy, run=change_run,
                                         failed=failed_pairs, change=observed)  # fmt: skip
    _write(ds, table, report)
    write_section(
        ds,
        "caption",
        {
            **cfg.to_dict(),
            "backend_used": captioner.name,
            "model_used": captioner.model,
            "prompt_sha256": captioner.prompt_sha256,
            "change_prompt_sha256": getattr(captioner, "change_prompt_sha256", None),
            "n_samples": int(scene["sample_id"].nunique()),
            "n_pairs": int(changes[["sample_id_before", "sample_id_after"]].drop_duplicates().shape[0]),
            "geosample_version": __version__,
        },
    )
    table.attrs["report"] = report
    table.attrs["run"] = {"captioned": len(todo) - len(failed), "skipped": len(selected) - len(todo),
                          "failed": len(failed)}  # fmt: skip
    if pairs_selected:
        table.attrs["run"].update(
            pairs_captioned=len(pair_todo) - len(failed_pairs) - unobservable,
            pairs_skipped=pairs_selected - len(pair_todo),
            pairs_failed=len(failed_pairs),
            pairs_unobservable=unobservable,
        )
    return table


def _pairs_todo(
    ds: Path,
    plan: pd.DataFrame,
    existing: pd.DataFrame | None,
    selected: list[str],
    captioner: Captioner,
    cfg: CaptionConfig,
    seed: int,
    overwrite: bool,
) -> tuple[pd.DataFrame, int]:
    """Pairs of selected samples still to caption, and how many pairs were selected."""
    table = pairs(plan) if cfg.change else pairs(plan.iloc[:0])
    chosen = set(selected)
    table = table[table["sample_id_before"].isin(chosen) & table["sample_id_after"].isin(chosen)]
    if table.empty:
        return table, 0
    if not isinstance(captioner, ChangeCaptioner):
        warnings.warn(
            f"caption backend {captioner.name!r} does not write change captions (no caption_changes method); "
            f"the {len(table)} sample pairs get scene captions only",
            PluginWarning,
            stacklevel=3,
        )
        return table.iloc[:0], 0
    identity = (captioner.name, captioner.model, captioner.change_prompt_sha256, seed)
    if existing is None or existing.empty or overwrite:
        return table.reset_index(drop=True), len(table)
    per_pair = existing.groupby(["sample_id_before", "sample_id_after"], sort=False).agg(
        backend=("backend", "first"),
        model=("model", "first"),
        prompt_sha256=("prompt_sha256", "first"),
        seed=("seed", "first"),
        count=("caption", "size"),
    )
    keys = pd.MultiIndex.from_frame(table[["sample_id_before", "sample_id_after"]])
    done = per_pair[per_pair.index.isin(keys)]
    same = (
        (done["backend"] == identity[0])
        & (done["model"] == identity[1])
        & (done["prompt_sha256"] == identity[2])
        & (pd.to_numeric(done["seed"], errors="coerce") == identity[3])
        & (done["count"] == cfg.n)
    )
    other = done[~same]
    if len(other):
        (first_before, first_after), first = other.index[0], other.iloc[0]
        raise DatasetError(
            f"{len(other)} of the sample pairs to caption already have change captions made with other settings in "
            f"{ds / CAPTIONS_FILE} (e.g. {first_before} -> {first_after}: backend {first['backend']}, model "
            f"{first['model']}, {first['count']} captions); use --overwrite to replace them"
        )
    finished = set(done.index[same])
    keep = [(b, a) not in finished for b, a in zip(table["sample_id_before"], table["sample_id_after"], strict=True)]
    return table[keep].reset_index(drop=True), len(table)


def _run_changes(
    captioner: ChangeCaptioner,
    ds: Path,
    plan: pd.DataFrame,
    todo: pd.DataFrame,
    cfg: CaptionConfig,
    progress: bool | None,
    seed: int,
) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """Change captions of every pair of ``todo``, in batches; the new rows, the pairs that failed, run totals."""
    from tqdm.auto import tqdm

    ids = set(todo["sample_id_before"]) | set(todo["sample_id_after"])
    rows = plan[plan["sample_id"].astype(str).isin(ids)].reset_index(drop=True)
    builder = ContextBuilder(ds, rows)
    position = {sample_id: i for i, sample_id in enumerate(builder.ids)}
    facts = pd.DataFrame(rows.drop(columns="geometry", errors="ignore")).set_index("sample_id", drop=False)
    observed = _observed_changes(ds)
    show = sys.stderr.isatty() if progress is None else progress
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    failed: list[str] = []
    run = {"pairs": len(todo), "requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
           "unobservable": 0, "unobservable_reasons": {}}  # fmt: skip
    started = time.perf_counter()
    records = todo.to_dict("records")
    with tqdm(total=len(records), unit="pair", desc="change captions", disable=not show, leave=False) as bar:
        for start in range(0, len(records), cfg.batch_size):
            batch = records[start : start + cfg.batch_size]
            contexts, kept = [], []
            for rec in batch:
                first = builder.batch(position[rec["sample_id_before"]], position[rec["sample_id_before"]] + 1)[0]
                last = builder.batch(position[rec["sample_id_after"]], position[rec["sample_id_after"]] + 1)[0]
                found = observed.get((rec["sample_id_before"], rec["sample_id_after"]))
                context = change_context(first, last, rec, facts.loc[rec["sample_id_after"]].to_dict(), found)
                if not context.observable:
                    # No backend is asked about a change the data cannot show; the report counts these pairs.
                    run["unobservable"] += 1
                    reasons = run["unobservable_reasons"]
                    reasons[context.unobservable] = reasons.get(context.unobservable, 0) + 1
                    continue
                contexts.append(context)
                kept.append(rec)
            batch = kept
            results = change_results_of(captioner, contexts, cfg.n) if contexts else []
            for rec, result in zip(batch, results, strict=True):
                label = f"{rec['sample_id_before']} -> {rec['sample_id_after']}"
                captions = _checked(captioner, label, result, cfg.n)
                if captions is None:
                    failed.append(label)
                    continue
                _count(run, result)
                before = len(columns["sample_id"])
                _extend(columns, captioner, rec["sample_id_after"], captions, result, seed, kind=CHANGE)
                added = len(columns["sample_id"]) - before
                columns["prompt_sha256"][-added:] = [captioner.change_prompt_sha256] * added
                for name in PAIR_COLUMNS:
                    columns[name][-added:] = [str(rec[name])] * added
            bar.update(len(records[start : start + cfg.batch_size]))
    run["seconds"] = round(time.perf_counter() - started, 3)
    return pd.DataFrame(columns), failed, run


def _observed_changes(ds: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows of ``change.parquet`` by (before, after) sample ids; empty when the file is absent."""
    table = read_table(ds, CHANGE_FILE, hint=f"geosample label {ds}")
    if table is None or table.empty:
        return {}
    missing = [c for c in ("sample_id_before", "sample_id_after") if c not in table]
    if missing:
        raise DatasetError(f"{ds / CHANGE_FILE} lacks columns {', '.join(missing)}; re-run 'geosample label {ds}'")
    records = table.to_dict("records")
    return {(str(r["sample_id_before"]), str(r["sample_id_after"])): r for r in records}


def _seed_of(captioner: Captioner, default: int) -> int:
    """The seed a backend says it uses (a ready instance may carry its own), else the configured one."""
    seed = getattr(captioner, "seed", None)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else default


def _read_existing(ds: Path) -> pd.DataFrame | None:
    path = ds / CAPTIONS_FILE
    if not path.exists():
        return None
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise DatasetError(
            f"{path} cannot be read ({exc.__class__.__name__}); delete it (or move it away) and re-run "
            f"'geosample caption {ds}'"
        ) from None
    missing = [name for name in ("sample_id", "caption_index", "caption", *_IDENTITY) if name not in table]
    if missing:
        raise DatasetError(
            f"{ds / CAPTIONS_FILE} lacks columns {', '.join(missing)}; move it away or re-run with --overwrite"
        )
    for name in SCHEMA.names:
        if name not in table:
            table[name] = SCENE if name == "kind" else None
    return table[SCHEMA.names]


def _todo(
    ds: Path, existing: pd.DataFrame | None, selected: list[str], identity: tuple, n: int, overwrite: bool
) -> list[str]:
    """Selected samples still to caption; refuses to replace other settings' captions without ``overwrite``."""
    if existing is None or overwrite:
        return list(selected)
    chosen = existing[existing["sample_id"].isin(set(selected))]
    if chosen.empty:
        return list(selected)
    per_sample = chosen.groupby("sample_id", sort=False).agg(
        backend=("backend", "first"),
        model=("model", "first"),
        prompt_sha256=("prompt_sha256", "first"),
        seed=("seed", "first"),
        count=("caption", "size"),
        kinds=("prompt_sha256", "nunique"),
    )
    same = (
        (per_sample["backend"] == identity[0])
        & (per_sample["model"] == identity[1])
        & (per_sample["prompt_sha256"] == identity[2])
        & (pd.to_numeric(per_sample["seed"], errors="coerce") == identity[3])
        & (per_sample["count"] == n)
        & (per_sample["kinds"] == 1)
    )
    other = per_sample[~same]
    if len(other):
        first = other.iloc[0]
        raise DatasetError(
            f"{len(other)} of the samples to caption already have captions made with other settings in "
            f"{ds / CAPTIONS_FILE} (e.g. {other.index[0]}: backend {first['backend']}, model {first['model']}, "
            f"{first['count']} captions); use --overwrite to replace them"
        )
    done = set(per_sample.index[same])
    return [s for s in selected if s not in done]


def _run(
    captioner: Captioner, builder: ContextBuilder, cfg: CaptionConfig, progress: bool | None, seed: int
) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """Caption every sample of ``builder`` in batches; the new rows, the samples that failed, and run totals."""
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    failed: list[str] = []
    run = {"samples": len(builder), "requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0}
    started = time.perf_counter()
    with tqdm(total=len(builder), unit="sample", desc="caption", disable=not show, leave=False) as bar:
        for start in range(0, len(builder), cfg.batch_size):
            batch = builder.batch(start, start + cfg.batch_size)
            for context, result in zip(batch, results_of(captioner, batch, cfg.n), strict=True):
                captions = _checked(captioner, context.sample_id, result, cfg.n)
                if captions is None:
                    failed.append(context.sample_id)
                    continue
                _count(run, result)
                _extend(columns, captioner, context.sample_id, captions, result, seed)
            bar.update(len(batch))
    run["seconds"] = round(time.perf_counter() - started, 3)
    return pd.DataFrame(columns), failed, run


def _checked(captioner: Captioner, sample_id: str, result: CaptionResult, n: int) -> list[str] | None:
    if not result.captions:
        return None
    captions = [c.strip() if isinstance(c, str) else c for c in result.captions]
    if len(captions) != n or not all(isinstance(c, str) and c for c in captions):
        raise PluginError(
            f"caption backend {captioner.name!r} answered sample {sample_id} with {len(captions)} captions "
            f"(empty or not text: {sum(1 for c in captions if not (isinstance(c, str) and c))}); expected {n} "
            "non-empty strings"
        )
    return captions


def _count(run: dict[str, Any], result: CaptionResult) -> None:
    if result.cache_hit:
        run["cache_hits"] += 1
        return
    if result.prompt_tokens is not None or result.completion_tokens is not None or result.cache_hit is False:
        run["requests"] += 1
        run["prompt_tokens"] += int(result.prompt_tokens or 0)
        run["completion_tokens"] += int(result.completion_tokens or 0)


def _extend(
    columns: dict[str, list[Any]],
    captioner: Captioner,
    sample_id: str,
    captions: list[str],
    result: CaptionResult,
    seed: int,
    kind: str = SCENE,
) -> None:
    """Append one sample's (or pair's) rows to the column lists; pair columns stay null."""
    k = len(captions)
    focus = result.focus if result.focus is not None and len(result.focus) == k else [None] * k
    evidence = result.evidence if result.evidence is not None and len(result.evidence) == k else [None] * k
    columns["sample_id"] += [sample_id] * k
    columns["caption_index"] += range(k)
    columns["caption"] += captions
    columns["backend"] += [captioner.name] * k
    columns["model"] += [captioner.model] * k
    columns["prompt_sha256"] += [captioner.prompt_sha256] * k
    columns["kind"] += [kind] * k
    for name in PAIR_COLUMNS:
        columns[name] += [None] * k
    columns["focus"] += focus
    columns["evidence"] += evidence
    columns["seed"] += [seed] * k
    columns["tags"] += [list(result.tags) if result.tags else None] * k
    columns["usage_prompt_tokens"] += [result.prompt_tokens] * k
    columns["usage_completion_tokens"] += [result.completion_tokens] * k
    columns["cache_hit"] += [result.cache_hit] * k


def _ordered(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Rows in plan order, scene captions before change captions, then caption index; stale samples dropped."""
    rank = pd.Series(np.arange(len(order)), index=order)
    position = table["sample_id"].map(rank)
    stale = int(position.isna().sum())
    if stale:
        warnings.warn(
            f"dropped {stale} captions of samples that are no longer in the plan", DataQualityWarning, stacklevel=3
        )
    table = table[position.notna()].assign(_rank=position[position.notna()], _kind=table["kind"].ne(SCENE))
    table = table.sort_values(["_rank", "_kind", "caption_index"], kind="stable").drop(columns=["_rank", "_kind"])
    return table.reset_index(drop=True)


def _restore(ds: Path, existing: pd.DataFrame | None, order: list[str]) -> pd.DataFrame:
    if existing is None:
        return pd.DataFrame(columns=SCHEMA.names)
    return _ordered(existing, order)


def _saved_report(ds: Path) -> dict[str, Any]:
    path = ds / REPORT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write(ds: Path, table: pd.DataFrame, report: dict[str, Any]) -> None:
    arrow = pa.Table.from_pandas(table[SCHEMA.names], schema=SCHEMA, preserve_index=False)
    text = json.dumps(report, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    with atomic_path(ds / CAPTIONS_FILE) as tmp:
        pq.write_table(arrow, tmp, compression="zstd")
    with atomic_path(ds / REPORT_FILE) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_default(value: object) -> object:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def refresh_report(ds: str | Path, table: pd.DataFrame, cfg: CaptionConfig) -> dict[str, Any]:
    """``report/captions.json`` with its quality section, recomputed when it lacks one (or the semantic check).

    A run with nothing to caption keeps the saved report; ``--check`` needs the
    figures of the current table, so a report from an older version is redone.
    """
    ds = Path(ds)
    report = table.attrs.get("report") or _saved_report(ds)
    wants_semantic = cfg.semantic and "semantic" not in report.get("quality", {})
    if report.get("quality") and not wants_semantic:
        return report
    plan = read_samples(ds)
    labels = read_table(ds, LABELS_FILE, hint=f"geosample label {ds}")
    taxonomy = load_labels_taxonomy(ds, sorted(labels["taxonomy"].dropna().unique())) if labels is not None else None
    scene = table[table["kind"] == SCENE].reset_index(drop=True)
    extra = fact_classes(ds, plan, taxonomy, set(scene["sample_id"].astype(str))) if labels is not None else None
    fresh = caption_report(scene, labels=labels, taxonomy=taxonomy, run=report.get("usage", {}).get("this_run", {}),
                           failed=[], extra=extra, semantic=cfg.semantic)  # fmt: skip
    if "change" in report:
        fresh["change"] = report["change"]
    _write(ds, table, fresh)
    return fresh
