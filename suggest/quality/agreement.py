"""Inter-annotator agreement per control: who agrees with whom, how much beyond chance, on how many tasks.

Why these measures: Cohen's kappa is what teams quote for a pair of annotators; Krippendorff's alpha
(nominal) is the one figure for all annotators that tolerates tasks seen by different numbers of
people (Fleiss' kappa needs the same number on every task, so it is given only where that holds).
Entities have no chance-corrected standard, so spans get the usual span-level F1 between annotators
(exact start, end and type). Every figure carries the number of tasks behind it and a 95% bootstrap
interval over tasks; where a figure cannot exist (one annotator, no shared task, no variation) it is
"n/a" with the reason, never a made-up number.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from suggest.schema import Label, Span

BOOTSTRAP = 200  # resamples over tasks per interval; keeps the agreement of 10,000 shared tasks under a second
MIN_TASKS_FOR_INTERVAL = 5  # below this an interval says nothing; it is left out (null)


# plain measures -------------------------------------------------------------------------------

def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters' nominal answers on the same items (NaN when chance agreement is 1)."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"need two equally long, non-empty answer lists, got {len(a)} and {len(b)}")
    codes = {v: i for i, v in enumerate(dict.fromkeys([*a, *b]))}
    x = np.fromiter((codes[v] for v in a), int, len(a))
    y = np.fromiter((codes[v] for v in b), int, len(b))
    return _kappa_codes(x, y, len(codes))


def _kappa_codes(x: np.ndarray, y: np.ndarray, k: int) -> float:
    n = len(x)
    observed = float(np.mean(x == y))
    expected = float(np.bincount(x, minlength=k) @ np.bincount(y, minlength=k)) / (n * n)
    if expected >= 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an (items, categories) matrix of how many raters chose each category.

    Every item must have the same number of raters (at least two).
    """
    counts = np.asarray(counts, dtype=np.float64)
    m = counts.sum(axis=1)
    if counts.ndim != 2 or not len(counts) or m.min() != m.max() or m[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of raters on every item")
    n_raters = m[0]
    p_item = ((counts * counts).sum(axis=1) - n_raters) / (n_raters * (n_raters - 1))
    p_cat = counts.sum(axis=0) / counts.sum()
    p_bar, p_e = float(p_item.mean()), float((p_cat * p_cat).sum())
    if p_e >= 1.0:
        return math.nan
    return (p_bar - p_e) / (1.0 - p_e)


def krippendorff_alpha_nominal(counts: np.ndarray) -> float:
    """Krippendorff's alpha (nominal) from an (units, categories) matrix of value counts per unit.

    Units with fewer than two values are not pairable and are ignored (missing data is allowed).
    Alpha = 1 - D_o / D_e from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's alpha").
    """
    counts = np.asarray(counts, dtype=np.float64)
    m = counts.sum(axis=1)
    counts, m = counts[m >= 2], m[m >= 2]
    if not len(counts):
        return math.nan
    coincidence = (counts / (m - 1)[:, None]).T @ counts - np.diag((counts / (m - 1)[:, None]).sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    disagree_observed = n - np.trace(coincidence)
    disagree_expected = (n * n - (n_c * n_c).sum()) / (n - 1)
    if disagree_expected <= 0:
        return math.nan
    return float(1.0 - disagree_observed / disagree_expected)


def span_f1(a: Iterable[Span], b: Iterable[Span]) -> tuple[int, int, int]:
    """(matches, |a|, |b|): spans that agree exactly in start, end and type, for a micro F1 over tasks."""
    sa = {(s.start, s.end, s.label) for s in a}
    sb = {(s.start, s.end, s.label) for s in b}
    return len(sa & sb), len(sa), len(sb)


# figures with intervals -------------------------------------------------------------------------

def _figure(value: float, tasks: int, interval: tuple[float, float] | None, why_na: str) -> dict:
    if value is None or not math.isfinite(value):
        return {"value": None, "na": why_na, "tasks": tasks}
    out = {"value": round(float(value), 4), "tasks": tasks}
    out["ci95"] = None if interval is None else [round(interval[0], 4), round(interval[1], 4)]
    return out


def _bootstrap(stat, n: int, seed: int = 0) -> tuple[float, float] | None:
    """A 95% percentile interval of `stat(indices)` over resampled tasks; None when too few tasks."""
    if n < MIN_TASKS_FOR_INTERVAL:
        return None
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(BOOTSTRAP)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < BOOTSTRAP // 2:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


NO_VARIATION = "every answer is the same category, so chance agreement is 1 and the figure is undefined"


def pair_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> dict:
    codes = {v: i for i, v in enumerate(dict.fromkeys([*a, *b]))}
    x = np.array([codes[v] for v in a])
    y = np.array([codes[v] for v in b])
    k = len(codes)
    value = _kappa_codes(x, y, k)
    interval = _bootstrap(lambda idx: _kappa_codes(x[idx], y[idx], k), len(x))
    return _figure(value, len(x), interval, NO_VARIATION)


def _alpha_figure(counts: np.ndarray) -> dict:
    value = krippendorff_alpha_nominal(counts)
    interval = _bootstrap(lambda idx: krippendorff_alpha_nominal(counts[idx]), len(counts))
    return _figure(value, len(counts), interval, NO_VARIATION)


def _fleiss_figure(counts: np.ndarray) -> dict:
    m = counts.sum(axis=1)
    if m.min() != m.max():
        return {"value": None, "tasks": len(counts),
                "na": "tasks were seen by different numbers of annotators (Fleiss' kappa needs the same number); "
                      "see krippendorff_alpha"}
    value = fleiss_kappa(counts)
    interval = _bootstrap(lambda idx: fleiss_kappa(counts[idx]), len(counts))
    return _figure(value, len(counts), interval, NO_VARIATION)


# per control ----------------------------------------------------------------------------------

Ratings = dict[int, dict[int, Hashable]]  # task id -> annotator -> answer


def ratings_of(labels: Iterable[Label]) -> tuple[Ratings, int]:
    """Each annotator's latest answer per task, and how many answers name no annotator (not counted)."""
    ratings: dict[int, dict[int, Label]] = defaultdict(dict)
    unknown = 0
    for lb in labels:
        if lb.annotator is None:
            unknown += 1
            continue
        held = ratings[lb.task_id].get(lb.annotator)
        if held is None or (lb.updated_at, lb.annotation_id) > (held.updated_at, held.annotation_id):
            ratings[lb.task_id][lb.annotator] = lb
    return {t: {a: lb.label for a, lb in by.items()} for t, by in ratings.items()}, unknown


def _not_available(ratings: Ratings) -> str | None:
    people = {a for by in ratings.values() for a in by}
    if len(people) < 2:
        who = f"only annotator {next(iter(people))} has" if people else "no annotator is known to have"
        return (f"n/a: {who} answered this control; agreement needs two people on the same task "
                "(Label Studio: raise the project's overlap, Settings > Annotation)")
    if not any(len(by) >= 2 for by in ratings.values()):
        return (f"n/a: {len(people)} annotators, but no task was answered by two of them "
                "(Label Studio: raise the project's overlap, Settings > Annotation)")
    return None


def control_agreement(labels: Iterable[Label], kind: str, categories: Sequence[str],
                      consensus: dict[int, Hashable] | None = None) -> dict:
    """Agreement figures for one control's answers (`kind`: classification, multilabel or spans).

    `consensus`: task -> the answer the project trains on, for each annotator's agreement with it.
    """
    ratings, unknown = ratings_of(labels)
    people = sorted({a for by in ratings.values() for a in by})
    shared = {t: by for t, by in ratings.items() if len(by) >= 2}
    out: dict = {"kind": kind, "annotators": len(people), "tasks": len(ratings), "tasks_shared": len(shared)}
    if unknown:
        out["answers_without_annotator"] = unknown
    why = _not_available(ratings)
    if why is not None:
        out["status"] = why
        return out
    out["status"] = "ok"
    if kind == "spans":
        out.update(_span_agreement(shared, people, consensus or {}))
    elif kind == "multilabel":
        out["per_label"] = {c: _nominal({t: {a: c in v for a, v in by.items()} for t, by in shared.items()},
                                        people, {t: c in v for t, v in (consensus or {}).items()})
                            for c in categories}
        out["vs_consensus"] = _vs_consensus(shared, people, consensus or {})
    else:
        out.update(_nominal(shared, people, consensus or {}))
    return out


def _nominal(shared: Ratings, people: list[int], consensus: dict[int, Hashable]) -> dict:
    values = list(dict.fromkeys(v for by in shared.values() for v in by.values()))
    code = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(shared), max(1, len(values))))
    for row, by in enumerate(shared.values()):
        for v in by.values():
            counts[row, code[v]] += 1
    pairs = []
    for a, b in itertools.combinations(people, 2):
        both = [(by[a], by[b]) for by in shared.values() if a in by and b in by]
        if not both:
            continue
        x, y = zip(*both, strict=True)
        pairs.append({"annotators": [a, b], "cohen_kappa": pair_kappa(x, y),
                      "percent_agreement": round(float(np.mean([p == q for p, q in both])), 4), "tasks": len(both)})
    return {"krippendorff_alpha": _alpha_figure(counts), "fleiss_kappa": _fleiss_figure(counts),
            "percent_agreement": round(_percent_agreement(counts), 4), "pairs": pairs,
            "vs_consensus": _vs_consensus(shared, people, consensus)}


def _percent_agreement(counts: np.ndarray) -> float:
    """Share of agreeing ordered pairs of answers over all tasks (the observed agreement)."""
    m = counts.sum(axis=1)
    return float(((counts * (counts - 1)).sum(axis=1)).sum() / (m * (m - 1)).sum())


def _vs_consensus(shared: Ratings, people: list[int], consensus: dict[int, Hashable]) -> list[dict]:
    """Each annotator against the answer the project trains on, on the tasks others answered too."""
    out = []
    for a in people:
        both = [(by[a], consensus[t]) for t, by in shared.items() if a in by and t in consensus]
        if not both:
            continue
        x, y = zip(*both, strict=True)
        agree = np.array([p == q for p, q in both], dtype=np.float64)
        interval = _bootstrap(lambda idx, agree=agree: float(agree[idx].mean()), len(agree))
        out.append({"annotator": a, "agreement": _figure(float(agree.mean()), len(agree), interval, ""),
                    "cohen_kappa": pair_kappa(x, y)})
    return out


def _span_agreement(shared: Ratings, people: list[int], consensus: dict[int, Hashable]) -> dict:
    def f1_figure(rows: list[tuple[int, int, int]]) -> dict:
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3)

        def f1(idx: np.ndarray) -> float:
            tp, na, nb = arr[idx].sum(axis=0)
            return 2 * tp / (na + nb) if na + nb else math.nan

        return _figure(f1(np.arange(len(arr))), len(arr), _bootstrap(f1, len(arr)),
                       "neither annotator marked any span on these tasks")

    pairs, every = [], []
    for a, b in itertools.combinations(people, 2):
        rows = [span_f1(by[a], by[b]) for by in shared.values() if a in by and b in by]
        if rows:
            pairs.append({"annotators": [a, b], "span_f1": f1_figure(rows), "tasks": len(rows)})
            every += rows
    vs = []
    for a in people:
        rows = [span_f1(by[a], consensus[t]) for t, by in shared.items() if a in by and t in consensus]
        if rows:
            vs.append({"annotator": a, "span_f1": f1_figure(rows), "tasks": len(rows)})
    return {"span_f1": f1_figure(every) if every else {"value": None, "na": "no shared tasks", "tasks": 0},
            "pairs": pairs, "vs_consensus": vs}


def summary(agreement: dict) -> dict:
    """One line per control for /metrics: the headline figure and the tasks behind it."""
    out = {}
    for control, entry in agreement.items():
        if entry.get("status") != "ok":
            out[control] = entry.get("status")
        elif entry["kind"] == "spans":
            out[control] = {"span_f1": entry["span_f1"].get("value"), "tasks": entry["tasks_shared"]}
        elif entry["kind"] == "multilabel":
            out[control] = {"krippendorff_alpha": {c: v["krippendorff_alpha"].get("value")
                                                   for c, v in entry["per_label"].items()},
                            "tasks": entry["tasks_shared"]}
        else:
            out[control] = {"krippendorff_alpha": entry["krippendorff_alpha"].get("value"),
                            "tasks": entry["tasks_shared"]}
    return out

