"""modAL query functions plugged in by dotted path agree with our own strategies (real modAL-python)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("modAL")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from suggest.strategies import ModalQuery, UncertaintySampling, certainty, make_strategy, rank_pool  # noqa: E402

MARGIN = "modal:modAL.uncertainty:margin_sampling"


@pytest.fixture(scope="module")
def digits() -> tuple[LogisticRegression, np.ndarray, np.ndarray]:
    """A LogisticRegression fitted on 150 digits, and the other 1647 as the pool."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    clf = LogisticRegression(max_iter=2000).fit(X[:150], y[:150])
    pool = X[150:]
    return clf, pool, clf.predict_proba(pool)


def test_modal_margin_matches_uncertainty_sampling_with_proba(digits) -> None:
    _, X, proba = digits
    modal = make_strategy(MARGIN).query(proba=proba, X=X, batch_size=25)
    ours = UncertaintySampling("margin").query(proba=proba, X=X, batch_size=25)
    assert set(modal.tolist()) == set(ours.tolist())


def test_modal_margin_matches_with_real_classifier(digits) -> None:
    clf, X, proba = digits
    modal = make_strategy(MARGIN, classifier=clf).query(proba=None, X=X, batch_size=25)
    ours = UncertaintySampling("margin").query(proba=proba, X=X, batch_size=25)
    assert set(modal.tolist()) == set(ours.tolist())


def test_modal_respects_labeled_mask(digits) -> None:
    clf, X, proba = digits
    labeled = np.zeros(len(X), dtype=bool)
    labeled[np.argsort(certainty(proba))[:10]] = True  # label the 10 most uncertain
    modal = make_strategy(MARGIN, classifier=clf).query(proba=None, X=X, batch_size=25, labeled_mask=labeled)
    ours = UncertaintySampling("margin").query(proba=proba, X=X, batch_size=25, labeled_mask=labeled)
    assert set(modal.tolist()) == set(ours.tolist())
    assert not labeled[modal].any()


@pytest.mark.parametrize(
    ("spec", "ours"),
    [
        ("modal:modAL.uncertainty:uncertainty_sampling", "least_confidence"),
        ("modal:modAL.uncertainty:entropy_sampling", "entropy"),
        ("modal:modAL.uncertainty.margin_sampling", "margin"),  # dotted form works too
    ],
)
def test_other_modal_functions_match(digits, spec: str, ours: str) -> None:
    _, X, proba = digits
    modal = make_strategy(spec).query(proba=proba, X=X, batch_size=15)
    assert set(modal.tolist()) == set(make_strategy(ours).query(proba=proba, X=X, batch_size=15).tolist())


def test_modal_batch_function_gets_labeled_rows_as_training_set(digits) -> None:
    """Ranked-batch sampling reads `X_training`; the learner view supplies the labeled rows."""
    _, X, proba = digits
    labeled = np.zeros(len(X), dtype=bool)
    labeled[:40] = True
    strategy = make_strategy("modal:modAL.batch:uncertainty_batch_sampling")
    idx = strategy.query(proba=proba, X=X, batch_size=8, labeled_mask=labeled)
    assert idx.size == 8 and np.unique(idx).size == 8
    assert not labeled[idx].any() and idx.max() < len(X)


def test_modal_strategy_name_and_errors(digits) -> None:
    _, X, proba = digits
    strategy = make_strategy(MARGIN)
    assert isinstance(strategy, ModalQuery)
    assert strategy.name == "modal:modAL.uncertainty:margin_sampling"
    with pytest.raises(ValueError, match="needs a classifier or proba"):
        strategy.query(proba=None, X=X, batch_size=5)
    with pytest.raises(ValueError, match="rows"):
        strategy.query(proba=proba[:10], X=X, batch_size=5)
    with pytest.raises(ValueError, match="cannot import"):
        make_strategy("modal:modAL.uncertainty:no_such_function")


def test_rank_pool_with_modal_strategy_and_predict_proba_callable(digits) -> None:
    clf, X, proba = digits
    scores, batch = rank_pool(clf.predict_proba, X, batch_size=20, strategy=make_strategy(MARGIN), chunk_size=256)
    ours = UncertaintySampling("margin").query(proba=proba, X=X, batch_size=20)
    assert set(batch.tolist()) == set(ours.tolist())
    rest = np.setdiff1d(np.arange(len(X)), batch)
    assert scores[batch].max() < scores[rest].min()
    assert ((scores >= 0) & (scores <= 1)).all()


def test_seeded_modal_tie_breaks_are_reproducible_and_leave_global_rng_alone(digits) -> None:
    from functools import partial

    from modAL.uncertainty import margin_sampling

    _, X, proba = digits
    tied = np.tile(proba[:1], (len(X), 1))  # every row ties, so modAL's shuffle decides
    fn = partial(margin_sampling, random_tie_break=True)
    state = np.random.get_state()[1].copy()
    a = ModalQuery(fn, random_state=7).query(proba=tied, X=X, batch_size=10)
    b = ModalQuery(fn, random_state=7).query(proba=tied, X=X, batch_size=10)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
