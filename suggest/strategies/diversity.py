"""Uncertain AND spread out: `DiverseUncertainty` (uncertain shortlist, k-means over it) and
`DenseUncertainty` (uncertainty x local density, near-duplicates skipped), with their helpers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from backends.uncertainty import _check_method
from suggest.strategies.base import CertaintyStrategy, RandomStateLike, _lowest
from suggest.strategies.clustering import _greedy_spread, _kmeans_labels

DIVERSITY_METHODS: tuple[str, ...] = ("kmeans", "kmeanspp", "farthest", "agglomerative")

# -- diversity among uncertain candidates ---------------------------------------------------


def _pick_farthest(Xc: np.ndarray, u: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy: start at the most uncertain, then maximise uncertainty x distance to the picks."""
    return _greedy_spread(Xc, u, b, rng, sample=False)


def _pick_kmeanspp(Xc: np.ndarray, u: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with D^2 weighted by uncertainty (BADGE-like, on embeddings)."""
    return _greedy_spread(Xc, u, b, rng, sample=True)


def _best_per_cluster(labels: np.ndarray, u: np.ndarray, b: int) -> np.ndarray:
    """Most uncertain member of each cluster, most uncertain first; topped up if clusters < b."""
    order = np.lexsort((-u, labels))
    first = np.ones(order.size, dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    picks = order[first]
    picks = picks[np.argsort(-u[picks], kind="stable")][:b]
    if picks.size < b:  # fewer distinct clusters than slots (duplicates): fill by uncertainty
        rest = np.setdiff1d(np.arange(u.size), picks, assume_unique=True)
        rest = rest[np.argsort(-u[rest], kind="stable")]
        picks = np.concatenate([picks, rest[: b - picks.size]])
    return picks


def _pick_kmeans(Xc: np.ndarray, u: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """k-means (b clusters) on the candidates, then the most uncertain per cluster."""
    return _best_per_cluster(_kmeans_labels(Xc, b, rng), u, b)


def _pick_agglomerative(Xc: np.ndarray, u: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """Average-linkage clusters on the candidates (Cluster-Margin style), most uncertain per cluster."""
    from sklearn.cluster import AgglomerativeClustering  # lazy: scikit-learn costs ~75 MiB resident

    labels = AgglomerativeClustering(n_clusters=b, linkage="average").fit_predict(Xc)
    return _best_per_cluster(labels, u, b)


_DIVERSIFIERS: dict[str, Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "kmeans": _pick_kmeans,
    "kmeanspp": _pick_kmeanspp,
    "farthest": _pick_farthest,
    "agglomerative": _pick_agglomerative,
}


class DiverseUncertainty(CertaintyStrategy):
    """Uncertain AND diverse: the `candidates * batch_size` least certain rows, then a spread-out batch.

    Plain top-k uncertainty spends a batch on near-duplicates of one confusing item; here the
    shortlist keeps the uncertainty signal and `diversity` spreads the batch over it:
    "kmeans" (default: k-means with batch_size clusters on the shortlist, the most uncertain
    row of each cluster, most uncertain first), "kmeanspp" (uncertainty-weighted k-means++
    seeding, BADGE-like), "farthest" (greedy uncertainty x distance) or "agglomerative"
    (average-linkage clusters, Cluster-Margin-like). The shortlist is capped at `max_candidates`.

    Why "kmeans" with candidates=10: in benchmarks/strategy_study.py (LogisticRegression,
    20 random seed labels, mean test accuracy over the learning curve, paired by seed) it beat
    margin by +0.0074 on Rotten Tomatoes MiniLM embeddings (batch 50, 5 seeds), +0.0078 on digits,
    +0.0152 on digits with near-duplicates, +0.0038 on odd/even digits and +0.0033 on synthetic
    blobs (batch 20, 10 seeds), the best or near-best variant everywhere; candidates=20 was a tie.
    """

    name = "diverse"

    def __init__(
        self,
        method: str = "margin",
        candidates: int = 10,
        *,
        diversity: str = "kmeans",
        max_candidates: int = 5000,
        random_state: RandomStateLike = None,
    ) -> None:
        super().__init__(random_state=random_state)
        self.method = _check_method(method)
        if candidates < 1 or max_candidates < 1:
            raise ValueError(f"candidates and max_candidates must be >= 1; got {candidates}, {max_candidates}")
        if diversity not in _DIVERSIFIERS:
            raise ValueError(f"unknown diversity {diversity!r}; valid: {', '.join(DIVERSITY_METHODS)}")
        self.candidates = candidates
        self.diversity = diversity
        self.max_candidates = max_candidates

    def _select(self, cert, X, available, batch_size, rng):
        m = max(batch_size, min(self.candidates * batch_size, self.max_candidates))
        cand = _lowest(np.where(available, cert, np.inf), min(m, int(available.sum())))
        if cand.size <= batch_size:
            return cand
        Xc = np.asarray(X[cand], dtype=np.float64)
        if not np.isfinite(Xc).all():
            raise ValueError("X has NaN or inf in rows shortlisted for the batch")
        u = 1.0 - cert[cand] + 1e-12  # strictly positive weights
        picks = _DIVERSIFIERS[self.diversity](Xc, u, batch_size, rng)
        return cand[picks]

# -- uncertainty x density ------------------------------------------------------------------------


def _unit_rows(Z: np.ndarray) -> np.ndarray:
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


def _knn_density(
    X: np.ndarray, cand: np.ndarray, k: int, reference: int, rng: np.random.Generator, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cosine similarity of each candidate to its k nearest pool rows, after removing the pool mean.

    The pool is subsampled to `reference` rows (k shrinks with it, so the neighbourhood keeps its
    size); centring first matters for sentence embeddings, whose shared mean direction otherwise
    makes every row look equally dense. Returns (density, the candidates' centred unit vectors).
    """
    n = X.shape[0]
    ref = np.arange(n) if n <= reference else np.sort(rng.choice(n, size=reference, replace=False))
    k_eff = max(1, min(round(k * ref.size / n), ref.size - 1))
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    R = np.asarray(X[ref], dtype=dtype)
    mu = R.mean(axis=0)
    R = _unit_rows(R - mu)
    pos = np.full(n, -1)
    pos[ref] = np.arange(ref.size)
    dens = np.empty(cand.size)
    Zc = _unit_rows(np.asarray(X[cand], dtype=dtype) - mu)
    for start in range(0, cand.size, chunk):  # loop over chunks of candidates, not tasks
        rows = cand[start : start + chunk]
        sims = Zc[start : start + chunk] @ R.T
        own = pos[rows]
        inside = own >= 0
        sims[np.flatnonzero(inside), own[inside]] = -np.inf  # a row is not its own neighbour
        top = np.partition(sims, sims.shape[1] - k_eff, axis=1)[:, -k_eff:]
        dens[start : start + chunk] = top.mean(axis=1)
    return np.clip(dens, 1e-3, None), Zc


def _skip_near_duplicates(Z: np.ndarray, order: np.ndarray, b: int, max_similarity: float) -> np.ndarray:
    """The first b of `order` (rows of unit vectors Z) with no earlier pick at cosine >= max_similarity.

    Density favours crowded regions, and reposted snippets are the most crowded of all; without
    this a batch could be b copies of one text. Topped up in order when too few remain.
    """
    picks: list[int] = []
    for i in order:  # stops after b picks; at most the shortlist
        if not picks or float(np.max(Z[picks] @ Z[i])) < max_similarity:
            picks.append(int(i))
            if len(picks) == b:
                return np.asarray(picks, dtype=np.intp)
    taken = set(picks)
    rest = [int(i) for i in order if int(i) not in taken]
    return np.asarray(picks + rest[: b - len(picks)], dtype=np.intp)


class DenseUncertainty(CertaintyStrategy):
    """Uncertain AND typical: uncertainty x local density (information density, Settles & Craven 2008).

    Plain margin spends labels on odd, unrepresentative rows near the boundary; weighting by how
    crowded a row's neighbourhood is favours rows whose label also teaches the model about many
    unlabeled neighbours. Score = (1 - certainty) * density^beta, where density is the mean cosine
    similarity to the `k` nearest rows of the pool-centred embeddings (measured against at most
    `reference` pool rows). The whole pool is scored when it has at most `max_candidates` rows
    (density is computed once per pool and reused while the pool stays the same); larger pools
    score only their `max_candidates` least certain rows, so the cost stays O(max_candidates x
    reference). `candidates` (an int) restricts scoring to `candidates * batch_size` least certain
    rows instead: measured worse (see below), kept for comparison. A row at cosine >=
    `max_similarity` (centred) to an earlier pick is skipped: density would otherwise fill the batch
    with near-duplicates. `spread` > 0 (default 3) also spreads the batch: k-means with batch_size
    clusters over the `spread * batch_size` best-scored distinct rows, the best of each cluster;
    0 takes the best distinct rows in score order. Why 3: same labels to 95% on Rotten Tomatoes
    (250 at 20 seeds for both), while on 10-class digits spread=0 lost to margin (AUC -0.009, digits-dup
    -0.006) and spread=3 beat it (+0.004, +0.014); benchmarks/results/strategy_study_dense*.json.

    Why: on Rotten Tomatoes (`suggest simulate` protocol, batch 10; benchmarks/label_efficiency_rt.py)
    it needed 250 labels to reach 95% of full-pool accuracy against 440 for margin and "diverse" and
    670 for random (20 seeds; mean accuracy over 10-400 labels above margin on 19 of 20 seeds).
    Scoring only a shortlist of 10 / 50 / 200 x batch least certain rows needed 460 / 440 / 330.
    Re-measured on the layer-pooled vectors with the C=3 head (20 seeds): 230 labels against 600 for
    random, 0.717 at 100 labels (random 0.695), mean 0.722 over 10-400 labels, above BADGE (0.715).
    Those random figures were biased low (seeded strategies repeated one stream every round until
    session 20); after the fix, 5 seeds: dense 290 labels, random 350, margin more than 400.
    """

    name = "dense"

    def __init__(
        self,
        method: str = "margin",
        candidates: int | None = None,
        *,
        k: int = 20,
        beta: float = 1.0,
        reference: int = 10_000,
        max_similarity: float = 0.9,
        spread: int = 3,
        max_candidates: int = 20_000,
        random_state: RandomStateLike = None,
    ) -> None:
        super().__init__(random_state=random_state)
        self.method = _check_method(method)
        if spread < 0:
            raise ValueError(f"spread must be >= 0; got {spread!r}")
        if (candidates is not None and candidates < 1) or max_candidates < 1 or k < 1 or reference < 2:
            raise ValueError(
                f"candidates, max_candidates, k must be >= 1 and reference >= 2; "
                f"got {candidates}, {max_candidates}, {k}, {reference}"
            )
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0; got {beta!r}")
        if not -1.0 <= max_similarity <= 1.0:
            raise ValueError(f"max_similarity must be a cosine in [-1, 1]; got {max_similarity!r}")
        self.candidates = candidates
        self.k = k
        self.beta = beta
        self.reference = reference
        self.max_similarity = max_similarity
        self.spread = spread
        self.max_candidates = max_candidates
        self._pool_density: tuple[tuple, np.ndarray, np.ndarray] | None = None

    def _select(self, cert, X, available, batch_size, rng):
        n = X.shape[0]
        m = self.max_candidates if self.candidates is None else min(self.candidates * batch_size, self.max_candidates)
        m = min(max(batch_size, m), int(available.sum()))
        if m <= batch_size or n < 3:
            return _lowest(np.where(available, cert, np.inf), m)
        if self.candidates is None and n <= self.max_candidates:  # whole pool: density once per pool
            cand = np.flatnonzero(available)
            dens, Z = self._density_of_pool(X, rng)
            dens, Z = dens[cand], Z[cand]
        else:
            reference = self.reference
            if self.candidates is None:  # a pool bigger than max_candidates: half the shortlist and sample,
                m, reference = max(batch_size, m // 2), max(2, reference // 2)  # a quarter of the work (1M: <1 s)
            cand = _lowest(np.where(available, cert, np.inf), m)
            if not np.isfinite(np.asarray(X[cand])).all():
                raise ValueError("X has NaN or inf in rows shortlisted for the batch")
            dens, Z = _knn_density(X, cand, self.k, reference, rng)
        score = (1.0 - cert[cand] + 1e-12) * dens**self.beta
        order = np.lexsort((cert[cand], -score))  # best first, ties by certainty
        if self.spread and order.size > batch_size:  # k-means over the spread x batch best, best per cluster
            top = _skip_near_duplicates(Z, order, min(order.size, self.spread * batch_size), self.max_similarity)
            return cand[top[_pick_kmeans(np.asarray(Z[top], dtype=np.float64), score[top], batch_size, rng)]]
        return cand[_skip_near_duplicates(Z, order, batch_size, self.max_similarity)]

    def _density_of_pool(self, X: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Density and centred unit vectors of every row, reused while X is the same pool."""
        step = max(1, X.shape[0] // 64)
        sample = np.ascontiguousarray(X[::step])
        key = (X.shape, X.dtype.str, hashlib.blake2b(sample.tobytes(), digest_size=16).hexdigest())
        if self._pool_density is None or self._pool_density[0] != key:
            if not np.isfinite(np.asarray(X)).all():
                raise ValueError("X has NaN or inf")
            dens, Z = _knn_density(X, np.arange(X.shape[0]), self.k, self.reference, rng)
            self._pool_density = (key, dens, Z)
        return self._pool_density[1], self._pool_density[2]

