"""suggest.strategies.plugins: ModalQuery with plain functions, no modAL needed (test_plugins_modal.py uses it)."""

from __future__ import annotations

import numpy as np
import pytest

from suggest.strategies import ModalQuery


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
