"""``geosample evaluate`` as a user meets it: the table, the files, config files, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from retrieval.conftest import EvalData
from untrusted import run_cli as run

pytestmark = pytest.mark.filterwarnings("ignore::geosample.errors.DataQualityWarning")


def flags(data: EvalData) -> list[str]:
    f = data.files
    return [
        "--image-embeddings", str(f["image_npy"]), "--image-ids", str(f["image_ids"]),
        "--text-embeddings", str(f["text_npy"]), "--text-ids", str(f["text_ids"]),
        "--class-embeddings", str(f["class_parquet"]),
    ]  # fmt: skip


def test_prints_every_metric_and_writes_the_files(eval_data: EvalData, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["evaluate", str(eval_data.ds), *flags(eval_data), "--level", "l3", "--k", "1,5"], capsys)
    assert code == 0, err
    for text in ("image→text", "text→image", "R@1", "R@5", "mAP@5 l3", "WMAP@5 l3", "WMAP@5_norm l3", "mR",
                 "zero-shot l1: top-1", "per stratum", "continent", "climate", "landcover", "wrote"):  # fmt: skip
        assert text in out, text
    metrics = json.loads((eval_data.ds / "eval" / "metrics.json").read_text())
    assert metrics["levels"] == ["l3"] and metrics["k"] == [1, 5]
    assert f"{metrics['image_to_text']['R@1']:.4f}" in out
    europe = metrics["per_stratum"]["continent"]["Europe"]
    assert europe["n_images"] == 24 and f"{europe['image_to_text']['R@1']:.4f}" in out


def test_config_file_and_flags_override_it(eval_data: EvalData, capsys: pytest.CaptureFixture[str]) -> None:
    f = eval_data.files
    config = eval_data.ds.parent / "conf" / "eval.yaml"
    config.parent.mkdir()
    for name in ("image_parquet", "text_parquet"):
        shutil.copy(f[name], config.parent / f[name].name)
    section = {
        "ds": str(eval_data.ds),
        "image-embeddings": "images.parquet",
        "text_embeddings": "texts.parquet",
        "k": [1, 3],
        "level": "l2",
    }
    # A shared top-level folder too: the section's own wins.
    config.write_text(yaml.safe_dump({"out": str(eval_data.ds.parent / "elsewhere"), "evaluate": section}))
    code, out, err = run(["evaluate", "--config", str(config), "--k", "2", "-q"], capsys)
    assert code == 0, err
    assert out == ""
    recorded = yaml.safe_load((eval_data.ds / "geosample.yaml").read_text())["evaluate"]
    # Relative paths in a config are relative to the config's folder; flags win over the file.
    assert recorded["image_embeddings"] == str(config.parent / "images.parquet")
    assert recorded["k"] == [2] and recorded["levels"] == ["l2"]


def bad_cases(data: EvalData) -> list[tuple[list[str], str]]:
    folder = data.ds.parent
    np.save(folder / "wide.npy", np.ones((24, 7), np.float32))
    (folder / "bad.yaml").write_text("evaluate: [1\n")
    (folder / "unknown.yaml").write_text("evaluate:\n  colour: red\n")
    ok = flags(data)
    return [
        (["--encoder", "clip", *ok], "unknown encoder 'clip'; installed:"),
        (["--encoder", "open_clip"], "needs --model NAME"),
        ([], "needs --image-embeddings and --text-embeddings FILE"),
        ([*ok[:2]], "needs --text-embeddings FILE"),
        ([*ok, "--image-embeddings", str(folder / "nope.npy")], "does not exist"),
        ([*ok, "--image-ids", str(data.files["text_ids"])], "must hold sample_id"),
        ([*ok, "--image-embeddings", str(folder / "wide.npy")], "embedding dimensions differ (image 7, text 24"),
        ([*ok, "--split", "holdout"], "--split 'holdout' has no samples"),
        ([*ok, "--level", "l4"], "--level l4: "),
        ([*ok, "--level", "level2"], "is not a label level"),
        ([*ok, "--k", "0"], "--k 0 is out of range"),
        ([*ok, "--k", "five"], "--k must be a whole number, not 'five'"),
        ([*ok, "--memory-cap", "lots"], "--memory-cap 'lots' is not a size"),
        ([*ok, "--memory-cap", "1KB"], "--memory-cap is too small"),
        ([*ok, "--device", "tpu"], "--device 'tpu' is not one of"),
        ([*ok, "--strata", "biome"], "--strata biome: not in plan.parquet"),
        ([*ok, "--prompt", "a photo"], "has no {name} placeholder"),
        ([*ok, "--batch-size", "0"], "--batch-size 0 must be a positive"),
        ([*ok, "--config", str(folder / "bad.yaml")], "not valid YAML at line"),
        ([*ok, "--config", str(folder / "unknown.yaml")], "unknown evaluate setting 'colour'"),
    ]


CASES = 20


@pytest.mark.parametrize("case", range(CASES))
def test_bad_input_is_one_line_exit_2_nothing_written(
    case: int, eval_data: EvalData, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = bad_cases(eval_data)
    assert len(cases) == CASES
    args, message = cases[case]
    before = (eval_data.ds / "geosample.yaml").read_text()
    code, _, err = run(["evaluate", str(eval_data.ds), *args], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geosample: error: "), err
    assert message in lines[0]
    assert not (eval_data.ds / "eval").exists()
    assert (eval_data.ds / "geosample.yaml").read_text() == before


def test_dataset_problems(eval_data: EvalData, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["evaluate", str(tmp_path / "nowhere"), *flags(eval_data)], capsys)
    assert code == 2 and "does not exist; make it with 'geosample plan" in err
    (eval_data.ds / "captions.parquet").unlink()
    code, _, err = run(["evaluate", str(eval_data.ds), *flags(eval_data)], capsys)
    assert code == 2 and "has no captions.parquet; run 'geosample caption" in err
    code, _, err = run(["evaluate", *flags(eval_data)], capsys)
    assert code == 2 and "no dataset folder given" in err


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["evaluate", "--help"], capsys)
    assert code == 0
    for flag in ("--encoder", "--image-embeddings", "--text-ids", "--model", "--checkpoint", "--split", "--level",
                 "--k", "--device", "--batch-size", "--memory-cap", "--config"):  # fmt: skip
        assert flag in out


def test_cli_and_evaluate_import_no_torch() -> None:
    """``geosample --help`` and the numpy path never import torch, even where it is installed."""
    code = (
        "import sys; from geosample.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "import geosample.retrieval, geosample.retrieval.command, geosample.retrieval.encoders as e\n"
        "from geosample.retrieval.search import search; import numpy as np\n"
        "search(np.ones((3, 2)), np.ones((4, 2)), 2, device='cpu'); e.installed_encoders()\n"
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_auto_device_imports_torch_only_where_a_gpu_driver_is() -> None:
    """``--device auto`` on a machine without a GPU driver answers cpu without importing torch (seconds)."""
    code = (
        "import sys; from geosample.retrieval.search import gpu_driver_present, resolve_device\n"
        "print(resolve_device('auto'), gpu_driver_present(), 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    device, driver, imported = proc.stdout.split()
    if driver == "False":
        assert (device, imported) == ("cpu", "False")
    else:  # a GPU machine: torch (where installed) decides
        assert device in ("cpu", "cuda")


def test_runs_where_torch_cannot_be_imported(eval_data: EvalData) -> None:
    """With torch unimportable, ``--device auto`` takes the numpy path and gives the same numbers."""
    args = ["evaluate", str(eval_data.ds), *flags(eval_data), "-q"]
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import importlib.util; importlib.util.find_spec = (lambda f: lambda n, *a: None if n == 'torch' "
        "else f(n, *a))(importlib.util.find_spec)\n"
        f"from geosample.cli import main; main({args!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((eval_data.ds / "eval" / "metrics.json").read_text())["n_images"] == 24


def test_installed_command_smoke(eval_data: EvalData) -> None:
    exe = shutil.which("geosample") or pytest.skip("geosample is not installed as a command")
    proc = subprocess.run(
        [exe, "evaluate", str(eval_data.ds), *flags(eval_data)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "mR" in proc.stdout and (eval_data.ds / "eval" / "per_stratum.png").exists()
