"""`suggest stats` (issue 18): how much of a project is labelled and ready to train on, from the store alone.

Per control: tasks ready for training (a consensus answer of the control's kind and within its
labels, as a retrain would take it), counts per class or label, tasks several annotators answered
differently; per annotator: annotations and tasks; unlabelled tasks left where the store knows the
project's tasks (its task list); per version: when, how many labels, and how many annotations its
pinned snapshot holds.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from suggest.kinds import kind_of, kind_of_answer
from suggest.schema import Label, Schema


def compute(labels: list[Label], schemas: tuple[Schema, ...], *, versions: list[dict] | None = None,
            total_tasks: int | None = None) -> dict[str, Any]:
    """Stats of a labelled set (see the module docstring); `versions`: [{version, trained_at, n_labels,
    snapshot_annotations}], `total_tasks`: the project's task count when known."""
    from suggest.project import resolve_labels

    first = schemas[0].from_name
    per_control: dict[str, list[Label]] = defaultdict(list)
    for lb in labels:
        per_control[lb.control or first].append(lb)
    controls: dict[str, Any] = {}
    ready_any: set[int] = set()
    for schema in schemas:
        mine = per_control.get(schema.from_name, [])
        kind = kind_of(schema)
        resolved = resolve_labels(mine)
        ready = {t: lb for t, lb in resolved.items()
                 if kind_of_answer(lb.label) is kind and kind.within(lb.label, schema.labels)}
        ready_any |= set(ready)
        counts: Counter[str] = Counter()
        for lb in ready.values():
            if schema.task_kind == "classification":
                counts[lb.label] += 1  # type: ignore[index]
            else:
                counts.update(set(kind.label_names(lb.label)))  # tasks using each label
        by_task: dict[int, set] = defaultdict(set)
        annotators: dict[int, set] = defaultdict(set)
        for lb in mine:
            by_task[lb.task_id].add(lb.label)
            annotators[lb.task_id].add(lb.annotator if lb.annotator is not None else -lb.annotation_id)
        shared = [t for t, who in annotators.items() if len(who) >= 2]
        controls[schema.from_name] = {
            "kind": schema.task_kind,
            "ready": len(ready),
            "per_label": {name: counts.get(name, 0) for name in schema.labels},
            "annotated_tasks": len(by_task),
            "not_ready": len(by_task) - len(ready),
            "shared_tasks": len(shared),
            "disagreements": sum(1 for t in shared if len(by_task[t]) > 1),
        }
    tasks = {lb.task_id for lb in labels}
    per_annotator: dict[str, dict[str, int]] = {}
    ann_by: dict[str, set] = defaultdict(set)
    task_by: dict[str, set] = defaultdict(set)
    for lb in labels:
        who = str(lb.annotator) if lb.annotator is not None else "unknown"
        ann_by[who].add(lb.annotation_id)
        task_by[who].add(lb.task_id)
    for who in sorted(ann_by, key=lambda w: (-len(ann_by[w]), w)):
        per_annotator[who] = {"annotations": len(ann_by[who]), "tasks": len(task_by[who])}
    return {
        "annotations": len({lb.annotation_id for lb in labels}),
        "labeled_tasks": len(tasks),
        "ready_tasks": len(ready_any),
        "unlabeled_tasks": None if total_tasks is None else max(total_tasks - len(tasks), 0),
        "total_tasks": total_tasks,
        "controls": controls,
        "annotators": per_annotator,
        "versions": versions or [],
    }


def project_stats(store: Any, project_id: str, schemas: tuple[Schema, ...]) -> dict[str, Any]:
    """`compute` for a stored project, with its versions and their snapshots; unlabelled tasks from the
    store's task list (issue 17: tasks Label Studio holds with no annotation), unknown before one is kept."""
    snaps = store.version_snapshots(project_id)
    versions = []
    for v in store.versions(project_id):
        seq = snaps.get(v.version)
        n = None if seq is None else len({lb.annotation_id for lb in store.labels_at(project_id, seq)})
        versions.append({"version": v.version, "trained_at": v.trained_at, "n_labels": v.n_labels,
                         "snapshot_annotations": n})
    total = store.task_count(project_id) or None
    out = {"project": project_id, **compute(store.labels(project_id), schemas, versions=versions, total_tasks=total)}
    if total is not None:
        out["unlabeled_tasks"] = len(store.unlabeled_task_ids(project_id))
    return out


def table_lines(stats: dict[str, Any]) -> list[str]:
    """A plain-text summary, the head of the `table` format."""
    left = stats["unlabeled_tasks"]
    return [f"project {stats.get('project', '')}: {stats['ready_tasks']} task(s) ready for training, "
            f"{stats['labeled_tasks']} labelled, {stats['annotations']} annotation(s), unlabelled left: "
            f"{'unknown (the store has no task list)' if left is None else left}"]


__all__ = ["compute", "project_stats", "table_lines"]
