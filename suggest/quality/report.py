"""One project's quality report, computed after a retrain (off the request path) and stored for readers.

The server's /metrics, `suggest quality` and the Label Studio review tab only read what this wrote
(Store.quality), so a slow computation never holds up a request. What is computed per control:
agreement (suggest.quality.agreement), suspected label errors from out-of-fold probabilities
(suggest.quality.label_errors; choice controls whose model works on embeddings: single choice on text
and images, and multi-label per label, as a missing or an extra label), and the model-weighted
consensus for single-choice controls (suggest.quality.consensus). Entity spans get agreement and suspects
(missing, extra and wrong-type spans: suggest.quality.span_errors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from backends.embedding import LinearHead
from suggest.kinds import kind_of, kind_of_answer
from suggest.quality.agreement import control_agreement, ratings_of, summary
from suggest.quality.consensus import weighted_consensus
from suggest.quality.label_errors import find_suspects, out_of_fold_proba
from suggest.schema import Item, Label, Schema

if TYPE_CHECKING:
    from suggest.project import Project

log = logging.getLogger(__name__)

MAX_SUSPECTS = 200  # stored per project; the review tab and /metrics show fewer
MIN_LABELS = 20  # fewer labels make out-of-fold probabilities noise, not evidence


def compute_report(project: Project, oof: dict | None = None) -> dict:
    """Agreement, suspects and consensus for every control of the project's published version. `oof`, when
    given, receives control -> task -> out-of-fold probabilities of the single-choice controls."""
    started = time.perf_counter()
    published = project.published
    annotations = project.annotations()
    first = project.schema.from_name
    out: dict = {"model_version": published.version, "agreement": {}, "label_errors": {}, "consensus": {},
                 "suspects": []}
    suspects: list[dict] = []
    for schema in project.schemas:
        kind = kind_of(schema)
        mine = [lb for lb in annotations if (lb.control or first) == schema.from_name
                and kind_of_answer(lb.label) is kind and kind.within(lb.label, schema.labels)]
        majority = project.labeled(schema.from_name, rule="majority")
        out["agreement"][schema.from_name] = control_agreement(
            mine, schema.task_kind, schema.labels, {t: lb.label for t, lb in majority.items()})
        if schema.task_kind == "multilabel":
            found, info = _multilabel_suspects(project, schema, project.labeled(schema.from_name))
            out["label_errors"][schema.from_name] = info
            suspects += found
            continue
        if schema.task_kind == "spans":
            found, info = _span_suspects(project, schema, project.labeled(schema.from_name))
            out["label_errors"][schema.from_name] = info
            suspects += found
            continue
        if schema.task_kind != "classification":
            out["label_errors"][schema.from_name] = {
                "na": f"suspected label errors are computed for choices and spans; this is {schema.task_kind}"}
            continue
        trained = project.labeled(schema.from_name)
        found, proba, info = _classification_suspects(project, schema, trained)
        out["label_errors"][schema.from_name] = info
        if oof is not None:
            oof[schema.from_name] = proba  # task -> out-of-fold probabilities, for standing (issue 14)
        suspects += found
        out["consensus"][schema.from_name] = _consensus(mine, schema, majority, proba)
    suspects.sort(key=lambda s: -s["score"])
    out["suspects"] = suspects[:MAX_SUSPECTS]
    people = {lb.annotator for lb in annotations if lb.annotator is not None}
    out["counts"] = {"annotations": len({lb.annotation_id for lb in annotations}),
                     "tasks": len({lb.task_id for lb in annotations}), "annotators": len(people),
                     "suspects": len(suspects)}
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out


def _embedded(project: Project, schema: Schema, labeled: dict[int, Label]
              ) -> tuple[object, list[int], np.ndarray] | str:
    """(model, task ids, their cached vectors) for a trained embedding model, or why there is none."""
    model = project.published.models.get(schema.from_name)
    if model is None or model.mode != "trained" or not getattr(model, "supports_embedded", False):
        return "no trained model that works on embeddings yet"
    if len(labeled) < MIN_LABELS:
        return f"{len(labeled)} labels; suspects are computed from {MIN_LABELS} on"
    tasks = sorted(labeled)
    items = project.prepare(schema, [Item(labeled[t].text, t) for t in tasks], model)
    keep = [(t, it) for t, it in zip(tasks, items, strict=True) if it is not None]
    return model, [t for t, _ in keep], np.asarray(model.embed([it for _, it in keep]))


def folds_for(n: int) -> int:
    """More folds where labels are few (each fold's model sees 90% of them: on 150 Rotten Tomatoes labels 10
    folds ranked planted errors clearly higher than 5), fewer where they are many (3 keep 10,000 labels near 1 s)."""
    return 10 if n < 1000 else 5 if n < 3000 else 3


def _multilabel_suspects(project: Project, schema: Schema, labeled: dict[int, Label]) -> tuple[list[dict], dict]:
    """Per label: is it missing where the model is sure it applies, or given where it is sure it does not?
    Each label is its own two-class problem (present / absent) for confident learning."""
    got = _embedded(project, schema, labeled)
    if isinstance(got, str):
        return [], {"na": got}
    started = time.perf_counter()
    model, tasks, X = got
    folds = folds_for(len(tasks))
    C = float(getattr(model, "C", 3.0))
    suspects: list[dict] = []
    for label in schema.labels:
        y = np.array([label in labeled[t].label for t in tasks], dtype=int)
        if min(y.sum(), len(y) - y.sum()) < 2:
            continue
        found = find_suspects(out_of_fold_proba(X, y, 2, folds=folds, C=C), y)
        for i, s in zip(found.index, found.score, strict=True):
            given = tuple(labeled[tasks[i]].label)
            fix = tuple(sorted(set(given) - {label})) if y[i] else tuple(sorted({*given, label}))
            suspects.append({"task_id": tasks[i], "control": schema.from_name, "given": list(given),
                             "suggested": list(fix), "score": round(float(s), 4), "label": label,
                             "problem": "extra label" if y[i] else "missing label"})
    info = {"method": f"confident learning per label (present / absent), {folds}-fold out-of-fold probabilities",
            "labels": len(tasks), "suspects": len(suspects), "seconds": round(time.perf_counter() - started, 3)}
    return suspects, info


def _span_suspects(project: Project, schema: Schema, labeled: dict[int, Label]) -> tuple[list[dict], dict]:
    """Missing, extra and wrong-type spans from out-of-fold taggers (suggest.quality.span_errors)."""
    from suggest.quality.span_errors import span_report

    model = project.published.models.get(schema.from_name)
    if model is None or model.mode != "trained" or not hasattr(model, "token_proba"):
        return [], {"na": "no trained span tagger yet (spaCy's bootstrap serves until the labels hold enough spans)"}
    if len(labeled) < MIN_LABELS:
        return [], {"na": f"{len(labeled)} labels; suspects are computed from {MIN_LABELS} on"}
    tasks = sorted(labeled)
    items = [Item(labeled[t].text, t) for t in tasks]
    gold = [tuple(labeled[t].label) for t in tasks]
    return span_report(lambda: project.make_backend(schema), tasks, items, gold, list(schema.labels),
                       control=schema.from_name, folds=folds_for(len(tasks)))


def _classification_suspects(project: Project, schema: Schema, labeled: dict[int, Label]
                             ) -> tuple[list[dict], dict[int, np.ndarray], dict]:
    got = _embedded(project, schema, labeled)
    if isinstance(got, str):
        return [], {}, {"na": got}
    started = time.perf_counter()
    model, tasks, X = got
    classes = list(schema.labels)
    y = np.array([classes.index(labeled[t].label) for t in tasks])
    if len(np.unique(y)) < 2:
        return [], {}, {"na": "every label is the same class"}
    prior = None
    protos = getattr(model, "prototypes_", None)
    weight = float(getattr(model, "prior_weight", 0.0) or 0.0)
    if protos is not None and weight > 0 and len(protos) == len(classes):
        prior = (np.asarray(protos, dtype=np.float64), np.arange(len(classes)), weight)
    folds = folds_for(len(tasks))
    head = getattr(model, "head_", None)
    init = None
    if isinstance(head, LinearHead) and all(str(c) in classes for c in head.classes_):
        init = LinearHead(np.array([classes.index(str(c)) for c in head.classes_]), head.coef_, head.intercept_)
    proba = out_of_fold_proba(X, y, len(classes), folds=folds, C=float(getattr(model, "C", 3.0)), prior=prior,
                              init=init)
    found = find_suspects(proba, y)
    suspects = [{"task_id": tasks[i], "control": schema.from_name, "given": classes[y[i]],
                 "suggested": classes[int(j)], "score": round(float(s), 4)}
                for i, j, s in zip(found.index, found.suggested, found.score, strict=True)]
    info = {"method": f"confident learning (confident joint and prune by noise rate), {folds}-fold out-of-fold "
                      "probabilities", "labels": len(tasks), "suspects": len(suspects),
            "estimated_noise_rate": round(found.noise_rate, 4), "seconds": round(time.perf_counter() - started, 3)}
    return suspects, {t: proba[i] for i, t in enumerate(tasks)}, info


def _consensus(mine: list[Label], schema: Schema, majority: dict[int, Label], proba: dict[int, np.ndarray]) -> dict:
    ratings, _ = ratings_of(mine)
    shared = {t: by for t, by in ratings.items() if len(by) >= 2}
    if not shared:
        return {"na": "no task has answers from two annotators: the consensus is the single answer"}
    truth = {lb.task_id: lb.label for lb in mine if lb.ground_truth}
    labels = {t: lb.label for t, lb in majority.items()}
    result, weights = weighted_consensus(shared, schema.labels, labels, proba, truth)  # type: ignore[arg-type]
    changed = sum(1 for t, (label, _) in result.items() if labels.get(t) != label)
    return {"weights": weights, "changed_from_majority": changed,
            "tasks": {str(t): {"label": label, "quality": q, "majority": labels.get(t)}
                      for t, (label, q) in sorted(result.items())}}


def weighted_labels(report: dict | None) -> dict[str, dict[int, Hashable]]:
    """control -> task -> the weighted consensus label, from a stored report (empty before one)."""
    if not report:
        return {}
    return {control: {int(t): v["label"] for t, v in entry.get("tasks", {}).items()}
            for control, entry in (report.get("consensus") or {}).items()}


def metrics_entry(report: dict | None, top: int = 10) -> dict:
    """What /metrics shows of a stored report: counts, the agreement headline, the top suspects."""
    if not report:
        return {"status": "not computed yet: it is computed after the first retrain"}
    return {"model_version": report.get("version"), "computed_at": report.get("computed_at"),
            "counts": report.get("counts", {}), "agreement": summary(report.get("agreement", {})),
            "top_suspects": report.get("suspects", [])[:top], "seconds": report.get("seconds"),
            "consensus_changed": {c: e.get("changed_from_majority") for c, e in (report.get("consensus") or {}).items()
                                  if "changed_from_majority" in e},
            "error": report.get("error")}


__all__ = ["compute_report", "metrics_entry", "weighted_labels"]
