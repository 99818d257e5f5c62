"""Config files from other people: bounded reading, and no key or code chosen by the file alone."""

from __future__ import annotations

import resource
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from captions.openai_server import OpenAIServer
from untrusted import FakeDNS, assert_refused, assert_untouched, run_cli, run_process, tree

from geosample._config_file import MAX_YAML_NODES, check_consent, is_loopback_url, parse_yaml
from geosample.errors import ConsentWarning, UnsafeInputError

EXAMPLES = Path(__file__).parents[1] / "data" / "examples"
ALIAS_BOMB = (
    "aoi: ["
    + ", ".join(
        f"&{c} [{', '.join([f'*{p}' if p else 'lol'] * 9)}]"
        for p, c in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
    )
    + "]"
)
"""A "billion laughs" in one value: nine levels of nine aliases, 9**9 (387 million) strings expanded, from 400 bytes."""


@pytest.fixture
def listener() -> tuple[str, list[bytes]]:
    """A loopback port that records every connection made to it (and answers nothing)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    seen: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.settimeout(1)
            try:
                seen.append(conn.recv(65536))
            except OSError:
                seen.append(b"")
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1", seen
    server.close()


def test_an_alias_bomb_is_refused_within_a_memory_limit(tmp_path: Path) -> None:
    """Under a 1.5 GiB address-space limit, turning ``aoi`` into text dies of MemoryError; it is refused first."""
    config = tmp_path / "bomb.yaml"
    config.write_text(f"plan:\n  samples: 3\n  {ALIAS_BOMB}\n")
    loaded = yaml.safe_load(config.read_text())  # PyYAML shares aliased values: loading alone is cheap ...
    assert loaded["plan"]["aoi"][8][0] is loaded["plan"]["aoi"][7]  # ... until anything walks the value

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))

    done = run_process(["plan", "-o", tmp_path / "DS", "--config", config], preexec=limit,
                       env={"OPENBLAS_NUM_THREADS": "1"}, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert done.stderr.count("\n") == 1 and f"expands to more than {MAX_YAML_NODES:,} values" in done.stderr
    assert not (tmp_path / "DS").exists()


def test_budgets_on_nodes_depth_and_cycles() -> None:
    assert parse_yaml("a: &x {k: 1}\nb: *x\nc: *x\n", "t") == {"a": {"k": 1}, "b": {"k": 1}, "c": {"k": 1}}
    wide = "a: &a [" + ", ".join(["1"] * 400) + "]\nb: [" + ", ".join(["*a"] * 300) + "]\n"
    with pytest.raises(UnsafeInputError, match="expands to more than"):
        parse_yaml(wide, "t")  # 120,000 values from 2 KB
    with pytest.raises(UnsafeInputError, match="nests deeper"):
        parse_yaml("[" * 300 + "]" * 300, "t")
    with pytest.raises(UnsafeInputError, match="alias inside its own anchor"):
        parse_yaml("a: &a [1, *a]\n", "t")


def test_a_huge_config_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "big.yaml"
    config.write_text("plan: {samples: 3}\n" + "# padding\n" * 200_000)  # 2 MB
    code, _, err = run_cli(["plan", "-o", tmp_path / "DS", "--config", config, "--no-progress"], capsys)
    assert_refused(code, err, str(config), "larger than 1 MiB")
    assert not (tmp_path / "DS").exists()


def test_a_config_cannot_choose_the_key_sent_to_an_endpoint(
    tiny_ds: Path, tmp_path: Path, listener: tuple[str, list[bytes]], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    endpoint, seen = listener
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    config = tmp_path / "shared.yaml"
    config.write_text(yaml.safe_dump({"caption": {"backend": "openai", "endpoint": endpoint, "model": "m",
                                                  "api_key_env": "AWS_SECRET_ACCESS_KEY"}}))  # fmt: skip
    before = tree(tmp_path)
    code, _, err = run_cli(["caption", tiny_ds, "--config", config], capsys)
    assert_refused(code, err, "api_key_env 'AWS_SECRET_ACCESS_KEY'", "--api-key-env AWS_SECRET_ACCESS_KEY")
    assert seen == [] and "very-secret" not in err
    assert_untouched(tmp_path, before)
    # Named on the command line too, with the endpoint, it is the user's choice: the request goes out with that key.
    code, _, err = run_cli(["caption", tiny_ds, "--config", config, "--api-key-env", "AWS_SECRET_ACCESS_KEY",
                            "--endpoint", endpoint, "--timeout", "1", "--max-retries", "0", "--no-progress"],
                           capsys)  # fmt: skip
    assert code == 2 and seen and b"Bearer very-secret" in seen[0]


@pytest.fixture
def chat_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """An OpenAI-protocol server on loopback that records each request's headers; OPENAI_API_KEY is its key."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-strangers")
    server = OpenAIServer(api_key="sk-not-for-strangers")
    server.start()
    yield server
    server.stop()


def _keys(server: OpenAIServer) -> set[str | None]:
    return {request.headers.get("Authorization") for request in server.requests}


def test_a_config_cannot_choose_where_the_key_is_sent(
    tiny_ds: Path, tmp_path: Path, chat_server: OpenAIServer, dns: FakeDNS, capsys: pytest.CaptureFixture[str]
) -> None:
    """A remote-looking endpoint (a name that resolves to the loopback server) from a shared config."""
    dns.add("collector.example", "127.0.0.1")
    remote = f"http://collector.example:{chat_server.port}/v1"
    section = {"backend": "openai", "model": "m", "endpoint": remote, "max_retries": 0}
    config = tmp_path / "shared.yaml"
    config.write_text(yaml.safe_dump({"out": str(tiny_ds), "caption": section}))
    before = tree(tmp_path)
    for command in (["caption", tiny_ds, "--config", config], ["run", config]):
        code, _, err = run_cli([*command, "--no-progress"], capsys)
        assert_refused(code, err, f"sets endpoint {remote!r}", f"--endpoint {remote}")
    assert chat_server.requests == [] and "sk-not" not in err
    assert_untouched(tmp_path, before)
    # Confirmed on the command line (run's --endpoint, or caption's, which wins anyway), the key goes there.
    code, out, err = run_cli(["run", config, "--endpoint", remote, "--no-progress"], capsys)
    assert code == 0, err
    assert chat_server.requests and _keys(chat_server) == {"Bearer sk-not-for-strangers"}
    served = len(chat_server.requests)
    args = ["caption", tiny_ds, "--config", config, "--endpoint", remote, "--model", "m2", "--overwrite"]
    code, _, err = run_cli([*args, "--no-progress"], capsys)
    assert code == 0, err
    assert len(chat_server.requests) > served and _keys(chat_server) == {"Bearer sk-not-for-strangers"}
    captions = pd.read_parquet(tiny_ds / "captions.parquet")
    assert set(captions["model"]) == {"m2"} and set(captions["backend"]) == {"openai"}


def test_a_loopback_endpoint_from_a_config_gets_no_key(
    tiny_ds: Path, tmp_path: Path, chat_server: OpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump({"caption": {"backend": "openai", "model": "m", "endpoint": chat_server.endpoint,
                                                  "max_retries": 0}}))  # fmt: skip
    code, _, err = run_cli(["caption", tiny_ds, "--config", config, "--no-progress"], capsys)
    # The server wants a key, so it refuses: the run says why, and how to send the key.
    assert_refused(code, err, "HTTP 401", "no API key was sent", "--endpoint")
    assert f"chose the loopback endpoint {chat_server.endpoint}: no API key is sent" in err
    assert chat_server.requests and _keys(chat_server) == {None}
    assert not (tiny_ds / "captions.parquet").exists()
    code, _, err = run_cli(["caption", tiny_ds, "--config", config, "--endpoint", chat_server.endpoint,
                            "--no-progress"], capsys)  # fmt: skip
    assert code == 0, err
    assert _keys(chat_server) == {None, "Bearer sk-not-for-strangers"}


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://localhost:8000/v1", True), ("http://127.0.0.1:9/v1", True), ("http://127.8.9.10/v1", True),
        ("http://[::1]:8000/v1", True), ("http://LOCALHOST./v1", True),
        ("https://api.openai.com/v1", False), ("http://localhost.example.com/v1", False),
        ("http://127.0.0.1.nip.io/v1", False), ("http://127.0.0.1@collector.example/v1", False),
        ("http://collector.example\\@127.0.0.1/v1", False),  # urllib3 connects to collector.example
        ("http://collector.example#@127.0.0.1/v1", False), ("http://0.0.0.0:8000/v1", False),
        ("http://127.1/v1", False), ("http://[::ffff:127.0.0.1]/v1", False), ("file://localhost/x", False),
    ],
)  # fmt: skip
def test_loopback_is_what_is_written(url: str, loopback: bool) -> None:
    """Loopback by the host as written, read alike by Python's and urllib3's URL parsers (no lookup)."""
    assert is_loopback_url(url) is loopback


def test_a_config_cannot_import_code(tiny_ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    marker = tmp_path / "ran"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "evil_plugin.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\ndef make(**kw):\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.delitem(sys.modules, "evil_plugin", raising=False)
    for section, key in (("caption", "backend"), ("evaluate", "encoder")):
        config = tmp_path / f"{section}.yaml"
        config.write_text(yaml.safe_dump({section: {key: "evil_plugin:make"}}))
        code, _, err = run_cli([section, tiny_ds, "--config", config], capsys)
        assert_refused(code, err, f"{key} 'evil_plugin:make'", f"--{key} evil_plugin:make")
        assert not marker.exists()
    config = tmp_path / "os.yaml"
    config.write_text("caption: {backend: 'os:system'}\n")
    assert_refused(*run_cli(["caption", tiny_ds, "--config", config], capsys)[::2], "'os:system'")
    # Given on the command line, the path is the user's own choice: it is imported (and found wanting).
    code, _, err = run_cli(["caption", tiny_ds, "--backend", "evil_plugin:make"], capsys)
    assert code == 2 and marker.exists() and "lacks the Captioner interface" in err


def test_a_run_config_is_checked_whole_whatever_until_says(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = yaml.safe_load((EXAMPLES / "offline.yaml").read_text())
    config["out"] = str(tmp_path / "demo")
    config["export"] = {"format": "parquet", "shard_sise": 10}  # a typo in the last section
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    code, _, err = run_cli(["run", path, "--until", "plan"], capsys)
    assert_refused(code, err, "shard_sise")
    config["export"] = {"format": "parquet"}
    config["caption"] = {"backend": "openai", "endpoint": "http://127.0.0.1:9/v1", "api_key_env": "GITHUB_TOKEN"}
    path.write_text(yaml.safe_dump(config))
    code, _, err = run_cli(["run", path, "--until", "plan"], capsys)
    assert_refused(code, err, "section caption", "--api-key-env GITHUB_TOKEN")
    config["caption"] = {"backend": "evil_plugin:make"}
    path.write_text(yaml.safe_dump(config))
    code, _, err = run_cli(["run", path, "--until", "plan"], capsys)
    assert_refused(code, err, "section caption", "--allow-import evil_plugin:make")
    assert not (tmp_path / "demo").exists()


def test_consent_rules() -> None:
    settings = {"backend": "pkg.mod:Cls", "api_key_env": "MY_KEY"}
    with pytest.raises(UnsafeInputError, match="api_key_env"):
        check_consent(settings, {"api_key_env"}, where="c")
    check_consent(settings, {"api_key_env"}, where="c", api_key_env="MY_KEY")
    check_consent(settings, set(), where="c")  # everything from the command line
    with pytest.raises(UnsafeInputError, match="import path"):
        check_consent(settings, {"backend"}, where="c", registered={"template"})
    check_consent(settings, {"backend"}, where="c", allowed_imports=["pkg.mod:Cls"])
    check_consent({"backend": "template"}, {"backend"}, where="c", registered={"template"})
    local = {"backend": "openai", "endpoint": "http://localhost:8000/v1"}
    with pytest.warns(ConsentWarning, match="no API key is sent"):
        assert check_consent(local, {"endpoint"}, where="c") == {"send_key": False}
    assert check_consent(local, set(), where="c") == {}  # the command line's endpoint: the key goes there
    with pytest.raises(UnsafeInputError, match="--endpoint http://localhost:8000/v1"):  # a plugin may send its key
        check_consent({**local, "backend": "pkg.mod:Cls"}, {"endpoint"}, where="c", allowed_imports=["pkg.mod:Cls"])
    with pytest.raises(UnsafeInputError, match="may not grant it; give --allow-local-assets"):
        check_consent({"allow_local_assets": True}, {"allow-local-assets"}, where="c")
