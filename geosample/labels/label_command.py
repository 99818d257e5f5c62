"""``geosample label``: the click wrapper over :func:`geosample.labels.label.label`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from geosample.cli import CONTEXT, command_settings, config_option, progress_option, quiet_option


@click.command(context_settings=CONTEXT)
@click.argument("ds", type=click.Path(path_type=Path))
@click.option("--taxonomy", help="Taxonomy file or shipped id.  [default: geosample-lulc]")
@click.option(
    "--source",
    help="embedded | RASTER | VECTOR:COLUMN | stac:COLLECTION  [default: embedded, MODIS IGBP 2019, offline]",
)
@click.option("--scheme", help="Crosswalk of the source's values: esa-worldcover, modis-igbp, corine, osm, ...")
@click.option("--min-fraction", type=float, help="Least share of a chip for a class to be a label.  [default: 0.05]")
@click.option("--resolution", type=float, help="Label pixel size in metres.  [default: the source's]")
@click.option("--stac", help="STAC API URL (or catalog.json) for a stac:COLLECTION source.")
@click.option("--asset", help="Asset key of the land-cover COG in a stac: source's items.")
@click.option("--sign", type=click.Choice(["planetary-computer", "none"]), help="Sign a stac: source's asset URLs.")
@click.option(
    "--workers", type=int, help="Threads reading the source (Dask: tasks in flight).  [default: 1 local, 8 stac:]"
)
@click.option("--dask-scheduler", help="'local' or tcp://HOST:PORT: count on a Dask cluster.")
@click.option(
    "--preset",
    help="An annual 10 m land-cover map through STAC: io-lulc-annual-v02 (2017-2023) or esa-worldcover (2020, 2021).",
)
@click.option(
    "--max-year-gap",
    type=int,
    help="Most years between a sample's window and the map year labelling it (annual sources).  [default: 2]",
)
@config_option
@click.option("--overwrite", is_flag=True, help="Replace labels made with other settings.")
@click.option("--allow-local-assets", is_flag=True, help="Let a stac: source read local files its catalogue names.")
@progress_option
@quiet_option
@click.pass_context
def label(
    ctx: click.Context,
    ds: Path,
    config_path: Path | None,
    overwrite: bool,
    allow_local_assets: bool,
    progress: bool | None,
    quiet: bool,
    **flags: Any,
) -> None:
    """Label every sample of DS with the taxonomy's classes at every level, into DS/labels.parquet."""
    from geosample.labels.config import LabelConfig
    from geosample.labels.label import label as run_label

    settings = command_settings(ctx, config_path, "label", flags)
    settings.pop("out", None)
    base_dir = config_path.parent if config_path is not None else None
    cfg = LabelConfig.from_mapping(settings, base_dir=base_dir)
    started = time.perf_counter()
    table = run_label(ds, cfg, progress=progress, overwrite=overwrite, allow_local_assets=allow_local_assets)
    if not quiet:
        click.echo(label_summary(table))
        click.echo(
            f"wrote {ds}/labels.parquet ({len(table)} samples), stac/labels/, trainingdml.json, report/labels.json "
            f"in {time.perf_counter() - started:.1f} s"
        )
        changed = table.attrs.get("change")
        if changed is not None:
            from geosample.labels.change import summary

            click.echo(f"{summary(changed)}; wrote {ds}/change.parquet and change/")


def label_summary(table: Any, top: int = 5) -> str:
    """Samples per dominant class at each level, most common first, with the classes' names."""
    names = table.attrs.get("class_names", {})
    lines = []
    for column in [c for c in table.columns if c.endswith("_dominant")]:
        counts = table[column].value_counts()
        shown = ", ".join(f"{names.get(code, code)} {n}" for code, n in counts.head(top).items())
        more = f", +{len(counts) - top} more" if len(counts) > top else ""
        lines.append(f"{column.removesuffix('_dominant')} ({len(counts)} dominant classes): {shown}{more}")
    return "\n".join(lines)
