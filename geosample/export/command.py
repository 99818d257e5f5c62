"""``geosample export`` and ``geosample stats``: click wrappers over :func:`export` and :func:`stats`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from geosample._config_file import load_yaml
from geosample.cli import CONTEXT, config_option, load_config_section, progress_option, quiet_option

FORMAT_HELP = "webdataset | parquet | stac | tdml | gpkg | croissant | all; repeat or comma-separate for several."


@click.command(context_settings=CONTEXT)
@click.argument("ds", type=click.Path(path_type=Path))
@click.option("-f", "--format", "format_", multiple=True, help=FORMAT_HELP)
@click.option(
    "-o", "--out", type=click.Path(path_type=Path), help="Export folder (one subfolder per format when several).  "
    "[default: DS/export/FORMAT]"
)  # fmt: skip
@click.option("--shard-size", type=float, help="WebDataset shard / Parquet file size in MB.  [default: 100]")
@click.option("--split", help="Shares of train,validation,test samples.  [default: 0.8,0.1,0.1]")
@click.option(
    "--split-block-km", type=float,
    help="Size of the spatial blocks dealt to splits, km.  [default: chosen from the data, see README]",
)  # fmt: skip
@click.option("--split-res", type=int, help="The blocks' H3 resolution, instead of --split-block-km.")
@click.option(
    "--split-buffer-m", type=float, help="No chip within this distance of another split's.  [default: one chip size]"
)
@click.option("--seed", type=int, help="Seed of the split and of the shard order.  [default: 0]")
@config_option
@click.option("--overwrite", is_flag=True, help="Replace an export made with other settings.")
@click.option("--skip-invalid", is_flag=True, help="Leave out chips that no longer match their sha256; count them.")
@progress_option
@quiet_option
@click.pass_context
def export(
    ctx: click.Context,
    ds: Path,
    format_: tuple[str, ...],
    out: Path | None,
    config_path: Path | None,
    overwrite: bool,
    skip_invalid: bool,
    progress: bool | None,
    quiet: bool,
    **flags: Any,
) -> None:
    """Export DS for ML and GIS tools, with buffered, stratified train/validation/test spatial splits.

    Works on partial datasets (a plan only, or without chips, labels or
    captions) and says which parts are missing.
    """
    from geosample.export._export import FORMATS, ExportConfig, parse_formats
    from geosample.export._export import export as run_export

    settings: dict[str, Any] = {}
    if config_path is not None:
        settings = _config_settings(config_path)
    for name, value in flags.items():
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            settings[name] = value
    if format_:
        settings["format"] = list(format_)
    if out is not None:
        settings["out"] = out
    formats = parse_formats(settings.pop("format", None), FORMATS)
    destination = settings.pop("out", None)
    configs = [ExportConfig.from_mapping({**settings, "format": fmt}) for fmt in formats]
    missing: list[str] = []
    for cfg in configs:
        target = None if destination is None else Path(destination) / cfg.format if len(configs) > 1 else destination
        result = run_export(ds, target, config=cfg, overwrite=overwrite, progress=progress, skip_invalid=skip_invalid)
        missing = result.missing
        if not quiet:
            splits = " / ".join(f"{n} {s}" for s, n in result.splits.items())
            report = result.split_report
            dropped = sum(v["sites_dropped_for_buffer"] for v in report.get("splits", {}).values())
            block = report.get("block", {})
            click.echo(
                f"export {cfg.format}: {result.records} records ({splits}; blocks of ~{block.get('km', 0):g} km, "
                f"buffer {report.get('buffer_m', 0):g} m, {dropped} site(s) dropped for it), "
                f"{result.images} images, {len(result.files)} files in {result.path}"
            )
        if result.invalid:
            click.echo(
                f"left out {len(result.invalid)} chip(s) that no longer match their sha256 (e.g. {result.invalid[0]}); "
                f"'geosample fetch {ds}' fetches them again",
                err=True,
            )
    if missing and not quiet:
        click.echo("not in the dataset yet: " + "; ".join(missing))


def _config_settings(path: Path) -> dict[str, Any]:
    """The ``export`` settings of a config file; a top-level ``out`` (the dataset folder) is not the export's.

    An ``out`` in the ``export`` section is the export folder, relative to the working directory like ``-o``.
    """
    settings = load_config_section(path, "export")
    raw = load_yaml(path)
    if isinstance(raw, dict) and "export" in raw and "out" not in (raw["export"] or {}):
        settings.pop("out", None)
    if settings.get("out") is not None:
        settings["out"] = (
            (path.parent / str(settings["out"])) if not Path(str(settings["out"])).is_absolute() else settings["out"]
        )
    return settings


@click.command(context_settings=CONTEXT)
@click.argument("ds", type=click.Path(path_type=Path))
@click.option("--gallery", type=int, default=24, show_default=True, help="Samples shown in index.html's gallery.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def stats(ds: Path, gallery: int, quiet: bool) -> None:
    """Print DS's balance and content at a glance; write DS/report/stats.json, plots and index.html."""
    from geosample.export.stats import stats as run_stats
    from geosample.export.stats import summary_text

    report = run_stats(ds, gallery=gallery)
    if not quiet:
        click.echo(summary_text(report))
        click.echo(f"wrote {ds}/report/stats.json, {', '.join(report['plots'])}, index.html")
