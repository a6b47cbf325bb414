"""One project's standing, computed after a retrain by the analysis worker and stored per version.

Readers (/metrics, `suggest status`, `suggest autolabel`, the dashboard) only read what this stored. Per
version: the three accuracy estimates with 95% intervals (suggest.standing.estimates), the stop-set
predictions and Cohen's kappa with the previous version's (suggest.standing.stopping), drift tests
(suggest.standing.drift), and a preview of auto-labeling at the default target. The validation items
`suggest autolabel` needs (out-of-fold predictions and the audited suggestions) are stored beside it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from suggest.schema import Item
from suggest.standing import drift
from suggest.standing.autolabel import select, thresholds
from suggest.standing.estimates import AGREEMENT, AUDIT, OUT_OF_FOLD, proportion, weighted_proportion
from suggest.standing.live import standing_control
from suggest.standing.stopping import STOP_KAPPA, STOP_WINDOW, cohen_kappa, expected_gain, stop_signal

if TYPE_CHECKING:
    from suggest.project import Project

log = logging.getLogger(__name__)

DEFAULT_TARGET = 0.95
DEFAULT_CONFIDENCE = 0.95


def _label_of(raw: str) -> str:
    """A stored suggestion label (plain text; JSON-quoted by older writers)."""
    if raw.startswith('"'):
        try:
            return str(json.loads(raw))
        except ValueError:
            return raw
    return raw


def out_of_fold(project: Project, schema, labeled: dict) -> tuple[list[int], np.ndarray] | str:
    """(task ids, out-of-fold probabilities) on the labeled set, as the quality report computes them."""
    from suggest.quality.label_errors import out_of_fold_proba
    from suggest.quality.report import _embedded, folds_for

    got = _embedded(project, schema, labeled)
    if isinstance(got, str):
        return got
    model, tasks, X = got
    classes = list(schema.labels)
    y = np.array([classes.index(labeled[t].label) for t in tasks])
    if len(np.unique(y)) < 2:
        return "every label is the same class"
    return tasks, out_of_fold_proba(X, y, len(classes), folds=folds_for(len(tasks)), C=float(getattr(model, "C", 3.0)))


def compute_standing(project: Project, oof: dict[str, dict[int, np.ndarray]] | None = None
                     ) -> tuple[dict, list, list]:
    """(report, stop-set labels, validation items) for the project's published version. `oof`: control -> task ->
    out-of-fold probabilities already computed by the quality report (None, or no entry: computed here)."""
    started = time.perf_counter()
    store, pid = project.store, project.project_id
    published = project.published
    schema = standing_control(project)
    report: dict = {"model_version": published.version}
    if schema is None:
        report["na"] = "standing is computed for single-choice controls; this project has none"
        return report, [], []
    control = schema.from_name
    classes = list(schema.labels)
    oof = (oof or {}).get(control) or None
    report["control"] = control
    labeled = {t: lb for t, lb in project.labeled(control).items() if isinstance(lb.label, str)}
    report["labels"] = len(labeled)
    shown = store.suggestions(pid, control)
    by_task = {s["task_id"]: s for s in shown}

    # 1. agreement of the shown suggestion with the label, in annotation order (for the drift windows)
    annotated = sorted((t for t in labeled if t in by_task), key=lambda t: (labeled[t].created_at, t))
    agree = np.array([_label_of(by_task[t]["label"]) == labeled[t].label for t in annotated], dtype=bool)
    estimates = {"agreement": proportion(agree, AGREEMENT)}
    # 2. the audit slice: weighted by inverse inclusion probability
    audited = [t for t in annotated if by_task[t]["audit_weight"]]
    estimates["audit"] = weighted_proportion([_label_of(by_task[t]["label"]) == labeled[t].label for t in audited],
                                             [by_task[t]["audit_weight"] for t in audited], AUDIT)
    # 3. out-of-fold accuracy on the labeled set
    validation: list[list] = []
    if oof is None and published.record is not None:
        got = out_of_fold(project, schema, labeled)
        oof = dict(zip(got[0], got[1], strict=True)) if not isinstance(got, str) else None
        if isinstance(got, str):
            estimates["out_of_fold_na"] = got
    if oof:
        tasks = [t for t in oof if t in labeled]
        pred = [classes[int(np.argmax(oof[t]))] for t in tasks]
        ok = [p == labeled[t].label for p, t in zip(pred, tasks, strict=True)]
        estimates["out_of_fold"] = proportion(ok, OUT_OF_FOLD)
        validation = [[t, p, round(float(np.max(oof[t])), 6), bool(c), "out_of_fold"]
                      for t, p, c in zip(tasks, pred, ok, strict=True)]
    else:
        estimates["out_of_fold"] = proportion([], OUT_OF_FOLD)
    validation += [[t, _label_of(by_task[t]["label"]), float(by_task[t]["probability"]),
                    _label_of(by_task[t]["label"]) == labeled[t].label, "audit"] for t in audited]
    report["estimates"] = estimates

    # stop set: this version's predictions, kappa with the previous version's
    stop = store.stop_set(pid)
    stop_labels: list = []
    if stop:
        items = project.prepare(schema, [Item(x, t) for t, x in stop], published.models.get(control))
        keep = [(i, it) for i, it in enumerate(items) if it is not None]
        guesses = published.models[control].guess([it for _, it in keep], project.uncertainty) if keep else []
        stop_labels = [None] * len(stop)
        for (i, _), g in zip(keep, guesses, strict=True):
            stop_labels[i] = None if g is None else g.value
    history = [h for h in store.standing_history(pid) if h["version"] != published.version]
    kappa = None
    if history and stop_labels and len(history[-1]["stop_labels"]) == len(stop_labels):
        prev = history[-1]["stop_labels"]
        both = [(a, b) for a, b in zip(prev, stop_labels, strict=True) if a is not None and b is not None]
        if both:
            kappa = round(cohen_kappa([a for a, _ in both], [b for _, b in both]), 4)
    kappas = [h["report"].get("stopping", {}).get("kappa") for h in history] + [kappa]
    signal = stop_signal(kappas, STOP_KAPPA, STOP_WINDOW)
    curve_n = [h["n_labels"] for h in history] + [len(labeled)]
    curve_acc = [(h["report"].get("estimates", {}).get("out_of_fold") or {}).get("estimate") for h in history]
    curve_acc.append(estimates["out_of_fold"]["estimate"])
    pts = [(n, a) for n, a in zip(curve_n, curve_acc, strict=True) if a is not None]
    gain = expected_gain([n for n, _ in pts], [a for _, a in pts], 100)
    report["stopping"] = {"kappa": kappa, "stop_set": len(stop), **signal, "expected_gain_next_100": gain,
                          "accuracy": estimates["audit"] if estimates["audit"]["estimate"] is not None
                          else estimates["out_of_fold"]}
    if not stop:
        report["stopping"]["na"] = "no stop set yet: it is drawn from the pool at the first re-rank in Label Studio"

    # drift
    cut = drift.recent_split(len(annotated))
    report["drift"] = {
        "agreement_over_time": drift.agreement_drift(agree[:cut], agree[cut:]),
        "label_mix_over_time": drift.mix_drift([labeled[t].label for t in annotated[cut:]],
                                               [labeled[t].label for t in annotated[:cut]]),
        "new_tasks": _new_tasks_drift(shown, labeled, published.version),
    }
    report["drift"]["flagged"] = any(v.get("flagged") for v in report["drift"].values() if isinstance(v, dict))

    # auto-label preview at the default target
    auto = preview(validation, shown, labeled, classes, DEFAULT_TARGET, DEFAULT_CONFIDENCE)
    auto.pop("tasks", None)  # counts only: `suggest autolabel` lists the tasks (a list per version would pile up)
    report["autolabel"] = auto
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report, stop_labels, validation


def _new_tasks_drift(shown: list[dict], labeled: dict, version: str) -> dict:
    """Predicted label mix of tasks first seen after the newest annotated task's first sighting, against the
    earlier pool's (both as predicted by the newest version that ranked them)."""
    pool = [s for s in shown if s["task_id"] not in labeled]
    if not pool:
        return {"flagged": False, "p_value": None, "na": "no unlabeled task recorded"}
    seen_labeled = [s["first_seen"] for s in shown if s["task_id"] in labeled]
    since = max(seen_labeled) if seen_labeled else None
    if since is None:
        return {"flagged": False, "p_value": None, "na": "no annotated task yet to date imports against"}
    new = [_label_of(s["label"]) for s in pool if s["first_seen"] > since]
    old = [_label_of(s["label"]) for s in pool if s["first_seen"] <= since]
    out = drift.mix_drift(new, old, names=("new", "earlier"))
    labels = [lb.label for lb in labeled.values()]
    if labels:
        out["labeled_mix"] = {lab: round(labels.count(lab) / len(labels), 4) for lab in sorted(set(labels))}
    return out


def preview(validation: list[list], shown: list[dict], labeled: dict, classes: list[str], target: float,
            confidence: float) -> dict:
    """Per-class thresholds at `target` and the unlabeled tasks that qualify (their ids when asked for)."""
    if not validation:
        return {"target": target, "confidence": confidence, "qualifying": 0,
                "na": "no validation items yet (out-of-fold predictions need a trained version and 20 labels)"}
    _, pred, conf, ok, _ = zip(*validation, strict=True)
    found = thresholds(pred, conf, ok, classes, target=target, confidence=confidence)
    pool = [s for s in shown if s["task_id"] not in labeled]
    picked = select([_label_of(s["label"]) for s in pool], [s["probability"] for s in pool], found) if pool else []
    per_class: dict[str, int] = {c: 0 for c in classes}
    for i in picked:
        per_class[_label_of(pool[int(i)]["label"])] = per_class.get(_label_of(pool[int(i)]["label"]), 0) + 1
    return {"target": target, "confidence": confidence, "thresholds": found, "qualifying": len(picked),
            "per_class": per_class, "pool": len(pool), "validation": len(validation),
            "tasks": [{"task_id": pool[int(i)]["task_id"], "label": _label_of(pool[int(i)]["label"]),
                       "probability": round(float(pool[int(i)]["probability"]), 6),
                       "version": pool[int(i)]["version"]} for i in picked]}


def metrics_entry(report: dict | None, history: list[dict] | None = None) -> dict:
    """What /metrics and `suggest status --format json` show: estimates, stopping, drift, the autolabel
    preview (counts, not task lists) and the learning curve."""
    if not report:
        return {"status": "not computed yet: it is computed after the first retrain"}
    auto = dict(report.get("autolabel") or {})
    auto.pop("tasks", None)
    out = {"model_version": report.get("version"), "computed_at": report.get("computed_at"),
           "control": report.get("control"), "labels": report.get("labels"),
           "estimates": report.get("estimates"), "stopping": report.get("stopping"), "drift": report.get("drift"),
           "autolabel": auto, "seconds": report.get("seconds"), "error": report.get("error"), "na": report.get("na")}
    if history is not None:
        out["learning_curve"] = curve(history)
    return {k: v for k, v in out.items() if v is not None}


def curve(history: list[dict]) -> list[dict]:
    """Per version, oldest first: labels held and each estimate (estimate, low, high), and the kappa."""
    points = []
    for h in history:
        est = h["report"].get("estimates") or {}
        points.append({"version": h["version"], "labels": h["n_labels"],
                       **{k: {f: (est.get(k) or {}).get(f) for f in ("estimate", "low", "high", "n")}
                          for k in ("out_of_fold", "audit", "agreement")},
                       "kappa": (h["report"].get("stopping") or {}).get("kappa")})
    return points


__all__ = ["DEFAULT_CONFIDENCE", "DEFAULT_TARGET", "compute_standing", "curve", "metrics_entry", "preview"]
