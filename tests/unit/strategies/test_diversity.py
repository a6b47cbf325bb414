"""suggest.strategies.diversity: diverse batches (k-means over an uncertain shortlist) and uncertainty x density."""

from __future__ import annotations

import numpy as np
import pytest

from suggest.strategies import DIVERSITY_METHODS, DenseUncertainty, DiverseUncertainty, UncertaintySampling
from tests.unit.strategies.data import binary_proba, unit_rows


def _mean_pairwise(X: np.ndarray) -> float:
    d = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=-1)
    return float(d[np.triu_indices(len(X), 1)].mean())


# -- diversity --------------------------------------------------------------------------------


def test_top_k_margin_picks_duplicates(duplicate_groups) -> None:
    """The fixture does what it claims: plain margin spends the batch on two groups."""
    proba, X, groups = duplicate_groups
    idx = UncertaintySampling("margin").query(proba=proba, X=X, batch_size=10)
    assert np.unique(groups[idx]).size == 2


@pytest.mark.parametrize("diversity", DIVERSITY_METHODS)
def test_diverse_batch_is_more_spread_than_top_k(duplicate_groups, diversity: str) -> None:
    proba, X, groups = duplicate_groups
    top = UncertaintySampling("margin").query(proba=proba, X=X, batch_size=10)
    div = DiverseUncertainty(diversity=diversity, random_state=0).query(proba=proba, X=X, batch_size=10)
    assert np.unique(groups[div]).size >= 8
    assert _mean_pairwise(X[div]) > 2 * _mean_pairwise(X[top])
    assert (groups[div] >= 0).all()  # still from the uncertain shortlist, not the confident background
    assert groups[div[0]] == 0  # the most uncertain group is still covered


def test_diverse_with_one_candidate_per_slot_is_top_k(duplicate_groups) -> None:
    proba, X, _ = duplicate_groups
    div = DiverseUncertainty(candidates=1).query(proba=proba, X=X, batch_size=10)
    top = UncertaintySampling("margin").query(proba=proba, X=X, batch_size=10)
    assert set(div) == set(top)


def test_diverse_when_all_candidates_are_identical_still_fills_the_batch() -> None:
    X = np.ones((50, 4), dtype=np.float32) / 2
    proba = binary_proba(np.linspace(0, 0.5, 50))
    for diversity in DIVERSITY_METHODS:
        idx = DiverseUncertainty(diversity=diversity, random_state=0).query(proba=proba, X=X, batch_size=5)
        assert np.unique(idx).size == 5


# -- uncertainty x density --------------------------------------------------------------------


@pytest.fixture(scope="module")
def outliers_and_crowd() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 isolated outliers with margins 0.00-0.01 and a crowd of 40 distinct rows around one point with 0.02-0.04.

    Plus 400 confident background rows. The crowd is typical, the outliers are not.
    """
    rng = np.random.default_rng(5)
    d = 32
    centre = unit_rows(rng, 1, d)[0]
    crowd = unit_rows(rng, 40, d) * 0.35 + centre  # distinct (cosine well below 0.9), but close together
    outliers = unit_rows(rng, 10, d) * 3.0
    background = unit_rows(rng, 400, d) * 3.0
    X = np.vstack([outliers, crowd, background]).astype(np.float32)
    margin = np.concatenate([rng.uniform(0.0, 0.01, 10), rng.uniform(0.02, 0.04, 40), rng.uniform(0.7, 1.0, 400)])
    kind = np.concatenate([np.zeros(10, int), np.ones(40, int), np.full(400, 2)])
    return binary_proba(margin), X, kind


def test_dense_prefers_typical_uncertain_rows_over_outliers(outliers_and_crowd) -> None:
    """Margin takes the 10 outliers; density weighting takes the crowd (fails without the density term)."""
    proba, X, kind = outliers_and_crowd
    top = UncertaintySampling("margin").query(proba=proba, X=X, batch_size=10)
    assert (kind[top] == 0).all()
    dense = DenseUncertainty(spread=0, random_state=0).query(proba=proba, X=X, batch_size=10)
    assert (kind[dense] == 1).sum() >= 8
    flat = DenseUncertainty(beta=0.0, spread=0, random_state=0).query(proba=proba, X=X, batch_size=10)
    np.testing.assert_array_equal(np.sort(flat), np.sort(top))  # beta=0 is plain margin


def test_dense_skips_near_duplicates(duplicate_groups) -> None:
    """Duplicates are the densest rows of all; the batch must still cover many groups."""
    proba, X, groups = duplicate_groups
    idx = DenseUncertainty(random_state=0).query(proba=proba, X=X, batch_size=10)
    assert np.unique(groups[idx]).size == 10
    assert (groups[idx] >= 0).all()


def test_dense_subsampled_reference_keeps_the_ranking(outliers_and_crowd) -> None:
    proba, X, kind = outliers_and_crowd
    full = DenseUncertainty(spread=0, random_state=0).query(proba=proba, X=X, batch_size=10)
    sub = DenseUncertainty(spread=0, reference=150, random_state=0).query(proba=proba, X=X, batch_size=10)
    assert (kind[sub] == 1).sum() >= 8 and (kind[full] == 1).sum() >= 8


def test_dense_spread_clusters_the_best_scored_rows(duplicate_groups) -> None:
    """spread=k: k-means over the k x batch best-scored distinct rows: reaches past the 10 best groups."""
    proba, X, groups = duplicate_groups
    plain = DenseUncertainty(spread=0, random_state=0).query(proba=proba, X=X, batch_size=10)
    spread = DenseUncertainty(spread=3, random_state=0).query(proba=proba, X=X, batch_size=10)
    assert np.unique(groups[spread]).size == 10 and (groups[spread] >= 0).all()
    assert groups[spread].max() > groups[plain].max()  # picks from the wider, 30-group shortlist


def test_dense_rejects_bad_arguments() -> None:
    for kwargs in (
        {"candidates": 0}, {"k": 0}, {"reference": 1}, {"beta": -1.0}, {"max_similarity": 2.0}, {"spread": -1},
    ):
        with pytest.raises(ValueError):
            DenseUncertainty(**kwargs)

