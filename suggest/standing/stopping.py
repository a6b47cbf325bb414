"""When to stop labeling: stabilizing predictions, and what the next labels are expected to buy.

Stabilizing predictions (Bloodgood and Vijay-Shanker, CoNLL 2009): a stop set is sampled once from the
pool and kept; after each version its predictions on the stop set are compared with the previous
version's by Cohen's kappa; the signal fires once `window` (3) consecutive comparisons reach `threshold`
(0.99). The expected gain from the next 100 labels is read off a learning curve acc(n) = a - b n^-c fitted
to the per-version accuracy estimates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STOP_KAPPA = 0.99
STOP_WINDOW = 3
STOP_SET_SIZE = 1000


def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa of two label sequences of equal length (1.0 when both are one and the same constant)."""
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if len(a) != len(b):
        raise ValueError(f"kappa needs sequences of equal length, got {len(a)} and {len(b)}")
    if len(a) == 0:
        return float("nan")
    po = float(np.mean(a == b))
    labels = set(a.tolist()) | set(b.tolist())
    pe = sum(float(np.mean(a == lab)) * float(np.mean(b == lab)) for lab in labels)
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else 0.0
    return (po - pe) / (1.0 - pe)


def stop_signal(kappas: Sequence[float | None], threshold: float = STOP_KAPPA, window: int = STOP_WINDOW) -> dict:
    """Whether the last `window` kappas (oldest first; None: no comparison) all reach `threshold`, and since which
    index the signal first fired (the first index ending such a run), or None."""
    run, fired_at = 0, None
    for i, k in enumerate(kappas):
        run = run + 1 if k is not None and np.isfinite(k) and k >= threshold else 0
        if run >= window and fired_at is None:
            fired_at = i
    return {"stable": run >= window, "consecutive": run, "first_fired_at": fired_at,
            "rule": f"stable after {window} consecutive versions with kappa >= {threshold} on the stop set"}


def fit_curve(n: Sequence[float], acc: Sequence[float]) -> tuple[float, float, float] | None:
    """(a, b, c) of acc(n) = a - b n^-c by least squares over a grid of c (a and b linear); None below 3 points."""
    n, acc = np.asarray(n, dtype=float), np.asarray(acc, dtype=float)
    keep = np.isfinite(acc) & (n > 0)
    n, acc = n[keep], acc[keep]
    if len(np.unique(n)) < 3:
        return None
    best = None
    for c in np.linspace(0.05, 2.0, 40):
        A = np.column_stack([np.ones_like(n), -(n ** -c)])
        coef, *_ = np.linalg.lstsq(A, acc, rcond=None)
        a, b = float(coef[0]), float(coef[1])
        if b < 0:  # a falling curve is noise around a plateau: fit a flat line instead
            a, b = float(acc.mean()), 0.0
        sse = float(((a - b * n ** -c - acc) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, a, b, float(c))
    _, a, b, c = best
    return a, b, c


def expected_gain(n: Sequence[float], acc: Sequence[float], more: int = 100) -> dict:
    """acc(n_last + more) - acc(n_last) on the fitted curve, with the curve's plateau `a`."""
    fit = fit_curve(n, acc)
    if fit is None:
        return {"gain": None, "reason": "needs estimates from 3 versions with different label counts", "more": more}
    a, b, c = fit
    last = float(max(n))
    gain = b * (last ** -c - (last + more) ** -c)
    return {"gain": round(float(gain), 4), "more": more, "at": int(last), "plateau": round(min(a, 1.0), 4),
            "curve": {"a": round(a, 4), "b": round(b, 4), "c": round(c, 3)}}


__all__ = ["STOP_KAPPA", "STOP_SET_SIZE", "STOP_WINDOW", "cohen_kappa", "expected_gain", "fit_curve", "stop_signal"]
