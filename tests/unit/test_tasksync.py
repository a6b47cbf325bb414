"""Incremental task sync (issue 17) on a real store, against an in-memory stand-in for Label Studio's REST API.

The stand-in answers the calls suggest makes (`list_tasks` with an id floor, `task_ids`, `task_count`) and
records them, so the tests can tell a listing of only newer tasks from a full one.
"""

from __future__ import annotations

import time

import pytest

from suggest.labelstudio import LabelStudioError
from suggest.schema import Label
from suggest.store import Store
from suggest.tasksync import TaskSync


class FakeLabelStudio:
    """Tasks by id, predictions by id; every call recorded as (name, argument)."""

    def __init__(self, texts: list[str] | None = None):
        self.tasks: dict[int, dict] = {}
        self.predictions_held: dict[int, dict] = {}
        self.calls: list[tuple[str, object]] = []
        self.project: dict = {}
        self.url = f"fake://{id(self)}"  # each stand-in its own Label Studio (labelstudio.prediction_pace)
        self._next_prediction = 1
        for text in texts or []:
            self.add(text)

    def add(self, text: str, annotated: bool = False) -> int:
        task_id = max(self.tasks, default=0) + 1
        self.tasks[task_id] = {"id": task_id, "data": {"text": text}, "total_annotations": int(annotated),
                               "cancelled_annotations": 0}
        return task_id

    # the client's surface
    def list_tasks(self, project_id, *, after=0, page_size=1000, include=""):
        self.calls.append(("list_tasks", after))
        return [dict(t) for i, t in sorted(self.tasks.items()) if i > after]

    def task_ids(self, project_id):
        self.calls.append(("task_ids", None))
        return sorted(self.tasks)

    def task_count(self, project_id):
        self.calls.append(("task_count", None))
        return len(self.tasks)

    def import_predictions(self, project_id, rows, chunk=2000):
        self.calls.append(("import", len(rows)))
        for row in rows:  # as Label Studio: a row naming a task it does not hold fails the whole import
            self._held_task(row)
        for row in rows:
            self._hold(row)
        return len(rows)

    def create_prediction(self, project_id, row):
        self.calls.append(("create_prediction", row["task"]))
        self._held_task(row)
        return self._hold(row)

    def _held_task(self, row) -> None:
        if row["task"] not in self.tasks:
            raise LabelStudioError(f"Label Studio answered 400 to POST: task ID {row['task']} not found")

    def update_prediction(self, project_id, prediction_id, row):
        """As Label Studio's PATCH: the row keeps its id, and takes the row's task (a move, e2e test_12 shows
        Label Studio does it); False (its 404) when it is gone."""
        self.calls.append(("update_prediction", prediction_id))
        held = self.predictions_held.get(prediction_id)
        if held is None:
            return False
        held.update(task=row["task"], model_version=row["model_version"], score=row.get("score"),
                    result=row.get("result"))
        return True

    def _hold(self, row) -> int:
        made = self._next_prediction
        self.predictions_held[made] = {"id": made, "task": row["task"], "model_version": row["model_version"],
                                       "score": row.get("score"), "result": row.get("result")}
        self._next_prediction += 1
        return made

    def update_project(self, project_id, **fields):
        self.calls.append(("update_project", fields.get("model_version")))
        self.project.update(fields)
        return self.project

    def model_versions(self, project_id):
        self.calls.append(("model_versions", None))
        held: dict[str, int] = {}
        for p in self.predictions_held.values():
            held[p["model_version"]] = held.get(p["model_version"], 0) + 1
        return held

    def predictions(self, project_id):
        self.calls.append(("predictions", None))
        return [dict(p) for p in self.predictions_held.values()]

    def delete_prediction(self, prediction_id):
        self.calls.append(("delete_prediction", prediction_id))
        return self.predictions_held.pop(prediction_id, None) is not None

    def delete_task_predictions(self, project_id, task_ids):
        self.calls.append(("delete_task_predictions", len(task_ids)))
        gone = [i for i, p in self.predictions_held.items() if p["task"] in set(task_ids)]
        for i in gone:
            del self.predictions_held[i]
        return len(gone)

    def close(self):
        pass

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


PID = "5"


@pytest.fixture(name="store")
def store_fixture(tmp_path) -> Store:
    """A real store in a temp folder (test_queue_head imports this fixture too)."""
    s = Store(tmp_path)
    yield s
    s.close()


def test_the_first_sync_lists_every_task_and_later_ones_only_newer_tasks(store: Store) -> None:
    ls = FakeLabelStudio([f"text {i}" for i in range(5)])
    sync = TaskSync(store)
    first = sync.sync(ls, PID)
    assert (first.added, first.total) == (5, 5)
    assert ls.calls == [("list_tasks", 0)]
    new = [ls.add("later 1"), ls.add("later 2")]
    second = sync.sync(ls, PID)
    assert ls.calls[-1] == ("list_tasks", 5), "the listing asks only for tasks above the newest known id"
    assert second.added == 2 and second.total == 7
    assert [t for t, _ in store.unlabeled_tasks(PID)][-2:] == new
    assert dict(store.unlabeled_tasks(PID))[new[0]] == {"text": "later 1"}
    assert sync.sync(ls, PID).added == 0


def test_labelled_tasks_are_not_in_the_pool(store: Store) -> None:
    ls = FakeLabelStudio(["a", "b"])
    done = ls.add("c", annotated=True)
    TaskSync(store).sync(ls, PID)
    assert [t for t, _ in store.unlabeled_tasks(PID)] == [1, 2]
    assert done in store.task_ids(PID)
    store.upsert_labels(PID, [Label(1, 10, "fresh", "a", control="sentiment")])
    assert store.unlabeled_task_ids(PID) == [2], "a stored annotation takes its task out of the pool"


def test_reconcile_reads_only_the_count_when_nothing_was_deleted(store: Store) -> None:
    ls = FakeLabelStudio([f"t{i}" for i in range(6)])
    sync = TaskSync(store, reconcile_seconds=3600)
    sync.sync(ls, PID)
    ls.calls.clear()
    result = sync.sync(ls, PID, reconcile=True)
    assert result.removed == 0 and result.reconciled
    assert "task_ids" not in ls.names(), "equal counts: no id listing"


def test_reconcile_drops_tasks_label_studio_no_longer_holds(store: Store) -> None:
    ls = FakeLabelStudio([f"t{i}" for i in range(6)])
    sync = TaskSync(store, reconcile_seconds=3600)
    sync.sync(ls, PID)
    del ls.tasks[2], ls.tasks[4]
    assert sync.sync(ls, PID).removed == 0, "not due yet: no reconcile"
    assert store.task_count(PID) == 6
    result = sync.sync(ls, PID, reconcile=True)
    assert result.removed == 2 and result.total == 4
    assert store.task_ids(PID) == [1, 3, 5, 6]


def test_a_due_reconcile_runs_on_its_own(store: Store) -> None:
    ls = FakeLabelStudio([f"t{i}" for i in range(3)])
    sync = TaskSync(store, reconcile_seconds=0.05)
    sync.sync(ls, PID)
    del ls.tasks[1]
    time.sleep(0.1)
    assert sync.sync(ls, PID).removed == 1


def test_confirmed_tasks_update_the_list(store: Store) -> None:
    ls = FakeLabelStudio(["a", "b", "c"])
    sync = TaskSync(store)
    sync.sync(ls, PID)
    annotated = {"id": 2, "data": {"text": "b"}, "annotations": [{"id": 9, "was_cancelled": False}]}
    sync.confirmed(PID, {1, 2}, [annotated])  # task 1 is gone from Label Studio, task 2 now annotated
    assert store.task_ids(PID) == [2, 3]
    assert store.unlabeled_task_ids(PID) == [3]
    skipped = {"id": 2, "data": {"text": "b"}, "annotations": [{"id": 9, "was_cancelled": True}]}
    sync.confirmed(PID, {2}, [skipped])
    assert store.unlabeled_task_ids(PID) == [2, 3], "only a cancelled annotation left: back in the pool"


def test_a_deleted_task_webhook_drops_it(store: Store) -> None:
    ls = FakeLabelStudio(["a", "b"])
    sync = TaskSync(store)
    sync.sync(ls, PID)
    assert sync.tasks_deleted(PID, [1, 99]) == 1
    assert store.task_ids(PID) == [2]


def test_a_store_from_before_pushed_row_ids_opens_and_keeps_its_task_list(tmp_path) -> None:
    """Stores written before the pushed row's id was kept gain the column on open; nothing stored is lost,
    and their tasks simply have no id to overwrite (the next version writes them anew)."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "suggest.sqlite3")
    db.executescript("""
        CREATE TABLE ls_tasks (project_id TEXT NOT NULL, task_id INTEGER NOT NULL, data TEXT NOT NULL,
            labeled INTEGER NOT NULL DEFAULT 0, pushed_version TEXT, pushed_score REAL,
            PRIMARY KEY (project_id, task_id)) WITHOUT ROWID;
        INSERT INTO ls_tasks VALUES ('5', 7, '{"text": "old"}', 0, 'v1', 0.25);
    """)
    db.close()
    store = Store(tmp_path)
    try:
        assert store.pushed(PID, "v1") == {7: 0.25}
        assert store.pushed_predictions(PID, [7]) == {}
        store.set_pushed(PID, "v2", {7: 0.5}, {7: 91})
        assert store.pushed_predictions(PID, [7]) == {7: ("v2", 91)}
        store.set_pushed(PID, "v3", {7: 0.1})  # written without a known id (a bulk import): none kept
        assert store.pushed_predictions(PID, [7]) == {} and store.pushed(PID, "v3") == {7: 0.1}
    finally:
        store.close()
