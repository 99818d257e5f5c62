"""``geosample run``: the click wrapper over :func:`geosample.pipeline.run.run`."""

from __future__ import annotations

from pathlib import Path

import click

from geosample.cli import CONTEXT
from geosample.pipeline.run import STAGES, StageResult


@click.command(context_settings=CONTEXT)
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--until", type=click.Choice(STAGES), help="Last stage to run.  [default: all in the config]")
@click.option("--overwrite", is_flag=True, help="Let plan and label replace files made with other settings.")
@click.option("--progress/--no-progress", default=None, help="Progress bars.  [default: when on a terminal]")
@click.option("--api-key-env", help="Confirm the caption section's api_key_env (a config may not choose it alone).")
@click.option("--endpoint", help="The caption endpoint, over the config's: the API key goes only to one named here.")
@click.option(
    "--allow-import", "allow_imports", multiple=True, metavar="MODULE:CALLABLE",
    help="Let the config's caption backend or evaluate encoder be this import path (repeatable).",
)  # fmt: skip
@click.option("--allow-local-assets", is_flag=True, help="Let fetch and label read local files the catalogue names.")
def run(
    config: Path, until: str | None, overwrite: bool, progress: bool | None, api_key_env: str | None,
    endpoint: str | None, allow_imports: tuple[str, ...], allow_local_assets: bool,
) -> None:  # fmt: skip
    """Build a dataset from one config: plan, fetch, label, caption (and evaluate), resuming where it stopped."""
    from geosample.pipeline.run import run as run_pipeline

    def show(result: StageResult) -> None:
        took = f" in {result.seconds:.1f} s" if result.status == "ran" else ""
        click.echo(f"{result.stage:9} {result.status}{took}" + (f": {result.detail}" if result.detail else ""))

    run_pipeline(
        config, until=until, overwrite=overwrite, progress=progress, report=show, api_key_env=api_key_env,
        endpoint=endpoint, allow_imports=allow_imports, allow_local_assets=allow_local_assets,
    )  # fmt: skip
