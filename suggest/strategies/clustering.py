"""Geometry shared by diverse batches and cold start: greedy k-means++ spreading and plain k-means.

NumPy / SciPy only, vectorised over rows; the Python loops run over batch slots or iterations.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse


def _sq_dist_to(Xc: np.ndarray, x: np.ndarray, sq_norms: np.ndarray) -> np.ndarray:
    return np.maximum(sq_norms - 2.0 * (Xc @ x) + float(x @ x), 0.0)



def _greedy_spread(
    Xc: np.ndarray, u: np.ndarray, b: int, rng: np.random.Generator, *, sample: bool, n_trials: int = 1
) -> np.ndarray:
    """Pick b rows one by one, each far from the earlier picks and weighted by u.

    sample=False: argmax u * distance. sample=True: draw with probability u * distance^2
    (k-means++); with n_trials > 1, draw that many and keep the one that lowers the weighted
    potential most (sklearn's "greedy k-means++", which covers small clusters far more reliably).
    """
    sq_norms = np.einsum("ij,ij->i", Xc, Xc)
    picks = [int(np.argmax(u))]
    d2 = _sq_dist_to(Xc, Xc[picks[0]], sq_norms)
    taken = np.zeros(len(u), dtype=bool)
    taken[picks[0]] = True
    for _ in range(b - 1):  # loop over batch slots, not tasks
        w = np.where(taken, 0.0, u * (d2 if sample else np.sqrt(d2)))
        if w.sum() <= 0:  # only exact duplicates left: fall back to uncertainty
            nxt = int(np.argmax(np.where(taken, -np.inf, u)))
        elif not sample:
            nxt = int(np.argmax(w))
        elif n_trials == 1:
            nxt = int(rng.choice(len(u), p=w / w.sum()))
        else:
            trials = rng.choice(len(u), size=n_trials, p=w / w.sum())
            d2_trials = np.maximum(sq_norms[:, None] - 2.0 * (Xc @ Xc[trials].T) + sq_norms[trials][None, :], 0.0)
            nxt = int(trials[np.argmin((np.minimum(d2[:, None], d2_trials) * u[:, None]).sum(axis=0))])
        picks.append(nxt)
        taken[nxt] = True
        d2 = np.minimum(d2, _sq_dist_to(Xc, Xc[nxt], sq_norms))
    return np.asarray(picks, dtype=np.intp)



def _kmeans_labels(Xc: np.ndarray, b: int, rng: np.random.Generator, n_iter: int = 50) -> np.ndarray:
    """Plain k-means (greedy k-means++ seeds, Lloyd steps); sklearn's KMeans costs 3-10x more at this size."""
    m = len(Xc)
    n_trials = 2 + int(math.log(b))
    centers = Xc[_greedy_spread(Xc, np.ones(m), b, rng, sample=True, n_trials=n_trials)]
    sq_norms = np.einsum("ij,ij->i", Xc, Xc)
    labels = np.full(m, -1)
    for _ in range(n_iter):  # loop over iterations, not tasks
        d2 = sq_norms[:, None] - 2.0 * (Xc @ centers.T) + np.einsum("ij,ij->i", centers, centers)[None, :]
        new = np.argmin(d2, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        members = sparse.csr_matrix((np.ones(m, Xc.dtype), (labels, np.arange(m))), shape=(b, m))
        counts = np.bincount(labels, minlength=b)
        filled = counts > 0  # empty clusters keep their old center
        centers[filled] = (members @ Xc)[filled] / counts[filled, None]
    return labels

