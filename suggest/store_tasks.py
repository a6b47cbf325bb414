"""Task list (issue 17): the tasks Label Studio holds, what was last pushed to each, incremental sync state.

A mixin of `suggest.store.Store`: its tables are created by SCHEMA_SQL when the store opens, and its
methods use the store's connections (`self._tx()`, `self._query()`), so SQL stays in the store.

- `ls_tasks`: one row per task of a Label Studio project: its `data` (JSON, so the pool is read
  from here and not from an export per version), whether Label Studio listed it with annotations,
  and the version, queue score and Label Studio id of the prediction suggest last pushed for it (NULL:
  none; the id is known only for rows written one per call, which a later version then overwrites).
- `ls_task_sync`: per project, the highest task id listed (the incremental listing asks only for
  newer ones) and when the list was last reconciled with Label Studio for deletions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

IN_CHUNK = 500  # ids per `IN (...)` query: well under SQLite's limit on bound parameters


def in_chunks(values: Sequence) -> Iterator[tuple[list, str]]:
    """`values` IN_CHUNK at a time, each chunk with its `?,?,...` placeholders."""
    for start in range(0, len(values), IN_CHUNK):
        chunk = list(values[start : start + IN_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS ls_tasks (
    project_id     TEXT NOT NULL,
    task_id        INTEGER NOT NULL,
    data           TEXT NOT NULL,
    labeled        INTEGER NOT NULL DEFAULT 0,
    pushed_version TEXT,
    pushed_score   REAL,
    pushed_prediction INTEGER,
    PRIMARY KEY (project_id, task_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ls_tasks_pushed ON ls_tasks (project_id, pushed_version);
CREATE TABLE IF NOT EXISTS ls_task_sync (
    project_id    TEXT PRIMARY KEY,
    max_task_id   INTEGER NOT NULL DEFAULT 0,
    listed_at     REAL,
    reconciled_at REAL
);
"""


@dataclass(frozen=True)
class TaskSyncState:
    """Where a project's incremental listing stands."""

    max_task_id: int = 0
    listed_at: float | None = None
    reconciled_at: float | None = None


class TaskListStore:
    """Methods on `Store` for this part; see the module docstring."""

    def _migrate_tasks(self) -> None:
        """Bring an older store's tables for this part up to date (idempotent): the pushed row's id."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(ls_tasks)")}
        if "pushed_prediction" not in columns:
            self._db.execute("ALTER TABLE ls_tasks ADD COLUMN pushed_prediction INTEGER")

    # the task list ----------------------------------------------------------------------------

    def put_tasks(self, project_id: str, tasks: Iterable[tuple[int, dict, bool]]) -> int:
        """Insert or refresh tasks (id, data, labeled); what was pushed to a known task is kept."""
        rows = [(project_id, int(t), json.dumps(data, separators=(",", ":")), int(bool(labeled)))
                for t, data, labeled in tasks]
        if not rows:
            return 0
        with self._tx() as db:
            db.executemany(
                "INSERT INTO ls_tasks (project_id, task_id, data, labeled) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (project_id, task_id) DO UPDATE SET data = excluded.data, labeled = excluded.labeled",
                rows)
            top = max(r[1] for r in rows)
            db.execute(
                "INSERT INTO ls_task_sync (project_id, max_task_id) VALUES (?, ?) ON CONFLICT (project_id) "
                "DO UPDATE SET max_task_id = MAX(max_task_id, excluded.max_task_id)", (project_id, top))
        return len(rows)

    def delete_tasks(self, project_id: str, task_ids: Iterable[int]) -> int:
        """Forget tasks Label Studio no longer holds (TASKS_DELETED, or found missing by a reconcile)."""
        ids = [(project_id, int(t)) for t in task_ids]
        if not ids:
            return 0
        with self._tx() as db:
            before = db.total_changes
            db.executemany("DELETE FROM ls_tasks WHERE project_id = ? AND task_id = ?", ids)
            return db.total_changes - before

    def task_ids(self, project_id: str) -> list[int]:
        return [r[0] for r in self._query(
            "SELECT task_id FROM ls_tasks WHERE project_id = ? ORDER BY task_id", (project_id,))]

    def task_count(self, project_id: str) -> int:
        return int(self._query("SELECT COUNT(*) FROM ls_tasks WHERE project_id = ?", (project_id,))[0][0])

    def unlabeled_tasks(self, project_id: str) -> list[tuple[int, dict]]:
        """(id, data) of every listed task with no annotation: not listed as labelled, and no stored label."""
        rows = self._query(
            "SELECT t.task_id, t.data FROM ls_tasks t WHERE t.project_id = ? AND t.labeled = 0 AND NOT EXISTS "
            "(SELECT 1 FROM annotations a WHERE a.project_id = t.project_id AND a.task_id = t.task_id) "
            "ORDER BY t.task_id", (project_id,))
        return [(int(t), json.loads(d)) for t, d in rows]

    def task_data(self, project_id: str, task_ids: Iterable[int]) -> dict[int, dict]:
        """The listed data of some tasks (the dashboard's queue shows what each next task holds)."""
        ids = sorted({int(t) for t in task_ids})
        out: dict[int, dict] = {}
        for chunk, marks in in_chunks(ids):
            rows = self._query(  # type: ignore[attr-defined]
                f"SELECT task_id, data FROM ls_tasks WHERE project_id = ? AND task_id IN ({marks})",
                (project_id, *chunk))
            out.update((int(t), json.loads(d)) for t, d in rows)
        return out

    def unlabeled_task_ids(self, project_id: str) -> list[int]:
        return [int(r[0]) for r in self._query(
            "SELECT t.task_id FROM ls_tasks t WHERE t.project_id = ? AND t.labeled = 0 AND NOT EXISTS "
            "(SELECT 1 FROM annotations a WHERE a.project_id = t.project_id AND a.task_id = t.task_id)",
            (project_id,))]

    def mark_labeled(self, project_id: str, task_ids: Iterable[int], labeled: bool = True) -> None:
        ids = [(int(labeled), project_id, int(t)) for t in task_ids]
        if ids:
            with self._tx() as db:
                db.executemany("UPDATE ls_tasks SET labeled = ? WHERE project_id = ? AND task_id = ?", ids)

    # what was pushed --------------------------------------------------------------------------

    def set_pushed(self, project_id: str, version: str, scores: dict[int, float],
                   ids: dict[int, int] | None = None) -> None:
        """Record that tasks now hold a prediction of `version` with these queue scores, and its Label Studio
        id where known (`ids`; a task left out there gets none: its row is not ours to overwrite)."""
        ids = ids or {}
        rows = [(version, float(s), ids.get(t), project_id, int(t)) for t, s in scores.items()]
        if rows:
            with self._tx() as db:
                db.executemany("UPDATE ls_tasks SET pushed_version = ?, pushed_score = ?, pushed_prediction = ? "
                               "WHERE project_id = ? AND task_id = ?", rows)

    def pushed(self, project_id: str, version: str) -> dict[int, float]:
        """Tasks holding a prediction of `version` that suggest pushed, with their queue scores."""
        return {int(t): float(s) for t, s in self._query(
            "SELECT task_id, pushed_score FROM ls_tasks WHERE project_id = ? AND pushed_version = ?",
            (project_id, version))}

    def pushed_versions(self, project_id: str, task_ids: list[int]) -> dict[int, str]:
        """The version suggest last pushed to each of these tasks (tasks with none are left out)."""
        return {int(t): v for t, v in self._pushed_rows(project_id, task_ids, "pushed_version")}

    def pushed_predictions(self, project_id: str, task_ids: list[int]) -> dict[int, tuple[str, int]]:
        """Tasks whose last pushed prediction has a known Label Studio id: task -> (version, id)."""
        return {int(t): (v, int(i)) for t, v, i in self._pushed_rows(project_id, task_ids, "pushed_prediction")}

    def forget_predictions(self, project_id: str, *, ids: Iterable[int] = (), tasks: Iterable[int] = ()) -> None:
        """Label Studio rows that are deleted (`ids`), or every row of `tasks` (a Data Manager delete): a task whose
        last pushed row is gone has none to overwrite, so its next row is created, not first PATCHed into a 404
        (one wasted call each, several per version at 10,000 tasks), and holds no version of suggest's, so a
        new head does not clear it first (a Data Manager delete of nothing, ~0.1-0.4 s of Label Studio each)."""
        for column, values in (("pushed_prediction", ids), ("task_id", tasks)):
            values = sorted({int(v) for v in values})
            if not values:
                continue
            with self._tx() as db:
                for chunk, marks in in_chunks(values):
                    db.execute("UPDATE ls_tasks SET pushed_prediction = NULL, pushed_version = NULL, pushed_score "
                               f"= NULL WHERE project_id = ? AND {column} IN ({marks})", (project_id, *chunk))

    def spare_predictions(self, project_id: str, versions: Iterable[str]) -> list[tuple[int, int, bool]]:
        """Every known row of superseded `versions`: (task, Label Studio id, labelled). Why: a new version's row
        for another task can take such a row over in place (`HeadPusher._take_spares`), so it never needs a
        delete. As many as the predictions table holds of suggest's superseded rows (bounded by the same)."""
        versions = sorted(set(versions))
        if not versions:
            return []
        marks = ",".join("?" * len(versions))
        rows = self._query(
            "SELECT t.task_id, t.pushed_prediction, (t.labeled = 1 OR EXISTS (SELECT 1 FROM annotations a "
            "WHERE a.project_id = t.project_id AND a.task_id = t.task_id)) FROM ls_tasks t "
            f"WHERE t.project_id = ? AND t.pushed_version IN ({marks}) AND t.pushed_prediction IS NOT NULL",
            (project_id, *versions))
        return [(int(t), int(i), bool(d)) for t, i, d in rows]

    def spare_count(self, project_id: str, versions: Iterable[str]) -> int:
        """How many known rows of superseded `versions` Label Studio holds (the backlog a head has not taken over)."""
        versions = sorted(set(versions))
        if not versions:
            return 0
        marks = ",".join("?" * len(versions))
        return int(self._query(
            f"SELECT COUNT(*) FROM ls_tasks WHERE project_id = ? AND pushed_version IN ({marks}) "
            "AND pushed_prediction IS NOT NULL", (project_id, *versions))[0][0])

    def move_pushed(self, project_id: str, moves: dict[int, int]) -> None:
        """Rows taken over from other tasks (`moves`: from-task -> to-task, recorded by `set_pushed` for the
        to-task): the from-tasks hold nothing of suggest's now."""
        rows = [(project_id, int(t)) for t in moves]
        if rows:
            with self._tx() as db:
                db.executemany("UPDATE ls_tasks SET pushed_version = NULL, pushed_score = NULL, "
                               "pushed_prediction = NULL WHERE project_id = ? AND task_id = ?", rows)

    def _pushed_rows(self, project_id: str, task_ids: list[int], known: str) -> list[tuple]:
        """(task, version[, id]) of these tasks where column `known` is set, 500 ids per query."""
        assert known in ("pushed_version", "pushed_prediction")  # a column name, never a caller's text
        columns = "task_id, pushed_version" + (", pushed_prediction" if known == "pushed_prediction" else "")
        rows: list[tuple] = []
        for chunk, marks in in_chunks([int(t) for t in task_ids]):
            rows += self._query(f"SELECT {columns} FROM ls_tasks WHERE project_id = ? AND task_id IN ({marks}) "
                                f"AND {known} IS NOT NULL", (project_id, *chunk))
        return rows

    def unlabeled_pushed(self, project_id: str, version: str) -> list[int]:
        """Head tasks of `version` still waiting for an annotation (what keeps Label Studio off random)."""
        return [int(r[0]) for r in self._query(
            "SELECT t.task_id FROM ls_tasks t WHERE t.project_id = ? AND t.pushed_version = ? AND t.labeled = 0 "
            "AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.project_id = t.project_id AND a.task_id = t.task_id)",
            (project_id, version))]

    # sync state -------------------------------------------------------------------------------

    def task_sync_state(self, project_id: str) -> TaskSyncState:
        rows = self._query("SELECT max_task_id, listed_at, reconciled_at FROM ls_task_sync WHERE project_id = ?",
                           (project_id,))
        return TaskSyncState(*rows[0]) if rows else TaskSyncState()

    def note_task_sync(self, project_id: str, *, listed: bool = False, reconciled: bool = False) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO ls_task_sync (project_id) VALUES (?) ON CONFLICT (project_id) DO NOTHING",
                       (project_id,))
            if listed:
                db.execute("UPDATE ls_task_sync SET listed_at = ? WHERE project_id = ?", (now, project_id))
            if reconciled:
                db.execute("UPDATE ls_task_sync SET reconciled_at = ? WHERE project_id = ?", (now, project_id))

    def forget_task_list(self, project_id: str) -> None:
        """Drop a project's task list and sync state (the next sync lists every task again)."""
        with self._tx() as db:
            db.execute("DELETE FROM ls_tasks WHERE project_id = ?", (project_id,))
            db.execute("DELETE FROM ls_task_sync WHERE project_id = ?", (project_id,))
