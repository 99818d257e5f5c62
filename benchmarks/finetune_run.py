"""Does adapter-tuning on a geosample dataset improve retrieval? A synthetic dataset of a few thousand samples, offline.

Builds the dataset with the project's own tools only — ``plan`` over Europe,
the synthetic STAC archive of ``data/examples/synthetic_stac.py`` (true-colour
images rendered from a random land-cover map per site), ``fetch``, ``label``
from that map, template ``caption`` — then runs ``geosample finetune`` with
the offline baseline encoder and prints the before/after table of the test
split with paired-bootstrap intervals, the time of every stage, the machine
and its load. Nothing is downloaded; a rebuild is skipped when the folder
already holds the captioned dataset of the same settings.

    python benchmarks/finetune_run.py                          # 3,000 samples, TF-IDF caption features
    python benchmarks/finetune_run.py --samples 2000 --text minilm --out /tmp/ft
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(ds: Path, stac: Path, samples: int, seed: int, progress: bool) -> dict[str, float]:
    """plan → synthetic STAC → fetch → label → caption; the seconds of each."""
    import geosample

    sys.path.insert(0, str(ROOT / "data" / "examples"))
    import synthetic_stac

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    geosample.plan(ds, samples=samples, aoi="bbox:-10,35,30,60", strata="climate,landcover", seed=seed,
                   overwrite=True, progress=progress)  # fmt: skip
    seconds["plan"], started = time.perf_counter() - started, time.perf_counter()
    catalog = synthetic_stac.build(ds, stac, collections=("synthetic-rgb", "synthetic-landcover"))
    seconds["synthetic STAC"], started = time.perf_counter() - started, time.perf_counter()
    geosample.fetch(ds, stac=str(catalog), collection="synthetic-rgb", resolution=20, progress=progress,
                    overwrite=True)  # fmt: skip
    seconds["fetch"], started = time.perf_counter() - started, time.perf_counter()
    label = {"source": "stac:synthetic-landcover", "stac": str(catalog), "scheme": "esa-worldcover"}
    geosample.label(ds, geosample.LabelConfig.from_mapping(label), progress=progress, overwrite=True)
    seconds["label"], started = time.perf_counter() - started, time.perf_counter()
    geosample.caption(ds, progress=progress, overwrite=True)
    seconds["caption"] = time.perf_counter() - started
    (ds / ".finetune_run.json").write_text(json.dumps({"samples": samples, "seed": seed}))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1, help="seed of the plan (and of the finetune run)")
    parser.add_argument("--text", choices=("tfidf", "minilm"), default="tfidf",
                        help="the baseline's caption features (minilm needs the minilm extra)")  # fmt: skip
    parser.add_argument("--adapter-kind", choices=("linear", "mlp"), default="mlp")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("finetune-run"), help="folder for the dataset and archive")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    import geosample
    from geosample.finetune.train import headline
    from geosample.retrieval.baseline import BaselineEncoder

    warnings.simplefilter("ignore")  # the stages' data-quality notes; the figures below are what matters
    ds, stac = args.out / "DS", args.out / "stac"
    marker = ds / ".finetune_run.json"
    wanted = {"samples": args.samples, "seed": args.seed}
    if marker.is_file() and json.loads(marker.read_text()) == wanted and (ds / "captions.parquet").is_file():
        seconds = {"build (reused)": 0.0}
    else:
        seconds = build(ds, stac, args.samples, args.seed, args.progress)
    started, cpu = time.perf_counter(), time.process_time()
    result = geosample.finetune(ds, encoder=BaselineEncoder(text=args.text), run=f"{args.text}-{args.adapter_kind}",
                                adapter_kind=args.adapter_kind, bootstrap=args.bootstrap, seed=args.seed,
                                overwrite=True)  # fmt: skip
    seconds["finetune"] = time.perf_counter() - started
    cpu_finetune = time.process_time() - cpu
    print(f"\n{args.samples:,} planned samples (seed {args.seed}), baseline encoder with {args.text} caption "
          f"features, {args.adapter_kind} adapter, {args.bootstrap} bootstrap replicates")  # fmt: skip
    print(headline(result.change))
    print(result.table())
    print("\nseconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items())
          + f" (finetune CPU {cpu_finetune:.1f})")  # fmt: skip
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, 1-min load average {os.getloadavg()[0]:.1f}; run folder {result.folder}"
    )


if __name__ == "__main__":
    main()
