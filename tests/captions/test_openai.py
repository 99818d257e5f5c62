"""The ``openai`` backend against an OpenAI-protocol server on loopback: requests, retries, caps, cache, key hygiene."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from captions.conftest import SECRET, all_bytes_under
from captions.openai_server import OpenAIServer
from PIL import Image
from untrusted import run_cli as run

from geosample.captions import caption
from geosample.captions.openai import EndpointError, OpenAICaptioner, load_prompt
from geosample.errors import ConfigError, DataQualityWarning, PluginWarning

pytestmark = pytest.mark.filterwarnings("ignore:.*has no chips.parquet:geosample.errors.DataQualityWarning")
PROMPTS = Path(__file__).parents[2] / "geosample" / "captions" / "prompts"


def _backend(server: OpenAIServer, ds: Path, **options: object) -> OpenAICaptioner:
    options = {"retry_base": 0.01, "concurrency": 2, **options}
    return OpenAICaptioner("test-vision", server.endpoint, cache_dir=ds / ".cache" / "captions", **options)


def _stretched(path: Path) -> np.ndarray:
    """RGBA of a chip by a 2-98 percentile stretch per band, computed here with numpy alone."""
    with rasterio.open(path) as src:
        data = src.read().astype(float)
    valid = (data != 0).all(axis=0)
    planes = []
    for band in data[:3]:
        lo, hi = np.percentile(band[valid], [2, 98])
        planes.append(np.clip((band - lo) / (hi - lo) * 255, 0, 255).round())
    return np.dstack([*planes, np.where(valid, 255, 0)])


def _args(ds: Path, server: OpenAIServer, *extra: str) -> list[str]:
    return ["caption", str(ds), "--backend", "openai", "--endpoint", server.endpoint, "--model", "test-vision",
            "--no-progress", *extra]  # fmt: skip


def test_five_model_captions_per_sample_with_usage_and_images(
    chipped_ds: Path, openai_server: OpenAIServer, api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(_args(chipped_ds, openai_server, "--concurrency", "3", "-n", "5"), capsys)
    assert code == 0, err
    table = pd.read_parquet(chipped_ds / "captions.parquet")
    plan = pd.read_parquet(chipped_ds / "plan.parquet")
    chips = pd.read_parquet(chipped_ds / "chips.parquet").set_index("sample_id")
    assert len(openai_server.requests) == len(plan)
    assert (
        len(table) == 5 * len(plan) and set(table["backend"]) == {"openai"} and set(table["model"]) == {"test-vision"}
    )
    by_location = {}
    for request in openai_server.requests:
        assert request.path == "/v1/chat/completions"
        assert request.headers["Authorization"] == f"Bearer {SECRET}"
        body = request.body
        assert body["model"] == "test-vision" and body["seed"] == 0
        schema = body["response_format"]["json_schema"]
        assert body["response_format"]["type"] == "json_schema" and schema["strict"] is True
        assert schema["schema"]["properties"]["captions"]["minItems"] == 5
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        by_location[(request.facts["location"]["lat"], request.facts["location"]["lon"])] = request
    for rec in plan.itertuples():
        request = by_location[(round(rec.lat, 5), round(rec.lon, 5))]
        rows = table[table["sample_id"] == rec.sample_id].sort_values("caption_index")
        # The captions are the server's answer for this sample's facts, in order.
        assert list(rows["caption"]) == OpenAIServer.captions(request, 5)
        # The image sent is the preview file when there is one, else the chip rendered as RGB.
        chip = chips.loc[rec.sample_id]
        image = np.asarray(Image.open(io.BytesIO(request.image)))
        if pd.notna(chip["preview"]):
            assert request.image == (chipped_ds / chip["preview"]).read_bytes()
        else:
            assert np.abs(image.astype(int) - _stretched(chipped_ds / chip["path"]).astype(int)).max() <= 1
        # Usage per row is what the server reported for this sample's request.
        prompt_tokens = len(json.dumps(request.body["messages"])) // 4
        assert set(rows["usage_prompt_tokens"]) == {prompt_tokens}
        assert set(rows["cache_hit"]) == {False}
    report = json.loads((chipped_ds / "report" / "captions.json").read_text())
    run_usage = report["usage"]["this_run"]
    assert run_usage["requests"] == len(plan) and run_usage["cache_hits"] == 0
    assert run_usage["prompt_tokens"] == table.drop_duplicates("sample_id")["usage_prompt_tokens"].sum()
    # The server's captions are formulaic: the near-duplicate check must see it.
    assert report["near_duplicates"]["samples_with_near_duplicates"] == len(plan)
    assert "requests: 24, cache hits: 0" in out
    prompt = load_prompt()
    expected = hashlib.sha256(
        (PROMPTS / "openai-v2.md").read_bytes() + b"\0" + (PROMPTS / "openai-v2.json").read_bytes()
    )
    assert set(table["prompt_sha256"]) == {prompt.sha256} == {expected.hexdigest()}
    # Prompt v2: five visual-first foci, no geometry, the evidence rules; the report is the template's own.
    text = openai_server.requests[0].user_text
    assert "overview, composition, layout, surroundings, place" in text and "No caption gives the projection" in text
    assert "never as the date of an image" in text and "dominates" in text
    assert list(table["focus"].unique()) == ["overview", "composition", "layout", "surroundings", "place"]
    quality = report["quality"]
    assert quality["evidence"] == {"unknown": len(table)} and set(quality["focus"]) == set(table["focus"])
    assert quality["duplicates"]["captions"] == len(table) and "R@1" in quality["text_to_image_ceiling"]


def test_rerun_is_free_thanks_to_the_cache(
    chipped_ds: Path, openai_server: OpenAIServer, api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_args(chipped_ds, openai_server, "--limit", "6"), capsys)[0] == 0
    assert len(openai_server.requests) == 6
    first = pd.read_parquet(chipped_ds / "captions.parquet")
    code, out, _ = run(_args(chipped_ds, openai_server, "--limit", "6"), capsys)
    assert code == 0 and "nothing to do" in out and len(openai_server.requests) == 6
    code, out, _ = run(_args(chipped_ds, openai_server, "--limit", "6", "--overwrite"), capsys)
    assert code == 0 and len(openai_server.requests) == 6 and "cache hits: 6" in out
    again = pd.read_parquet(chipped_ds / "captions.parquet")
    assert list(again["caption"]) == list(first["caption"]) and set(again["cache_hit"]) == {True}
    assert list(again["usage_prompt_tokens"]) == list(first["usage_prompt_tokens"])
    # More samples continue where the last run stopped.
    assert run(_args(chipped_ds, openai_server, "--limit", "8"), capsys)[0] == 0
    assert len(openai_server.requests) == 8
    assert pd.read_parquet(chipped_ds / "captions.parquet")["sample_id"].nunique() == 8
    # Another seed is another answer: it needs --overwrite, then asks the model again.
    code, _, err = run(_args(chipped_ds, openai_server, "--limit", "2", "--seed", "1"), capsys)
    assert code == 2 and "--overwrite" in err
    assert run(_args(chipped_ds, openai_server, "--limit", "2", "--seed", "1", "--overwrite"), capsys)[0] == 0
    assert len(openai_server.requests) == 10 and openai_server.requests[-1].body["seed"] == 1


def test_retries_429_with_retry_after_500_and_malformed_json(
    labelled_ds: Path, openai_server: OpenAIServer, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.script = [("status", 429, {"Retry-After": "1"}), ("status", 500), ("malformed",),
                            ("wrong_count",), ("garbage",), ("drop",)]  # fmt: skip
    caplog.set_level(logging.DEBUG)
    with pytest.warns(DataQualityWarning, match="no chips.parquet"):
        table = caption(labelled_ds, backend=_backend(openai_server, labelled_ds, concurrency=1), limit=1)
    times = [r.at for r in openai_server.requests]
    assert len(times) == 7  # six failures, then an answer
    assert times[1] - times[0] >= 0.95  # Retry-After: 1 was honoured
    assert len(table) == 5 and table["caption"].str.startswith("Caption").all()
    assert openai_server.requests[0].image is None  # no chip: facts only
    assert "HTTP 429" in caplog.text and "HTTP 500" in caplog.text and "invalid answer" in caplog.text
    assert SECRET not in caplog.text


def test_a_sample_the_model_never_answers_properly_is_skipped(
    labelled_ds: Path, openai_server: OpenAIServer, api_key: str
) -> None:
    openai_server.script = [("malformed",)] * 3
    backend = _backend(openai_server, labelled_ds, concurrency=1, max_retries=2)
    with (
        pytest.warns(PluginWarning, match="never answered as asked"),
        pytest.warns(DataQualityWarning, match="1 of 3 samples could not be captioned"),
    ):
        table = caption(labelled_ds, backend=backend, limit=3)
    assert table["sample_id"].nunique() == 2
    report = json.loads((labelled_ds / "report" / "captions.json").read_text())
    plan = pd.read_parquet(labelled_ds / "plan.parquet")
    assert report["failed_samples"]["sample_ids"] == [plan["sample_id"].iloc[0]]
    # A re-run retries it, and only it.
    caption(labelled_ds, backend=backend, limit=3)
    assert len(openai_server.requests) == 3 + 2 + 1
    assert pd.read_parquet(labelled_ds / "captions.parquet")["sample_id"].nunique() == 3


def test_persistent_server_errors_stop_the_run_with_nothing_written(
    labelled_ds: Path, openai_server: OpenAIServer, api_key: str
) -> None:
    openai_server.script = [("status", 503)] * 10
    with pytest.raises(EndpointError, match="kept failing"):
        caption(labelled_ds, backend=_backend(openai_server, labelled_ds, max_retries=2, concurrency=1), limit=2)
    assert not (labelled_ds / "captions.parquet").exists()
    assert not (labelled_ds / "report" / "captions.json").exists()


@pytest.mark.parametrize("fatal_first", [True, False])
def test_a_fatal_answer_stops_the_requests_still_waiting_to_retry(
    labelled_ds: Path, openai_server: OpenAIServer, api_key: str, fatal_first: bool
) -> None:
    openai_server.delay = 0.2  # both requests are in flight before either is answered
    script = [("status", 401), ("status", 429, {"Retry-After": "60"})]
    openai_server.script = script if fatal_first else script[::-1]
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"refused the API key \(HTTP 401\)"):
        caption(labelled_ds, backend=_backend(openai_server, labelled_ds, concurrency=2), limit=2)
    assert time.monotonic() - started < 30  # the 429 did not wait its 60 s
    assert len(openai_server.requests) == 2 and not (labelled_ds / "captions.parquet").exists()


def test_concurrency_and_rate_caps(labelled_ds: Path, openai_server: OpenAIServer, api_key: str) -> None:
    openai_server.delay = 0.3
    caption(labelled_ds, backend=_backend(openai_server, labelled_ds, concurrency=3), limit=9, batch_size=9)
    assert openai_server.max_in_flight == 3
    server = openai_server
    server.requests.clear()
    server.delay = 0.0
    backend = _backend(server, labelled_ds, concurrency=4, rpm=600)  # one request every 0.1 s
    caption(labelled_ds, backend=backend, limit=15, batch_size=16)
    starts = sorted(r.at for r in server.requests)
    assert len(starts) == 6
    # The cap spaces requests 0.1 s apart on the client; arrivals jitter, so check the mean gap (and no burst).
    gaps = np.diff(starts)
    assert gaps.mean() >= 0.085 and gaps.min() >= 0.03  # unthrottled, they would all arrive at once


def test_the_key_never_reaches_logs_output_or_files(
    chipped_ds: Path,
    openai_server: OpenAIServer,
    api_key: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_server.script = [("status", 429, {"Retry-After": "0"}), ("status", 500)]
    code, out, err = run([*_args(chipped_ds, openai_server, "--limit", "4", "--max-retries", "3"), "--debug"], capsys)
    assert code == 0, err
    # A refused key: the server echoes part of it; our message must not.
    monkeypatch.setenv("OTHER_KEY", SECRET[::-1])
    code, out2, err2 = run(_args(chipped_ds, openai_server, "--api-key-env", "OTHER_KEY", "--overwrite"), capsys)
    assert code == 2 and "refused the API key (HTTP 401)" in err2 and err2.count("\n") == 1
    for text in (out, err, out2, err2, caplog.text, repr(_backend(openai_server, chipped_ds))):
        assert SECRET not in text and SECRET[::-1] not in text
        assert SECRET[:8] not in text and SECRET[-8:] not in text and SECRET[::-1][:8] not in text
    for path, data in all_bytes_under(chipped_ds):
        assert SECRET.encode() not in data and SECRET[::-1].encode() not in data, path
    assert (chipped_ds / ".cache" / "captions").is_dir()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BAD = [
    ("unreachable", ["--endpoint", "http://127.0.0.1:{port}/v1", "--model", "m"], "cannot reach the caption endpoint"),
    (
        "no key",
        ["--endpoint", "http://127.0.0.1:{port}/v1", "--model", "m"],
        "set the environment variable OPENAI_API_KEY",
    ),
    ("no key in named variable", ["--api-key-env", "MY_KEY", "--model", "m"], "set the environment variable MY_KEY"),
    ("key given as variable name", ["--api-key-env", "sk-123", "--model", "m"], "not an environment variable name"),
    ("no model", ["--endpoint", "http://127.0.0.1:{port}/v1"], "needs --model"),
    ("bad endpoint", ["--endpoint", "localhost:8000", "--model", "m"], "not an http(s) URL"),
    ("wrong path", ["--endpoint", "{server}/v2", "--model", "m"], "HTTP 404"),
]


@pytest.mark.parametrize(("case", "flags", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(
    case: str,
    flags: list[str],
    message: str,
    labelled_ds: Path,
    openai_server: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if case.startswith("no key"):
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = openai_server.endpoint.removesuffix("/v1")
    args = [f.format(port=_closed_port(), server=server) for f in flags]
    before = sorted(p.relative_to(labelled_ds) for p in labelled_ds.rglob("*"))
    code, _, err = run(["caption", str(labelled_ds), "--backend", "openai", "--no-progress", *args], capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if not line.startswith("geosample: warning:")]
    assert len(lines) == 1 and lines[0].startswith("geosample: error: ") and message in lines[0], err
    assert "Traceback" not in err and SECRET not in err
    assert sorted(p.relative_to(labelled_ds) for p in labelled_ds.rglob("*")) == before


def test_missing_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--model"):
        OpenAICaptioner(None, "http://127.0.0.1:9/v1")
