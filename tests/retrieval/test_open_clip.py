"""The open_clip encoder with a tiny randomly initialised model: local weights, offline, chips and previews."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from retrieval.chips import independent_rgb, write_chips
from retrieval.conftest import EvalData, build_eval_dataset

from geosample.cli import main
from geosample.errors import ConfigError, DataQualityWarning, PluginError
from geosample.retrieval import evaluate

try:  # a torchvision build that does not match torch fails at import with RuntimeError, not ImportError
    import open_clip
    import torch
except Exception as exc:  # noqa: BLE001
    pytest.skip(f"open_clip is not usable here ({exc.__class__.__name__}: {exc})", allow_module_level=True)

from geosample.retrieval._open_clip import OFFLINE_ENV, OpenClipEncoder  # noqa: E402

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model-config JSON and a checkpoint of that model's random weights."""
    folder = tmp_path_factory.mktemp("tiny-clip")
    config = folder / "geosample-tiny-clip.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("geosample-tiny-clip")
    torch.save(model.state_dict(), folder / "tiny.pt")
    return config, folder / "tiny.pt"


@pytest.fixture
def with_chips(planned_ds: Path) -> EvalData:
    data = build_eval_dataset(planned_ds)
    write_chips(data.ds, data.samples, failed=1, previews=True)
    return data


def independent_embeddings(config: Path, checkpoint: Path, pictures: list[np.ndarray], texts: list[str]) -> Any:
    """Image and text embeddings straight from open_clip, for the same pictures and captions."""
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(config.stem, pretrained=str(checkpoint))
    model.eval()
    tokenizer = open_clip.get_tokenizer(config.stem)
    with torch.no_grad():
        images = model.encode_image(torch.stack([preprocess(Image.fromarray(p)) for p in pictures])).numpy()
        words = model.encode_text(tokenizer(texts)).numpy()
    return images, words


def test_chips_and_captions_embed_as_open_clip_does(tiny_model: tuple[Path, Path], with_chips: EvalData) -> None:
    config, checkpoint = tiny_model
    before = {key: os.environ.get(key) for key in OFFLINE_ENV}
    encoder = OpenClipEncoder(str(config), checkpoint, device="cpu", batch_size=5)
    assert {key: os.environ.get(key) for key in OFFLINE_ENV} == before  # the offline switches are put back
    import pandas as pd

    samples = pd.read_parquet(with_chips.ds / "chips.parquet")
    emb = encoder.encode_images(with_chips.ds, samples)
    assert emb.keys["sample_id"].tolist() == with_chips.samples[:-1]  # the failed chip has no image
    pictures = [independent_rgb(with_chips.ds / "chips" / f"{s}.tif") for s in with_chips.samples[:-1]]
    captions = with_chips.captions.head(7)
    want_images, want_texts = independent_embeddings(config, checkpoint, pictures, captions["caption"].tolist())
    np.testing.assert_allclose(emb.vectors, want_images, rtol=1e-4, atol=1e-5)
    texts = encoder.encode_texts(captions)
    np.testing.assert_allclose(texts.vectors, want_texts, rtol=1e-4, atol=1e-5)
    assert texts.keys.values.tolist() == captions[["sample_id", "caption_index"]].values.tolist()


def test_previews_are_used_as_they_are(tiny_model: tuple[Path, Path], with_chips: EvalData) -> None:
    import pandas as pd
    from PIL import Image

    config, checkpoint = tiny_model
    encoder = OpenClipEncoder(str(config), checkpoint, device="cpu", images="previews")
    emb = encoder.encode_images(with_chips.ds, pd.read_parquet(with_chips.ds / "chips.parquet").head(3))
    pictures = [np.asarray(Image.open(with_chips.ds / "chips" / f"{s}.png")) for s in with_chips.samples[:3]]
    want, _ = independent_embeddings(config, checkpoint, pictures, ["x"])
    np.testing.assert_allclose(emb.vectors, want, rtol=1e-4, atol=1e-5)


def test_cli_end_to_end_offline(
    tiny_model: tuple[Path, Path], with_chips: EvalData, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole command with the network blocked (tests/conftest.py): nothing is downloaded."""
    config, checkpoint = tiny_model
    args = ["evaluate", str(with_chips.ds), "--encoder", "open_clip", "--model", str(config),
            "--checkpoint", str(checkpoint), "--device", "cpu", "--batch-size", "8"]  # fmt: skip
    main(args)
    out, err = capsys.readouterr()
    assert "geosample: warning: 1 sample(s) have no image embedding and are left out" in err
    metrics = json.loads((with_chips.ds / "eval" / "metrics.json").read_text())
    assert metrics["encoder"] == "open_clip" and metrics["model"] == str(config)
    assert metrics["n_images"] == 23 and set(metrics["zero_shot"]) == {"l1", "l2", "l3"}
    assert "zero-shot l3" in out and "R@1" in out


@pytest.mark.filterwarnings("ignore:encoder 'precomputed' embeds no prompts")
def test_result_equals_precomputed_from_the_same_vectors(
    tiny_model: tuple[Path, Path], with_chips: EvalData, tmp_path: Path
) -> None:
    """The open_clip path and the precomputed path agree when fed the same embeddings."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    config, checkpoint = tiny_model
    encoder = OpenClipEncoder(str(config), checkpoint, device="cpu")
    with pytest.warns(DataQualityWarning, match="1 sample\\(s\\) have no image embedding"):
        direct = evaluate(with_chips.ds, encoder=encoder, write=False, model=str(config), checkpoint=str(checkpoint))
    images = encoder.encode_images(with_chips.ds, pd.read_parquet(with_chips.ds / "chips.parquet"))
    texts = encoder.encode_texts(with_chips.captions)
    pq.write_table(pa.table({"sample_id": images.keys["sample_id"], "embedding": list(images.vectors)}),
                   tmp_path / "i.parquet")  # fmt: skip
    pq.write_table(pa.table({"sample_id": texts.keys["sample_id"], "caption_index": texts.keys["caption_index"],
                             "embedding": list(texts.vectors)}), tmp_path / "t.parquet")  # fmt: skip
    with pytest.warns(DataQualityWarning, match="1 sample\\(s\\) have no image embedding"):
        stored = evaluate(with_chips.ds, write=False, image_embeddings=str(tmp_path / "i.parquet"),
                          text_embeddings=str(tmp_path / "t.parquet"))  # fmt: skip
    for direction in ("image_to_text", "text_to_image"):
        assert stored.metrics[direction] == direct.metrics[direction]


def test_bad_model_or_checkpoint(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    config, checkpoint = tiny_model
    with pytest.raises(ConfigError, match="--checkpoint .* does not exist"):
        OpenClipEncoder(str(config), tmp_path / "none.pt")
    with pytest.raises(ConfigError, match="is not an open_clip model"):
        OpenClipEncoder("ViT-Tiny-Nothing", checkpoint)
    with pytest.raises(PluginError, match="cannot load --checkpoint .* into open_clip model ViT-B-32"):
        OpenClipEncoder("ViT-B-32", checkpoint, device="cpu")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PluginError, match="cannot load --checkpoint"):
        OpenClipEncoder(str(config), tmp_path / "junk.pt", device="cpu")


@pytest.mark.filterwarnings("ignore::geosample.errors.DataQualityWarning")
def test_finetune_on_the_tiny_model(
    tiny_model: tuple[Path, Path], with_chips: EvalData, capsys: pytest.CaptureFixture[str]
) -> None:
    """finetune and evaluate --adapter through the real open_clip loading, preprocessing and encoding code."""
    from geosample._dataset import write_section

    config, checkpoint = tiny_model
    write_section(with_chips.ds, "export", {"parquet": {"split": [0.5, 0.25, 0.25]}})  # enough to validate on
    model = ["--encoder", "open_clip", "--model", str(config), "--checkpoint", str(checkpoint), "--device", "cpu"]
    main(["finetune", str(with_chips.ds), *model, "--epochs", "5", "--bootstrap", "20", "--run", "tiny"])
    out = capsys.readouterr().out
    assert "test R@1 (weighted)" in out
    adapter = with_chips.ds / "finetune" / "tiny" / "adapter.pt"
    main(["evaluate", str(with_chips.ds), *model, "--adapter", str(adapter), "--split", "test", "--bootstrap", "0"])
    metrics = json.loads((with_chips.ds / "eval" / "metrics.json").read_text())
    saved = json.loads((with_chips.ds / "finetune" / "tiny" / "before_after.json").read_text())
    assert metrics["encoder"] == "open_clip+adapter" and metrics["split"] == "test"
    for direction in ("image_to_text", "text_to_image"):
        for k in (1, 5, 10):
            assert metrics[direction][f"R@{k}"] == pytest.approx(saved["after"][direction][f"R@{k}"], abs=1e-9)
        assert metrics[direction]["WMAP@5"] == pytest.approx(saved["after"][direction]["WMAP@5"], abs=1e-9)
