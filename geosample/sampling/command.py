"""``geosample plan``: the click wrapper over :func:`geosample.sampling.plan.plan`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from geosample.cli import CONTEXT, command_settings, config_option, progress_option, quiet_option
from geosample.errors import ConfigError


@click.command(context_settings=CONTEXT)
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Dataset folder DS to write (required).")
@click.option("-n", "--samples", type=int, help="Number of sites.  [default: 1000]")
@click.option("--res", type=int, help="H3 resolution of the samples, 0–15.  [default: 9]")
@click.option("--seed", type=int, help="Random seed.  [default: 0]")
@click.option("--aoi", help="world | FILE | ISO3,ISO3 | bbox:W,S,E,N  [default: world, land but Antarctica]")
@click.option(
    "--strata",
    help="Comma list of continent, country, climate, landcover, NAME=RASTER, NAME=VECTOR:COLUMN.  "
    "[default: continent,climate,landcover]",
)
@click.option("--allocation", help="equal | proportional | sqrt | heterogeneity | WEIGHTS.csv  [default: equal]")
@click.option("--parent-res", type=int, help="H3 resolution of the spacing cells.  [default: auto]")
@click.option("--max-per-parent", type=int, help="At most K sites per parent cell.  [default: 1]")
@click.option(
    "--min-distance-m", type=float,
    help="No two sites closer than this, in metres; 0 turns it off.  [default: the chip diagonal: no chip overlaps]",
)  # fmt: skip
@click.option("--start", help="First day of the imagery period, YYYY-MM-DD.  [default: 2020-01-01]")
@click.option("--end", help="Last day of the imagery period, YYYY-MM-DD.  [default: 2024-12-31]")
@click.option("--time-bins", type=click.Choice(["year", "season", "month"]), help="Temporal bins.  [default: year]")
@click.option("--window-days", type=int, help="Time window length inside the bin.  [default: the whole bin]")
@click.option(
    "--chip-size", type=float, multiple=True, help="Chip side in metres; repeat for multi-scale.  [default: 2560]"
)
@click.option("--land-only/--no-land-only", default=None, help="Keep only centres on land.  [default: land-only]")
@click.option("--revisits", type=int, help="Time windows per site, a series (slow processes).  [default: 1]")
@click.option("--revisit-step", type=click.Choice(["years", "months"]), help="Unit between revisits.  [default: years]")
@click.option("--revisit-interval", type=int, help="Steps between revisits.  [default: 1]")
@click.option("--events", help="Catalogue of dated events (CSV lon/lat/date/type, GeoJSON, GPKG, GeoParquet).")
@click.option("--before-days", type=int, help="Length of the window before an event.  [default: 90]")
@click.option("--after-days", type=int, help="Length of the window after an event.  [default: 90]")
@click.option("--gap-days", type=int, help="Days skipped on each side of an event.  [default: 0]")
@click.option("--event-radius-m", type=float, help="Sites within this distance of a point event.  [default: chip size]")
@click.option(
    "--reserve", type=float,
    help="Reserve sites per planned site (fetch substitutes them for failed samples); 0 draws none.  [default: 0.5]",
)  # fmt: skip
@config_option
@click.option("--overwrite", is_flag=True, help="Replace a plan made with other settings.")
@progress_option
@quiet_option
@click.pass_context
def plan(
    ctx: click.Context, config_path: Path | None, overwrite: bool, progress: bool | None, quiet: bool, **flags: Any
) -> None:
    """Plan a globally balanced, stratified H3 sample of sites into DS/plan.parquet."""
    from geosample.sampling._report import summary_table
    from geosample.sampling.config import PlanConfig
    from geosample.sampling.plan import plan as run_plan

    settings = command_settings(ctx, config_path, "plan", flags)
    base_dir = config_path.parent if config_path is not None else None
    out = settings.pop("out", None)
    if out is None:
        raise ConfigError("no dataset folder given; add -o/--out DS (or 'out:' in the config)")
    out_path = Path(out)
    cfg = PlanConfig.from_mapping(settings, base_dir=base_dir)
    started = time.perf_counter()
    samples = run_plan(out_path, config=cfg, overwrite=overwrite, progress=progress)
    if not quiet:
        click.echo(summary_table(samples.attrs["balance"]))
        reserve = samples.attrs["balance"].get("reserves") or {}
        spare = f", reserve.parquet ({reserve['sites']} reserve sites)" if reserve.get("sites") else ""
        click.echo(
            f"wrote {out_path}/plan.parquet ({len(samples)} samples){spare}, plan.gpkg, report/ "
            f"in {time.perf_counter() - started:.1f} s"
        )
