"""Auto-accept at a stated accuracy: per-class confidence thresholds with a Clopper-Pearson guarantee.

For each class c the validation items (human-labeled, with a prediction the labeler never influenced:
out-of-fold predictions on the labeled set and the audit slice's recorded suggestions) predicted c are
sorted by confidence, most confident first. Candidate thresholds are the confidences at which the set
above holds n_1 < n_2 < ... items, a geometric grid that depends only on how many items the class has,
never on their correctness. A threshold passes when the one-sided Clopper-Pearson lower bound on the
accuracy of the items at or above it reaches the target. The candidates are tested in that FIXED
SEQUENCE, most confident first, each at the class's full error budget, and the first failure ends the
sequence; the lowest threshold passed is the class's. Fixed-sequence testing needs no correction for the
number of thresholds tried (as in Learn-then-Test, Angelopoulos et al. 2021). The grid starts at the
smallest set whose bound would pass at an observed accuracy halfway between the target and 1: a start
on one or two items could never pass, and would end the sequence at once. The error budget
1 - confidence is split evenly over the classes (Bonferroni), so with probability at least `confidence`
every chosen set, and so the union of the auto-labeled sets, is at least `target` accurate, provided
the pool is exchangeable with the validation items.

The sequence's start is a guess about where passing becomes possible: too small a start fails at once
(Rotten Tomatoes at 0.95), too large a start leaves small classes without a threshold (Rotten Tomatoes
fresh/rotten/plot at 1,000 labels). So by default (method="both") each class's budget is halved between
that sequence and a Bonferroni search (every candidate of a ratio-1.4 grid starting at the smallest set
that could pass, each tested at budget / candidates), and the lower threshold either passes wins; both
halves are valid tests, so their union is. Measured per method in benchmarks/autolabel.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from suggest.standing.estimates import clopper_pearson_lower


def first_size(target: float, alpha: float, errors: int = 0) -> int:
    """The smallest n for which n - errors correct of n has a lower bound >= target (capped at 100000)."""
    lo, hi = errors + 1, errors + 1
    while hi < 100_000 and clopper_pearson_lower(hi - errors, hi, alpha) < target:
        lo, hi = hi, hi * 2
    while lo < hi:  # the bound grows with n at a fixed number of errors
        mid = (lo + hi) // 2
        if clopper_pearson_lower(mid - errors, mid, alpha) >= target:
            hi = mid
        else:
            lo = mid + 1
    return hi


def size_grid(n_all: int, smallest: int, ratio: float = 1.4) -> list[int]:
    """Set sizes smallest, smallest * ratio, ..., n_all (n_all included)."""
    sizes, n = [], float(smallest)
    while n < n_all:
        sizes.append(int(n))
        n *= ratio
    return sorted({*sizes, n_all})


def class_threshold(conf: np.ndarray, correct: np.ndarray, target: float, alpha: float,
                    method: str = "both") -> dict:
    """The threshold for one class's validation items (confidence, correct) at error budget `alpha`.

    "sequence" (default): fixed-sequence testing down a geometric grid of set sizes (ratio 1.25), each test at
    the full `alpha`, stopping at the first failure; the grid starts at the smallest set whose bound would
    pass with an observed accuracy halfway between the target and 1 (a start that depends on the number of
    items only). "bonferroni": every size of a ratio-1.4 grid tested at alpha / grid size, the lowest
    passing threshold kept.
    """
    if method == "both":  # half the budget each; the lower passing threshold (more coverage) wins
        a = class_threshold(conf, correct, target, alpha / 2, "sequence")
        b = class_threshold(conf, correct, target, alpha / 2, "bonferroni")
        passed = [x for x in (a, b) if x["threshold"] is not None]
        if not passed:
            return {**b, "reason": f"{a['reason']}; {b['reason']}" if a["reason"] != b["reason"] else b["reason"]}
        best = min(passed, key=lambda x: x["threshold"])
        return {**best, "method": "sequence" if best is a else "bonferroni"}
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order].astype(int)
    n_all = len(conf)
    cum = np.cumsum(correct)
    if method == "sequence":
        start = _size_for(target, alpha, (1 + target) / 2)
        grid, each = size_grid(n_all, start, 1.25) if n_all >= start else [], alpha
    elif method == "bonferroni":
        smallest = first_size(target, alpha)
        grid = size_grid(n_all, smallest) if n_all >= smallest else []
        if grid:
            smallest = first_size(target, alpha / len(grid))
            grid = [n for n in grid if n >= smallest] or [n_all]
        each = alpha / max(1, len(grid))
    else:
        raise ValueError(f"method must be 'both', 'sequence' or 'bonferroni', got {method!r}")
    if not grid:
        return {"threshold": None, "validation": n_all,
                "reason": f"{n_all} validation items predicted this class; too few for a bound at {target}"}
    passed, tried = None, []
    for n in grid:
        # every item tied with the n-th confidence belongs to the set: a threshold cannot split ties
        m = int(np.searchsorted(-conf, -conf[n - 1], side="right"))
        k = int(cum[m - 1])
        bound = clopper_pearson_lower(k, m, each)
        tried.append(bound)
        if bound >= target:
            passed = (float(conf[m - 1]), m, k, bound)
        elif method == "sequence":
            break
    if passed is None:
        best = int(np.argmax(tried))
        return {"threshold": None, "validation": n_all, "candidates": len(grid),
                "reason": f"no candidate threshold's lower bound reaches {target} (best {tried[best]:.3f} "
                          f"over the {grid[best]} most confident)"}
    t, m, k, bound = passed
    return {"threshold": round(t, 6), "validation": n_all, "candidates": len(grid), "above": m, "correct": k,
            "accuracy": round(k / m, 4), "bound": round(bound, 4)}


def _size_for(target: float, alpha: float, accuracy: float) -> int:
    """The smallest n whose bound passes when round(accuracy * n) of n are correct."""
    n = 2
    while n < 100_000 and clopper_pearson_lower(int(np.floor(accuracy * n)), n, alpha) < target:
        n = int(n * 1.05) + 1
    return n


def thresholds(pred: Sequence, conf: Sequence[float], correct: Sequence[bool], classes: Sequence[str], *,
               target: float = 0.95, confidence: float = 0.95, method: str = "both") -> dict[str, dict]:
    """Per class: the threshold (None where no threshold meets the target) and the evidence behind it."""
    if not 0 < target < 1:
        raise ValueError(f"target must be between 0 and 1, got {target}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    pred, conf, correct = np.asarray(pred, dtype=object), np.asarray(conf, dtype=float), np.asarray(correct, bool)
    alpha = (1 - confidence) / max(1, len(classes))
    return {str(c): class_threshold(conf[pred == c], correct[pred == c], target, alpha, method) for c in classes}


def select(pred: Sequence, conf: Sequence[float], found: dict[str, dict]) -> np.ndarray:
    """Indices of pool items whose confidence reaches their predicted class's threshold."""
    pred, conf = np.asarray(pred, dtype=object), np.asarray(conf, dtype=float)
    t = np.array([found.get(str(p), {}).get("threshold") for p in pred], dtype=object)
    ok = np.array([x is not None for x in t])
    keep = np.zeros(len(pred), dtype=bool)
    keep[ok] = conf[ok] >= t[ok].astype(float)
    return np.flatnonzero(keep)


__all__ = ["class_threshold", "first_size", "select", "size_grid", "thresholds"]
