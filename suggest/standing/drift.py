"""Drift: has the data or the model's fit to it changed? Proper tests, and nothing flagged below minimum counts.

- Agreement over time windows: the suggestion-vs-annotation agreement of the latest annotations against
  the earlier ones, Fisher's exact test (flagged only when it dropped).
- Label mix over time windows: the labels people gave lately against before, chi-square test of homogeneity.
- Newly imported tasks: the predicted label mix of tasks imported after the last annotated one against the
  predicted mix of the earlier pool (same model version, so the comparison is apples to apples) and, for
  reference, against the labeled set's mix (which active learning skews, so it is shown, not tested).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy.stats import chi2_contingency, fisher_exact

MIN_COUNT = 30  # per side, before any test is run
ALPHA = 0.01


def _na(reason: str) -> dict:
    return {"flagged": False, "p_value": None, "na": reason}


def agreement_drift(older: Sequence[bool], recent: Sequence[bool], *, min_count: int = MIN_COUNT,
                    alpha: float = ALPHA) -> dict:
    """Fisher's exact test of agreement rates; flagged when recent agreement is lower with p < alpha."""
    older, recent = np.asarray(older, dtype=bool), np.asarray(recent, dtype=bool)
    if len(older) < min_count or len(recent) < min_count:
        return _na(f"needs {min_count} annotated suggestions on each side (have {len(older)} and {len(recent)})")
    table = [[int(recent.sum()), int((~recent).sum())], [int(older.sum()), int((~older).sum())]]
    _, p = fisher_exact(table, alternative="less")
    return {"flagged": bool(p < alpha), "p_value": round(float(p), 6), "test": "Fisher's exact, one-sided (lower)",
            "recent": round(float(recent.mean()), 4), "older": round(float(older.mean()), 4),
            "n_recent": int(len(recent)), "n_older": int(len(older))}


def mix_drift(a: Sequence, b: Sequence, *, min_count: int = MIN_COUNT, alpha: float = ALPHA,
              names: tuple[str, str] = ("recent", "older")) -> dict:
    """Chi-square test of homogeneity of two label samples (classes with too few counts are pooled)."""
    if len(a) < min_count or len(b) < min_count:
        return _na(f"needs {min_count} on each side (have {len(a)} and {len(b)})")
    ca, cb = Counter(map(str, a)), Counter(map(str, b))
    labels = sorted(set(ca) | set(cb))
    table = np.array([[ca[lab] for lab in labels], [cb[lab] for lab in labels]], dtype=float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    small = expected.min(0) < 5
    if small.any() and (~small).sum() >= 1:  # pool rare classes into one column
        table = np.column_stack([table[:, ~small], table[:, small].sum(1)]) if small.sum() > 0 else table
    table = table[:, table.sum(0) > 0]
    mix = {names[0]: {lab: round(ca[lab] / len(a), 4) for lab in labels},
           names[1]: {lab: round(cb[lab] / len(b), 4) for lab in labels}}
    if table.shape[1] < 2:
        return {"flagged": False, "p_value": 1.0, "test": "one class only", "mix": mix}
    _, p, _, _ = chi2_contingency(table, correction=True)
    return {"flagged": bool(p < alpha), "p_value": round(float(p), 6), "test": "chi-square homogeneity",
            "mix": mix, f"n_{names[0]}": len(a), f"n_{names[1]}": len(b)}


def recent_split(n: int, fraction: float = 0.25, least: int = MIN_COUNT) -> int:
    """Where the recent window starts in a time-ordered list of n: the last quarter, at least `least`."""
    return max(0, n - max(least, int(round(n * fraction))))


__all__ = ["ALPHA", "MIN_COUNT", "agreement_drift", "mix_drift", "recent_split"]
