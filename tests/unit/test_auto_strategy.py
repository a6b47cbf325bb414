"""`auto` (suggest/strategies/auto.py): text half dense, half margin; images margin's shortlist spread; fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest

from suggest.strategies import certainty, make_strategy, rank_pool, strategy_for
from suggest.strategies.auto import AutoImage, AutoStrategy
from suggest.strategies.diversity import DenseUncertainty


def _pool(n: int = 400, d: int = 12, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    logits = rng.normal(size=(n, k)) * 2
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labeled = np.zeros(n, dtype=bool)
    labeled[rng.choice(n, min(30, n // 2), replace=False)] = True
    return X, proba, labeled


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_half_dense_half_margin_alternating(seed: int) -> None:
    X, proba, labeled = _pool(seed=seed)
    batch = AutoStrategy(random_state=seed).query(proba=proba, X=X, batch_size=10, labeled_mask=labeled)
    assert len(batch) == 10 and len(set(batch.tolist())) == 10
    assert not labeled[batch].any()
    dense = DenseUncertainty(random_state=seed).query(proba=proba, X=X, batch_size=5, labeled_mask=labeled)
    assert batch[0::2].tolist() == dense.tolist()  # the dense picks, in dense's order, head every other slot
    cert = certainty(proba, "margin")
    rest = np.where(labeled | np.isin(np.arange(len(X)), dense), np.inf, cert)
    assert batch[1::2].tolist() == np.argsort(rest, kind="stable")[:5].tolist()  # margin's least certain of the rest


def test_same_seed_same_batch_and_share_zero_is_margin() -> None:
    X, proba, labeled = _pool(seed=4)
    a = AutoStrategy(random_state=7).query(proba=proba, X=X, batch_size=10, labeled_mask=labeled)
    b = AutoStrategy(random_state=7).query(proba=proba, X=X, batch_size=10, labeled_mask=labeled)
    assert a.tolist() == b.tolist()
    plain = AutoStrategy(share=0.0, random_state=7).query(proba=proba, X=X, batch_size=10, labeled_mask=labeled)
    margin = make_strategy("margin").query(proba=proba, X=X, batch_size=10, labeled_mask=labeled)
    assert plain.tolist() == margin.tolist()


def test_images_spread_a_tight_margin_shortlist() -> None:
    X, proba, labeled = _pool(seed=5)
    auto = make_strategy(strategy_for("auto", "image"), random_state=3)
    assert isinstance(auto, AutoImage) and auto.candidates == 3 and auto.method == "margin"
    batch = auto.query(proba=proba, X=X, batch_size=8, labeled_mask=labeled)
    assert len(set(batch.tolist())) == 8 and not labeled[batch].any()
    cert = np.where(labeled, np.inf, certainty(proba, "margin"))
    shortlist = np.argsort(cert, kind="stable")[:24]
    assert np.isin(batch, shortlist).all()  # only margin's 3 x batch least certain rows
    margin = make_strategy("margin").query(proba=proba, X=X, batch_size=8, labeled_mask=labeled)
    assert batch.tolist() != margin.tolist()  # ...spread, not simply the first 8 of them


def test_images_skip_copies_of_one_confusing_image() -> None:
    """The 8 least certain rows are copies of one image: margin spends the batch on them, auto-image one pick."""
    X, proba, labeled = _pool(n=400, seed=9)
    copies = np.arange(8)
    X[copies] = X[0]
    proba[copies] = [0.3335, 0.3333, 0.3332]  # the least certain rows of the pool
    labeled[copies] = False
    margin = make_strategy("margin").query(proba=proba, X=X, batch_size=8, labeled_mask=labeled)
    assert set(margin.tolist()) == set(copies.tolist())
    batch = make_strategy("auto-image", random_state=0).query(proba=proba, X=X, batch_size=8, labeled_mask=labeled)
    assert len(set(batch.tolist()) & set(copies.tolist())) == 1


def test_auto_is_the_default_for_text_and_ranks_the_pool() -> None:
    assert strategy_for("auto", "text") == "auto"
    assert isinstance(make_strategy("auto"), AutoStrategy)
    X, proba, labeled = _pool(n=300, seed=6)
    strategy = make_strategy("auto", method="entropy", random_state=0)
    assert strategy.method == "entropy"
    scores, batch = rank_pool(proba, X, batch_size=10, strategy=strategy)
    assert len(batch) == 10 and scores.shape == (300,)
    assert np.all(scores[batch] <= np.min(np.delete(scores, batch)))  # the batch heads the queue


def test_small_pool_and_bad_arguments() -> None:
    X, proba, _ = _pool(n=6, seed=8)
    batch = AutoStrategy(random_state=0).query(proba=proba, X=X, batch_size=10)
    assert sorted(batch.tolist()) == list(range(6))
    with pytest.raises(ValueError, match="share"):
        AutoStrategy(share=1.5)
    with pytest.raises(ValueError, match="structured"):
        AutoStrategy(structured="badge")
