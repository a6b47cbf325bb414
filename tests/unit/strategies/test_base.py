"""The strategy contract every registered strategy meets (suggest.strategies.base), and the input checks."""

from __future__ import annotations

import numpy as np
import pytest

from suggest.strategies import STRATEGIES, make_strategy

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

