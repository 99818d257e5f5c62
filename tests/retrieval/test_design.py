"""Design-based estimates: 1/π weights against an independent Horvitz–Thompson sum, and bootstrap coverage."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from retrieval import reference
from retrieval.conftest import EvalData, build_eval_dataset

from geosample.errors import DataQualityWarning
from geosample.retrieval import evaluate
from geosample.retrieval.design import Design, estimate

pytestmark = pytest.mark.filterwarnings("ignore:encoder .precomputed. embeds no prompts")

# Made-up population sizes N_h (cells) per stratum value: small strata are over-sampled, as in a balanced plan.
POPULATION = {0: 4000, 1: 250, 2: 60, 3: 1500}


def with_inclusion_probs(ds: Path) -> pd.DataFrame:
    """Give the plan inclusion probabilities π_h = n_h / N_h (unequal across strata); return plan rows."""
    import geopandas as gpd

    plan = gpd.read_parquet(ds / "plan.parquet")
    codes = pd.factorize(plan["stratum"])[0] % len(POPULATION)
    plan["population"] = [POPULATION[c] for c in codes]
    plan["inclusion_prob"] = plan.groupby(codes)["sample_id"].transform("size") / plan["population"]
    plan.drop(columns="population").to_parquet(ds / "plan.parquet")
    return pd.DataFrame(plan.drop(columns="geometry"))


@pytest.fixture
def weighted(planned_ds: Path) -> tuple[EvalData, pd.DataFrame]:
    plan = with_inclusion_probs(planned_ds)
    return build_eval_dataset(planned_ds, seed=5, noise=2.0), plan


def horvitz_thompson(values: dict[str, float], plan: pd.DataFrame) -> float:
    """Σ y_i / π_i over the sampled cells, divided by the population size N (known here)."""
    prob = plan.set_index("sample_id")["inclusion_prob"]
    population = float((1 / prob).sum())  # = Σ_h N_h by construction
    return sum(y / prob[s] for s, y in values.items()) / population


def per_sample_recall(data: EvalData, k: int) -> tuple[dict[str, float], dict[str, float]]:
    """Each sample's R@k as an image query, and the mean R@k of its captions as text queries (brute force)."""
    images = reference.unit(data.image_vectors)
    texts = reference.unit(data.text_vectors)
    owner = data.captions["sample_id"].map({s: i for i, s in enumerate(data.samples)}).to_numpy()
    scores = images @ texts.T
    i2t = reference.full_ranking(scores)[:, :k]
    t2i = reference.full_ranking(scores.T)[:, :k]
    image = {s: float(np.isin(i2t[i], np.flatnonzero(owner == i)).any()) for i, s in enumerate(data.samples)}
    text = {s: float(np.mean([i in t2i[j] for j in np.flatnonzero(owner == i)])) for i, s in enumerate(data.samples)}
    return image, text


def test_weighted_estimates_equal_an_independent_horvitz_thompson_sum(
    weighted: tuple[EvalData, pd.DataFrame],
) -> None:
    data, plan = weighted
    result = evaluate(data.ds, write=False, bootstrap=50, image_embeddings=str(data.files["image_parquet"]),
                      text_embeddings=str(data.files["text_parquet"]))  # fmt: skip
    metrics = result.metrics
    assert metrics["design"]["weights"] == "inclusion_prob"
    for k in (1, 5, 10):
        image, text = per_sample_recall(data, k)
        assert metrics["weighted"]["image_to_text"][f"R@{k}"] == pytest.approx(horvitz_thompson(image, plan), abs=1e-12)
        assert metrics["weighted"]["text_to_image"][f"R@{k}"] == pytest.approx(horvitz_thompson(text, plan), abs=1e-12)
        # The unweighted figures stay the plain means over queries.
        assert metrics["image_to_text"][f"R@{k}"] == pytest.approx(np.mean(list(image.values())), abs=1e-12)
    image, text = per_sample_recall(data, 1)
    assert abs(horvitz_thompson(image, plan) - np.mean(list(image.values()))) > 1e-3  # the weights matter here
    # Per stratum value: the same estimator over that value's samples only (a domain of the population).
    for value, part in metrics["per_stratum"]["landcover"].items():
        mine = plan.loc[plan["landcover"] == value]
        prob = mine.set_index("sample_id")["inclusion_prob"]
        want = sum(image[s] / prob[s] for s in mine["sample_id"]) / float((1 / prob).sum())
        assert part["weighted"]["image_to_text"]["R@1"] == pytest.approx(want, abs=1e-12)
        assert part["n_images"] == len(mine)
        if mine["site_id"].nunique() > 1:
            low, high = part["ci95"]["weighted"]["image_to_text"]["R@1"]
            assert low <= high
        else:  # one site: no interval
            assert part["ci95"] is None
    written = json.loads(json.dumps(metrics))
    assert set(written["ci95"]) == {"unweighted", "weighted"}
    assert set(written["weighted"]) == {"image_to_text", "text_to_image", "mR", "zero_shot"}


def test_bootstrap_is_seeded_and_can_be_skipped(weighted: tuple[EvalData, pd.DataFrame]) -> None:
    data, _ = weighted
    files = {"image_embeddings": str(data.files["image_parquet"]), "text_embeddings": str(data.files["text_parquet"])}
    first = evaluate(data.ds, write=False, bootstrap=40, seed=3, **files).metrics
    again = evaluate(data.ds, write=False, bootstrap=40, seed=3, **files).metrics
    other = evaluate(data.ds, write=False, bootstrap=40, seed=4, **files).metrics
    assert first["ci95"] == again["ci95"] and first["ci95"] != other["ci95"]
    none = evaluate(data.ds, write=False, bootstrap=0, **files).metrics
    assert none["ci95"] is None and none["weighted"] == first["weighted"]


def test_plan_without_inclusion_probs_falls_back_to_equal_weights(planned_ds: Path) -> None:
    data = build_eval_dataset(planned_ds, seed=5, noise=2.0)
    plan = gpd.read_parquet(data.ds / "plan.parquet")
    plan.drop(columns="inclusion_prob").to_parquet(data.ds / "plan.parquet")  # a plan from before the column
    files = {"image_embeddings": str(data.files["image_parquet"]), "text_embeddings": str(data.files["text_parquet"])}
    with pytest.warns(DataQualityWarning, match="no inclusion_prob column.*re-run 'geosample plan'"):
        metrics = evaluate(data.ds, write=False, bootstrap=0, **files).metrics
    assert metrics["design"]["weights"] == "equal"
    assert metrics["weighted"]["image_to_text"] == metrics["image_to_text"]


def test_missing_probabilities_take_their_stratum_mean() -> None:
    samples = pd.DataFrame(
        {"sample_id": list("abcd"), "stratum": ["x", "x", "y", "y"], "inclusion_prob": [0.1, np.nan, 0.5, 0.25]}
    )
    with pytest.warns(DataQualityWarning, match="1 sample\\(s\\) have no valid inclusion_prob"):
        design = Design.of(samples)
    np.testing.assert_allclose(design.weight, [10, 10, 2, 4])


def test_bootstrap_intervals_cover_the_population_mean() -> None:
    """A known population, stratified samples with unequal allocation: the 95 % interval covers the truth ≥ 90 %."""
    rng = np.random.default_rng(2024)
    sizes, rates = np.array([3000, 800, 200, 1000]), np.array([0.2, 0.5, 0.8, 0.35])
    population = [rng.random(n) < p for n, p in zip(sizes, rates, strict=True)]
    truth = np.concatenate(population).mean()
    drawn = np.array([25, 20, 20, 15])
    covered, draws = 0, 200
    for _ in range(draws):
        values, strata, prob = [], [], []
        for h, (cells, n) in enumerate(zip(population, drawn, strict=True)):
            pick = rng.choice(len(cells), size=n, replace=False)
            values.append(cells[pick].astype(float))
            strata += [h] * n
            prob += [n / len(cells)] * n
        samples = pd.DataFrame({"sample_id": np.arange(len(strata)).astype(str), "stratum": strata,
                                "inclusion_prob": prob})  # fmt: skip
        est = estimate(
            Design.of(samples), pd.DataFrame({"R@1": np.concatenate(values)}), pd.DataFrame(index=[]),
            np.zeros(0, dtype=np.int64), [np.ones(len(strata), bool)], replicates=200, seed=int(rng.integers(1e9)),
        )[0]  # fmt: skip
        low, high = est.interval(weighted=True)[:, 0]
        covered += low <= truth <= high
    assert covered / draws >= 0.90


def test_a_domain_of_one_site_has_no_interval() -> None:
    """One site's replicates all give its own value: no interval rather than one of zero width."""
    samples = pd.DataFrame({"sample_id": list("abcde"), "site_id": list("aabcd"), "stratum": list("xxxyy")})
    design = Design.of(samples.assign(inclusion_prob=0.5))
    images = pd.DataFrame({"R@1": [1.0, 0.0, 1.0, 0.0, 1.0]})
    texts = pd.DataFrame({"R@1": [1.0, 0.0, 0.0, 1.0, 1.0]})
    one_site = np.array([True, True, False, False, False])  # samples a and b: site a
    two_sites = np.array([False, False, True, True, False])
    whole, alone, pair = estimate(design, images, texts, np.arange(5), [np.ones(5, bool), one_site, two_sites],
                                  replicates=50, seed=0)  # fmt: skip
    assert whole.replicates_weighted is not None and pair.replicates_weighted is not None
    assert alone.replicates_weighted is None and alone.interval(weighted=True) is None
    assert alone.weighted.tolist()[:2] == [0.5, 0.5]  # the estimate itself is still given
