"""What the live path records for standing: the suggestion each task showed, the audit slice, the stop set.

Called from the loop's ranking (every task ranked, with the audit slice drawn into the batch) and from
/predict (tasks Label Studio asked for); both are cheap inserts into the store, and a failure here is
logged and never fails a push or a request.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np

from suggest.project import Project, task_id_of
from suggest.schema import Item, Prediction, Schema
from suggest.standing.stopping import STOP_SET_SIZE

log = logging.getLogger(__name__)


def standing_control(project: Project) -> Schema | None:
    """The control standing is computed for: the first single-choice control (None: the project has none)."""
    return next((s for s in project.schemas if s.task_kind == "classification"), None)


def _pick(preds: Sequence[Prediction], schema: Schema, first: str) -> Prediction | None:
    for p in preds:
        if (p.control or first) == schema.from_name and isinstance(p.label, str) and p.label:
            return p
    return None


def _records(project: Project, schema: Schema, rows: list[dict[str, Item]], preds: list[list[Prediction]],
             skip: Sequence[bool]) -> list[tuple]:
    """(task_id, control, version, label, probability) of each row's suggestion for the standing control."""
    first = project.schema.from_name
    out = []
    for row, p, done in zip(rows, preds, skip, strict=True):
        t, got = task_id_of(row), _pick(p, schema, first)
        if t is not None and got is not None and not done:
            out.append((t, schema.from_name, got.model_version, got.label, float(got.probability)))
    return out


def record_ranked(project: Project, rows: list[dict[str, Item]], preds: list[list[Prediction]],
                  audit: dict[int, float] | None = None) -> None:
    """Record the suggestion of every ranked (unlabeled) task, the audit slice's weights, and draw the stop
    set once from this pool. Never raises."""
    try:
        schema = standing_control(project)
        if schema is None:
            return
        out = _records(project, schema, rows, preds, [False] * len(rows))
        project.store.record_suggestions(project.project_id, out, audit)
        if not project.store.stop_set(project.project_id):
            draw_stop_set(project, rows, schema)
    except Exception:
        log.exception("project %s: recording suggestions for standing failed", project.project_id)


def record_served(project: Project, rows: list[dict[str, Item]], preds: list[list[Prediction]],
                  annotated: Sequence[bool]) -> None:
    """/predict: record what Label Studio was given for tasks nobody has annotated yet. Never raises."""
    try:
        schema = standing_control(project)
        if schema is None:
            return
        out = _records(project, schema, rows, preds, annotated)
        if out:
            project.store.record_suggestions(project.project_id, out)
    except Exception:
        log.exception("project %s: recording served suggestions failed", project.project_id)


def draw_stop_set(project: Project, rows: list[dict[str, Item]], schema: Schema, size: int = STOP_SET_SIZE) -> int:
    """A uniform sample of the pool, drawn once and stored: the fixed set successive versions are compared on."""
    usable = [(task_id_of(r), r[schema.from_name].text) for r in rows if schema.from_name in r]
    usable = [(t, x) for t, x in usable if t is not None]
    if not usable:
        return 0
    rng = np.random.default_rng(zlib.crc32(project.project_id.encode()))
    pick = rng.choice(len(usable), min(size, len(usable)), replace=False)
    project.store.put_stop_set(project.project_id, [usable[i] for i in sorted(pick)])
    return len(pick)


__all__ = ["draw_stop_set", "record_ranked", "record_served", "standing_control"]
