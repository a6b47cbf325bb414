"""The plain strategies: random (the baseline) and uncertainty sampling by one certainty measure."""

from __future__ import annotations

import numpy as np

from backends.uncertainty import _check_method
from suggest.strategies.base import CertaintyStrategy, RandomStateLike, _lowest


class RandomSampling(CertaintyStrategy):
    """Uniform over the unlabeled pool: the baseline every other strategy must beat."""

    name = "random"

    def _select(self, cert, X, available, batch_size, rng):
        return rng.choice(np.flatnonzero(available), size=batch_size, replace=False)


class UncertaintySampling(CertaintyStrategy):
    """The batch_size least certain rows; cheap and strong, but happily picks near-duplicates."""

    def __init__(self, method: str = "margin", *, random_state: RandomStateLike = None) -> None:
        super().__init__(random_state=random_state)
        self.method = _check_method(method)
        self.name = method

    def _select(self, cert, X, available, batch_size, rng):
        return _lowest(np.where(available, cert, np.inf), batch_size)

