"""The ``geosample`` command: thin click wrappers over the stage functions."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click
import yaml
from click.core import ParameterSource

from geosample import __version__
from geosample.errors import ConfigError, GeosampleError, GeosampleWarning

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# Commands that live beside their stage, imported only when used, so that
# `geosample plan` starts without loading pystac-client, torch or open_clip.
LAZY_COMMANDS = {
    "fetch": "geosample.stac.command:fetch",
    "label": "geosample.labels.label_command:label",
    "taxonomy": "geosample.labels.taxonomy_command:taxonomy",
    "caption": "geosample.captions.command:caption",
    "evaluate": "geosample.retrieval.command:evaluate",
    "run": "geosample.pipeline.command:run",
    "export": "geosample.export.command:export",
    "stats": "geosample.export.command:stats",
}


class LazyGroup(click.Group):
    """A click group whose stage commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: D102
        return sorted({*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if _lazy_available(n))})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: D102
        if cmd_name in LAZY_COMMANDS and _lazy_available(cmd_name):
            module_name, attr = LAZY_COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)


def _lazy_available(name: str) -> bool:
    module_name = LAZY_COMMANDS[name].split(":")[0]
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="geosample")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def cli(debug: bool) -> None:
    """Build globally balanced, labelled, captioned remote-sensing image–text datasets."""


def load_config_section(path: Path, section: str) -> dict[str, Any]:
    """A stage's settings from a YAML config: its own section, or the top level."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of settings (key: value)")
    if section in data:
        if not isinstance(data[section], dict):
            raise ConfigError(f"config file {path}: section {section!r} must be a mapping of settings")
        settings = dict(data[section])
        if "out" in data and "out" not in settings:
            settings["out"] = data["out"]
        return settings
    return data


# Options every stage command shares, defined once.
config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="YAML file with these settings."
)
progress_option = click.option(
    "--progress/--no-progress", default=None, help="Progress bar.  [default: when on a terminal]"
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Print no summary.")


def command_settings(
    ctx: click.Context, config_path: Path | None, section: str, flags: dict[str, Any]
) -> dict[str, Any]:
    """A stage's settings: its section of ``--config``, then the flags given on the command line, which win."""
    settings = load_config_section(config_path, section) if config_path is not None else {}
    for name, value in flags.items():
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            settings[name] = list(value) if isinstance(value, tuple) else value
    return settings


@cli.command(context_settings=CONTEXT)
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
        click.echo(
            f"wrote {out_path}/plan.parquet ({len(samples)} samples), plan.gpkg, report/ "
            f"in {time.perf_counter() - started:.1f} s"
        )


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Geosample's own warnings as one line; others as Python shows them."""
    if issubclass(category, GeosampleWarning):
        click.echo(f"geosample: warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    warnings.showwarning = _show_warning
    try:
        cli.main(args=args, prog_name="geosample", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("geosample: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        if debug:
            raise
        click.echo(f"geosample: error: {exc.format_message()} (see 'geosample {_command(args)}--help')", err=True)
        sys.exit(2)
    except GeosampleError as exc:
        if debug:
            raise
        click.echo(f"geosample: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        if debug:
            raise
        click.echo(f"geosample: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("geosample: interrupted", err=True)
        sys.exit(130)


def _command(args: list[str]) -> str:
    names = [a for a in args if not a.startswith("-")]
    known = set(cli.commands) | set(LAZY_COMMANDS)
    return f"{names[0]} " if names and names[0] in known else ""


if __name__ == "__main__":
    main()
