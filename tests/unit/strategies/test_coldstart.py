"""suggest.strategies.coldstart: typical points from uncovered clusters before the first model."""

from __future__ import annotations

import numpy as np

from suggest.strategies import ColdStart, RandomSampling


def test_coldstart_covers_more_clusters_than_random(clustered) -> None:
    X, labels = clustered
    cold = ColdStart(random_state=0).query(proba=None, X=X, batch_size=20)
    hits_random = [
        np.unique(labels[RandomSampling(random_state=s).query(proba=None, X=X, batch_size=20)]).size for s in range(5)
    ]
    assert np.unique(labels[cold]).size >= 18
    assert np.unique(labels[cold]).size > max(hits_random)


def test_coldstart_prefers_clusters_without_labels(clustered) -> None:
    X, labels = clustered
    labeled = np.zeros(len(X), dtype=bool)
    for c in range(10, 20):  # one label in each of the 10 biggest clusters
        labeled[np.flatnonzero(labels == c)[0]] = True
    idx = ColdStart(random_state=0).query(proba=None, X=X, batch_size=10, labeled_mask=labeled)
    assert (labels[idx] < 10).sum() >= 8


def test_coldstart_picks_typical_points_not_outliers() -> None:
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 0.05, (200, 8)), rng.normal(0, 1.0, (5, 8))]).astype(np.float32)
    idx = ColdStart(random_state=0).query(proba=None, X=X, batch_size=1)
    assert idx[0] < 200


def test_coldstart_subsamples_large_pools(clustered) -> None:
    X, labels = clustered
    idx = ColdStart(max_samples=300, random_state=0).query(proba=None, X=X, batch_size=10)
    assert np.unique(idx).size == 10

