"""Binomial intervals and the three live accuracy estimates (issue 14), each named for what it measures.

- `agreement`: the suggestion a task showed (recorded when served or pushed) against the label people gave
  it. Biased LOW: the queue serves the hardest tasks first, so this is the accuracy on the tasks the model
  found hardest, not on the pool.
- `audit`: a uniform random slice the queue mixes into each batch (SUGGEST_AUDIT_FRACTION). Each audited
  task stands for pool_size / draws tasks of the pool it was drawn from (its inverse inclusion
  probability); the estimate is the weighted (Hajek) mean, its interval a Wilson interval on the Kish
  effective sample size. Unbiased for the accuracy of the shown suggestions on the pool.
- `out_of_fold`: accuracy of out-of-fold predictions on the labeled set (each label predicted by a head
  that never saw it). The labeled set is chosen by active learning, so this too leans low.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import beta, norm


def wilson(k: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (n may be an effective, non-integer count)."""
    if n <= 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + level / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_lower(k: int, n: int, alpha: float = 0.05) -> float:
    """One-sided exact lower bound: P(true accuracy >= bound) >= 1 - alpha for k correct of n."""
    if n <= 0 or k <= 0:
        return 0.0
    return float(beta.ppf(alpha, k, n - k + 1))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided exact interval."""
    a = (1 - level) / 2
    lo = 0.0 if k <= 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def proportion(correct: Sequence[bool] | np.ndarray, what: str, level: float = 0.95) -> dict:
    """An accuracy with its Wilson interval, as stored and shown: estimate, low, high, n."""
    c = np.asarray(correct, dtype=float)
    n = len(c)
    if n == 0:
        return {"estimate": None, "low": None, "high": None, "n": 0, "what": what}
    lo, hi = wilson(float(c.sum()), n, level)
    return {"estimate": round(float(c.mean()), 4), "low": round(lo, 4), "high": round(hi, 4), "n": n, "what": what}


def weighted_proportion(correct: Sequence[bool] | np.ndarray, weights: Sequence[float] | np.ndarray, what: str,
                        level: float = 0.95) -> dict:
    """Hajek estimate sum(w c) / sum(w) with a Wilson interval on Kish's effective n = (sum w)^2 / sum w^2."""
    c = np.asarray(correct, dtype=float)
    w = np.asarray(weights, dtype=float)
    if len(c) == 0 or not np.isfinite(w).all() or (w <= 0).any():
        return {"estimate": None, "low": None, "high": None, "n": int(len(c)), "what": what}
    p = float((w * c).sum() / w.sum())
    n_eff = float(w.sum() ** 2 / (w * w).sum())
    lo, hi = wilson(p * n_eff, n_eff, level)
    return {"estimate": round(p, 4), "low": round(lo, 4), "high": round(hi, 4), "n": int(len(c)),
            "effective_n": round(n_eff, 1), "what": what}


AGREEMENT = ("agreement of the suggestion each task showed with the label people gave it; biased low, the queue "
             "serves the hardest tasks first")
AUDIT = ("accuracy on a uniform random audit slice mixed into the queue, weighted by inverse inclusion "
         "probability: unbiased for the pool")
OUT_OF_FOLD = "out-of-fold accuracy on the labeled set (each label predicted by a head that never saw it)"

__all__ = ["AGREEMENT", "AUDIT", "OUT_OF_FOLD", "clopper_pearson", "clopper_pearson_lower", "proportion",
           "weighted_proportion", "wilson"]
