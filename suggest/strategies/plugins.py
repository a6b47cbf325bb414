"""Outside query functions as strategies: any modAL-style `f(classifier, X, n_instances)` by dotted path."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from backends.uncertainty import _check_proba
from suggest.strategies.base import (
    QueryStrategy,
    RandomStateLike,
    _as_rng,
    _available,
    _check_batch_size,
    _check_X,
    _seed,
)


class _LearnerView:
    """What modAL's plain query functions read from a learner: predict_proba and X_training."""

    on_transformed = False

    def __init__(self, predict_proba: Callable[[np.ndarray], np.ndarray], X_training: np.ndarray | None):
        self._predict_proba = predict_proba
        self.X_training = X_training

    def predict_proba(self, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        return self._predict_proba(X)


def _import_function(path: str) -> Callable[..., Any]:
    """'package.module:function' (or 'package.module.function') -> the function."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:function', got {path!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import query function {path!r}: {err}") from err
    if not callable(fn):
        raise ValueError(f"{path!r} is not callable")
    return fn


class ModalQuery(QueryStrategy):
    """Any modAL-style query function `fn(classifier, X, n_instances) -> (indices, ...)` as a strategy.

    modAL's plain functions (e.g. `modAL.uncertainty.margin_sampling`,
    `modAL.batch.uncertainty_batch_sampling`) only call `classifier.predict_proba(X)` (and read
    `X_training` for batch ones); we hand them a thin learner view, never modAL's ActiveLearner
    (broken on scikit-learn >= 1.8). Without a `classifier`, the view answers with the `proba`
    passed to `query`, so engines whose models do not take X still work.
    """

    def __init__(
        self,
        fn: Callable[..., Any] | str,
        classifier: Any | None = None,
        *,
        random_state: RandomStateLike = None,
    ) -> None:
        super().__init__(random_state=random_state)
        self.fn = _import_function(fn) if isinstance(fn, str) else fn
        self.classifier = classifier
        self.name = f"modal:{getattr(self.fn, '__module__', '?')}:{getattr(self.fn, '__qualname__', '?')}"

    def query(
        self,
        *,
        proba: np.ndarray | None,
        X: np.ndarray,
        batch_size: int,
        labeled_mask: np.ndarray | None = None,
    ) -> np.ndarray:
        X = _check_X(X)
        available = _available(X.shape[0], labeled_mask)
        pool = np.flatnonzero(available)
        batch_size = min(_check_batch_size(batch_size), pool.size)
        if batch_size == 0:
            return np.empty(0, dtype=np.intp)
        X_pool = X if pool.size == X.shape[0] else X[pool]
        X_training = None if pool.size == X.shape[0] else X[~available]
        learner = _LearnerView(self._proba_source(proba, pool, X.shape[0]), X_training)
        result = self._call(learner, X_pool, batch_size)
        picked = np.asarray(result[0] if isinstance(result, tuple) else result).ravel()
        return pool[self._check_picks(picked, pool.size, batch_size)]

    def _call(self, learner: _LearnerView, X_pool: np.ndarray, batch_size: int) -> Any:
        """Run fn; modAL breaks ties with the global NumPy RNG, so seed it and put it back after."""
        if self.random_state is None:
            return self.fn(learner, X_pool, n_instances=batch_size)
        saved = np.random.get_state()
        np.random.seed(_seed(_as_rng(self.random_state)))
        try:
            return self.fn(learner, X_pool, n_instances=batch_size)
        finally:
            np.random.set_state(saved)

    def _proba_source(self, proba, pool: np.ndarray, n: int) -> Callable[[np.ndarray], np.ndarray]:
        if self.classifier is not None:
            return self.classifier.predict_proba
        if proba is None:
            raise ValueError(f"{self.name} needs a classifier or proba")
        p = _check_proba(proba)
        if p.shape[0] != n:
            raise ValueError(f"proba has {p.shape[0]} rows but X has {n}; they must match")
        p_pool = p if pool.size == n else p[pool]

        def lookup(Xq: np.ndarray) -> np.ndarray:
            if Xq.shape[0] != p_pool.shape[0]:
                raise ValueError("ModalQuery without a classifier answers predict_proba for the pool only")
            return p_pool

        return lookup

    def _check_picks(self, picked: np.ndarray, n: int, batch_size: int) -> np.ndarray:
        if not np.issubdtype(picked.dtype, np.integer):
            raise ValueError(f"{self.name} returned non-integer indices (dtype {picked.dtype})")
        if picked.size and (picked.min() < 0 or picked.max() >= n):
            raise ValueError(f"{self.name} returned indices outside [0, {n})")
        if np.unique(picked).size != picked.size:
            raise ValueError(f"{self.name} returned duplicate indices")
        return picked[:batch_size]

