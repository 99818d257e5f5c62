"""``geosample.finetune``: train residual adapters on the train split, evaluate the test split before and after.

The seeds' protocol at small scale (LuoJiaHOG adapter-tunes frozen models):
frozen image and caption embeddings from any registered encoder, one
residual adapter per side trained with a symmetric InfoNCE loss on the
dataset's ``train`` split (one caption per image, drawn anew each epoch),
early stopping on the ``validation`` split's loss, then every metric of
``geosample evaluate`` on the ``test`` split with the frozen and with the
adapted embeddings. The splits are those ``geosample export`` deals
(:mod:`geosample.export.splits`), so no test sample or its site is trained on.
Changes carry 95 % intervals from a paired bootstrap: the same replicates
resample the before and after scores of the same queries.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from geosample import __version__
from geosample._dataset import read_config, write_section
from geosample.errors import ConfigError, DatasetError
from geosample.finetune.config import FinetuneConfig
from geosample.retrieval.encoders import IMAGE_KEYS, TEXT_KEYS, Embeddings, Encoder, get_encoder

FINETUNE_DIR = "finetune"
ADAPTER_FILE = "adapter.pt"
CONFIG_FILE = "config.yaml"
LOSS_FILE = "loss.png"
RESULTS_FILE = "before_after.json"
TABLE_FILE = "before_after.txt"


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` trained and measured."""

    folder: Path
    """``DS/finetune/<run>``."""
    before: dict[str, Any]
    """metrics.json-shaped metrics of the test split with the frozen embeddings."""
    after: dict[str, Any]
    """The same with the adapted embeddings."""
    change: dict[str, Any]
    """``{"unweighted"|"weighted": {"<direction>/<metric>": {"before", "after", "change", "ci95"}}}``."""
    history: pd.DataFrame
    """``epoch``, ``train_loss``, ``validation_loss`` per epoch."""
    best_epoch: int
    """The epoch whose weights were kept."""
    splits: dict[str, int]
    """Samples per split used."""

    def table(self) -> str:
        """The before/after table ``geosample finetune`` prints."""
        return before_after_table(self.change, self.splits, self.best_epoch, len(self.history))


def finetune(
    ds: str | Path,
    *,
    config: FinetuneConfig | None = None,
    encoder: Encoder | str | None = None,
    **settings: Any,
) -> FinetuneResult:
    """Train adapters on ``ds``'s train split; write ``DS/finetune/<run>/`` and return the before/after metrics.

    Args:
        ds: Dataset folder with plan, captions and (for label metrics) labels.
        config: A ready :class:`FinetuneConfig`; otherwise ``settings`` build one.
        encoder: An encoder instance instead of the one ``config.evaluate.encoder`` names.
        **settings: :class:`FinetuneConfig` fields and ``geosample evaluate`` settings.
    """
    from geosample.finetune.adapter import AdaptedEncoder
    from geosample.retrieval._inputs import read_inputs
    from geosample.retrieval._splits import dataset_splits
    from geosample.retrieval.evaluate import evaluate

    if isinstance(encoder, str):  # a registered name or module:Class, as the settings give it
        settings, encoder = {**settings, "encoder": encoder}, None
    cfg = config if config is not None else FinetuneConfig.from_mapping(settings)
    if encoder is not None:  # the run is named and recorded after the instance, not the default setting
        name = str(getattr(encoder, "name", type(encoder).__name__))
        cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, encoder=name))
    ds = Path(ds)
    folder = ds / FINETUNE_DIR / cfg.run_name
    if folder.exists() and not cfg.overwrite:
        raise ConfigError(f"{folder} exists; choose another --run name or pass --overwrite")
    ev = dataclasses.replace(cfg.evaluate, split=None)
    inputs = read_inputs(ds, ev)
    model = encoder if encoder is not None else get_encoder(ev.encoder, ev)
    prepare = getattr(model, "prepare", None)
    if callable(prepare):
        prepare(ds)
    frozen = FrozenEncoder(model, model.encode_images(ds, inputs.samples), model.encode_texts(inputs.captions))
    split = dataset_splits(ds)
    pairs = _training_pairs(frozen, inputs.captions, split)
    counts = {name: int(len(pairs[name][0])) for name in pairs}
    for name, least in (("train", 2), ("validation", 2), ("test", 1)):
        if counts[name] < least:
            raise DatasetError(
                f"the {name} split of {ds} has {counts[name]} sample(s) with an image and a caption embedding; "
                f"finetune needs at least {least} (a larger dataset, or other export split fractions)"
            )
    started = time.perf_counter()
    adapter, history, best = train_adapter(pairs, cfg)
    trained = time.perf_counter() - started
    test = dataclasses.replace(ev, split="test")
    before = evaluate(ds, config=test, encoder=frozen, write=False)
    after = evaluate(ds, config=test, encoder=AdaptedEncoder(frozen, adapter), write=False)
    change = compare(before, after, cfg.evaluate.bootstrap, cfg.evaluate.seed)
    result = FinetuneResult(folder, before.metrics, after.metrics, change, history, best, counts)
    meta = {"encoder": getattr(model, "name", type(model).__name__), "run": cfg.run_name, "best_epoch": best,
            "geosample_version": __version__}  # fmt: skip
    _write(ds, folder, result, adapter, meta, cfg, trained)
    return result


class FrozenEncoder:
    """Embeddings computed once, served again (the base encoder embeds zero-shot prompts)."""

    def __init__(self, base: Encoder, images: Embeddings, texts: Embeddings) -> None:
        self.base, self.images, self.texts = base, images, texts
        self.name = getattr(base, "name", type(base).__name__)

    def encode_images(self, ds: Path, samples: pd.DataFrame) -> Embeddings:  # noqa: D102
        return self.images

    def encode_texts(self, captions: pd.DataFrame) -> Embeddings:  # noqa: D102
        return self.texts

    def encode_prompts(self, prompts: Mapping[str, str]) -> Embeddings | None:  # noqa: D102
        return self.base.encode_prompts(prompts)


def _training_pairs(
    frozen: FrozenEncoder, captions: pd.DataFrame, split: pd.Series
) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """Per split: unit image vectors, and for each image the unit vectors of its captions."""
    images = frozen.images.keys.assign(row=np.arange(len(frozen.images.keys)))
    texts = frozen.texts.keys.assign(row=np.arange(len(frozen.texts.keys)))
    texts = texts.merge(captions[list(TEXT_KEYS)], on=list(TEXT_KEYS))
    by_sample = texts.groupby("sample_id")["row"].apply(list)
    images = images[images[IMAGE_KEYS[0]].isin(by_sample.index)]
    image_vectors = _unit(frozen.images.vectors)
    text_vectors = _unit(frozen.texts.vectors)
    out = {}
    for name in ("train", "validation", "test"):
        mine = images[images["sample_id"].map(split).to_numpy() == name]
        out[name] = (image_vectors[mine["row"].to_numpy()],
                     [text_vectors[by_sample[s]] for s in mine["sample_id"]])  # fmt: skip
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def train_adapter(
    pairs: Mapping[str, tuple[np.ndarray, list[np.ndarray]]], cfg: FinetuneConfig
) -> tuple[Any, pd.DataFrame, int]:
    """Train a :class:`PairAdapter`; return it (best validation epoch's weights, on the CPU), the losses, that epoch."""
    import torch

    from geosample.retrieval.search import resolve_device

    device = resolve_device(cfg.evaluate.device)
    if device == "cpu":
        # Small matrices: each op is over before more threads pay for themselves, and on a busy machine
        # waiting threads cost far more than they compute (measured 10× slower with 2 threads under load).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _train(pairs, cfg, device)
        finally:
            torch.set_num_threads(threads)
    return _train(pairs, cfg, device)


def _train(
    pairs: Mapping[str, tuple[np.ndarray, list[np.ndarray]]], cfg: FinetuneConfig, device: str
) -> tuple[Any, pd.DataFrame, int]:
    import torch

    from geosample.finetune.adapter import PairAdapter

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_images, train_texts = pairs["train"]
    val_images, val_texts = pairs["validation"]
    dim = train_images.shape[1]
    model = PairAdapter(dim, cfg.adapter_kind, cfg.hidden, cfg.temperature).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    images = torch.from_numpy(train_images).to(device)
    # Validation: one fixed caption per image, in fixed batches.
    val_pick = np.stack([t[rng.integers(len(t))] for t in val_texts])
    val_a, val_b = torch.from_numpy(val_images).to(device), torch.from_numpy(val_pick).to(device)
    size = cfg.train_batch_size
    rows: list[dict[str, float]] = []
    best, best_loss, best_state, waited = 0, np.inf, None, 0
    for epoch in range(cfg.epochs + 1):
        model.train()
        total, batches = 0.0, 0
        if epoch > 0:  # epoch 0 measures the untrained (identity) adapter
            order = rng.permutation(len(train_images))
            picks = np.stack([train_texts[i][rng.integers(len(train_texts[i]))] for i in order])
            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                if len(chunk) < 2:
                    continue
                loss = model.loss(images[chunk], torch.from_numpy(picks[start : start + size]).to(device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, batches = total + loss.item(), batches + 1
        model.eval()
        with torch.no_grad():
            val_losses = [
                float(model.loss(val_a[s : s + size], val_b[s : s + size]))
                for s in range(0, len(val_a), size)
                if len(val_a[s : s + size]) >= 2
            ]
        val_loss = float(np.mean(val_losses)) if val_losses else np.nan
        rows.append({"epoch": epoch, "train_loss": total / batches if batches else np.nan, "validation_loss": val_loss})
        if val_loss < best_loss - 1e-5:
            best, best_loss, waited = epoch, val_loss, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elif epoch > 0:
            waited += 1
            if waited >= cfg.patience:
                break
    model = model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, pd.DataFrame(rows), best


def compare(before: Any, after: Any, replicates: int, seed: int) -> dict[str, Any]:
    """Every metric before and after, weighted and not, with paired-bootstrap intervals of each and of the change."""
    from geosample.retrieval.design import estimate

    def scores(frame: pd.DataFrame, other: pd.DataFrame) -> list[str]:
        return [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c]) and c in other.columns]

    keep_i, keep_t = scores(before.images, after.images), scores(before.texts, after.texts)
    image_values = pd.concat(
        [before.images[keep_i].add_prefix("before:"), after.images[keep_i].add_prefix("after:")], axis=1
    )
    text_values = pd.concat(
        [before.texts[keep_t].add_prefix("before:"), after.texts[keep_t].add_prefix("after:")], axis=1
    )
    text_image = pd.Index(before.images["sample_id"]).get_indexer(before.texts["sample_id"])
    est = estimate(before.design, image_values, text_values, text_image, [np.ones(len(image_values), bool)],
                   replicates=replicates, seed=seed)[0]  # fmt: skip
    out: dict[str, Any] = {}
    columns = est.columns
    for section, point, reps in (("unweighted", est.unweighted, est.replicates_unweighted),
                                 ("weighted", est.weighted, est.replicates_weighted)):  # fmt: skip
        table: dict[str, Any] = {}
        for name in [c for c in columns if ":" in c and c.split(":", 1)[0].endswith("before")]:
            direction, metric = name.split("/", 1)
            metric = metric.removeprefix("before:")
            a, b = columns.index(name), columns.index(f"{direction}/after:{metric}")
            entry = {"before": _num(point[a]), "after": _num(point[b]), "change": _num(point[b] - point[a])}
            if reps is not None:
                entry["ci95"] = {
                    "before": _interval(reps[:, a]), "after": _interval(reps[:, b]),
                    "change": _interval(reps[:, b] - reps[:, a]),
                }  # fmt: skip
            table[f"{direction}/{metric}"] = entry
        parts = [f"{d}/R@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)]
        if all(p in table for p in parts):
            idx = {
                w: [columns.index(f"{p.split('/')[0]}/{w}:{p.split('/')[1]}") for p in parts]
                for w in ("before", "after")
            }
            mr = {w: float(np.mean(point[idx[w]])) for w in idx}
            entry = {"before": mr["before"], "after": mr["after"], "change": mr["after"] - mr["before"]}
            if reps is not None:
                rb, ra = reps[:, idx["before"]].mean(axis=1), reps[:, idx["after"]].mean(axis=1)
                entry["ci95"] = {"before": _interval(rb), "after": _interval(ra), "change": _interval(ra - rb)}
            table["mR"] = entry
        out[section] = table
    return out


def _num(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _interval(values: np.ndarray) -> list[float] | None:
    values = values[~np.isnan(values)]
    if not values.size:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def before_after_table(change: dict[str, Any], splits: dict[str, int], best: int, epochs: int) -> str:
    """Every metric of the test split before and after, per-sample mean and weighted, with 95 % intervals."""
    lines = [
        f"adapter trained on {splits['train']} images (validation {splits['validation']}), best epoch {best} of "
        f"{epochs - 1}; test split: {splits['test']} images"
    ]
    for section, title in (("weighted", "1/π-weighted"), ("unweighted", "per-sample mean")):
        table = change[section]
        width = max(len(n) for n in table)
        lines += ["", f"{title} (test split)", f"{'metric':<{width}}  {'before':>22}  {'after':>22}  {'change':>24}"]
        for name, entry in table.items():
            ci = entry.get("ci95") or {}
            lines.append(
                f"{name:<{width}}  {_cell(entry['before'], ci.get('before')):>22}  "
                f"{_cell(entry['after'], ci.get('after')):>22}  {_cell(entry['change'], ci.get('change'), True):>24}"
            )
    return "\n".join(lines)


def headline(change: dict[str, Any]) -> str:
    """One line: test R@1 of both directions before → after, weighted, with the change's interval."""
    parts = []
    for direction, label in (("image_to_text", "image→text"), ("text_to_image", "text→image")):
        entry = change["weighted"].get(f"{direction}/R@1")
        if entry is None or entry["before"] is None:
            continue
        ci = (entry.get("ci95") or {}).get("change")
        parts.append(
            f"{label} {entry['before']:.3f} → {entry['after']:.3f} ({entry['change']:+.3f}"
            + (f", 95 % CI {ci[0]:+.3f} to {ci[1]:+.3f})" if ci else ")")
        )
    return "test R@1 (weighted): " + "; ".join(parts)


def _cell(value: float | None, ci: list[float] | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    text = f"{value:+.4f}" if signed else f"{value:.4f}"
    if ci is None:
        return text
    return f"{text} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if signed else f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _write(ds: Path, folder: Path, result: FinetuneResult, adapter: Any, meta: dict[str, Any], cfg: FinetuneConfig,
           seconds: float) -> None:  # fmt: skip
    """Write the run folder under a temporary name, then move it into place; record the run in geosample.yaml."""
    from geosample.finetune._plots import plot_losses

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        adapter.save(staging / ADAPTER_FILE, meta)
        settings = {**cfg.to_dict(), "splits": result.splits, "best_epoch": result.best_epoch,
                    "epochs_run": len(result.history) - 1, "train_seconds": round(seconds, 2), **meta}  # fmt: skip
        (staging / CONFIG_FILE).write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
        plot_losses(result.history, result.best_epoch, staging / LOSS_FILE)
        payload = {"before": result.before, "after": result.after, "change": result.change,
                   "history": result.history.replace({np.nan: None}).to_dict("records")}  # fmt: skip
        (staging / RESULTS_FILE).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (staging / TABLE_FILE).write_text(headline(result.change) + "\n" + result.table() + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        staging.replace(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    runs = dict(read_config(ds).get("finetune") or {})
    runs[cfg.run_name] = {k: v for k, v in settings.items() if k != "run"}
    write_section(ds, "finetune", runs)
