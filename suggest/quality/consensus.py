"""A model-weighted consensus label per task, in the spirit of CROWDLAB (Goh, Tkachenko and Mueller 2022).

Why: majority vote treats a careless annotator like a careful one and ignores what the model learned
from every other task. Here each annotator's vote counts by how reliable they were, and the model's
out-of-fold probabilities count as one more, weighted, voter. Written from the paper's description:
- an annotator's agreement a_j is the share of their answers, on tasks others answered too, that
  match the majority consensus; a vote becomes a probability vector (a_j on the chosen class, the
  rest spread evenly over the other classes);
- weights are reliabilities beyond a trivial baseline: w = 1 - error / baseline error, where the
  baseline always answers the most common class (floored at 0, so a voter no better than that baseline
  does not count); the model's error is measured against the majority consensus on the same tasks;
- the task's consensus is the class with the largest weighted average probability, and its
  consensus quality score is that probability. A ground-truth annotation still wins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def weighted_consensus(
    ratings: dict[int, dict[int, str]], classes: Sequence[str], majority: dict[int, str],
    model_proba: dict[int, np.ndarray] | None = None, ground_truth: dict[int, str] | None = None,
) -> tuple[dict[int, tuple[str, float]], dict]:
    """task -> (consensus label, quality in [0, 1]) for every task in `ratings`, and the weights used.

    `ratings`: task -> annotator -> label; `majority`: task -> the documented rule's label (the
    starting consensus); `model_proba`: task -> out-of-fold probabilities in `classes` order.
    """
    classes = list(classes)
    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    model_proba = model_proba or {}
    ground_truth = ground_truth or {}
    shared = {t: by for t, by in ratings.items() if len(by) >= 2}
    counts = Counter(majority.values())
    baseline_error = 1.0 - (max(counts.values()) / sum(counts.values()) if counts else 0.0)
    baseline_error = max(baseline_error, 1e-6)

    agreement: dict[int, float] = {}
    for a in {a for by in ratings.values() for a in by}:
        hits = [by[a] == majority[t] for t, by in shared.items() if a in by and t in majority]
        agreement[a] = float(np.mean(hits)) if hits else np.nan
    known = [v for v in agreement.values() if np.isfinite(v)]
    fallback = float(np.mean(known)) if known else 1.0 - baseline_error / 2
    agreement = {a: (v if np.isfinite(v) else fallback) for a, v in agreement.items()}
    weight = {a: max(0.0, 1.0 - (1.0 - v) / baseline_error) for a, v in agreement.items()}

    scored = [t for t in majority if t in model_proba]
    if scored:
        model_hits = [classes[int(np.argmax(model_proba[t]))] == majority[t] for t in scored]
        model_weight = max(0.0, 1.0 - (1.0 - float(np.mean(model_hits))) / baseline_error)
    else:
        model_weight = 0.0

    out: dict[int, tuple[str, float]] = {}
    for t, by in ratings.items():
        total = np.zeros(k)
        mass = 0.0
        for a, label in by.items():
            if label not in index:
                continue
            vote = np.full(k, (1.0 - agreement[a]) / max(k - 1, 1))
            vote[index[label]] = agreement[a]
            total += weight[a] * vote
            mass += weight[a]
        if t in model_proba and model_weight > 0:
            total += model_weight * np.asarray(model_proba[t], dtype=np.float64)
            mass += model_weight
        if mass <= 0:  # nobody beats the baseline: the documented rule decides
            label = majority.get(t, next(iter(by.values())))
            out[t] = (label, 1.0 / k)
            continue
        posterior = total / mass
        label = ground_truth.get(t) or classes[int(np.argmax(posterior))]
        out[t] = (label, round(float(posterior[index[label]]), 4))
    weights = {"annotators": {str(a): {"agreement": round(agreement[a], 4), "weight": round(weight[a], 4)}
                              for a in sorted(agreement)},
               "model": round(model_weight, 4), "baseline_error": round(baseline_error, 4)}
    return out, weights
