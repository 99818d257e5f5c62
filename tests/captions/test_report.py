"""The caption checks: token-set Jaccard, the class lexicon and what the labels support."""

from __future__ import annotations

import pandas as pd
import pytest

from geosample.captions._lexicon import Lexicon
from geosample.captions.report import caption_report, jaccard, length_stats, near_duplicates
from geosample.labels.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon(load_taxonomy("geosample-lulc"))


def test_jaccard_and_near_duplicates() -> None:
    assert jaccard("A forest, a lake.", "a lake and a forest") == pytest.approx(3 / 4)
    assert jaccard("", "") == 1.0
    table = pd.DataFrame(
        {
            "sample_id": ["a", "a", "a", "b", "b"],
            "caption_index": [0, 1, 2, 0, 1],
            "caption": ["Mostly forest here.", "Here mostly forest!", "Cropland in the south.", "x y", "z w"],
        }
    )
    result = near_duplicates(table, threshold=0.7)
    assert result["pairs"] == 4 and result["near_duplicate_pairs"] == 1 and result["sample_ids"] == ["a"]
    assert result["sample_rate"] == 0.5
    assert length_stats([1, 2, 3, 10])["p50"] == 2.5


@pytest.mark.parametrize(
    ("text", "finest", "flagged"),
    [
        ("Mostly mixed forest with some grassland.", ["3.3.1", "4.2"], []),
        ("A forest of mixed trees.", ["3.3.1"], []),  # ancestors of a label are fine
        ("Savanna with scattered grass.", ["4.2"], []),  # finer than an unresolved label: fine
        ("Dense pine forest.", ["3.3.1"], ["pine"]),  # a sibling class: not supported
        ("Fields and a river.", ["3.3.1"], ["fields", "river"]),
        ("Rice fields beside a lake.", ["2.1", "8"], []),
        ("Near Lake Placid and the Black Forest.", ["2.1"], []),  # place names
        ("Lake shores. Forest covers most of it.", ["2.1"], ["lake", "forest"]),  # sentence starts count
        ("Wetlands cover all of it.", ["5"], []),
    ],
)
def test_what_the_labels_support(lexicon: Lexicon, text: str, finest: list[str], flagged: list[str]) -> None:
    taxonomy = lexicon.taxonomy
    levels = [sorted({taxonomy.ancestor(c, level) or c for c in finest}) for level in taxonomy.levels]
    assert lexicon.unsupported(text, levels) == flagged


def test_terms_come_from_every_class_name(lexicon: Lexicon) -> None:
    for code, taxon in lexicon.taxonomy.classes.items():
        assert code in lexicon.terms[taxon.name.lower()]
    assert {"3"} <= lexicon.terms["forest"] and "2.1" in lexicon.terms["cropland"]


def test_report_without_labels_skips_the_hallucination_check() -> None:
    table = pd.DataFrame({"sample_id": ["a"], "caption_index": [0], "caption": ["Forest."], "backend": ["t"],
                          "model": ["m"], "focus": [None]})  # fmt: skip
    report = caption_report(table, labels=None, taxonomy=None, run={}, failed=[])
    assert report["hallucination"] == {"method": report["hallucination"]["method"], "checked": False,
                                       "reason": "the dataset has no labels.parquet"}  # fmt: skip
    assert report["backends"] == {"t / m": 1} and report["n_captions"] == 1
