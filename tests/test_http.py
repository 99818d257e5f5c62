"""Every HTTP request has a total deadline: dripping servers are cut, cut-off answers are retried."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import requests
import urllib3
import yaml
from stac.hostile_server import HostileStac
from untrusted import FakeDNS, assert_refused, run_cli, tree

from geosample._http import DeadlineAdapter, deadline_pool_manager


def _fetch_config(tmp_path: Path, **settings: object) -> Path:
    path = tmp_path / "fetch.yaml"
    path.write_text(yaml.safe_dump({"fetch": settings}))
    return path


@pytest.mark.parametrize("path", ["/", "/collections"], ids=["landing page", "collection list"])
def test_a_dripping_catalogue_is_cut_at_the_deadline(
    tiny_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    """The server sends headers, then a byte every 0.2 s for a minute; each attempt is cut after 0.5 s."""
    config = _fetch_config(tmp_path, timeout=0.5, retries=1)
    with HostileStac(drip=[path], folder=tmp_path) as server:
        args = ["fetch", tiny_ds, "--stac", server.url, "--collection", "hostile", "--config", config]
        code, _, err = run_cli(args, capsys)
        hits = server.hits()
    assert_refused(code, err, "within the deadline of 0.5 s")
    assert hits[path] == 2  # the first try and one retry, each cut
    assert not (tiny_ds / "chips.parquet").exists()


def test_dropped_bodies_on_the_landing_page_and_collection_list_are_retried(
    tiny_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _fetch_config(tmp_path, timeout=5, retries=3)
    with HostileStac(drop={"/": 2, "/collections": 2}, folder=tmp_path) as server:
        args = ["fetch", tiny_ds, "--stac", server.url, "--collection", "hostile", "--config", config, "--no-progress"]
        code, out, err = run_cli(args, capsys)
        hits = server.hits()
    assert code == 0, err
    assert hits["/"] >= 3 and hits["/collections"] >= 3  # two answers cut halfway, then whole ones
    chips = pd.read_parquet(tiny_ds / "chips.parquet")
    assert (chips["status"] == "no_item").all() and len(chips) == 3  # the run went on to search


def test_a_dripping_caption_endpoint_is_cut_at_the_deadline(
    tiny_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with HostileStac(drip=["/v1"], folder=tmp_path) as server:
        endpoint = f"{server.url}/v1"
        code, _, err = run_cli(["caption", tiny_ds, "--backend", "openai", "--endpoint", endpoint, "--model", "m",
                                "--timeout", "0.5", "--max-retries", "1", "--no-progress"], capsys)  # fmt: skip
    assert_refused(code, err, "kept failing (timed out) after 2 attempts")
    assert not (tiny_ds / "captions.parquet").exists()


def test_header_and_body_drips_are_cut_by_both_clients(tmp_path: Path) -> None:
    """Headers that never end look like a complete answer once the socket is cut; they are refused all the same."""
    with HostileStac(drip=["/body"], drip_headers=["/headers"], folder=tmp_path) as server:
        for path in ("/body", "/headers"):
            manager = deadline_pool_manager(0.5, retries=False)
            with pytest.raises(urllib3.exceptions.ReadTimeoutError, match="deadline of 0.5 s"):
                manager.request("GET", f"{server.url}{path}")
            session = requests.Session()
            session.mount("http://", DeadlineAdapter(0.5, read_retries=1, max_retries=0, backoff=0.01))
            with pytest.raises(requests.exceptions.RequestException, match="deadline of 0.5 s"):
                session.get(f"{server.url}{path}")
        assert server.hits() == {"/body": 3, "/headers": 3}  # urllib3 once, requests twice (one retry)


def test_name_resolution_counts_against_the_deadline(
    tiny_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, dns: FakeDNS
) -> None:
    """A resolver that never answers: every client gives up at its deadline while the lookups still hang."""
    dns.hang("slow.example")
    before = tree(tiny_ds)
    with pytest.raises(urllib3.exceptions.ConnectTimeoutError, match="resolving slow.example timed out"):
        deadline_pool_manager(0.3, retries=False).request("GET", "http://slow.example:9/")
    session = requests.Session()
    session.mount("http://", DeadlineAdapter(0.3, read_retries=1, max_retries=0, backoff=0.01))
    with pytest.raises(requests.exceptions.ConnectTimeout, match="resolving slow.example timed out"):
        session.get("http://slow.example:9/")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    args = ["caption", tiny_ds, "--backend", "openai", "--endpoint", "http://slow.example:9/v1", "--model", "m"]
    code, _, err = run_cli([*args, "--timeout", "0.3", "--max-retries", "0", "--no-progress"], capsys)
    assert_refused(code, err, "cannot reach the caption endpoint http://slow.example:9/v1", "timed out")
    config = _fetch_config(tmp_path, timeout=0.3, retries=0)
    code, _, err = run_cli(["fetch", tiny_ds, "--stac", "http://slow.example:9/", "--collection", "c",
                            "--config", config], capsys)  # fmt: skip
    assert_refused(code, err, "cannot reach --stac http://slow.example:9/", "resolving slow.example timed out")
    assert dns.waiting >= 4 and not dns.released  # each gave up while its lookup still hung
    assert tree(tiny_ds) == before
