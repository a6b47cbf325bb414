"""Contracts of suggest.strategies: certainty values, strategy picks, and rank_pool's scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from suggest.strategies import (
    BATCH_BAND,
    CERTAINTY_METHODS,
    DIVERSITY_METHODS,
    STRATEGIES,
    ColdStart,
    DenseUncertainty,
    DiverseUncertainty,
    ModalQuery,
    RandomSampling,
    UncertaintySampling,
    certainty,
    make_strategy,
    rank_pool,
)

# -- helpers ----------------------------------------------------------------------------------


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    X = rng.standard_normal((n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _binary(margin: np.ndarray) -> np.ndarray:
    """2-class probabilities with the given margins p1 - p2."""
    p1 = (1.0 + margin) / 2.0
    return np.column_stack([p1, 1.0 - p1])


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray]:
    """300 random unit embeddings with 3-class probabilities."""
    rng = np.random.default_rng(0)
    X = _unit(rng, 300, 16)
    logits = rng.normal(size=(300, 3)) * 2
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return proba, X


@pytest.fixture(scope="module")
def duplicate_groups() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """30 groups of 8 near-duplicates; group g has margins in [0.01 g, 0.01 g + 0.005].

    Plus 500 confident background rows. Top-10 margin takes all of group 0 and two of group 1.
    """
    rng = np.random.default_rng(1)
    centers = _unit(rng, 30, 32)
    group = np.repeat(np.arange(30), 8)
    X_dup = centers[group] + rng.normal(0, 0.01, (group.size, 32)).astype(np.float32)
    margin_dup = 0.01 * group + rng.uniform(0, 0.005, group.size)
    X = np.vstack([X_dup, _unit(rng, 500, 32)])
    margin = np.concatenate([margin_dup, rng.uniform(0.6, 1.0, 500)])
    groups = np.concatenate([group, np.full(500, -1)])
    return _binary(margin), X.astype(np.float32), groups


def _mean_pairwise(X: np.ndarray) -> float:
    d = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=-1)
    return float(d[np.triu_indices(len(X), 1)].mean())


# -- certainty --------------------------------------------------------------------------------

BINARY = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [1.0, 0.0]])
TERNARY = np.array([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]])


def _h(*p: float) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


@pytest.mark.parametrize(
    ("method", "proba", "expected"),
    [
        ("margin", BINARY, [0.0, 0.8, 0.6, 1.0]),
        ("least_confidence", BINARY, [0.0, 0.8, 0.6, 1.0]),
        ("entropy", BINARY, [0.0, 1 - _h(0.9, 0.1) / math.log(2), 1 - _h(0.2, 0.8) / math.log(2), 1.0]),
        ("margin", TERNARY, [0.0, 0.2, 0.2, 1.0]),
        ("least_confidence", TERNARY, [0.0, 0.25, 0.4, 1.0]),
        ("entropy", TERNARY, [0.0, 1 - _h(0.5, 0.3, 0.2) / math.log(3), 1 - _h(0.6, 0.4) / math.log(3), 1.0]),
    ],
)
def test_certainty_values(method: str, proba: np.ndarray, expected: list[float]) -> None:
    got = certainty(proba, method)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("method", CERTAINTY_METHODS)
def test_certainty_orders_uniform_lowest_onehot_highest(method: str) -> None:
    proba = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.45, 0.45, 0.1]])
    c = certainty(proba, method)
    assert np.argmin(c) == 1 and np.argmax(c) == 2
    assert c[3] < c[0]  # a near-tie between two classes is less certain than a clear winner
    assert ((c >= 0) & (c <= 1)).all()


def test_certainty_default_is_margin() -> None:
    np.testing.assert_array_equal(certainty(TERNARY), certainty(TERNARY, "margin"))


@pytest.mark.parametrize("method", CERTAINTY_METHODS)
def test_certainty_single_class_is_certain(method: str) -> None:
    np.testing.assert_array_equal(certainty(np.ones((4, 1)), method), np.ones(4))


def test_certainty_empty_pool() -> None:
    assert certainty(np.empty((0, 3))).shape == (0,)


def test_certainty_is_float64_and_resolves_confident_rows() -> None:
    """float64 keeps apart confident rows that float32 would tie at margin 1.0."""
    proba = _binary(np.array([1 - 1e-9, 1 - 1e-10, 1 - 1e-11]))
    c = certainty(proba)
    assert c.dtype == np.float64
    assert c[0] < c[1] < c[2]
    assert certainty(proba.astype(np.float32)).dtype == np.float64


@pytest.mark.parametrize(
    ("proba", "message"),
    [
        (np.array([0.5, 0.5]), "2-D"),
        (np.ones((2, 2, 2)) / 2, "2-D"),
        (np.array([[0.5, np.nan], [0.5, 0.5]]), "NaN"),
        (np.array([[0.5, 0.5], [np.inf, 0.0]]), "NaN or inf"),
        (np.array([[1.5, -0.5]]), r"\[0, 1\]"),
        (np.array([[0.5, 0.4]]), "sum to 1"),
        (np.empty((3, 0)), "no class columns"),
        (np.array([["a", "b"]]), "numeric"),
        (None, "None"),
    ],
)
def test_certainty_rejects_bad_proba(proba: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        certainty(proba)  # type: ignore[arg-type]


def test_certainty_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown certainty method 'bald'.*margin, least_confidence, entropy"):
        certainty(BINARY, "bald")


# -- strategy contract ------------------------------------------------------------------------

BUILTIN = sorted(STRATEGIES)


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("batch_size", [1, 7, 40])
def test_strategy_returns_unique_unlabeled_indices(pool, name: str, batch_size: int) -> None:
    proba, X = pool
    labeled = np.zeros(len(X), dtype=bool)
    labeled[::3] = True
    idx = make_strategy(name, random_state=0).query(proba=proba, X=X, batch_size=batch_size, labeled_mask=labeled)
    assert idx.dtype.kind == "i" and idx.shape == (batch_size,)
    assert np.unique(idx).size == batch_size
    assert ((idx >= 0) & (idx < len(X))).all()
    assert not labeled[idx].any()


@pytest.mark.parametrize("name", BUILTIN)
def test_strategy_without_mask_uses_whole_pool(pool, name: str) -> None:
    proba, X = pool
    idx = make_strategy(name, random_state=0).query(proba=proba, X=X, batch_size=25)
    assert np.unique(idx).size == 25 and idx.max() < len(X)


@pytest.mark.parametrize("name", BUILTIN)
def test_strategy_batch_larger_than_pool_returns_all_unlabeled(pool, name: str) -> None:
    proba, X = pool
    labeled = np.ones(len(X), dtype=bool)
    labeled[[4, 50, 299]] = False
    idx = make_strategy(name, random_state=0).query(proba=proba, X=X, batch_size=10, labeled_mask=labeled)
    assert sorted(idx.tolist()) == [4, 50, 299]


@pytest.mark.parametrize("name", BUILTIN)
def test_strategy_zero_batch_is_empty(pool, name: str) -> None:
    proba, X = pool
    assert make_strategy(name).query(proba=proba, X=X, batch_size=0).size == 0


@pytest.mark.parametrize("name", BUILTIN)
def test_strategy_is_reproducible_with_seed(pool, name: str) -> None:
    proba, X = pool
    a = make_strategy(name, random_state=3).query(proba=proba, X=X, batch_size=20)
    b = make_strategy(name, random_state=3).query(proba=proba, X=X, batch_size=20)
    np.testing.assert_array_equal(a, b)


def test_random_sampling_differs_between_seeds(pool) -> None:
    proba, X = pool
    a = RandomSampling(random_state=1).query(proba=None, X=X, batch_size=20)
    b = RandomSampling(random_state=2).query(proba=None, X=X, batch_size=20)
    assert set(a) != set(b)


@pytest.mark.parametrize("method", CERTAINTY_METHODS)
def test_uncertainty_sampling_picks_least_certain_first(pool, method: str) -> None:
    proba, X = pool
    idx = UncertaintySampling(method).query(proba=proba, X=X, batch_size=30)
    c = certainty(proba, method)
    np.testing.assert_array_equal(idx, np.argsort(c, kind="stable")[:30])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": -1}, "non-negative int"),
        ({"batch_size": 2.5}, "non-negative int"),
        ({"batch_size": True}, "non-negative int"),
        ({"batch_size": 5, "labeled_mask": np.zeros(3, dtype=bool)}, "shape"),
        ({"batch_size": 5, "labeled_mask": np.zeros(300, dtype=int)}, "boolean"),
    ],
)
def test_strategy_rejects_bad_arguments(pool, kwargs: dict, message: str) -> None:
    proba, X = pool
    with pytest.raises(ValueError, match=message):
        make_strategy("margin").query(proba=proba, X=X, **kwargs)


def test_uncertainty_strategy_without_proba_points_to_coldstart(pool) -> None:
    _, X = pool
    with pytest.raises(ValueError, match="coldstart"):
        make_strategy("diverse").query(proba=None, X=X, batch_size=5)


def test_strategy_rejects_mismatched_proba_and_bad_X(pool) -> None:
    proba, X = pool
    with pytest.raises(ValueError, match="match X"):
        make_strategy("margin").query(proba=proba[:10], X=X, batch_size=5)
    with pytest.raises(ValueError, match="2-D"):
        make_strategy("margin").query(proba=proba, X=X[0], batch_size=5)


def test_make_strategy_names_and_errors() -> None:
    assert set(STRATEGIES) == {"random", "margin", "least_confidence", "entropy", "diverse", "dense", "coldstart"}
    assert make_strategy().name == "dense"
    assert make_strategy("diverse").method == "margin"
    assert make_strategy("entropy").name == "entropy"
    with pytest.raises(ValueError, match="unknown strategy 'bald'.*diverse.*modal:<module>:<function>"):
        make_strategy("bald")
    with pytest.raises(ValueError, match="cannot import"):
        make_strategy("modal:no_such_module_xyz:fn")
    with pytest.raises(ValueError, match="unknown diversity"):
        DiverseUncertainty(diversity="nope")


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
    proba = _binary(np.linspace(0, 0.5, 50))
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
    centre = _unit(rng, 1, d)[0]
    crowd = _unit(rng, 40, d) * 0.35 + centre  # distinct (cosine well below 0.9), but close together
    outliers = _unit(rng, 10, d) * 3.0
    background = _unit(rng, 400, d) * 3.0
    X = np.vstack([outliers, crowd, background]).astype(np.float32)
    margin = np.concatenate([rng.uniform(0.0, 0.01, 10), rng.uniform(0.02, 0.04, 40), rng.uniform(0.7, 1.0, 400)])
    kind = np.concatenate([np.zeros(10, int), np.ones(40, int), np.full(400, 2)])
    return _binary(margin), X, kind


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


# -- cold start -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    """20 tight clusters of very unequal sizes (5 .. 300 rows)."""
    rng = np.random.default_rng(2)
    sizes = np.geomspace(5, 300, 20).astype(int)
    centers = _unit(rng, 20, 24)
    labels = np.repeat(np.arange(20), sizes)
    X = centers[labels] + rng.normal(0, 0.03, (labels.size, 24))
    return X.astype(np.float32), labels


def test_coldstart_covers_more_clusters_than_random(clustered) -> None:
    X, labels = clustered
    cold = ColdStart(random_state=0).query(proba=None, X=X, batch_size=20)
    hits_random = [
        np.unique(labels[RandomSampling(random_state=s).query(proba=None, X=X, batch_size=20)]).size for s in range(5)
    ]
    assert np.unique(labels[cold]).size >= 18
    assert np.unique(labels[cold]).size > max(hits_random)


def test_coldstart_prefers_clusters_without_labels(clustered) -> None:
    X, labels = clustered
    labeled = np.zeros(len(X), dtype=bool)
    for c in range(10, 20):  # one label in each of the 10 biggest clusters
        labeled[np.flatnonzero(labels == c)[0]] = True
    idx = ColdStart(random_state=0).query(proba=None, X=X, batch_size=10, labeled_mask=labeled)
    assert (labels[idx] < 10).sum() >= 8


def test_coldstart_picks_typical_points_not_outliers() -> None:
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 0.05, (200, 8)), rng.normal(0, 1.0, (5, 8))]).astype(np.float32)
    idx = ColdStart(random_state=0).query(proba=None, X=X, batch_size=1)
    assert idx[0] < 200


def test_coldstart_subsamples_large_pools(clustered) -> None:
    X, labels = clustered
    idx = ColdStart(max_samples=300, random_state=0).query(proba=None, X=X, batch_size=10)
    assert np.unique(idx).size == 10


# -- rank_pool --------------------------------------------------------------------------------


def _check_score_contract(scores: np.ndarray, batch: np.ndarray, cert: np.ndarray | None) -> None:
    assert scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all()
    rest = np.setdiff1d(np.arange(scores.size), batch)
    assert np.all(np.diff(scores[batch]) > 0), "batch scores ascend in batch order"
    if rest.size:
        assert scores[batch].max() < scores[rest].min(), "the batch comes before everything else"
    if cert is not None and rest.size:
        order = rest[np.argsort(cert[rest], kind="stable")]
        assert np.all(np.diff(scores[order]) >= 0), "the rest is ordered by certainty"
        np.testing.assert_allclose(scores[rest], BATCH_BAND + (1 - BATCH_BAND) * cert[rest])


def test_rank_pool_score_contract(duplicate_groups) -> None:
    proba, X, _ = duplicate_groups
    scores, batch = rank_pool(proba, X, batch_size=10)
    assert batch.size == 10 and np.unique(batch).size == 10
    _check_score_contract(scores, batch, certainty(proba))
    np.testing.assert_allclose(scores[batch], BATCH_BAND * np.arange(10) / 10)


def test_rank_pool_default_is_the_seeded_dense_strategy(duplicate_groups) -> None:
    proba, X, _ = duplicate_groups
    _, batch = rank_pool(proba, X, batch_size=10)
    expected = DenseUncertainty(random_state=0).query(proba=proba, X=X, batch_size=10)
    np.testing.assert_array_equal(batch, expected)


@pytest.mark.parametrize("name", BUILTIN)
def test_rank_pool_with_each_strategy(pool, name: str) -> None:
    proba, X = pool
    strategy = make_strategy(name, random_state=0)
    scores, batch = rank_pool(proba, X, batch_size=12, strategy=strategy)
    _check_score_contract(scores, batch, certainty(proba, strategy.method or "margin"))


def test_rank_pool_accepts_strategy_name(pool) -> None:
    proba, X = pool
    _, batch = rank_pool(proba, X, batch_size=12, strategy="margin")
    np.testing.assert_array_equal(batch, np.argsort(certainty(proba), kind="stable")[:12])


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 299])
def test_rank_pool_chunked_equals_unchunked(duplicate_groups, chunk_size: int) -> None:
    proba, X, _ = duplicate_groups
    full_scores, full_batch = rank_pool(proba, X, batch_size=10, chunk_size=10**6)
    scores, batch = rank_pool(proba, X, batch_size=10, chunk_size=chunk_size)
    np.testing.assert_array_equal(scores, full_scores)
    np.testing.assert_array_equal(batch, full_batch)


def test_rank_pool_callable_equals_array(duplicate_groups) -> None:
    proba, X, _ = duplicate_groups
    rows = {x.tobytes(): i for i, x in enumerate(X)}
    calls: list[int] = []

    def predict_proba(chunk: np.ndarray) -> np.ndarray:
        calls.append(len(chunk))
        return proba[[rows[x.tobytes()] for x in chunk]]

    scores, batch = rank_pool(predict_proba, X, batch_size=10, chunk_size=100)
    ref_scores, ref_batch = rank_pool(proba, X, batch_size=10)
    np.testing.assert_array_equal(scores, ref_scores)
    np.testing.assert_array_equal(batch, ref_batch)
    assert max(calls) <= 100 and sum(calls) == len(X)


def test_rank_pool_without_model_uses_coldstart(clustered) -> None:
    X, labels = clustered
    scores, batch = rank_pool(None, X, batch_size=20)
    _check_score_contract(scores, batch, None)
    rest = np.setdiff1d(np.arange(len(X)), batch)
    assert (scores[rest] == 1.0).all()
    assert np.unique(labels[batch]).size >= 18


def test_rank_pool_batch_covers_whole_small_pool() -> None:
    X = np.eye(3, dtype=np.float32)
    proba = _binary(np.array([0.3, 0.1, 0.2]))
    scores, batch = rank_pool(proba, X, batch_size=50, strategy="margin")
    assert batch.tolist() == [1, 2, 0]
    np.testing.assert_allclose(scores[batch], BATCH_BAND * np.arange(3) / 3)


def test_rank_pool_rejects_bad_inputs(pool) -> None:
    proba, X = pool
    with pytest.raises(ValueError, match="match X"):
        rank_pool(proba[:5], X)
    with pytest.raises(ValueError, match="returned 3 rows"):
        rank_pool(lambda chunk: proba[:3], X)
    with pytest.raises(ValueError, match="NaN"):
        rank_pool(np.full_like(proba, np.nan), X)
    with pytest.raises(ValueError, match="chunk_size"):
        rank_pool(proba, X, chunk_size=0)


# -- ModalQuery without modAL -------------------------------------------------------------------


def test_modal_query_accepts_any_function_returning_indices(pool) -> None:
    proba, X = pool
    labeled = np.zeros(len(X), dtype=bool)
    labeled[:100] = True

    def first_rows(classifier, X_pool, n_instances):
        assert classifier.X_training.shape == (100, X.shape[1])
        return np.arange(n_instances)  # a bare array, no tuple

    idx = ModalQuery(first_rows).query(proba=proba, X=X, batch_size=5, labeled_mask=labeled)
    np.testing.assert_array_equal(idx, np.arange(100, 105))


def test_modal_query_rejects_bad_picks(pool) -> None:
    proba, X = pool
    with pytest.raises(ValueError, match="duplicate"):
        ModalQuery(lambda clf, X, n_instances: (np.zeros(n_instances, dtype=int),)).query(
            proba=proba, X=X, batch_size=3
        )
    with pytest.raises(ValueError, match="outside"):
        ModalQuery(lambda clf, X, n_instances: np.array([len(X)])).query(proba=proba, X=X, batch_size=1)
