"""``geosample validate``: click wrapper over :func:`geosample.validate.validate`."""

from __future__ import annotations

from pathlib import Path

import click

from geosample.cli import CONTEXT, quiet_option


@click.command(context_settings=CONTEXT)
@click.argument("ds", type=click.Path(path_type=Path))
@quiet_option
def validate(ds: Path, quiet: bool) -> None:
    """Check everything in dataset DS offline, file by file; exit status 2 if anything is wrong.

    Tables against the design's columns and types, every chip's sha256, every
    STAC object against the bundled STAC 1.1 and extension schemas (links,
    one root), TrainingDML-AI documents, and Croissant files (with mlcroissant
    when installed). Nothing is fetched and nothing is written.
    """
    from geosample.validate.validate import validate as run_validate

    report = run_validate(ds)
    for problem in report.problems:
        click.echo(str(problem))
    if not quiet:
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        click.echo(report.summary(), err=not report.ok)
    if not report.ok:
        raise SystemExit(2)
