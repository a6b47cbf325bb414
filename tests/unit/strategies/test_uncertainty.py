"""suggest.strategies.uncertainty: random sampling and uncertainty sampling by each measure."""

from __future__ import annotations

import numpy as np
import pytest

from suggest.strategies import CERTAINTY_METHODS, RandomSampling, UncertaintySampling, certainty


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
