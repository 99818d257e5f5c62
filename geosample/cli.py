"""The ``geosample`` command: thin click wrappers over the stage functions."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from click.utils import make_default_short_help

from geosample import __version__
from geosample._malloc import cap_malloc_arenas
from geosample.errors import ConfigError, GeosampleError, GeosampleWarning

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# Commands that live beside their stage, imported only when used, so that
# `geosample plan` starts without loading pystac-client, torch or open_clip.
LAZY_COMMANDS = {
    "plan": "geosample.sampling.command:plan",
    "fetch": "geosample.stac.command:fetch",
    "label": "geosample.labels.label_command:label",
    "taxonomy": "geosample.labels.taxonomy_command:taxonomy",
    "caption": "geosample.captions.command:caption",
    "evaluate": "geosample.retrieval.command:evaluate",
    "finetune": "geosample.finetune.command:finetune",
    "run": "geosample.pipeline.command:run",
    "export": "geosample.export.command:export",
    "stats": "geosample.export.command:stats",
    "validate": "geosample.validate.command:validate",
}
SUMMARIES = {
    "caption": "Write N captions per sample of DS with a caption backend, into DS/captions.parquet.",
    "evaluate": "Image–text retrieval metrics of an encoder on DS: DS/eval/metrics.json and per_stratum.png.",
    "export": "Export DS for ML and GIS tools, with buffered, stratified train/validation/test spatial splits.",
    "fetch": "Fetch one image chip per sample of DS from STAC into DS/chips/ and DS/chips.parquet.",
    "finetune": "Adapter-tune an encoder on DS's train split; before/after metrics of its test split in "
    "DS/finetune/RUN/.",
    "label": "Label every sample of DS with the taxonomy's classes at every level, into DS/labels.parquet.",
    "plan": "Plan a globally balanced, stratified H3 sample of sites into DS/plan.parquet.",
    "run": "Build a dataset from one config: plan, fetch, label, caption (and evaluate), resuming where it stopped.",
    "stats": "Print DS's balance and content at a glance; write DS/report/stats.json, plots and index.html.",
    "taxonomy": "Check, browse and export label taxonomies (default: the built-in geosample-lulc).",
    "validate": "Check everything in dataset DS offline, file by file; exit status 2 if anything is wrong.",
}
"""The first paragraph of each lazy command's help, for ``geosample --help`` (a test checks them against the
commands): listing the commands then imports none of them (0.1 s instead of 1.5 s on a 2-core Xeon)."""


class LazyGroup(click.Group):
    """A click group whose stage commands are imported on first use (not to list them)."""

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: D102
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: D102
        if cmd_name in LAZY_COMMANDS:
            module_name, attr = LAZY_COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their one-line help, as click lists them, from :data:`SUMMARIES` for the lazy ones."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in SUMMARIES:
                rows.append((name, make_default_short_help(SUMMARIES[name], limit)))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="geosample")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def cli(debug: bool) -> None:
    """Build globally balanced, labelled, captioned remote-sensing image–text datasets."""


def load_config_section(path: Path, section: str) -> dict[str, Any]:
    """A stage's settings from a YAML config: its own section, or the top level.

    The file is read within the budgets of :func:`geosample._config_file.load_yaml`
    (size, YAML aliases, depth).
    """
    from geosample._config_file import load_yaml

    data = load_yaml(path)
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
    """A stage's settings: its section of ``--config``, then the flags given on the command line, which win.

    A config file may not choose alone the environment variable sent as an API
    key, the endpoint it is sent to, a ``module:callable`` to import, nor grant
    local asset reads (see :func:`geosample._config_file.check_consent`).
    """
    settings = load_config_section(config_path, section) if config_path is not None else {}
    from_file = set(settings)
    given = {}
    for name, value in flags.items():
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            settings.pop(name.replace("_", "-"), None)
            from_file.discard(name.replace("_", "-"))
            from_file.discard(name)
            settings[name] = given[name] = list(value) if isinstance(value, tuple) else value
    if config_path is not None:
        from geosample._config_file import check_consent, registered_plugins

        settings.update(
            check_consent(
                settings,
                from_file,
                where=f"config file {config_path}",
                api_key_env=given.get("api_key_env"),
                registered=registered_plugins(),
                plugin_keys=("backend", "encoder"),
            )
        )
    return settings


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Geosample's own warnings as one line; others as Python shows them."""
    if issubclass(category, GeosampleWarning):
        click.echo(f"geosample: warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    cap_malloc_arenas()  # before any thread allocates: glibc fixes the arena limit once
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    warnings.showwarning = _show_warning
    if not args:  # plain `geosample`: the help, as asked for, not a usage error
        args = ["--help"]
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
        click.echo(f"geosample: error: {_one_line(exc)}", err=True)
        sys.exit(2)
    except OSError as exc:
        if debug:
            raise
        click.echo(f"geosample: error: {_os_error(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("geosample: interrupted", err=True)
        sys.exit(130)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _os_error(exc: OSError) -> str:
    """An OS error outside any dataset stage's guard as one line, with the fix for the common ones."""
    from geosample._dataset import io_failure_kind

    text = _one_line(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    kind = io_failure_kind(exc)
    if kind == "space":
        return f"{text}; free some disk space (or write to another disk) and run the command again"
    if kind == "access":
        return f"{text}; check the permissions of that file or folder (or use another one)"
    return text


def _command(args: list[str]) -> str:
    names = [a for a in args if not a.startswith("-")]
    known = set(cli.commands) | set(LAZY_COMMANDS)
    return f"{names[0]} " if names and names[0] in known else ""


if __name__ == "__main__":
    main()
