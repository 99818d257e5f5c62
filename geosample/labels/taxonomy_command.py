"""``geosample taxonomy validate|show|export``: check, browse and publish label taxonomies."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from geosample._dataset import atomic_path
from geosample.errors import ConfigError
from geosample.labels.taxonomy import Taxonomy, builtin_taxonomies, load_taxonomy, validate_taxonomy

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# -- geosample taxonomy -----------------------------------------------------------------------


@click.group(context_settings=CONTEXT)
def taxonomy() -> None:
    """Check, browse and export label taxonomies (default: the built-in geosample-lulc)."""


def _summary(tax: Taxonomy) -> str:
    counts = "/".join(str(len(tax.codes_at(level))) for level in tax.levels)
    return f"{tax.key}, {len(tax)} classes ({counts} per level), schemes: {', '.join(tax.mappings) or 'none'}"


@taxonomy.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True)
def validate(files: tuple[str, ...]) -> None:
    """Check taxonomy FILES; print FILE:LINE: PROBLEM for each problem (exit status 2 if any)."""
    builtin = builtin_taxonomies()
    failed = False
    for name in files:
        path = builtin[name] if name in builtin and not Path(name).exists() else Path(name)
        problems = validate_taxonomy(path)
        for problem in problems:
            click.echo(str(problem))
        if problems:
            failed = True
        else:
            click.echo(f"ok: {_summary(load_taxonomy(path))}")
    if failed:
        sys.exit(2)  # not ctx.exit: click returns that code, without exiting, under geosample.cli.main


@taxonomy.command(context_settings=CONTEXT)
@click.argument("spec", required=False, metavar="[FILE|ID]")
@click.option("--level", help="Show classes down to this level (e.g. l2); with --scheme, targets rolled up to it.")
@click.option("--scheme", help="Show this scheme's crosswalk (source value -> class) instead of the tree.")
def show(spec: str | None, level: str | None, scheme: str | None) -> None:
    """Print a taxonomy as a tree of codes and names, or one of its crosswalks."""
    tax = load_taxonomy(spec)
    depth = tax.depth_of(level) if level else len(tax.levels)
    click.echo(f"{tax.key}  {tax.title}")
    if scheme is None:
        root = next(iter(tax.sources))  # the taxonomy at the bottom of an extends chain
        for taxon in tax.classes.values():
            if taxon.depth <= depth:
                extra = f"  [{taxon.source}]" if taxon.source != root else ""
                click.echo(f"{'  ' * taxon.depth}{taxon.code}  {taxon.name}{extra}")
        return
    from geosample.labels._schemes import BUILTIN_SCHEMES

    labels = BUILTIN_SCHEMES.get(scheme) or tax.schemes.get(scheme) or {}
    rows = []
    for value, code in tax.mapping(scheme).items():
        target = (tax.ancestor(code, level) if level else None) or code
        rows.append((value, labels.get(value, ""), target, tax[target].name))
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    click.echo(f"crosswalk {scheme}: {len(rows)} source values")
    for value, label, target, name in rows:
        click.echo(f"  {value:<{widths[0]}}  {label:<{widths[1]}}  -> {target:<{widths[2]}}  {name}".rstrip())


@taxonomy.command(context_settings=CONTEXT)
@click.argument("spec", required=False, metavar="[FILE|ID]")
@click.option("--format", "fmt", type=click.Choice(["skos", "tdml", "csv"]), required=True, help="What to write.")
@click.option(
    "--skos-format", type=click.Choice(["turtle", "json-ld"]), default="turtle", show_default=True,
    help="Serialisation of --format skos.",
)  # fmt: skip
@click.option(
    "--tdml-version", type=click.Choice(["1.1", "1.0"]), default="1.1", show_default=True,
    help="TrainingDML-AI version of --format tdml.",
)  # fmt: skip
@click.option("--level", help="--format tdml: only the classes at this level (e.g. l2).")
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Output file.  [default: standard output]")
def export(
    spec: str | None, fmt: str, skos_format: str, tdml_version: str, level: str | None, out: Path | None
) -> None:
    """Export a taxonomy as SKOS (Turtle or JSON-LD), TrainingDML-AI classes (JSON) or CSV."""
    from geosample.labels._taxonomy_export import tdml_document

    tax = load_taxonomy(spec)
    if level is not None and fmt != "tdml":
        raise ConfigError("--level applies to --format tdml only; leave it out")
    if level is not None:
        tax.depth_of(level)
    if fmt == "skos":
        text = tax.to_skos(skos_format)
    elif fmt == "tdml":
        text = tdml_document(tax, version=tdml_version, level=level)
    else:
        text = tax.to_csv()
    if out is None:
        click.echo(text, nl=False)
        return
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name")
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out} ({fmt}, {len(tax)} classes of {tax.key})")
