"""Caption checks for ``DS/report/captions.json``: quality, lengths, near-duplicates and hallucinated classes."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geosample import __version__
from geosample.captions._lexicon import Lexicon
from geosample.captions.gazetteer import ATTRIBUTION

if TYPE_CHECKING:
    from geosample.labels.taxonomy import Taxonomy

NEAR_DUPLICATE_JACCARD = 0.7
"""Two captions of one sample are near-duplicates when their word sets overlap at least this much."""
MAX_LISTED = 1000
"""Most sample ids listed per check (the counts are always complete)."""
_TOKEN = re.compile(r"\w+", re.UNICODE)


def length_stats(values: Iterable[int]) -> dict[str, float]:
    """Mean, standard deviation, min, median, 95th percentile and max."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return {"mean": 0.0, "std": 0.0, "min": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "mean": round(float(array.mean()), 2),
        "std": round(float(array.std()), 2),
        "min": float(array.min()),
        "p50": float(np.percentile(array, 50)),
        "p95": round(float(np.percentile(array, 95)), 2),
        "max": float(array.max()),
    }


def jaccard(a: str, b: str) -> float:
    """Token-set Jaccard similarity of two texts (lower-cased word tokens)."""
    ta, tb = set(_TOKEN.findall(a.lower())), set(_TOKEN.findall(b.lower()))
    if not ta and not tb:
        return 1.0
    return len(ta & tb) / len(ta | tb)


def _groups(table: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
    """Row positions of each sample's captions, samples in order of first appearance."""
    codes, uniques = pd.factorize(table["sample_id"], sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for rows in np.split(order, bounds) if len(order) else []:
        yield str(uniques[codes[rows[0]]]), rows


def near_duplicates(
    table: pd.DataFrame, threshold: float = NEAR_DUPLICATE_JACCARD, *, texts: list[str] | None = None
) -> dict[str, Any]:
    """Near-duplicate caption pairs within each sample (``texts``: the caption column as a list, if already made)."""
    pairs = near = 0
    flagged: list[str] = []
    total = 0.0
    captions = texts if texts is not None else table["caption"].tolist()
    for sample_id, rows in _groups(table):
        tokens = [set(_TOKEN.findall(captions[r].lower())) for r in rows]
        hit = False
        for ta, tb in itertools.combinations(tokens, 2):
            union = ta | tb
            value = len(ta & tb) / len(union) if union else 1.0
            total += value
            pairs += 1
            if value >= threshold:
                near += 1
                hit = True
        if hit:
            flagged.append(sample_id)
    n_samples = int(table["sample_id"].nunique())
    return {
        "method": "token-set Jaccard similarity of lower-cased word tokens, every pair of a sample's captions",
        "threshold": threshold,
        "pairs": pairs,
        "near_duplicate_pairs": near,
        "pair_rate": round(near / pairs, 6) if pairs else 0.0,
        "mean_similarity": round(total / pairs, 4) if pairs else 0.0,
        "samples_with_near_duplicates": len(flagged),
        "sample_rate": round(len(flagged) / n_samples, 6) if n_samples else 0.0,
        "sample_ids": flagged[:MAX_LISTED],
    }


def hallucinations(
    table: pd.DataFrame,
    labels: pd.DataFrame | None,
    taxonomy: Taxonomy | None,
    extra: Mapping[str, Iterable[str]] | None = None,
    *,
    texts: list[str] | None = None,
) -> dict[str, Any]:
    """Captions that name a land-cover class that neither the sample's labels nor its other facts support.

    ``extra``: per sample, further class codes its facts give (the observed
    cover classes, the classes of the embedded MODIS map around the site).
    ``texts``: the caption column as a list, if already made.
    """
    method = (
        "a caption is flagged when it names a class (by its taxonomy name, a part of it or a common synonym; "
        "capitalised words inside a sentence or after a semicolon are taken for place names) that is neither a "
        "label of the sample at any level nor an ancestor of one, nor a finer class under a label the source could "
        "not resolve further, nor a class of the sample's observed cover or of the map cells around it"
    )
    if labels is None or taxonomy is None:
        return {"method": method, "checked": False, "reason": "the dataset has no labels.parquet"}
    lexicon = Lexicon(taxonomy)
    depth_columns = [f"l{d}" for d in range(1, len(taxonomy.levels) + 1) if f"l{d}" in labels]
    by_sample = {
        rec[0]: [list(v) if v is not None else [] for v in rec[1:]]
        for rec in labels[["sample_id", *depth_columns]].itertuples(index=False)
    }
    captions = texts if texts is not None else table["caption"].tolist()
    indexes = table["caption_index"].to_numpy()
    focus = table["focus"].to_numpy() if "focus" in table else np.full(len(table), None, dtype=object)
    flagged_ids: list[str] = []
    examples: list[dict[str, Any]] = []
    flagged_captions = checked = 0
    terms_count: dict[str, int] = {}
    for sample_id, rows in _groups(table):
        levels = by_sample.get(sample_id)
        if levels is None:
            continue
        more = list((extra or {}).get(sample_id, ()))
        support = lexicon.support([*levels[:-1], [*levels[-1], *more]] if levels else [more])
        hit = False
        for r in rows:
            checked += 1
            bad = lexicon.unsupported(captions[r], support)
            if not bad:
                continue
            hit = True
            flagged_captions += 1
            for term in bad:
                terms_count[term] = terms_count.get(term, 0) + 1
            if len(examples) < 50:
                examples.append(
                    {"sample_id": sample_id, "caption_index": int(indexes[r]), "focus": focus[r], "terms": bad,
                     "caption": captions[r]}
                )  # fmt: skip
        if hit:
            flagged_ids.append(sample_id)
    return {
        "method": method,
        "checked": True,
        "taxonomy": taxonomy.key,
        "captions_checked": checked,
        "flagged_captions": flagged_captions,
        "caption_rate": round(flagged_captions / checked, 6) if checked else 0.0,
        "flagged_samples": len(flagged_ids),
        "sample_ids": flagged_ids[:MAX_LISTED],
        "terms": dict(sorted(terms_count.items(), key=lambda kv: (-kv[1], kv[0]))),
        "examples": examples,
    }


def usage(table: pd.DataFrame, run: Mapping[str, Any]) -> dict[str, Any]:
    """Token usage: this run's requests and the totals over the table (one request per sample)."""
    per_sample = table.drop_duplicates("sample_id")

    def tokens(column: str) -> pd.Series:
        return pd.to_numeric(per_sample[column], errors="coerce") if column in table else pd.Series(dtype="float64")

    prompt, completion = tokens("usage_prompt_tokens"), tokens("usage_completion_tokens")
    return {
        "this_run": dict(run),
        "table": {
            "samples_with_usage": int(prompt.notna().sum()),
            "prompt_tokens": int(prompt.fillna(0).sum()),
            "completion_tokens": int(completion.fillna(0).sum()),
        },
        "note": "usage_* columns hold the tokens of the request that made a sample's captions, on each of its rows",
    }


def caption_report(
    table: pd.DataFrame,
    *,
    labels: pd.DataFrame | None,
    taxonomy: Taxonomy | None,
    run: Mapping[str, Any],
    failed: list[str],
    extra: Mapping[str, Iterable[str]] | None = None,
    semantic: bool = False,
) -> dict[str, Any]:
    """The whole ``report/captions.json`` document for a table of scene captions (the same for every backend)."""
    from geosample.captions.quality import quality

    texts = table["caption"].tolist()  # one list of the caption strings, shared by the checks below
    words = pd.Series([len(text.split()) for text in texts], index=table.index)
    chars = pd.Series([len(text) for text in texts], index=table.index)
    by_focus = {}
    if "focus" in table and table["focus"].notna().any():
        # By codes, in order of first appearance (as groupby(sort=False)), without a copy of the table per focus.
        codes, focuses = pd.factorize(table["focus"], sort=False)
        for k, focus in enumerate(focuses):
            rows = np.flatnonzero(codes == k)
            by_focus[str(focus)] = {
                "captions": len(rows),
                "words": length_stats(words.iloc[rows]),
                "chars": length_stats(chars.iloc[rows]),
            }
    counts = table.groupby("sample_id").size()
    return {
        "geosample_version": __version__,
        "n_samples": int(table["sample_id"].nunique()),
        "n_captions": len(table),
        "captions_per_sample": {"min": int(counts.min()), "max": int(counts.max())} if len(counts) else {},
        "backends": {
            f"{backend} / {model}": int(n) for (backend, model), n in table.groupby(["backend", "model"]).size().items()
        },
        "quality": quality(table, semantic=semantic, texts=texts),
        "length": {"words": length_stats(words), "chars": length_stats(chars), "by_focus": by_focus},
        "near_duplicates": near_duplicates(table, texts=texts),
        "hallucination": hallucinations(table, labels, taxonomy, extra, texts=texts),
        "usage": usage(table, run),
        "failed_samples": {"count": len(failed), "sample_ids": failed[:MAX_LISTED]},
        "attribution": ATTRIBUTION,
    }


_UP_WORDS = frozenset({"rose", "risen", "rises", "grew", "grown", "grows", "increased", "increases", "expanded",
                       "expands", "spread", "spreads", "gained", "gains", "more", "appeared", "advanced"})  # fmt: skip
_DOWN_WORDS = frozenset({"fell", "fallen", "falls", "shrank", "shrunk", "shrinks", "declined", "declines",
                         "decreased", "decreases", "lost", "loses", "less", "disappeared", "retreated", "receded",
                         "vanished"})  # fmt: skip
_STABLE = re.compile(r"\b(?:little changed|changed little|little change|barely changed|unchanged)\b", re.I)
_FROM_TO = re.compile(
    r"from\s+(?:about\s+|around\s+|roughly\s+|nearly\s+|~)?(\d+(?:\.\d+)?)\s*%\s+to\s+"
    r"(?:about\s+|around\s+|roughly\s+|nearly\s+|~)?(\d+(?:\.\d+)?)\s*%",
    re.I,
)
_CLAUSE = re.compile(r"[;.:!?]|,\s+(?:while|whereas|but)\s+|,\s+")
MAGNITUDE_TOLERANCE = 0.03
"""A stated share agrees with the labels when within this (rounding to 5 points moves it at most 2.5)."""


def _claims(text: str, lexicon: Lexicon) -> Iterator[tuple[frozenset[str], int | None, int | None, tuple]]:
    """(codes, direction by verb, direction by numbers, numbers) for each class named with a change in ``text``."""
    for clause in _CLAUSE.split(text.replace("almost none", "0%")):
        mentions = lexicon.mentions(clause)
        lowered = clause.lower()
        cursor, spans = 0, []
        for term, codes in mentions:
            at = lowered.find(term, cursor)
            if at < 0:
                continue
            spans.append((at, at + len(term), codes))
            cursor = at + len(term)
        for k, (_, end, codes) in enumerate(spans):
            segment = lowered[end : spans[k + 1][0] if k + 1 < len(spans) else len(lowered)]
            words = set(_TOKEN.findall(segment))
            up, down = bool(words & _UP_WORDS), bool(words & _DOWN_WORDS)
            by_verb = 1 if up and not down else -1 if down and not up else None
            numbers = _FROM_TO.search(segment)
            values = (float(numbers.group(1)) / 100, float(numbers.group(2)) / 100) if numbers else ()
            by_numbers = None if not values or values[0] == values[1] else (1 if values[1] > values[0] else -1)
            if by_verb is not None or by_numbers is not None:
                yield codes, by_verb, by_numbers, values


def _share(fractions: Mapping[str, float], code: str, lineage: Mapping[str, tuple[str, ...]]) -> float:
    """Share of ``code``: its finest descendants, or a coarser label standing for it."""
    own = lineage.get(code, (code,))
    return float(sum(v for f, v in fractions.items() if code in lineage.get(f, (f,)) or f in own[:-1]))


def change_direction(
    table: pd.DataFrame, labels: pd.DataFrame | None, taxonomy: Taxonomy | None, threshold: float
) -> dict[str, Any]:
    """Whether change captions state the direction (and size) of change that the two samples' labels show."""
    method = (
        "each clause naming a class with a direction verb (rose, fell, grew, shrank...) or 'from X% to Y%' is a "
        "claim; it agrees when the class's share (its finest-level fractions summed) moved that way between the "
        "before and after samples; 'from X% to Y%' also agrees in size when both are within "
        f"{MAGNITUDE_TOLERANCE:.0%} of the labels; 'little changed' agrees when no class moved by {threshold:.0%}"
    )
    if labels is None or taxonomy is None:
        return {"method": method, "checked": 0, "reason": "the dataset has no labels.parquet"}
    lexicon = Lexicon(taxonomy)
    lineage = {code: tuple(taxonomy.lineage(code)) for code in taxonomy.classes}
    fractions = {
        sid: json.loads(text) if isinstance(text, str) else {}
        for sid, text in zip(labels["sample_id"], labels["fractions"], strict=True)
    }
    levels = {1, len(taxonomy.levels)}
    checked = agree = magnitude_checked = magnitude_ok = stable_checked = stable_ok = 0
    examples: list[dict[str, Any]] = []
    for rec in table[["sample_id_before", "sample_id_after", "caption_index", "caption"]].itertuples(index=False):
        first, last = fractions.get(rec.sample_id_before), fractions.get(rec.sample_id_after)
        if first is None or last is None:
            continue
        if _STABLE.search(rec.caption):
            stable_checked += 1
            codes = {lineage.get(f, (f,))[min(d, len(lineage.get(f, (f,)))) - 1] for f in {*first, *last}
                     for d in levels}  # fmt: skip
            moved = max((abs(_share(last, c, lineage) - _share(first, c, lineage)) for c in codes), default=0.0)
            stable_ok += moved < threshold
        for codes, by_verb, by_numbers, values in _claims(rec.caption, lexicon):
            checked += 1
            deltas = [_share(last, c, lineage) - _share(first, c, lineage) for c in codes]
            claimed = by_numbers if by_numbers is not None else by_verb
            right = (by_verb is None or by_numbers is None or by_verb == by_numbers) and any(
                d * claimed > 0 for d in deltas
            )
            agree += right
            if values:
                magnitude_checked += 1
                magnitude_ok += any(
                    abs(values[0] - _share(first, c, lineage)) <= MAGNITUDE_TOLERANCE
                    and abs(values[1] - _share(last, c, lineage)) <= MAGNITUDE_TOLERANCE
                    for c in codes
                )
            if not right and len(examples) < 50:
                examples.append({"sample_id_before": rec.sample_id_before, "sample_id_after": rec.sample_id_after,
                                 "caption_index": int(rec.caption_index), "caption": rec.caption})  # fmt: skip
    return {
        "method": method,
        "checked": checked,
        "agree": agree,
        "disagree": checked - agree,
        "agree_rate": round(agree / checked, 6) if checked else None,
        "magnitude": {
            "checked": magnitude_checked,
            "within_tolerance": magnitude_ok,
            "tolerance": MAGNITUDE_TOLERANCE,
        },  # fmt: skip
        "little_changed": {"checked": stable_checked, "agree": stable_ok},
        "examples": examples,
    }


def change_report(
    table: pd.DataFrame,
    *,
    labels: pd.DataFrame | None,
    taxonomy: Taxonomy | None,
    run: Mapping[str, Any],
    failed: list[str],
    change: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The ``change`` section of ``report/captions.json``: counts, evidence, lengths, duplicates, direction checks.

    Label-based captions (evidence ``map``, or unknown) are checked against the
    labels; captions made from ``change.parquet`` (``change``) against it.
    """
    from geosample.captions.change import CHANGE_MIN
    from geosample.captions.quality import evidence_counts

    evidence = table["evidence"] if "evidence" in table else pd.Series([None] * len(table), index=table.index)
    from_labels = table[evidence.isna() | (evidence == "map")]
    from_change = table[evidence == "change"]

    words = pd.Series([len(text.split()) for text in table["caption"]], index=table.index)
    chars = pd.Series([len(text) for text in table["caption"]], index=table.index)
    by_focus = {
        str(focus): {"captions": len(group), "words": length_stats(words.loc[group.index])}
        for focus, group in table.groupby("focus", sort=False)
    }
    counts = table.groupby(["sample_id_before", "sample_id_after"]).size()
    return {
        "n_pairs": len(counts),
        "evidence": evidence_counts(table),
        "unobservable_pairs": {
            "not_written": int(run.get("unobservable", 0)),
            "reasons": dict(run.get("unobservable_reasons", {})),
            "note": "pairs whose change the data cannot show (both phases labelled from one static map, or from a "
            "map coarser than the chip, and no change.parquet row): no caption is written for them",
        },
        "n_sites": int(table["site_id"].nunique()),
        "n_captions": len(table),
        "captions_per_pair": {"min": int(counts.min()), "max": int(counts.max())} if len(counts) else {},
        "backends": {
            f"{backend} / {model}": int(n) for (backend, model), n in table.groupby(["backend", "model"]).size().items()
        },
        "length": {"words": length_stats(words), "chars": length_stats(chars), "by_focus": by_focus},
        "near_duplicates": near_duplicates(table),
        "direction": change_direction(from_labels, labels, taxonomy, CHANGE_MIN),
        "observed": observed_change_check(from_change, change),
        "usage": usage(table, run),
        "failed_pairs": {"count": len(failed), "pairs": failed[:MAX_LISTED]},
    }


_OBSERVED_CLAIM = re.compile(
    r"(open water appeared on|open water receded from|vegetation was lost on|vegetation grew on|"
    r"snow and ice changed on)?\s*(almost none|about (\d+)%) of the clear pixels( burned)?",
    re.I,
)
_OBSERVED_COLUMNS = {"open water appeared on": "water_gain", "open water receded from": "water_loss",
                     "vegetation was lost on": "vegetation_loss", "vegetation grew on": "vegetation_gain",
                     "snow and ice changed on": "snow_ice_change"}  # fmt: skip


def observed_change_check(table: pd.DataFrame, change: pd.DataFrame | None) -> dict[str, Any]:
    """Whether the shares that captions made from ``change.parquet`` state are the shares it holds."""
    method = (
        "each 'open water appeared on / vegetation was lost on ... about N% of the clear pixels' (and 'N% ... burned') "
        f"is compared with the pair's change.parquet share; it agrees within {MAGNITUDE_TOLERANCE:.0%}"
    )
    if change is None or table.empty:
        return {"method": method, "checked": 0}
    rows = {(str(r["sample_id_before"]), str(r["sample_id_after"])): r for r in change.to_dict("records")}
    checked = agree = 0
    examples: list[dict[str, Any]] = []
    for rec in table[["sample_id_before", "sample_id_after", "caption"]].itertuples(index=False):
        row = rows.get((rec.sample_id_before, rec.sample_id_after))
        if row is None:
            continue
        for match in _OBSERVED_CLAIM.finditer(rec.caption):
            column = "burned" if match.group(4) else _OBSERVED_COLUMNS.get((match.group(1) or "").lower())
            if column is None:
                continue
            stated = 0.0 if match.group(2).lower() == "almost none" else float(match.group(3)) / 100
            actual = row.get(column)
            checked += 1
            ok = actual is not None and not pd.isna(actual) and abs(float(actual) - stated) <= MAGNITUDE_TOLERANCE
            agree += ok
            if not ok and len(examples) < 50:
                examples.append({"sample_id_before": rec.sample_id_before, "caption": rec.caption, "column": column})
    return {"method": method, "checked": checked, "agree": agree, "disagree": checked - agree, "examples": examples}
