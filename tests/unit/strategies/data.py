"""Synthetic pools the strategy tests share: unit embeddings and 2-class probabilities with chosen margins."""

from __future__ import annotations

import numpy as np


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    X = rng.standard_normal((n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def binary_proba(margin: np.ndarray) -> np.ndarray:
    """2-class probabilities with the given margins p1 - p2."""
    p1 = (1.0 + margin) / 2.0
    return np.column_stack([p1, 1.0 - p1])
