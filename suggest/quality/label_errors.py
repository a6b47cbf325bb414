"""Suspected label errors: out-of-fold probabilities on the labeled set, then confident learning.

Why out-of-fold: a model scores its own training labels as right; only a model that never saw a
label can doubt it. The heads are linear on cached embeddings, so k refits cost a fraction of a
second and nothing is embedded again.

Confident learning (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021), written from the paper's definitions:
- the per-class threshold t_j is the mean out-of-fold probability of class j over the examples
  labeled j (a class's own expected self-confidence);
- the confident joint C[i][j] counts examples labeled i whose probability of j reaches t_j (of
  several such j, the most probable one); off-diagonal entries are examples that confidently belong
  elsewhere;
- C is calibrated so its rows sum to the given label counts, giving the joint Q of given and true
  labels; "prune by noise rate" then takes, for every i != j, the n * Q[i][j] examples labeled i with
  the largest margin p_j - p_i. Those are the suspects (method "prune"); method "both" keeps only
  those the confident joint's off-diagonal also points at (fewer false alarms, fewer finds).
Suspects are ranked by self-confidence, the out-of-fold probability of the given label (lowest, most
suspicious, first): on the benchmark's multi-class sets it put more true errors in the top k than the
normalized margin max_{j != i} p_j - p_i (debates by speaker, 5% flipped: 0.45 against 0.27;
benchmarks/label_errors.py); for two classes the two orders are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backends.embedding import LinearHead, fit_logistic


def out_of_fold_proba(X: np.ndarray, y: np.ndarray, n_classes: int, *, folds: int = 5, C: float = 3.0,
                      seed: int = 0, max_iter: int = 200, prior: tuple[np.ndarray, np.ndarray, float] | None = None,
                      init: LinearHead | None = None) -> np.ndarray:
    """(n, n_classes) probabilities, each row from a head fitted on the other folds.

    `y` holds class indices 0..n_classes-1. Folds are stratified (every class spread over all folds).
    `prior`: (vectors, class indices, weight) pseudo-examples added to every fold's training set, as the
    served head does with its label prompts. A fold whose training part holds one class predicts it.
    `init`: a head over the class indices to start each fold's fit from (the served one: fewer iterations).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n = len(y)
    folds = max(2, min(folds, n))
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n, dtype=int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold_of[idx] = (np.arange(len(idx)) + rng.integers(folds)) % folds
    proba = np.zeros((n, n_classes))
    for f in range(folds):
        test, train = fold_of == f, fold_of != f
        if not test.any():
            continue
        Xt, yt, wt = X[train], y[train], np.ones(int(train.sum()))
        if prior is not None:
            Xt, yt = np.vstack([Xt, prior[0]]), np.concatenate([yt, prior[1]])
            wt = np.concatenate([wt, np.full(len(prior[1]), prior[2])])
        present = np.unique(yt)
        if len(present) < 2:
            proba[np.ix_(test, present)] = 1.0
            continue
        head = fit_logistic(Xt, yt, wt, C=C, max_iter=max_iter, init=init)
        proba[np.ix_(test, head.classes_.astype(int))] = head.predict_proba(X[test])
    return proba


def per_class_thresholds(proba: np.ndarray, given: np.ndarray) -> np.ndarray:
    """t_j: mean probability of class j over the examples labeled j (inf for a class nobody gave)."""
    k = proba.shape[1]
    out = np.full(k, np.inf)
    for j in range(k):
        mine = given == j
        if mine.any():
            out[j] = proba[mine, j].mean()
    return out


def confident_joint(proba: np.ndarray, given: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, k) counts C[given][confident true] and, per example, its confident class (-1: none reaches its threshold)."""
    above = proba >= thresholds[None, :] - 1e-12
    masked = np.where(above, proba, -np.inf)
    confident = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    k = proba.shape[1]
    joint = np.zeros((k, k), dtype=np.int64)
    ok = confident >= 0
    np.add.at(joint, (given[ok], confident[ok]), 1)
    return joint, confident


@dataclass(frozen=True)
class Suspects:
    """Indices into the labeled set, most suspicious first, with the class each likely belongs to and a score."""

    index: np.ndarray
    suggested: np.ndarray
    score: np.ndarray  # 1 - p(given label): higher is more suspicious
    noise_rate: float  # estimated share of wrong labels (off-diagonal mass of the calibrated joint)


def find_suspects(proba: np.ndarray, given: Sequence[int] | np.ndarray, method: str = "prune") -> Suspects:
    """Confident-learning suspects. `method`: "prune" (prune by noise rate: the paper's default) or "both"
    (only where the confident joint's off-diagonal agrees too: fewer suspects, fewer false alarms)."""
    if method not in ("prune", "both"):
        raise ValueError(f"method must be 'prune' or 'both', got {method!r}")
    proba = np.asarray(proba, dtype=np.float64)
    given = np.asarray(given, dtype=int)
    n, k = proba.shape
    thresholds = per_class_thresholds(proba, given)
    joint, confident = confident_joint(proba, given, thresholds)
    # calibrate: rows sum to the given label counts, the whole to n
    given_counts = np.bincount(given, minlength=k).astype(np.float64)
    row = joint.sum(axis=1).astype(np.float64)
    calibrated = np.where(row[:, None] > 0, joint / np.maximum(row, 1)[:, None], 0.0) * given_counts[:, None]
    q = calibrated / max(calibrated.sum(), 1.0)
    others = proba.copy()
    others[np.arange(n), given] = -np.inf
    best_other = others.argmax(axis=1)
    pruned = np.zeros(n, dtype=bool)
    for i in range(k):
        mine = np.flatnonzero(given == i)
        if len(mine) < 2:  # never strip a class of its only example
            continue
        budget_left = len(mine) - 1
        for j in range(k):
            take = min(int(round(n * q[i, j])), budget_left) if i != j else 0
            if take <= 0:
                continue
            order = mine[np.argsort(-(proba[mine, j] - proba[mine, i]), kind="stable")]
            pruned[order[:take]] = True
    off_diagonal = (confident >= 0) & (confident != given)
    flagged = np.flatnonzero(pruned & off_diagonal if method == "both" else pruned)
    self_confidence = proba[np.arange(n), given]
    order = flagged[np.argsort(self_confidence[flagged], kind="stable")]
    suggested = np.where(off_diagonal[order], confident[order], best_other[order])
    noise = float(q.sum() - np.trace(q)) if q.sum() else 0.0
    return Suspects(order, suggested, 1.0 - self_confidence[order], noise)


def suspicion_ranking(proba: np.ndarray, given: Sequence[int] | np.ndarray) -> np.ndarray:
    """Every example, most suspicious first (lowest self-confidence): top-k evaluation beyond the flagged set."""
    proba = np.asarray(proba, dtype=np.float64)
    given = np.asarray(given, dtype=int)
    return np.argsort(proba[np.arange(len(given)), given], kind="stable")
