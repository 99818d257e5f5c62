"""The backend registry: names, dotted paths, instances, and a third-party package found through its entry points."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from geosample.captions import Captioner, available_captioners, get_captioner
from geosample.captions.base import refresh_captioners
from geosample.captions.openai import OpenAICaptioner
from geosample.captions.template import TemplateCaptioner
from geosample.cli import cli, main
from geosample.errors import ConfigError, PluginError, PluginWarning

pytestmark = pytest.mark.filterwarnings("ignore:.*has no chips.parquet:geosample.errors.DataQualityWarning")
PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture
def plugin_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test plugin package on sys.path, found by real importlib.metadata discovery."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    refresh_captioners()
    yield
    monkeypatch.undo()
    refresh_captioners()


def test_built_in_backends_are_registered() -> None:
    refresh_captioners()
    found = available_captioners()
    assert found["template"] is TemplateCaptioner and found["openai"] is OpenAICaptioner


def test_names_paths_factories_and_instances() -> None:
    assert isinstance(get_captioner("template", seed=3), TemplateCaptioner)
    assert get_captioner("template", seed=3).seed == 3
    for path in ("geosample.captions.template:TemplateCaptioner", "geosample.captions.template.TemplateCaptioner"):
        assert isinstance(get_captioner(path), TemplateCaptioner)
    ready = TemplateCaptioner(seed=9)
    assert get_captioner(ready) is ready
    assert isinstance(get_captioner(TemplateCaptioner, seed=1), Captioner)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonesuch", "unknown caption backend 'nonesuch'; installed backends: openai, template"),
        ("nonesuch.module:Thing", "cannot be imported"),
        ("geosample.captions.template:Nothing", "has no 'Nothing'"),
        ("geosample.captions.template:FOCUSES", "is not a class, a function or a Captioner"),
        ("geosample.captions.config:CaptionConfig", "made a CaptionConfig, which lacks the Captioner interface"),
    ],
)
def test_bad_specs_are_plugin_errors(spec: str, message: str) -> None:
    refresh_captioners()
    with pytest.raises(PluginError, match=message.replace("(", r"\(")):
        get_captioner(spec)


def test_options_a_backend_does_not_take_are_refused() -> None:
    with pytest.raises(ConfigError, match="does not use --endpoint, --model"):
        get_captioner("template", endpoint="http://localhost:1/v1", model="m")
    # Offered to every backend, taken by those that want them.
    assert get_captioner("template", seed=2, cache_dir="somewhere").seed == 2


def test_third_party_backend_through_entry_points(plugin_installed: None, labelled_ds: Path) -> None:
    with pytest.warns(PluginWarning, match=r"caption backend 'broken' .* failed to load and is skipped"):
        found = available_captioners()
    assert {"echo", "template", "openai"} <= set(found) and "broken" not in found
    with pytest.raises(PluginError, match="'broken' is installed but failed to load"):
        get_captioner("broken")
    result = CliRunner().invoke(
        cli, ["caption", str(labelled_ds), "--backend", "echo", "-n", "3", "--seed", "4", "--model", "echo-2",
              "--no-progress"], catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(labelled_ds / "captions.parquet")
    plan = pd.read_parquet(labelled_ds / "plan.parquet")
    assert len(table) == 3 * len(plan)
    assert set(table["backend"]) == {"echo"} and set(table["model"]) == {"echo-2"}
    assert table["caption"].str.match(r"Echo [123]/3 \(seed 4\): a chip in \w").all()
    assert table["focus"].isna().all() and table["usage_prompt_tokens"].isna().all()


def test_unknown_backend_lists_the_installed_ones_in_one_line(
    plugin_installed: None, labelled_ds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info, pytest.warns(PluginWarning):
        main(["caption", str(labelled_ds), "--backend", "blip9", "--no-progress"])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [
        "geosample: error: unknown caption backend 'blip9'; installed backends: echo, openai, template "
        "(or give a dotted path such as mypackage.module:MyCaptioner)"
    ]
    assert not (labelled_ds / "captions.parquet").exists()
