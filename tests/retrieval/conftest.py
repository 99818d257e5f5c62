"""A planned dataset with labels, captions and embeddings written exactly per DESIGN.md's contract."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geosample.labels import load_taxonomy

TAXONOMY = "geosample-lulc"
DIM = 24


@dataclasses.dataclass
class EvalData:
    """A dataset folder and what was written into it, for the reference computations."""

    ds: Path
    samples: list[str]
    captions: pd.DataFrame
    labels: pd.DataFrame
    image_vectors: np.ndarray
    text_vectors: np.ndarray
    class_codes: list[str]
    class_vectors: np.ndarray
    files: dict[str, Path]


def _write_labels(ds: Path, samples: list[str], rng: np.random.Generator) -> pd.DataFrame:
    taxonomy = load_taxonomy(TAXONOMY)
    l3 = taxonomy.codes_at("l3")
    rows = []
    for sample in samples:
        codes = list(rng.choice(l3, size=int(rng.integers(1, 4)), replace=False))
        level = {"l3": codes}
        level["l2"] = list(dict.fromkeys(taxonomy.ancestor(c, "l2") for c in codes))
        level["l1"] = list(dict.fromkeys(taxonomy.ancestor(c, "l1") for c in codes))
        fractions = dict(zip(codes, np.round(rng.dirichlet(np.ones(len(codes))), 4).tolist(), strict=True))
        rows.append(
            {
                "sample_id": sample,
                "l1": level["l1"],
                "l2": level["l2"],
                "l3": level["l3"],
                "l1_dominant": level["l1"][0],
                "l2_dominant": level["l2"][0],
                "l3_dominant": codes[0],
                "fractions": json.dumps(fractions),
                "quadrant_fractions": json.dumps({q: fractions for q in ("nw", "ne", "sw", "se", "centre")}),
                "label_source": "modis-igbp@embedded",
                "taxonomy": taxonomy.key,
            }
        )
    table = pd.DataFrame(rows)
    schema = pa.schema(
        [("sample_id", pa.string())]
        + [(lv, pa.list_(pa.string())) for lv in ("l1", "l2", "l3")]
        + [(f"{lv}_dominant", pa.string()) for lv in ("l1", "l2", "l3")]
        + [(c, pa.string()) for c in ("fractions", "quadrant_fractions", "label_source", "taxonomy")]
    )
    pq.write_table(pa.Table.from_pandas(table, schema=schema, preserve_index=False), ds / "labels.parquet")
    return table


def _write_captions(ds: Path, samples: list[str], rng: np.random.Generator) -> pd.DataFrame:
    rows = [
        {
            "sample_id": s,
            "caption_index": i,
            "caption": f"caption {i} of {s}",
            "backend": "template",
            "model": "template-1",
            "prompt_sha256": "0" * 64,
        }
        for s in samples
        for i in range(int(rng.integers(1, 4)))
    ]
    table = pd.DataFrame(rows)
    table.to_parquet(ds / "captions.parquet", index=False)
    return table


def build_eval_dataset(ds: Path, seed: int = 0, noise: float = 0.9) -> EvalData:
    """Labels, captions and embeddings for the planned samples in ``ds``.

    Images sit near the centroid of their dominant l2 class; captions near
    their image (``noise`` sets how near), so retrieval is good but not perfect.
    """
    rng = np.random.default_rng(seed)
    samples = sorted(gpd.read_parquet(ds / "plan.parquet")["sample_id"])
    labels = _write_labels(ds, samples, rng)
    captions = _write_captions(ds, samples, rng)
    taxonomy = load_taxonomy(TAXONOMY)
    class_codes = [c for lv in taxonomy.levels for c in taxonomy.codes_at(lv)]
    centroids = {c: rng.normal(size=DIM) for c in class_codes}
    image_vectors = np.stack(
        [centroids[d] + rng.normal(size=DIM) for d in labels.set_index("sample_id").loc[samples, "l2_dominant"]]
    ).astype(np.float32)
    owner = captions["sample_id"].map({s: i for i, s in enumerate(samples)}).to_numpy()
    text_vectors = (image_vectors[owner] + noise * rng.normal(size=(len(captions), DIM))).astype(np.float32)
    class_vectors = np.stack([centroids[c] for c in class_codes]).astype(np.float32)
    files = _write_embedding_files(
        ds.parent, samples, captions, image_vectors, text_vectors, class_codes, class_vectors
    )
    return EvalData(ds, samples, captions, labels, image_vectors, text_vectors, class_codes, class_vectors, files)


def _write_embedding_files(
    folder: Path,
    samples: list[str],
    captions: pd.DataFrame,
    image_vectors: np.ndarray,
    text_vectors: np.ndarray,
    class_codes: list[str],
    class_vectors: np.ndarray,
) -> dict[str, Path]:
    """The same embeddings as .npy + ids files and as Parquet (rows shuffled, to prove matching by key)."""
    files = {
        "image_npy": folder / "images.npy",
        "image_ids": folder / "images.txt",
        "text_npy": folder / "texts.npy",
        "text_ids": folder / "texts.csv",
        "image_parquet": folder / "images.parquet",
        "text_parquet": folder / "texts.parquet",
        "class_parquet": folder / "classes.parquet",
    }
    order = np.random.default_rng(99).permutation(len(samples))
    np.save(files["image_npy"], image_vectors[order])
    files["image_ids"].write_text("\n".join(samples[i] for i in order) + "\n")
    t_order = np.random.default_rng(98).permutation(len(captions))
    np.save(files["text_npy"], text_vectors[t_order])
    shuffled = captions.iloc[t_order]
    files["text_ids"].write_text(
        "sample_id,caption_index\n"
        + "".join(f"{s},{i}\n" for s, i in zip(shuffled["sample_id"], shuffled["caption_index"], strict=True))
    )
    pq.write_table(
        pa.table({"sample_id": samples, "embedding": pa.array(list(image_vectors), pa.list_(pa.float32(), DIM))}),
        files["image_parquet"],
    )
    pq.write_table(
        pa.table(
            {
                "sample_id": captions["sample_id"],
                "caption_index": captions["caption_index"],
                "embedding": pa.array([list(v) for v in text_vectors], pa.list_(pa.float32())),
            }
        ),
        files["text_parquet"],
    )
    pq.write_table(
        pa.table({"code": class_codes, "embedding": pa.array(list(class_vectors), pa.list_(pa.float32(), DIM))}),
        files["class_parquet"],
    )
    return files


@pytest.fixture
def eval_data(planned_ds: Path) -> EvalData:
    """The small planned dataset (24 samples) with labels, 1–3 captions each and embeddings files."""
    return build_eval_dataset(planned_ds)
