"""``DS/report/index.html``: self-contained, and it loads its map and images in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from PIL import Image

from geosample.export.stats import stats

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a sandboxed, offline machine: no background requests, a fresh profile, no GPU.
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=10000",
]  # fmt: skip


class _Refs(HTMLParser):
    """Every URL-bearing attribute and every tag of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data") and value is not None:
                self.urls.append((tag, name, value))


def _page(ds: Path) -> tuple[str, _Refs]:
    text = (ds / "report" / "index.html").read_text(encoding="utf-8")
    refs = _Refs()
    refs.feed(text)
    return text, refs


def test_page_is_self_contained(full_ds: Path) -> None:
    stats(full_ds, gallery=24)  # every sample, so the two without a chip are in the gallery whatever the plan
    text, refs = _page(full_ds)
    assert refs.urls, "the page shows no image"
    assert all(value.startswith("data:image/png;base64,") for _, _, value in refs.urls), refs.urls[:3]
    assert "link" not in refs.tags and "iframe" not in refs.tags
    assert not re.search(r"<script[^>]+src=", text) and "@import" not in text and "url(" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    n_images = sum(1 for tag, _, _ in refs.urls if tag == "img")
    plots = len(list((full_ds / "report").glob("stats_*.png")))
    footprints = refs.tags.count("svg")  # gallery samples without a chip
    assert footprints == 2 and n_images + footprints == 2 + plots + 24  # map.png, time.png, plots, gallery


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (apt-get install chromium)")
@pytest.mark.parametrize("with_chips", [True, False], ids=["complete", "plan-only"])
def test_chromium_loads_every_image(with_chips: bool, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    ds = request.getfixturevalue("full_ds" if with_chips else "planned_ds")
    stats(ds, gallery=8)
    text, refs = _page(ds)
    n_images = sum(1 for tag, _, _ in refs.urls if tag == "img")
    url = (ds / "report" / "index.html").resolve().as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None, dom.stdout[:500]
    assert 'data-status="ok"' in body.group(0), body.group(0)
    assert f'data-images="{n_images}/{n_images}"' in body.group(0)
    assert ('data-svgs="0"' in body.group(0)) == with_chips  # footprints are drawn as SVG without chips
    shot = tmp_path / "page.png"
    result = _chromium([f"--screenshot={shot}", "--window-size=1280,2400", url], tmp_path)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels.std() > 20  # not a blank page
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 50  # pictures, not only text on white


def test_without_the_plans_map_the_sites_are_drawn_inline(planned_ds: Path) -> None:
    (planned_ds / "report" / "map.png").unlink()
    (planned_ds / "report" / "time.png").unlink()
    stats(planned_ds, gallery=0)
    text, refs = _page(planned_ds)
    sites = len(set(gpd.read_parquet(planned_ds / "plan.parquet")["site_id"]))
    assert refs.tags.count("svg") == 1 and text.count("<circle") == sites
    assert all(value.startswith("data:image/png;base64,") for _, _, value in refs.urls)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (apt-get install chromium)")
def test_every_section_renders_in_chromium(full_ds: Path, tmp_path: Path) -> None:
    """Each section is there, laid out and with its pictures decoded; a screenshot at each section is not blank."""
    stats(full_ds, gallery=6)
    text, _ = _page(full_ds)
    expected = ["sites", "balance", "plot-balance", "plot-spatial", "plot-labels", "plot-captions", "gallery"]
    for section_id in expected:
        assert f'<section id="{section_id}">' in text, section_id
    assert "Samples per time bin" not in text.split('id="plot-balance"')[1].split("</section>")[0]  # shown once
    url = (full_ds / "report" / "index.html").resolve().as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None, dom.stdout[:500]
    shown = re.search(r'data-sections="([^"]*)"', body.group(0))
    assert shown is not None and shown.group(1).split() == expected, body.group(0)
    boxes = {b.split(":")[0]: tuple(int(v) for v in b.split(":")[1:]) for b in body.group(0).split('data-boxes="')[1]
             .split('"')[0].split()}  # fmt: skip
    height = max(top + size for top, size in boxes.values()) + 40
    shot = tmp_path / "page.png"
    result = _chromium([f"--screenshot={shot}", f"--window-size=1280,{height}", url], tmp_path)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    for section_id, (top, size) in boxes.items():
        crop = pixels[top : top + size]
        assert crop.shape[0] > 50 and crop.std() > 20, section_id  # drawn, not an empty box
        assert len(np.unique(crop.reshape(-1, 3)[::37], axis=0)) > 8, section_id  # text and pictures
