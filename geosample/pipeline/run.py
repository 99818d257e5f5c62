"""Run the stages in order from one YAML config whose sections mirror the commands' flags.

```yaml
out: demo                 # the dataset folder (relative to the working directory)
plan:    {samples: 50, aoi: "bbox:-78.3,23.9,-77.5,25.1"}
fetch:   {stac: stac/catalog.json, collection: landsat, preview: true}
label:   {}               # the embedded MODIS layer
caption: {backend: template, n: 5}
evaluate: {...}           # optional
export:  {format: [parquet, gpkg]}   # optional
```

Every stage's settings are checked before anything runs, so a typo fails
fast and writes nothing. Re-running resumes: a stage whose files are there
and were made with the same settings is skipped (plan, label), and fetch and
caption carry on where they stopped. Input paths in a section are relative
to the config file's folder.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from geosample._dataset import LABELS_FILE, PLAN_FILE, read_config
from geosample.errors import ConfigError

STAGES = ("plan", "fetch", "label", "caption", "evaluate", "export")
"""The stages, in the order they run."""


@dataclasses.dataclass(frozen=True)
class StageResult:
    """What one stage did: ``ran``, ``up to date`` (its files match the settings) or ``skipped`` (no section)."""

    stage: str
    status: str
    seconds: float
    detail: str = ""


def load_run_config(path: str | Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The dataset folder and the per-stage sections of a run config.

    Raises:
        ConfigError: If the file is missing or not YAML, has no ``out``, or has an unknown section.
    """
    from geosample._config_file import load_yaml

    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping with 'out' and stage sections")
    unknown = sorted(set(data) - {"out", *STAGES})
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown section(s) {', '.join(unknown)}; sections are out, {', '.join(STAGES)}"
        )
    if not data.get("out"):
        raise ConfigError(f"config file {path} has no 'out:', the dataset folder to build")
    sections = {}
    for stage in STAGES:
        section = data.get(stage)
        if stage in data and section is None:
            section = {}
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"config file {path}: section {stage!r} must be a mapping of settings")
        if section is not None:
            sections[stage] = section
    return Path(str(data["out"])), sections


def run(
    config_path: str | Path,
    *,
    until: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    report: Callable[[StageResult], None] | None = None,
    api_key_env: str | None = None,
    endpoint: str | None = None,
    allow_imports: Iterable[str] = (),
    allow_local_assets: bool = False,
) -> list[StageResult]:
    """Run the config's stages in order, up to and including ``until``.

    Args:
        config_path: The YAML run config.
        until: The last stage to run (default: all of them).
        overwrite: Let plan and label replace files made with other settings.
        progress: Progress bars (default: on a terminal).
        report: Called with each stage's result as it finishes (the CLI prints them).
        api_key_env: Confirms the ``api_key_env`` of the caption section (a config file may not
            choose alone which variable is sent to the endpoint).
        endpoint: The caption endpoint (``--endpoint``), over the caption section's: the API key is sent
            only to an endpoint the command line names (or the default); a loopback endpoint of the
            config file alone gets no key, any other one is refused.
        allow_imports: ``module:callable`` paths the caption ``backend`` or evaluate ``encoder``
            may name (a config file alone may name only installed plugins).
        allow_local_assets: Let fetch and label read local asset paths named by the catalogue.

    Returns:
        One result per stage considered.
    """
    if until is not None and until not in STAGES:
        raise ConfigError(f"--until {until!r} is not a stage; choose one of {', '.join(STAGES)}")
    config_path = Path(config_path)
    ds, sections = load_run_config(config_path)
    base = config_path.parent
    last = STAGES.index(until) if until else len(STAGES) - 1
    wanted = [s for s in STAGES[: last + 1]]
    forced = _check_consent(config_path, sections, api_key_env, endpoint, allow_imports)
    if "caption" in sections:  # the command line's choices win over the file's
        given = {"api_key_env": api_key_env, "endpoint": endpoint, **forced}
        sections["caption"] = {**sections["caption"], **{k: v for k, v in given.items() if v is not None}}
    # Every section is checked, whatever --until says: a typo in a later one fails now, not after hours.
    configs = {stage: _stage_config(stage, sections[stage], base) for stage in STAGES if stage in sections}
    if "plan" not in configs and not (ds / PLAN_FILE).exists():
        raise ConfigError(f"config file {config_path} has no 'plan:' section and {ds} holds no plan yet; add one")
    results = []
    for stage in wanted:
        started = time.perf_counter()
        if stage not in configs:
            result = StageResult(stage, "skipped", 0.0, "no section in the config")
        else:
            runner = _RUNNERS[stage]
            extra = {"allow_local_assets": allow_local_assets} if stage in ("fetch", "label") else {}
            status, detail = runner(ds, configs[stage], overwrite=overwrite, progress=progress, **extra)
            result = StageResult(stage, status, time.perf_counter() - started, detail)
        results.append(result)
        if report is not None:
            report(result)
    return results


def _check_consent(
    path: Path, sections: dict[str, dict[str, Any]], api_key_env: str | None, endpoint: str | None,
    allow_imports: Iterable[str],
) -> dict[str, Any]:  # fmt: skip
    """Refuse what only the config file asks for (a key variable, an endpoint, an import path, a consent).

    Returns the caption settings to force (``send_key`` false for an unconfirmed loopback endpoint).
    """
    from geosample._config_file import COMMAND_LINE_ONLY, check_consent, registered_plugins

    registered = registered_plugins()
    forced: dict[str, Any] = {}
    for stage, section in sections.items():
        where = f"config file {path}, section {stage}"
        key = {"caption": "backend", "evaluate": "encoder"}.get(stage)
        if key is None:  # no key, endpoint or import here: only the consents a file may not give
            check_consent({k: v for k, v in section.items() if k in COMMAND_LINE_ONLY}, section, where=where)
            continue
        from_file = set(section) - ({"endpoint"} if stage == "caption" and endpoint else set())
        found = check_consent(
            section, from_file, where=where, api_key_env=api_key_env, allowed_imports=allow_imports,
            registered=registered, plugin_keys=(key,),
        )  # fmt: skip
        if stage == "caption":
            forced = found
    return forced


def _stage_config(stage: str, section: dict[str, Any], base: Path) -> Any:
    """Build (and so validate) one stage's config object, with paths relative to the config's folder."""
    section = {k: v for k, v in section.items() if k != "out"}
    if stage == "plan":
        from geosample.sampling.config import PlanConfig

        return PlanConfig.from_mapping(section, base_dir=base)
    if stage == "fetch":
        from geosample.stac.config import FetchConfig

        stac = section.get("stac")
        if isinstance(stac, str) and "://" not in stac and (base / stac).exists():
            section = {**section, "stac": str(base / stac)}
        return FetchConfig.from_mapping(section)
    if stage == "label":
        from geosample.labels.config import LabelConfig

        return LabelConfig.from_mapping(section, base_dir=base)
    if stage == "caption":
        from geosample.captions.config import CaptionConfig

        return CaptionConfig.from_mapping(section)
    if stage == "evaluate":
        from geosample.retrieval.config import EvaluateConfig

        return EvaluateConfig.from_mapping(section, base_dir=base)
    from geosample.export._export import FORMATS, ExportConfig, parse_formats

    formats = parse_formats(section.pop("format", None), FORMATS)
    return [ExportConfig.from_mapping({**section, "format": name}) for name in formats]


def _same_settings(ds: Path, stage: str, settings: dict[str, Any], ignore: set[str] = frozenset()) -> bool:
    recorded = read_config(ds).get(stage) or {}
    return all(recorded.get(k) == v for k, v in settings.items() if k not in ignore)


def _run_plan(ds: Path, cfg: Any, *, overwrite: bool, progress: bool | None) -> tuple[str, str]:
    from geosample.sampling.plan import plan

    if (ds / PLAN_FILE).exists() and _same_settings(ds, "plan", cfg.to_dict()):
        return "up to date", f"{ds / PLAN_FILE}"
    samples = plan(ds, config=cfg, overwrite=overwrite, progress=progress)
    return "ran", f"{len(samples)} samples"


def _run_fetch(
    ds: Path, cfg: Any, *, overwrite: bool, progress: bool | None, allow_local_assets: bool = False
) -> tuple[str, str]:
    from geosample.stac.fetch import fetch

    manifest = fetch(ds, config=cfg, progress=progress, allow_local_assets=allow_local_assets)
    summary = manifest.attrs.get("summary", {})
    counts = [f"{summary[k]} {k}" for k in ("ok", "no_item", "failed", "skipped") if summary.get(k)]
    return "ran", ", ".join(counts) or f"{len(manifest)} chips"


def _run_label(
    ds: Path, cfg: Any, *, overwrite: bool, progress: bool | None, allow_local_assets: bool = False
) -> tuple[str, str]:
    from geosample.labels.label import NOT_RESULT_SETTINGS, label

    if (
        (ds / LABELS_FILE).exists()
        and _same_settings(ds, "label", cfg.to_dict(), ignore=NOT_RESULT_SETTINGS)
        and _labels_cover_samples(ds)
    ):
        return "up to date", f"{ds / LABELS_FILE}"
    table = label(ds, cfg, overwrite=overwrite, progress=progress, allow_local_assets=allow_local_assets)
    return "ran", f"{len(table)} samples labelled"


def _labels_cover_samples(ds: Path) -> bool:
    """Whether every sample of the dataset has labels (fetch may have replaced failed samples by reserves)."""
    import pyarrow.parquet as pq

    from geosample._dataset import read_samples

    labelled = {str(v) for v in pq.read_table(ds / LABELS_FILE, columns=["sample_id"]).column(0).to_pylist()}
    return set(read_samples(ds)["sample_id"].astype(str)) <= labelled


def _run_caption(ds: Path, cfg: Any, *, overwrite: bool, progress: bool | None) -> tuple[str, str]:
    from geosample.captions.caption import caption

    table = caption(ds, cfg, progress=progress)
    return "ran", f"{len(table)} captions"


def _run_evaluate(ds: Path, cfg: Any, *, overwrite: bool, progress: bool | None) -> tuple[str, str]:
    from geosample.retrieval.evaluate import evaluate

    result = evaluate(ds, config=cfg)
    metrics = result.metrics
    return "ran", f"mR {metrics.get('mR', float('nan')):.3f}"


def _run_export(ds: Path, cfg: Any, *, overwrite: bool, progress: bool | None) -> tuple[str, str]:
    from geosample.export import export

    results = [export(ds, config=one, overwrite=overwrite, progress=progress) for one in cfg]
    return "ran", ", ".join(f"{r.format} → {r.path}" for r in results)


_RUNNERS = {
    "plan": _run_plan,
    "fetch": _run_fetch,
    "label": _run_label,
    "caption": _run_caption,
    "evaluate": _run_evaluate,
    "export": _run_export,
}
