"""geosample finetune: adapters learn a linear image–text relation; files, evaluate --adapter, bad input."""

from __future__ import annotations

import json

import pytest
import yaml
from finetune.conftest import LinearData

from geosample.cli import main
from geosample.errors import ConfigError
from geosample.finetune import FinetuneConfig, finetune
from geosample.retrieval import evaluate

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::geosample.errors.DataQualityWarning")
TRAINING = {"epochs": 60, "patience": 10, "bootstrap": 200, "adapter_kind": "linear", "lr": 0.01}


def files(data: LinearData) -> dict[str, str]:
    return {"image_embeddings": str(data.images), "text_embeddings": str(data.texts)}


def test_adapter_learns_the_linear_relation(linear: LinearData) -> None:
    result = finetune(linear.ds, run="lin", **files(linear), **TRAINING)
    change = result.change["weighted"]
    for direction in ("image_to_text", "text_to_image"):
        r1 = change[f"{direction}/R@1"]
        assert r1["after"] > r1["before"] + 0.3, r1  # a rotation cosine cannot see, learnt from the train split
        assert r1["ci95"]["change"][0] > 0  # the paired interval of the gain excludes zero
    assert result.splits["train"] > result.splits["test"] > 0
    assert result.history["validation_loss"].iloc[result.best_epoch] == result.history["validation_loss"].min()
    folder = linear.ds / "finetune" / "lin"
    assert {p.name for p in folder.iterdir()} == {
        "adapter.pt", "config.yaml", "loss.png", "before_after.json", "before_after.txt"
    }  # fmt: skip
    assert (folder / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recorded = yaml.safe_load((folder / "config.yaml").read_text())
    assert recorded["best_epoch"] == result.best_epoch and recorded["splits"] == result.splits
    assert "lin" in yaml.safe_load((linear.ds / "geosample.yaml").read_text())["finetune"]
    saved = json.loads((folder / "before_after.json").read_text())
    assert saved["after"]["weighted"]["image_to_text"]["R@1"] == pytest.approx(change["image_to_text/R@1"]["after"])
    # The saved adapter, applied by evaluate on the test split, gives the same "after" figures.
    again = evaluate(linear.ds, write=False, split="test", adapter=str(folder / "adapter.pt"), bootstrap=0,
                     **files(linear)).metrics  # fmt: skip
    assert again["image_to_text"] == pytest.approx(result.after["image_to_text"])
    assert again["text_to_image"] == pytest.approx(result.after["text_to_image"])


def test_cli_prints_the_gain_and_refuses_to_overwrite(linear: LinearData, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["finetune", str(linear.ds), "--image-embeddings", str(linear.images), "--text-embeddings",
            str(linear.texts), "--epochs", "15", "--bootstrap", "50", "--adapter-kind", "mlp",
            "--hidden", "32"]  # fmt: skip
    main(args)
    out = capsys.readouterr().out
    assert "test R@1 (weighted): image→text" in out and "95 % CI" in out and "before" in out
    assert (linear.ds / "finetune" / "precomputed-mlp-seed0" / "adapter.pt").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "exists; choose another --run name or pass --overwrite" in capsys.readouterr().err


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="--adapter-kind"):
        FinetuneConfig.from_mapping({"adapter_kind": "deep"})
    with pytest.raises(ConfigError, match="--train-batch-size"):
        FinetuneConfig.from_mapping({"train_batch_size": 1})
    with pytest.raises(ConfigError, match="--run"):
        FinetuneConfig.from_mapping({"run": "../escape"})
    with pytest.raises(ConfigError, match="finetune trains a new one"):
        FinetuneConfig.from_mapping({"adapter": "x.pt"})


def test_adapter_of_another_encoder_is_refused(linear: LinearData, tmp_path) -> None:  # noqa: ANN001
    result = finetune(linear.ds, run="x", epochs=2, bootstrap=0, **files(linear))
    with pytest.raises(ConfigError, match="trained on encoder 'precomputed' features, not 'baseline'"):
        evaluate(linear.ds, write=False, encoder="baseline", adapter=str(result.folder / "adapter.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="is not a geosample adapter"):
        evaluate(linear.ds, write=False, adapter=str(tmp_path / "junk.pt"), **files(linear))


def test_geosample_finetune_stays_callable_after_importing_its_modules() -> None:
    """`import geosample.finetune.train` binds geosample.finetune to the package, which is callable like the stage."""
    import geosample
    import geosample.finetune.train  # noqa: F401

    assert callable(geosample.finetune)
    with pytest.raises(ConfigError, match="--adapter-kind"):
        geosample.finetune("no-such-dataset", adapter_kind="huge")
