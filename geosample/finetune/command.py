"""``geosample finetune``: parse flags, call :func:`geosample.finetune.finetune`, print the before/after table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geosample.cli import CONTEXT, command_settings, config_option
from geosample.errors import ConfigError
from geosample.retrieval.command import encoder_options


@click.command(context_settings=CONTEXT)
@click.argument("ds", required=False, type=click.Path(path_type=Path))
@encoder_options
@click.option("--run", help="Run folder name under DS/finetune/.  [default: <encoder>-<kind>-seed<seed>]")
@click.option("--adapter-kind", type=click.Choice(["linear", "mlp"]), help="Residual adapter per side.  [default: mlp]")
@click.option("--hidden", type=int, help="Hidden width of the MLP adapter.  [default: 256]")
@click.option("--epochs", type=int, help="Most epochs.  [default: 200]")
@click.option("--patience", type=int, help="Epochs without a better validation loss before stopping.  [default: 15]")
@click.option("--train-batch-size", type=int, help="Image–caption pairs per InfoNCE batch.  [default: 256]")
@click.option("--lr", type=float, help="AdamW learning rate.  [default: 1e-3]")
@click.option("--weight-decay", type=float, help="AdamW weight decay.  [default: 1e-4]")
@click.option("--temperature", type=float, help="Initial InfoNCE temperature (learned).  [default: 0.07]")
@click.option("--seed", type=int, help="Seed of training and of the bootstrap.  [default: 0]")
@click.option("--overwrite", is_flag=True, default=None, help="Replace a run folder of the same name.")
@config_option
@click.option("-q", "--quiet", is_flag=True, help="Print no table.")
@click.pass_context
def finetune(ctx: click.Context, ds: Path | None, config_path: Path | None, quiet: bool, **flags: Any) -> None:
    """Adapter-tune an encoder on DS's train split; before/after metrics of its test split in DS/finetune/RUN/."""
    from geosample.finetune.config import FinetuneConfig
    from geosample.finetune.train import finetune as run_finetune
    from geosample.finetune.train import headline

    settings = command_settings(ctx, config_path, "finetune", flags)
    base_dir = config_path.parent if config_path is not None else None
    folder, out = settings.pop("ds", None), settings.pop("out", None)
    folder = out if folder is None else folder
    if ds is None:
        if folder is None:
            raise ConfigError("no dataset folder given; run 'geosample finetune DS ...' (or 'ds:' in the config)")
        ds = Path(folder)
    cfg = FinetuneConfig.from_mapping(settings, base_dir=base_dir)
    result = run_finetune(ds, config=cfg)
    if not quiet:
        click.echo(result.table())
        click.echo("")
        click.echo(headline(result.change))
        click.echo(f"wrote {result.folder}/ (adapter.pt, config.yaml, loss.png, before_after.json, before_after.txt)")
