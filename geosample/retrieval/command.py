"""``geosample evaluate``: parse flags, call :func:`geosample.retrieval.evaluate`, print the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geosample.cli import CONTEXT, command_settings, config_option
from geosample.errors import ConfigError

ENCODER_OPTIONS = [
    click.option(
        "--encoder",
        help="precomputed | open_clip | baseline | an installed encoder | module:Class  [default: precomputed]",
    ),
    click.option("--image-embeddings", help="precomputed: image embeddings, .npy (with --image-ids) or .parquet."),
    click.option("--text-embeddings", help="precomputed: caption embeddings, .npy (with --text-ids) or .parquet."),
    click.option("--image-ids", help="precomputed: sample_id per row of a .npy (text file, .npy or .parquet)."),
    click.option("--text-ids", help="precomputed: sample_id,caption_index per row of a .npy (CSV text or .parquet)."),
    click.option("--class-embeddings", help="precomputed: zero-shot prompt embeddings per taxonomy code (.parquet)."),
    click.option("--model", help="open_clip: model name (ViT-B-32) or a model-config JSON file."),
    click.option("--checkpoint", help="open_clip: local weights file (never downloaded)."),
    click.option(
        "--images", type=click.Choice(["chips", "previews"]), help="open_clip: image source.  [default: chips]"
    ),
    click.option("--rgb-bands", help="open_clip: chip bands shown as R,G,B.  [default: by name]"),
    click.option("--level", "levels", help="Label levels for mAP/WMAP relevance.  [default: l2,l3]"),
    click.option("--k", help="Cut-offs K for R@K, mAP@K, WMAP@K.  [default: 1,5,10]"),
    click.option("--strata", help="Plan columns for the per-stratum breakdown.  [default: the plan's strata]"),
    click.option("--device", help="auto | cpu | cuda | cuda:N  [default: auto]"),
    click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="Matmul precision on CUDA."),
    click.option("--batch-size", type=int, help="Images or texts per encoder batch.  [default: 64]"),
    click.option("--memory-cap", help="Working memory of the similarity search, e.g. 2GB.  [default: 2GiB]"),
    click.option("--prompt", help="Zero-shot prompt with {name}.  [default: 'a satellite image of {name}.']"),
    click.option("--taxonomy", help="Taxonomy for zero-shot class names.  [default: the labels' taxonomy]"),
    click.option(
        "--bootstrap", type=int, help="Stratified bootstrap replicates for 95 % intervals; 0: none.  [default: 1000]"
    ),
    click.option(
        "--ties",
        type=click.Choice(["index", "optimistic", "pessimistic", "expected"]),
        help="R@K and mR among exactly tied scores.  [default: expected]",
    ),
]


def encoder_options(command: Any) -> Any:
    """The encoder and metric options shared by ``evaluate`` and ``finetune``."""
    for option in reversed(ENCODER_OPTIONS):
        command = option(command)
    return command


@click.command(context_settings=CONTEXT)
@click.argument("ds", required=False, type=click.Path(path_type=Path))
@encoder_options
@click.option("--split", help="Evaluate only this split: train, validation or test (as geosample export deals them).")
@click.option("--adapter", help="An adapter.pt from 'geosample finetune', applied to the encoder's embeddings.")
@click.option("--seed", type=int, help="Seed of the bootstrap.  [default: 0]")
@config_option
@click.option("-q", "--quiet", is_flag=True, help="Print no table.")
@click.pass_context
def evaluate(ctx: click.Context, ds: Path | None, config_path: Path | None, quiet: bool, **flags: Any) -> None:
    """Image–text retrieval metrics of an encoder on DS: DS/eval/metrics.json and per_stratum.png."""
    from geosample.retrieval.config import EvaluateConfig
    from geosample.retrieval.evaluate import EVAL_DIR, METRICS_FILE, PLOT_FILE
    from geosample.retrieval.evaluate import evaluate as run_evaluate

    settings = command_settings(ctx, config_path, "evaluate", flags)
    base_dir = config_path.parent if config_path is not None else None
    # The folder may come from the config (``ds:``, or a shared top-level ``out:``), relative to the working directory.
    folder, out = settings.pop("ds", None), settings.pop("out", None)
    folder = out if folder is None else folder
    if ds is None:
        if folder is None:
            raise ConfigError("no dataset folder given; run 'geosample evaluate DS ...' (or 'ds:' in the config)")
        ds = Path(folder)
    cfg = EvaluateConfig.from_mapping(settings, base_dir=base_dir)
    result = run_evaluate(ds, config=cfg)
    if not quiet:
        click.echo(result.table())
        click.echo(f"wrote {ds / EVAL_DIR / METRICS_FILE} and {ds / EVAL_DIR / PLOT_FILE}")
