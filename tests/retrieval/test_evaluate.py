"""geosample.evaluate on a real planned dataset against the brute-force reference, metric by metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from retrieval import reference
from retrieval.conftest import EvalData, build_eval_dataset

from geosample.errors import ConfigError, DataQualityWarning, DatasetError
from geosample.labels import load_taxonomy
from geosample.retrieval import Embeddings, EvaluateConfig, evaluate

LEVELS = ["l2", "l3"]
KS = [1, 5, 10]


def npy_settings(data: EvalData, **extra: Any) -> dict[str, Any]:
    return {
        "image_embeddings": str(data.files["image_npy"]),
        "image_ids": str(data.files["image_ids"]),
        "text_embeddings": str(data.files["text_npy"]),
        "text_ids": str(data.files["text_ids"]),
        "class_embeddings": str(data.files["class_parquet"]),
        **extra,
    }


def expected_metrics(data: EvalData, keep: np.ndarray | None = None, ks: list[int] = KS) -> dict[str, Any]:
    """The reference for the samples in ``keep`` (default all): every metric and the per-stratum figures."""
    keep = np.ones(len(data.samples), bool) if keep is None else keep
    samples = [s for s, k in zip(data.samples, keep, strict=True) if k]
    captions = data.captions[data.captions["sample_id"].isin(samples)]
    owner = {s: i for i, s in enumerate(data.samples)}
    images = reference.unit(data.image_vectors[keep])
    texts = reference.unit(data.text_vectors[captions.index.to_numpy()])
    position = {s: i for i, s in enumerate(samples)}
    text_image = captions["sample_id"].map(position).to_numpy()
    labels = data.labels.set_index("sample_id").loc[samples]
    sets = {lv: [set(v) for v in labels[lv]] for lv in LEVELS}
    out = reference.retrieval_metrics(images, texts, text_image, sets, ks)
    taxonomy = load_taxonomy("geosample-lulc")
    out["zero_shot"] = {}
    for level in ("l1", "l2", "l3"):
        codes = taxonomy.codes_at(level)
        vectors = reference.unit(data.class_vectors[[data.class_codes.index(c) for c in codes]])
        out["zero_shot"][level] = reference.zero_shot(
            images, vectors, [codes.index(c) for c in labels[f"{level}_dominant"]]
        )
    plan = pd.read_parquet(data.ds / "plan.parquet").set_index("sample_id").loc[samples]
    out["per_stratum"] = {}
    for dim in ("continent", "climate", "landcover"):
        out["per_stratum"][dim] = {}
        for value in sorted(plan[dim].unique()):
            mask = (plan[dim] == value).to_numpy()
            part = reference.retrieval_metrics(images, texts, text_image, sets, ks, image_queries=mask)
            part["n_images"], part["n_texts"] = int(mask.sum()), int(mask[text_image].sum())
            out["per_stratum"][dim][value] = part
    out["n_images"], out["n_texts"] = len(samples), len(captions)
    del owner
    return out


def assert_direction(got: dict[str, Any], want: dict[str, Any], ks: list[int]) -> None:
    for k in ks:
        assert got[f"R@{k}"] == pytest.approx(want[f"R@{k}"], abs=1e-12)
        for name in (f"mAP@{k}", f"WMAP@{k}", f"WMAP@{k}_norm"):
            for level in LEVELS:
                assert got[name][level] == pytest.approx(want[name][level], abs=1e-12), (name, level)


def assert_matches(metrics: dict[str, Any], want: dict[str, Any], ks: list[int] = KS) -> None:
    assert metrics["n_images"] == want["n_images"] and metrics["n_texts"] == want["n_texts"]
    for direction in ("image_to_text", "text_to_image"):
        assert_direction(metrics[direction], want[direction], ks)
    assert metrics["mR"] == pytest.approx(want["mR"], abs=1e-12)
    for level, acc in want["zero_shot"].items():
        assert metrics["zero_shot"][level] == pytest.approx(acc, abs=1e-12)
    assert set(metrics["per_stratum"]) == set(want["per_stratum"])
    for dim, values in want["per_stratum"].items():
        assert set(metrics["per_stratum"][dim]) == set(values)
        for value, part in values.items():
            got = metrics["per_stratum"][dim][value]
            assert (got["n_images"], got["n_texts"]) == (part["n_images"], part["n_texts"])
            for direction in ("image_to_text", "text_to_image"):
                assert_direction(got[direction], part[direction], ks)
            assert got["mR"] == pytest.approx(part["mR"], abs=1e-12)


@pytest.fixture
def noisy(planned_ds: Path) -> EvalData:
    """Captions far enough from their images that retrieval is imperfect (the interesting case)."""
    return build_eval_dataset(planned_ds, seed=3, noise=2.5)


def test_metrics_equal_the_reference_and_files_are_written(noisy: EvalData) -> None:
    result = evaluate(noisy.ds, **npy_settings(noisy))
    want = expected_metrics(noisy)
    assert_matches(result.metrics, want)
    assert 0 < want["image_to_text"]["R@1"] < 1  # the fixture is neither trivial nor hopeless
    written = json.loads((noisy.ds / "eval" / "metrics.json").read_text())
    assert written == json.loads(json.dumps(result.metrics))
    assert written["encoder"] == "precomputed" and written["levels"] == LEVELS and written["k"] == KS
    assert (noisy.ds / "eval" / "per_stratum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    section = yaml.safe_load((noisy.ds / "geosample.yaml").read_text())
    assert "plan" in section and section["evaluate"]["image_embeddings"] == str(noisy.files["image_npy"])
    assert section["evaluate"]["n_images"] == 24
    assert list(result.images["sample_id"]) == noisy.samples
    assert {"R@1", "mAP@5/l2", "WMAP@10_norm/l3", "zero_shot/l1/top5"} <= set(result.images.columns)
    assert {"continent", "climate", "landcover"} <= set(result.images.columns)


def fractions(node: Any) -> list[float]:
    if isinstance(node, dict):
        return [v for key, value in node.items() if not key.startswith("WMAP") or key.endswith("_norm")
                for v in fractions(value)]  # fmt: skip
    return [node] if isinstance(node, float) else []


def test_every_fraction_lies_in_0_1(noisy: EvalData) -> None:
    metrics = evaluate(noisy.ds, write=False, **npy_settings(noisy)).metrics
    values = fractions({k: v for k, v in metrics.items() if k not in ("n_images", "n_texts", "k")})
    assert len(values) > 500 and all(0.0 <= v <= 1.0 for v in values)


def test_parquet_inputs_and_other_cutoffs(noisy: EvalData) -> None:
    settings = {
        "image_embeddings": str(noisy.files["image_parquet"]),
        "text_embeddings": str(noisy.files["text_parquet"]),
        "class_embeddings": str(noisy.files["class_parquet"]),
        "k": "3,7",
        "level": "l2,l3",
    }
    result = evaluate(noisy.ds, write=False, **settings)
    assert_matches(result.metrics, expected_metrics(noisy, ks=[3, 7]), ks=[3, 7])
    assert set(result.metrics["image_to_text"]) == {"R@3", "R@7", "mAP@3", "mAP@7", "WMAP@3", "WMAP@7",
                                                    "WMAP@3_norm", "WMAP@7_norm"}  # fmt: skip
    npy = evaluate(noisy.ds, write=False, **npy_settings(noisy, k="3,7")).metrics
    assert npy == result.metrics


def test_split_from_labels(noisy: EvalData) -> None:
    labels = pd.read_parquet(noisy.ds / "labels.parquet")
    labels["split"] = np.where(np.arange(len(labels)) % 3 == 0, "test", "train")
    labels.to_parquet(noisy.ds / "labels.parquet", index=False)
    result = evaluate(noisy.ds, **npy_settings(noisy, split="test"))
    keep = np.isin(noisy.samples, labels.loc[labels["split"] == "test", "sample_id"])
    assert_matches(result.metrics, expected_metrics(noisy, keep))
    assert result.metrics["split"] == "test" and result.metrics["n_images"] == 8
    # "val" and STAC's "validate" both mean the validation split, which this labels column does not have.
    for name in ("val", "validate", "validation"):
        with pytest.raises(ConfigError, match="--split 'validation' has no samples .* splits there: test, train"):
            evaluate(noisy.ds, **npy_settings(noisy, split=name))


def test_split_equals_the_exported_split(noisy: EvalData) -> None:
    """Without a split column, --split takes the samples a real `geosample export` puts in that split."""
    from geosample.cli import main

    # Settings other than the defaults, so that evaluate must read the ones the export recorded.
    main(["export", str(noisy.ds), "--format", "parquet", "--split", "0.4,0.3,0.3", "--seed", "3", "-q"])
    files = sorted((noisy.ds / "export" / "parquet").rglob("*.parquet"))
    exported = pd.concat([pd.read_parquet(f, columns=["sample_id", "split"]) for f in files])
    exported["split"] = exported["split"].replace({"validate": "validation"})  # older exports spelt it so
    for ours, theirs in (("test", "test"), ("validation", "validation"), ("val", "validation"), ("train", "train")):
        want = sorted(exported.loc[exported["split"] == theirs, "sample_id"])
        assert want, theirs
        result = evaluate(noisy.ds, write=False, bootstrap=0, **npy_settings(noisy, split=ours))
        assert sorted(result.images["sample_id"]) == want, ours
        keep = np.isin(noisy.samples, want)
        assert_matches(result.metrics, expected_metrics(noisy, keep))


def test_unknown_split_name_is_an_error(noisy: EvalData) -> None:
    with pytest.raises(ConfigError, match="--split 'holdout' has no samples .* splits there: test, train, validation"):
        evaluate(noisy.ds, **npy_settings(noisy, split="holdout"))
    assert not (noisy.ds / "eval").exists()


def test_missing_and_foreign_embeddings_warn_and_are_left_out(noisy: EvalData, tmp_path: Path) -> None:
    ids = noisy.files["image_ids"].read_text().split()
    vectors = np.load(noisy.files["image_npy"])
    dropped = ids[:2]
    np.save(tmp_path / "some.npy", np.vstack([vectors[2:], np.ones((1, vectors.shape[1]), np.float32)]))
    (tmp_path / "some.txt").write_text("\n".join([*ids[2:], "not-a-sample"]) + "\n")
    settings = npy_settings(noisy, image_embeddings=str(tmp_path / "some.npy"), image_ids=str(tmp_path / "some.txt"))
    with pytest.warns(DataQualityWarning) as caught:
        result = evaluate(noisy.ds, write=False, **settings)
    messages = " | ".join(str(w.message) for w in caught)
    assert "1 image embedding(s) are for images not in" in messages and "'not-a-sample'" in messages
    assert "2 sample(s) have no image embedding" in messages
    keep = ~np.isin(noisy.samples, dropped)
    assert_matches(result.metrics, expected_metrics(noisy, keep))


def test_embeddings_of_another_dataset_are_an_error(noisy: EvalData, tmp_path: Path) -> None:
    (tmp_path / "other.txt").write_text("\n".join(f"x{i}" for i in range(24)) + "\n")
    settings = npy_settings(noisy, image_ids=str(tmp_path / "other.txt"))
    with pytest.raises(DatasetError, match="none of the 24 image embeddings match"), pytest.warns(DataQualityWarning):
        evaluate(noisy.ds, **settings)
    assert not (noisy.ds / "eval").exists()


def test_without_labels_only_recall(noisy: EvalData) -> None:
    (noisy.ds / "labels.parquet").unlink()
    with pytest.warns(DataQualityWarning, match="only R@K and mR"):
        result = evaluate(noisy.ds, **npy_settings(noisy))
    assert result.metrics["levels"] == [] and result.metrics["zero_shot"] == {}
    assert set(result.metrics["image_to_text"]) == {"R@1", "R@5", "R@10"}
    want = expected_metrics(noisy)
    for direction in ("image_to_text", "text_to_image"):
        for k in KS:
            assert result.metrics[direction][f"R@{k}"] == pytest.approx(want[direction][f"R@{k}"])


def test_no_class_embeddings_skips_zero_shot(noisy: EvalData) -> None:
    settings = npy_settings(noisy)
    del settings["class_embeddings"]
    with pytest.warns(DataQualityWarning, match="zero-shot skipped"):
        result = evaluate(noisy.ds, write=False, **settings)
    assert result.metrics["zero_shot"] == {}
    assert result.metrics["mR"] == pytest.approx(expected_metrics(noisy)["mR"])


class ArrayEncoder:
    """A third-party-style encoder: any object with the three methods."""

    name = "arrays"

    def __init__(self, data: EvalData, class_vectors: dict[str, np.ndarray]) -> None:
        self.data, self.class_vectors = data, class_vectors
        self.prompts: dict[str, str] = {}

    def encode_images(self, ds: Path, samples: pd.DataFrame) -> Embeddings:
        rows = [self.data.samples.index(s) for s in samples["sample_id"]]
        return Embeddings(samples[["sample_id"]], self.data.image_vectors[rows])

    def encode_texts(self, captions: pd.DataFrame) -> Embeddings:
        keys = self.data.captions.set_index(["sample_id", "caption_index"]).index
        rows = keys.get_indexer(pd.MultiIndex.from_frame(captions[["sample_id", "caption_index"]]))
        return Embeddings(captions[["sample_id", "caption_index"]], self.data.text_vectors[rows])

    def encode_prompts(self, prompts: dict[str, str]) -> Embeddings:
        self.prompts = dict(prompts)
        codes = list(prompts)
        return Embeddings(pd.DataFrame({"code": codes}), np.stack([self.class_vectors[c] for c in codes]))


def test_encoder_instance_and_class_names(noisy: EvalData) -> None:
    """The seams notebooks use: an encoder object, and zero-shot classes given as names."""
    l1 = load_taxonomy("geosample-lulc").codes_at("l1")
    vectors = {c: noisy.class_vectors[noisy.class_codes.index(c)] for c in l1}
    encoder = ArrayEncoder(noisy, vectors)
    classes = {"l1": {c: f"Class {c}" for c in l1}}
    config = EvaluateConfig(prompt="an aerial photo of {name}")
    result = evaluate(noisy.ds, config=config, encoder=encoder, classes=classes, write=False)
    assert result.metrics["encoder"] == "arrays"
    assert encoder.prompts == {c: f"an aerial photo of class {c}" for c in l1}
    assert set(result.metrics["zero_shot"]) == {"l1"}
    want = expected_metrics(noisy)
    assert result.metrics["zero_shot"]["l1"] == pytest.approx(want["zero_shot"]["l1"])
    assert result.metrics["text_to_image"]["R@5"] == pytest.approx(want["text_to_image"]["R@5"])
    evaluate(noisy.ds, config=config, encoder=encoder, classes=classes)  # written: recorded by its name
    assert yaml.safe_load((noisy.ds / "geosample.yaml").read_text())["evaluate"]["encoder"] == "arrays"


def test_plot_is_deterministic(noisy: EvalData) -> None:
    evaluate(noisy.ds, **npy_settings(noisy))
    first = (noisy.ds / "eval" / "per_stratum.png").read_bytes()
    evaluate(noisy.ds, **npy_settings(noisy))
    assert (noisy.ds / "eval" / "per_stratum.png").read_bytes() == first
    assert not [p for p in noisy.ds.iterdir() if p.name.startswith(".eval-")]
