"""``geosample fetch``: the click wrapper over :func:`geosample.stac.fetch`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geosample.cli import CONTEXT, command_settings, config_option, progress_option, quiet_option
from geosample.stac.presets import PRESETS


def _presets_help() -> str:
    return ", ".join(PRESETS)


@click.command(context_settings=CONTEXT)
@click.argument("ds", type=click.Path(path_type=Path))
@click.option("--stac", help="STAC API root URL, a static catalog.json, or a stac-geoparquet file.")
@click.option("--collection", multiple=True, help="STAC collection id; repeat for several sensors per sample.")
@click.option("--assets", help="Comma list of asset keys, in band order.  [default: the preset's, else all data]")
@click.option("--resolution", type=float, help="Output pixel size in metres.  [default: the assets' native]")
@click.option(
    "--resampling",
    type=click.Choice(["nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode"]),
    help="Resampling of continuous assets (categorical ones use nearest).  [default: nearest]",
)
@click.option("--max-cloud", type=float, help="Skip items with eo:cloud_cover above this percentage.")
@click.option(
    "--sort",
    type=click.Choice(["cloud", "time"]),
    help="Best item: least cloud, or nearest the window's middle.  [default: cloud]",
)
@click.option(
    "--max-chip-cloud",
    type=float,
    help="Reject chips whose measured cloud fraction (0-1) is above this; the next item is tried.",
)
@click.option(
    "--min-valid", type=float, help="Reject chips with a smaller share (0-1) of valid pixels; the next item is tried."
)
@click.option(
    "--observe/--no-observe",
    default=None,
    help="Measure nodata, cloud and observed cover on each chip.  [default: observe]",
)
@click.option("--mosaic/--no-mosaic", default=None, help="Fill a chip from several items when none covers it alone.")
@click.option("--preview/--no-preview", default=None, help="Also write an RGB PNG per chip (2–98 % stretch).")
@click.option("--harmonize/--no-harmonize", default=None, help="Remove Sentinel-2's +1000 offset (baseline 04.00+).")
@click.option("--scale/--no-scale", default=None, help="Apply scale/offset to physical values (float32).")
@click.option("--workers", type=int, help="Concurrent read tasks.  [default: 4]")
@click.option(
    "--sign", type=click.Choice(["planetary-computer", "none"]), help="Sign asset URLs just before each read."
)
@click.option("--retry-failed", is_flag=True, default=None, help="Also retry failed and no_item samples.")
@click.option(
    "--substitute/--no-substitute", default=None,
    help="Replace a failed site by the next reserve site of its stratum and time bin.  [default: when the plan has "
    "reserves]",
)  # fmt: skip
@click.option("--limit", type=int, help="Only the first N samples (to try things out).")
@click.option("--dask-scheduler", help="'local' or tcp://HOST:PORT: read on a Dask cluster.")
@click.option("--preset", help=f"A named source: {_presets_help()}.")
@config_option
@click.option("--overwrite", is_flag=True, help="Fetch every selected chip again (also with changed settings).")
@click.option(
    "--allow-local-assets", is_flag=True,
    help="Read local files the catalogue names anywhere (default: only under a local catalog's folder).",
)  # fmt: skip
@progress_option
@quiet_option
@click.pass_context
def fetch(
    ctx: click.Context,
    ds: Path,
    config_path: Path | None,
    overwrite: bool,
    allow_local_assets: bool,
    progress: bool | None,
    quiet: bool,
    **flags: Any,
) -> None:
    """Fetch one image chip per sample of DS from STAC into DS/chips/ and DS/chips.parquet.

    Re-running resumes: chips already fetched (and still matching their sha256)
    are skipped; with no --stac/--collection/--preset, the last run's settings
    are used.
    """
    from geosample.stac.config import FetchConfig
    from geosample.stac.fetch import fetch as run_fetch

    settings = command_settings(ctx, config_path, "fetch", flags)
    settings.pop("out", None)
    cfg = FetchConfig.from_mapping(settings)
    table = run_fetch(ds, config=cfg, progress=progress, overwrite=overwrite, allow_local_assets=allow_local_assets)
    if not quiet:
        s = table.attrs["summary"]
        done = s["ok"] + s["no_item"] + s["failed"] + s["cloudy"] + s["nodata"]
        rejected = "".join(f", {s[k]} {k}" for k in ("cloudy", "nodata") if s[k])
        click.echo(
            f"fetch: {done} chip(s) in {s['seconds']:.1f} s ({s['chips_per_s']:.1f}/s): {s['ok']} ok, "
            f"{s['no_item']} no_item, {s['failed']} failed{rejected}; {s['skipped']} already done. "
            f"{ds}/chips.parquet holds {int((table['status'] == 'ok').sum())} ok chip(s) of {len(table)}"
        )
        if s["target"]:
            click.echo(
                f"achieved {s['achieved']} of {s['target']} planned site(s): {s['substituted']} replaced by reserve "
                f"sites, {s['short']} failed and not replaced; {ds}/samples.parquet lists the achieved samples"
            )
        if s["failed"]:
            click.echo("  re-run with --retry-failed to try the failed ones again", err=True)
