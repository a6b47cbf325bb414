"""How sure a classifier is about each row of its probabilities: margin, least confidence, entropy.

These measures turn `predict_proba` rows into the `certainty` of a Guess (backends/base.py), so they
live with the model families; the ranking strategies (suggest/strategies) use the same functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

CERTAINTY_METHODS: tuple[str, ...] = ("margin", "least_confidence", "entropy")
_SUM_TOL = 1e-3  # rows of proba must sum to 1 within this (float32 softmax easily meets it)
_RANGE_TOL = 1e-6


def _check_proba(proba: Any) -> np.ndarray:
    """float64 (n, k) probabilities, or a ValueError saying what is wrong with them.

    Upcasting first matters: margins of confident float32 rows collapse to ties.
    """
    if proba is None:
        raise ValueError("proba is None; strategies that rank by uncertainty need model probabilities")
    try:
        p = np.asarray(proba, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"proba must be a numeric array, got {type(proba).__name__}: {err}") from err
    if p.ndim != 2:
        raise ValueError(f"proba must be 2-D (n_samples, n_classes); got ndim={p.ndim}, shape={p.shape}")
    if p.shape[1] == 0:
        raise ValueError(f"proba has no class columns; shape={p.shape}")
    if p.size == 0:
        return p
    finite = np.isfinite(p).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise ValueError(f"proba has NaN or inf in {rows.size} row(s), first at row {rows[0]}")
    lo, hi = float(p.min()), float(p.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(f"proba values must lie in [0, 1]; got min={lo:.6g}, max={hi:.6g}")
    off = np.abs(p.sum(axis=1) - 1.0) > _SUM_TOL
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"proba rows must sum to 1 (within {_SUM_TOL}); {int(off.sum())} do not, "
            f"e.g. row {row} sums to {p[row].sum():.6g}"
        )
    return p


def _margin(p: np.ndarray) -> np.ndarray:
    if p.shape[1] == 2:
        return np.abs(p[:, 0] - p[:, 1])
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _least_confidence(p: np.ndarray) -> np.ndarray:
    k = p.shape[1]
    return (p.max(axis=1) - 1.0 / k) / (1.0 - 1.0 / k)


def _entropy(p: np.ndarray) -> np.ndarray:
    plogp = p * np.log(np.where(p > 0, p, 1.0))
    return 1.0 + plogp.sum(axis=1) / math.log(p.shape[1])


_CERTAINTY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "margin": _margin,
    "least_confidence": _least_confidence,
    "entropy": _entropy,
}


def _check_method(method: str) -> str:
    if method not in _CERTAINTY:
        raise ValueError(f"unknown certainty method {method!r}; valid: {', '.join(CERTAINTY_METHODS)}")
    return method


def certainty(proba: np.ndarray, method: str = "margin") -> np.ndarray:
    """How sure the model is about each row, float64 in [0, 1]; LOWER = less certain.

    margin = p1 - p2 (top two); least_confidence = (p1 - 1/k) / (1 - 1/k);
    entropy = 1 - H(p) / log(k). With one class (k=1) nothing is uncertain: all 1.0.
    Margin was the best plain uncertainty in our earlier study, hence the default.
    """
    _check_method(method)
    return _certainty_of(_check_proba(proba), method)


def _certainty_of(p: np.ndarray, method: str) -> np.ndarray:
    """certainty() for probabilities that already passed _check_proba."""
    if p.shape[1] == 1:
        return np.ones(p.shape[0])
    return np.clip(_CERTAINTY[method](p), 0.0, 1.0)
