"""Annotation history (issue 18): append-only annotation events and the snapshot each version trained on.

A mixin of `suggest.store.Store`: its tables are created by SCHEMA_SQL when the store opens, and its
methods use the store's connections (`self._tx()`, `self._query()`), so SQL stays in the store.

Every change to the `annotations` table (an upsert that changes a row, a deletion, a reconciliation
with Label Studio) appends one event per annotation to `annotation_history`, in the same transaction;
nothing there is ever updated or deleted. An event holds the whole row as it became (`op` "put") or
says the annotation went away (`op` "delete"). The state of a project at history position `seq` is,
per annotation, its last event at or before `seq`, if that event is a "put". A published version pins
the position its labels were read at (`version_snapshots`), so the exact annotations it trained on
(which answer, by whom, when) can be rebuilt later, whatever was edited or deleted since.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable

from suggest.kinds import KINDS
from suggest.schema import Label

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS annotation_history (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id    TEXT NOT NULL,
    annotation_id INTEGER NOT NULL,
    op            TEXT NOT NULL,  -- 'put' (the row as it became), 'delete', 'seed' (a put from before history)
    task_id       INTEGER,
    label         TEXT,
    text          TEXT,
    ground_truth  INTEGER,
    updated_at    TEXT,
    answers       TEXT,
    annotator     INTEGER,
    created_at    TEXT,
    lead_time     REAL,
    recorded_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS annotation_history_ann ON annotation_history (project_id, annotation_id, seq);
CREATE TABLE IF NOT EXISTS version_snapshots (
    project_id  TEXT NOT NULL,
    version     TEXT NOT NULL,
    history_seq INTEGER NOT NULL,
    PRIMARY KEY (project_id, version)
);
"""

# the columns of `annotations` an event copies, in this order
_COLUMNS = ("task_id", "label", "text", "ground_truth", "updated_at", "answers", "annotator", "created_at",
            "lead_time")
_COLS = ", ".join(_COLUMNS)


class SnapshotUnavailable(LookupError):
    """A version whose training snapshot cannot be rebuilt (unknown, or published before history was kept)."""


class HistoryStore:
    """Methods on `Store` for this part; see the module docstring."""

    def _migrate_history(self) -> None:
        """Seed the history with every stored annotation it does not know yet (stores from before issue 18):
        one 'seed' event per such annotation, carrying its row as it is, so nothing is lost. Idempotent."""
        with self._tx() as db:  # type: ignore[attr-defined]
            cur = db.execute(
                f"INSERT INTO annotation_history (project_id, annotation_id, op, {_COLS}, recorded_at) "
                f"SELECT a.project_id, a.annotation_id, 'seed', {', '.join('a.' + c for c in _COLUMNS)}, ? "
                "FROM annotations a WHERE NOT EXISTS (SELECT 1 FROM annotation_history h "
                "WHERE h.project_id = a.project_id AND h.annotation_id = a.annotation_id) "
                "ORDER BY a.project_id, a.annotation_id",
                (time.time(),),
            )
            if cur.rowcount and cur.rowcount > 0:
                import logging

                logging.getLogger(__name__).info(
                    "store: seeded the annotation history with %d stored annotation(s)", cur.rowcount)

    # writing (called inside the store's own write transactions) ------------------------------

    def _history_before_upsert(self, db: sqlite3.Connection, project_id: str, rows: list[tuple]) -> None:
        """Append a 'put' for each of `rows` (annotations rows as store._rows makes them) that is new or
        differs from the stored row; an identical row (an event received twice) appends nothing."""
        if not rows:
            return
        current = self._current_rows(db, project_id, [r[1] for r in rows])
        now = time.time()
        events = [(project_id, r[1], "put", *r[2:], now) for r in rows if current.get(r[1]) != tuple(r[2:])]
        _append(db, events)

    def _history_before_delete(self, db: sqlite3.Connection, project_id: str, annotation_ids: Iterable[int]) -> None:
        """Append a 'delete' for each of these annotations that is stored now."""
        ids = sorted({int(a) for a in annotation_ids})
        present = self._current_rows(db, project_id, ids)
        now = time.time()
        _append(db, [(project_id, a, "delete", *([None] * len(_COLUMNS)), now) for a in ids if a in present])

    def _history_before_delete_tasks(self, db: sqlite3.Connection, project_id: str, task_ids: Iterable[int]) -> None:
        tasks = sorted({int(t) for t in task_ids})
        ids: list[int] = []
        for i in range(0, len(tasks), 500):
            chunk = tasks[i:i + 500]
            ids += [a for (a,) in db.execute(
                f"SELECT annotation_id FROM annotations WHERE project_id = ? AND task_id IN "
                f"({','.join('?' * len(chunk))})", (project_id, *chunk))]
        self._history_before_delete(db, project_id, ids)

    def _history_before_replace(self, db: sqlite3.Connection, project_id: str, rows: list[tuple]) -> None:
        """Reconciliation: deletes for stored annotations not in `rows`, puts for new or changed ones."""
        current = {r[0]: tuple(r[1:]) for r in db.execute(
            f"SELECT annotation_id, {_COLS} FROM annotations WHERE project_id = ?", (project_id,))}
        keep = {r[1] for r in rows}
        now = time.time()
        events = [(project_id, a, "delete", *([None] * len(_COLUMNS)), now) for a in sorted(current) if a not in keep]
        events += [(project_id, r[1], "put", *r[2:], now) for r in rows if current.get(r[1]) != tuple(r[2:])]
        _append(db, events)

    def _pin_snapshot(self, db: sqlite3.Connection, project_id: str, version: str, history_seq: int | None) -> None:
        """Pin a version to a history position (None: the position now)."""
        if history_seq is None:
            history_seq = _head(db, project_id)
        db.execute("INSERT OR REPLACE INTO version_snapshots VALUES (?, ?, ?)", (project_id, version, int(history_seq)))

    @staticmethod
    def _current_rows(db: sqlite3.Connection, project_id: str, ids: list[int]) -> dict[int, tuple]:
        out: dict[int, tuple] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for row in db.execute(
                f"SELECT annotation_id, {_COLS} FROM annotations WHERE project_id = ? AND annotation_id IN "
                f"({','.join('?' * len(chunk))})", (project_id, *chunk)):
                out[row[0]] = tuple(row[1:])
        return out

    # reading ----------------------------------------------------------------------------------

    def history_head(self, project_id: str) -> int:
        """The project's latest history position (0 before any event)."""
        with self._pinned_read() as db:  # type: ignore[attr-defined]
            return _head(db, project_id)

    def labels_with_head(self, project_id: str) -> tuple[list[Label], int]:
        """The stored annotations and the history position they are at, read together (what a retrain pins)."""
        with self._pinned_read() as db:  # type: ignore[attr-defined]
            return self.labels(project_id), _head(db, project_id)  # type: ignore[attr-defined]

    def history(self, project_id: str) -> list[dict]:
        """Every event of a project, oldest first: seq, annotation_id, op, task_id, answers (JSON), who, when."""
        rows = self._query(  # type: ignore[attr-defined]
            "SELECT seq, annotation_id, op, task_id, answers, annotator, updated_at, recorded_at "
            "FROM annotation_history WHERE project_id = ? ORDER BY seq", (project_id,))
        return [{"seq": s, "annotation_id": a, "op": op, "task_id": t,
                 "answers": json.loads(ans) if ans else None, "annotator": who, "updated_at": up,
                 "recorded_at": at} for s, a, op, t, ans, who, up, at in rows]

    def snapshot_seq(self, project_id: str, version: str) -> int:
        """The history position a version was pinned to; SnapshotUnavailable names why there is none."""
        rows = self._query("SELECT history_seq FROM version_snapshots WHERE project_id = ? AND version = ?",  # type: ignore[attr-defined]
                           (project_id, version))
        if rows:
            return int(rows[0][0])
        known = [v.version for v in self.versions(project_id)]  # type: ignore[attr-defined]
        if version not in known:
            shown = ", ".join(known[-10:]) or "none yet"
            raise SnapshotUnavailable(f"project {project_id} has no version {version!r} (versions: {shown})")
        raise SnapshotUnavailable(f"version {version!r} was published before annotation history was kept; "
                                  "what it trained on cannot be rebuilt")

    def labels_at(self, project_id: str, history_seq: int) -> list[Label]:
        """The annotations as they stood at a history position, one Label per (annotation, control)."""
        rows = self._query(  # type: ignore[attr-defined]
            "SELECT h.task_id, h.annotation_id, h.ground_truth, h.updated_at, h.answers, h.annotator, h.created_at, "
            "h.lead_time FROM annotation_history h JOIN (SELECT annotation_id, MAX(seq) AS last "
            "FROM annotation_history WHERE project_id = ? AND seq <= ? GROUP BY annotation_id) m "
            "ON h.seq = m.last WHERE h.op != 'delete' ORDER BY h.annotation_id",
            (project_id, int(history_seq)),
        )
        return _labels(rows)

    def labels_of_version(self, project_id: str, version: str) -> list[Label]:
        """Exactly the annotations a version trained on (its pinned snapshot)."""
        return self.labels_at(project_id, self.snapshot_seq(project_id, version))

    def version_snapshots(self, project_id: str) -> dict[str, int]:
        """version -> pinned history position, for every pinned version of a project."""
        return {v: int(s) for v, s in self._query(  # type: ignore[attr-defined]
            "SELECT version, history_seq FROM version_snapshots WHERE project_id = ?", (project_id,))}


def _head(db: sqlite3.Connection, project_id: str) -> int:
    ((seq,),) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM annotation_history WHERE project_id = ?",
                           (project_id,)).fetchall()
    return int(seq)


def _append(db: sqlite3.Connection, events: list[tuple]) -> None:
    if events:
        db.executemany(
            f"INSERT INTO annotation_history (project_id, annotation_id, op, {_COLS}, recorded_at) "
            f"VALUES ({', '.join('?' * (len(_COLUMNS) + 4))})", events)


def _labels(rows: list[tuple]) -> list[Label]:
    out: list[Label] = []
    for t, a, gt, up, answers, who, created, lead in rows:
        for control, entry in json.loads(answers).items():
            value = KINDS[entry["kind"]].decode(entry["value"])
            out.append(Label(t, a, value, entry["text"], bool(gt), up or "", control, who, created or "", lead))
    return out


__all__ = ["SCHEMA_SQL", "HistoryStore", "SnapshotUnavailable"]
