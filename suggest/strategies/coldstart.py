"""Before the first model: typical points from uncovered regions of the embedding space (TypiClust-style)."""

from __future__ import annotations

import numpy as np

from suggest.strategies.base import CertaintyStrategy, RandomStateLike
from suggest.strategies.clustering import _kmeans_labels


def _typicality(Xs: np.ndarray, labels: np.ndarray, n_clusters: int, k: int) -> np.ndarray:
    """TypiClust typicality: 1 / mean distance to the k nearest neighbours within the own cluster."""
    typ = np.zeros(Xs.shape[0])
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_clusters + 1))
    for c in range(n_clusters):  # loop over clusters, not tasks
        members = order[bounds[c] : bounds[c + 1]]
        if members.size < 2:
            continue
        Z = Xs[members]
        sq = np.einsum("ij,ij->i", Z, Z)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T), 0.0))
        kk = min(k, members.size - 1)
        nearest = np.partition(d, kk, axis=1)[:, 1 : kk + 1]  # column 0 is the point itself
        typ[members] = 1.0 / (nearest.mean(axis=1) + 1e-12)
    return typ


class ColdStart(CertaintyStrategy):
    """No model yet: typical points from uncovered regions of the embedding space (TypiClust-style).

    Clusters a subsample of `max_samples` rows (plus the labeled rows, so their clusters count as
    covered) into batch_size + n_labeled clusters, then takes the most typical point of each
    uncovered cluster, largest clusters first. Ignores proba. Good before the first model;
    uncertainty wins once there are labels.
    """

    name = "coldstart"

    def __init__(
        self,
        *,
        k_neighbors: int = 20,
        max_samples: int = 10_000,
        max_clusters: int = 500,
        n_iter: int = 20,
        random_state: RandomStateLike = None,
    ) -> None:
        super().__init__(random_state=random_state)
        self.k_neighbors = k_neighbors
        self.max_samples = max_samples
        self.max_clusters = max_clusters
        self.n_iter = n_iter

    def _select(self, cert, X, available, batch_size, rng):
        pool = np.flatnonzero(available)
        if pool.size > self.max_samples:
            pool = np.sort(rng.choice(pool, size=self.max_samples, replace=False))
        labeled = np.flatnonzero(~available)
        if labeled.size > self.max_samples:
            labeled = np.sort(rng.choice(labeled, size=self.max_samples, replace=False))
        rows = np.concatenate([pool, labeled])
        Xs = np.asarray(X[rows], dtype=np.float32 if X.dtype == np.float32 else np.float64)
        n_clusters = min(batch_size + labeled.size, self.max_clusters, pool.size)
        n_clusters = max(n_clusters, min(batch_size, pool.size))
        labels = _kmeans_labels(Xs, n_clusters, rng, n_iter=self.n_iter)
        typ = _typicality(Xs, labels, n_clusters, self.k_neighbors)
        covered = np.zeros(n_clusters, dtype=bool)
        covered[labels[pool.size :]] = True
        return pool[_typical_per_cluster(labels[: pool.size], typ[: pool.size], covered, batch_size)]


def _typical_per_cluster(labels: np.ndarray, typ: np.ndarray, covered: np.ndarray, b: int) -> np.ndarray:
    """Most typical point per uncovered cluster, largest clusters first, topped up by typicality."""
    sizes = np.bincount(labels, minlength=covered.size)
    order = np.lexsort((-typ, labels))
    first = np.ones(order.size, dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    heads = order[first]  # one per non-empty cluster
    heads = heads[~covered[labels[heads]]]
    heads = heads[np.argsort(-sizes[labels[heads]], kind="stable")][:b]
    if heads.size < b:
        rest = np.setdiff1d(np.arange(typ.size), heads, assume_unique=True)
        rest = rest[np.argsort(-typ[rest], kind="stable")]
        heads = np.concatenate([heads, rest[: b - heads.size]])
    return heads

