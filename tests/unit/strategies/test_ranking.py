"""suggest.strategies.ranking: rank_pool / rank_by_certainty and the score contract Label Studio sorts on."""

from __future__ import annotations

import numpy as np
import pytest

from suggest.strategies import (
    BATCH_BAND,
    CERTAINTY_METHODS,
    STRATEGIES,
    DenseUncertainty,
    certainty,
    make_strategy,
    rank_by_certainty,
    rank_pool,
)
from tests.unit.strategies.data import binary_proba

BUILTIN = sorted(STRATEGIES)


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
    proba = binary_proba(np.array([0.3, 0.1, 0.2]))
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



# -- the measure of the scores (SUGGEST_UNCERTAINTY) --------------------------------------------


def _orders_differ(proba: np.ndarray, rows: np.ndarray) -> bool:
    """Whether margin and entropy order these rows differently (else a test of the measure proves nothing)."""
    m, e = certainty(proba, "margin")[rows], certainty(proba, "entropy")[rows]
    return not np.array_equal(np.argsort(m, kind="stable"), np.argsort(e, kind="stable"))


def test_rank_pool_scores_the_rest_by_the_given_measure_not_margin(pool) -> None:
    """uncertainty=entropy with the "margin" strategy: the batch is margin's, every other score is entropy's."""
    proba, X = pool
    scores, batch = rank_pool(proba, X, batch_size=12, strategy=make_strategy("margin"), method="entropy")
    np.testing.assert_array_equal(batch, np.argsort(certainty(proba, "margin"), kind="stable")[:12])
    rest = np.setdiff1d(np.arange(len(X)), batch)
    assert _orders_differ(proba, rest)
    _check_score_contract(scores, batch, certainty(proba, "entropy"))
    by_margin = rest[np.argsort(certainty(proba, "margin")[rest], kind="stable")]
    assert np.any(np.diff(scores[by_margin]) < 0), "the rest must not be in margin order"


@pytest.mark.parametrize("method", CERTAINTY_METHODS)
@pytest.mark.parametrize("name", BUILTIN)
def test_rank_pool_with_each_strategy_and_measure(pool, name: str, method: str) -> None:
    proba, X = pool
    scores, batch = rank_pool(proba, X, batch_size=12, strategy=make_strategy(name, random_state=0), method=method)
    _check_score_contract(scores, batch, certainty(proba, method))


def test_rank_pool_dense_weighs_the_given_measure(pool) -> None:
    """The default strategy (dense) gets the measure: its batch is dense-by-entropy, not dense-by-margin."""
    proba, X = pool
    scores, batch = rank_pool(proba, X, batch_size=10, method="entropy")
    by_entropy = DenseUncertainty("entropy", random_state=0).query(proba=proba, X=X, batch_size=10)
    by_margin = DenseUncertainty("margin", random_state=0).query(proba=proba, X=X, batch_size=10)
    np.testing.assert_array_equal(batch, by_entropy)
    assert set(by_entropy.tolist()) != set(by_margin.tolist())
    _, named = rank_pool(proba, X, batch_size=10, strategy=make_strategy("dense", method="entropy", random_state=0))
    np.testing.assert_array_equal(named, by_entropy)


@pytest.mark.parametrize("chunk_size", [1, 7, 299])
def test_rank_pool_two_measures_chunked_equals_unchunked(pool, chunk_size: int) -> None:
    proba, X = pool
    full = rank_pool(proba, X, batch_size=10, strategy="least_confidence", method="entropy", chunk_size=10**6)
    chunked = rank_pool(proba, X, batch_size=10, strategy="least_confidence", method="entropy", chunk_size=chunk_size)
    np.testing.assert_array_equal(chunked[0], full[0])
    np.testing.assert_array_equal(chunked[1], full[1])


def test_rank_pool_rejects_an_unknown_measure(pool) -> None:
    proba, X = pool
    with pytest.raises(ValueError, match="unknown certainty method"):
        rank_pool(proba, X, strategy=make_strategy("margin"), method="bald")


# -- rank_by_certainty --------------------------------------------------------------------------


def test_rank_by_certainty_keeps_the_score_contract(pool) -> None:
    proba, X = pool
    cert = certainty(proba, "entropy")
    scores, batch = rank_by_certainty(cert, X, batch_size=10, strategy="entropy")
    np.testing.assert_array_equal(batch, np.argsort(cert, kind="stable")[:10])
    _check_score_contract(scores, batch, cert)
    np.testing.assert_array_equal(rank_by_certainty(cert, X, batch_size=10)[1],
                                  DenseUncertainty(random_state=0).select(certainty=cert, X=X, batch_size=10))


def test_rank_by_certainty_without_model_is_cold_start(clustered) -> None:
    X, labels = clustered
    scores, batch = rank_by_certainty(None, X, batch_size=20)
    _check_score_contract(scores, batch, None)
    assert (np.delete(scores, batch) == 1.0).all()
    assert np.unique(labels[batch]).size >= 18


def test_rank_by_certainty_refuses_strategies_that_need_class_probabilities(pool) -> None:
    _, X = pool
    with pytest.raises(ValueError, match="needs class probabilities"):
        rank_by_certainty(np.zeros(len(X)), X, strategy=make_strategy("modal:numpy:argsort"))
