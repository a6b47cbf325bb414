"""Standing (issue 14): served suggestions, audit slice, stop set, per-version estimates, autolabel runs.

A mixin of `suggest.store.Store`: its tables are created by SCHEMA_SQL when the store opens, and its
methods use the store's connections (`self._tx()`, `self._query()`), so SQL stays in the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS standing_suggestions (
    project_id   TEXT NOT NULL,
    task_id      INTEGER NOT NULL,
    control      TEXT NOT NULL,
    version      TEXT NOT NULL,
    label        TEXT NOT NULL,
    probability  REAL NOT NULL,
    shown_at     REAL NOT NULL,
    first_seen   REAL NOT NULL,
    audit_weight REAL,
    audit_at     REAL,
    PRIMARY KEY (project_id, task_id, control)
);
CREATE TABLE IF NOT EXISTS standing_stop_set (
    project_id TEXT NOT NULL,
    position   INTEGER NOT NULL,
    task_id    INTEGER NOT NULL,
    text       TEXT NOT NULL,
    PRIMARY KEY (project_id, position)
);
CREATE TABLE IF NOT EXISTS standing_versions (
    project_id  TEXT NOT NULL,
    version     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    n_labels    INTEGER NOT NULL,
    computed_at REAL NOT NULL,
    stop_labels TEXT NOT NULL DEFAULT '[]',
    report      TEXT NOT NULL,
    PRIMARY KEY (project_id, version)
);
CREATE TABLE IF NOT EXISTS standing_validation (
    project_id TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    items      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS autolabel_runs (
    project_id TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    created_at REAL NOT NULL,
    version    TEXT NOT NULL,
    info       TEXT NOT NULL,
    undone_at  REAL,
    PRIMARY KEY (project_id, run_id)
);
CREATE TABLE IF NOT EXISTS autolabel_annotations (
    project_id    TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    task_id       INTEGER NOT NULL,
    annotation_id INTEGER NOT NULL,
    label         TEXT NOT NULL,
    PRIMARY KEY (project_id, annotation_id)
);
"""


class StandingStore:
    """Methods on `Store` for this part; see the module docstring."""

    def _migrate_standing(self) -> None:
        """Bring an older store's tables for this part up to date (idempotent; nothing by default)."""

    # suggestions shown ------------------------------------------------------------------------

    def record_suggestions(self, project_id: str, rows: Iterable[tuple[int, str, str, str, float]],
                           audit: dict[int, float] | None = None, at: float | None = None) -> int:
        """(task_id, control, version, label, probability) of suggestions just served or pushed. The latest
        suggestion per task and control is kept; `first_seen` is the first time a task was seen. `audit`:
        task id -> weight (pool size / audit draws) for the tasks of the audit slice; a task stays audited."""
        at = time.time() if at is None else at
        audit = audit or {}
        params = [(project_id, int(t), c, v, lab, float(p), at, at, audit.get(int(t)), at if int(t) in audit else None)
                  for t, c, v, lab, p in rows]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO standing_suggestions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(project_id, task_id, control) DO UPDATE SET version=excluded.version, "
                "label=excluded.label, probability=excluded.probability, shown_at=excluded.shown_at, "
                "audit_weight=COALESCE(standing_suggestions.audit_weight, excluded.audit_weight), "
                "audit_at=COALESCE(standing_suggestions.audit_at, excluded.audit_at)", params)
        return len(params)

    def suggestions(self, project_id: str, control: str | None = None) -> list[dict]:
        """Every recorded suggestion of a project (one per task and control)."""
        sql = ("SELECT task_id, control, version, label, probability, shown_at, first_seen, audit_weight, audit_at "
               "FROM standing_suggestions WHERE project_id = ?")
        params: list = [project_id]
        if control is not None:
            sql += " AND control = ?"
            params.append(control)
        keys = ("task_id", "control", "version", "label", "probability", "shown_at", "first_seen", "audit_weight",
                "audit_at")
        return [dict(zip(keys, row, strict=True)) for row in self._query(sql + " ORDER BY task_id", params)]

    # stop set ---------------------------------------------------------------------------------

    def stop_set(self, project_id: str) -> list[tuple[int, str]]:
        """(task_id, text) of the project's stop set, in its fixed order; empty before it is drawn."""
        return [(int(t), x) for t, x in self._query(
            "SELECT task_id, text FROM standing_stop_set WHERE project_id = ? ORDER BY position", (project_id,))]

    def put_stop_set(self, project_id: str, rows: list[tuple[int, str]]) -> bool:
        """Store the stop set once; False (nothing written) when the project has one."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM standing_stop_set WHERE project_id = ? LIMIT 1", (project_id,)).fetchone():
                return False
            db.executemany("INSERT INTO standing_stop_set VALUES (?, ?, ?, ?)",
                           [(project_id, i, int(t), x) for i, (t, x) in enumerate(rows)])
        return True

    # per-version standing ---------------------------------------------------------------------

    def put_standing(self, project_id: str, version: str, seq: int, n_labels: int, stop_labels: list,
                     report: dict) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO standing_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (project_id, version, seq, n_labels, time.time(), json.dumps(stop_labels),
                        json.dumps(report, ensure_ascii=False)))

    def standing_history(self, project_id: str) -> list[dict]:
        """Per version, oldest first: version, seq, n_labels, computed_at, stop_labels, report."""
        rows = self._query("SELECT version, seq, n_labels, computed_at, stop_labels, report FROM standing_versions "
                           "WHERE project_id = ? ORDER BY seq", (project_id,))
        return [{"version": v, "seq": s, "n_labels": n, "computed_at": at, "stop_labels": json.loads(stop),
                 "report": json.loads(rep)} for v, s, n, at, stop, rep in rows]

    def standing_stamp(self, project_id: str) -> tuple | None:
        """(version, computed_at) of the newest standing report: a cache key for readers."""
        rows = self._query("SELECT version, computed_at FROM standing_versions WHERE project_id = ? "
                           "ORDER BY seq DESC, computed_at DESC LIMIT 1", (project_id,))
        return tuple(rows[0]) if rows else None

    def standing(self, project_id: str) -> dict | None:
        """The newest standing report (without the stop-set labels), or None before one."""
        rows = self._query("SELECT version, computed_at, report FROM standing_versions WHERE project_id = ? "
                           "ORDER BY seq DESC, computed_at DESC LIMIT 1", (project_id,))
        if not rows:
            return None
        version, at, report = rows[0]
        return {**json.loads(report), "version": version,
                "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))}

    def put_validation(self, project_id: str, version: str, items: list) -> None:
        """[task_id, predicted, confidence, correct, source] of the newest version's validation items."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO standing_validation VALUES (?, ?, ?)",
                       (project_id, version, json.dumps(items)))

    def validation(self, project_id: str) -> tuple[str, list] | None:
        rows = self._query("SELECT version, items FROM standing_validation WHERE project_id = ?", (project_id,))
        return (rows[0][0], json.loads(rows[0][1])) if rows else None

    def quality_stamp(self, project_id: str) -> tuple | None:
        """(version, computed_at) of the stored quality report, without reading the report: a cache key."""
        rows = self._query("SELECT version, computed_at FROM quality WHERE project_id = ?", (project_id,))
        return tuple(rows[0]) if rows else None

    # autolabel runs ---------------------------------------------------------------------------

    def put_autolabel_run(self, project_id: str, run_id: str, version: str, info: dict) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO autolabel_runs VALUES (?, ?, ?, ?, ?, NULL)",
                       (project_id, run_id, time.time(), version, json.dumps(info)))

    def add_autolabel_annotations(self, project_id: str, run_id: str, rows: Iterable[tuple[int, int, str]]) -> None:
        """(task_id, annotation_id, label) created in Label Studio by a run, recorded as each is created."""
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO autolabel_annotations VALUES (?, ?, ?, ?, ?)",
                           [(project_id, run_id, int(t), int(a), lab) for t, a, lab in rows])

    def autolabel_runs(self, project_id: str) -> list[dict]:
        rows = self._query(
            "SELECT r.run_id, r.created_at, r.version, r.info, r.undone_at, "
            "(SELECT COUNT(*) FROM autolabel_annotations a WHERE a.project_id = r.project_id AND a.run_id = r.run_id) "
            "FROM autolabel_runs r WHERE r.project_id = ? ORDER BY r.created_at", (project_id,))
        return [{"run_id": r, "created_at": at, "version": v, "info": json.loads(info), "undone_at": undone,
                 "annotations": int(n)} for r, at, v, info, undone, n in rows]

    def autolabel_annotations(self, project_id: str, run_id: str | None = None) -> list[tuple[int, int, str, str]]:
        """(task_id, annotation_id, label, run_id) of autolabel annotations still held (one run, or all)."""
        sql = "SELECT task_id, annotation_id, label, run_id FROM autolabel_annotations WHERE project_id = ?"
        params: list = [project_id]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        return [(int(t), int(a), lab, r) for t, a, lab, r in self._query(sql + " ORDER BY task_id", params)]

    def remove_autolabel_annotations(self, project_id: str, annotation_ids: Iterable[int]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM autolabel_annotations WHERE project_id = ? AND annotation_id = ?",
                           [(project_id, int(a)) for a in annotation_ids])

    def mark_autolabel_undone(self, project_id: str, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE autolabel_runs SET undone_at = ? WHERE project_id = ? AND run_id = ?",
                       (time.time(), project_id, run_id))
