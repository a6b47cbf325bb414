"""Pools shared by the strategy tests (module-scoped: built once per test module)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.strategies.data import binary_proba, unit_rows


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray]:
    """300 random unit embeddings with 3-class probabilities."""
    rng = np.random.default_rng(0)
    X = unit_rows(rng, 300, 16)
    logits = rng.normal(size=(300, 3)) * 2
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return proba, X


@pytest.fixture(scope="module")
def duplicate_groups() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """30 groups of 8 near-duplicates; group g has margins in [0.01 g, 0.01 g + 0.005].

    Plus 500 confident background rows. Top-10 margin takes all of group 0 and two of group 1.
    """
    rng = np.random.default_rng(1)
    centers = unit_rows(rng, 30, 32)
    group = np.repeat(np.arange(30), 8)
    X_dup = centers[group] + rng.normal(0, 0.01, (group.size, 32)).astype(np.float32)
    margin_dup = 0.01 * group + rng.uniform(0, 0.005, group.size)
    X = np.vstack([X_dup, unit_rows(rng, 500, 32)])
    margin = np.concatenate([margin_dup, rng.uniform(0.6, 1.0, 500)])
    groups = np.concatenate([group, np.full(500, -1)])
    return binary_proba(margin), X.astype(np.float32), groups



@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    """20 tight clusters of very unequal sizes (5 .. 300 rows)."""
    rng = np.random.default_rng(2)
    sizes = np.geomspace(5, 300, 20).astype(int)
    centers = unit_rows(rng, 20, 24)
    labels = np.repeat(np.arange(20), sizes)
    X = centers[labels] + rng.normal(0, 0.03, (labels.size, 24))
    return X.astype(np.float32), labels
