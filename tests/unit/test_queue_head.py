"""Bounded writes per version (issue 17): the queue head, its refill and chunked pruning.

A real project (real MiniLM encoder, zero-shot and then trained on Rotten Tomatoes snippets) on a
real store; Label Studio is the in-memory stand-in of test_tasksync, which records every call.
"""

from __future__ import annotations

import numpy as np
import pytest

from suggest.labelstudio import LabelStudioError, parse_controls
from suggest.loop import LoopSettings, rank_rows
from suggest.project import open_project
from suggest.queuehead import (
    FIRST_SLICE_MIN,
    IMPORT_CHUNK,
    NEXT_GUARD,
    ROW_GROUP,
    HeadPusher,
    HeadSettings,
    Maintainer,
)
from suggest.schema import Label
from suggest.store import ProjectRecord, Store
from suggest.tasksync import TaskSync
from tests.conftest import CONFIG
from tests.unit.test_tasksync import FakeLabelStudio, store_fixture  # noqa: F401  (the `store` fixture)

PID = "11"


def _project(store: Store):
    record = ProjectRecord(PID, CONFIG, None, None)
    store.save_project(record)
    return open_project(store, record, parse_controls(CONFIG))


def _pusher(store: Store, head: int, batch: int = 10, prune_chunk: int = 5, first_slice: int = FIRST_SLICE_MIN
            ) -> HeadPusher:
    loop = LoopSettings(batch_size=batch)
    return HeadPusher(HeadSettings(head, batch, True, 1, prune_chunk, first_slice=first_slice), TaskSync(store),
                      lambda project, rows: rank_rows(project, rows, loop))


def _pushed_pool(store: Store, texts: list[str], head: int, **kw) -> tuple[FakeLabelStudio, object, HeadPusher]:
    """A pool of `texts` in the stand-in, a zero-shot project, and its head pushed once."""
    ls = FakeLabelStudio(texts)
    project = _project(store)
    pusher = _pusher(store, head=head, **kw)
    pusher.push(project, ls)
    return ls, project, pusher


class SlowRows(FakeLabelStudio):
    """A stand-in whose one-row creates take `hold` seconds (paced heads, fills and refills)."""

    def __init__(self, texts: list[str], hold: float, import_hold: float = 0.0):
        super().__init__(texts)
        self.hold, self.import_hold = hold, import_hold

    def create_prediction(self, project_id, row):
        import time

        time.sleep(self.hold)
        return super().create_prediction(project_id, row)

    def import_predictions(self, project_id, rows, chunk=2000):
        import time

        time.sleep(self.import_hold)
        return super().import_predictions(project_id, rows, chunk)


def _paced_rows(tmp_path, texts: list[str], hold: float):
    """A project of `texts` in row mode, a 60-task head paced at push_duty 0.25, one-row creates of `hold` s."""
    import suggest.labelstudio

    store = Store(tmp_path)
    ls = SlowRows(texts, hold=hold)
    suggest.labelstudio.prediction_pace(ls, PID).rows = True
    pusher = HeadPusher(HeadSettings(60, 2, True, 1, 5, first_slice=2, push_duty=0.25), TaskSync(store),
                        lambda project, rows: rank_rows(project, rows, LoopSettings(2)))
    return store, ls, _project(store), pusher


def _paced_pusher(store: Store, ls: FakeLabelStudio, *, rows: bool, head: int, batch: int, first_slice: int):
    """A zero-shot project and a pusher pacing its head at push_duty 0.25, Label Studio in row or bulk mode."""
    import suggest.labelstudio

    suggest.labelstudio.prediction_pace(ls, PID).rows = rows
    pusher = HeadPusher(HeadSettings(head, batch, True, 1, 5, first_slice=first_slice, push_duty=0.25),
                        TaskSync(store), lambda project, rows_: rank_rows(project, rows_, LoopSettings(batch)))
    return _project(store), pusher


def _pushed(ls: FakeLabelStudio, version: str) -> dict[int, float]:
    return {p["task"]: p["score"] for p in ls.predictions_held.values() if p["model_version"] == version}


def test_a_version_writes_only_the_head_the_lowest_scores_first(store, rt_sample) -> None:
    ls = FakeLabelStudio([text for text, _ in rt_sample[:200]])
    project = _project(store)
    pusher = _pusher(store, head=150)
    status = pusher.push(project, ls)
    version = project.model_version
    assert status["tasks_scored"] == 200 and status["head"]["written"] == 150
    # the first slice lands, the project points at the version (now /next is right), then the rest of the head
    # (the rest first reads which versions are held: whether older rows may go per task)
    assert ls.calls[1:5] == [("import", FIRST_SLICE_MIN), ("update_project", version), ("model_versions", None),
                             ("import", 50)]
    pushed = _pushed(ls, version)
    assert len(pushed) == 150
    scores = np.array(list(project._queue_scores[1].values()))
    # pushed scores are rounded to 6 decimals: compare within half of that last place
    assert max(pushed.values()) <= np.sort(scores)[149] + 5e-7, "the head is the 150 lowest queue scores"
    assert status["next_tasks"][0] == min(pushed, key=pushed.get), "the engine's first choice sorts first"
    assert store.pushed(PID, version) == pytest.approx(pushed, abs=1e-5)


def test_the_head_is_imported_in_short_requests(store, rt_sample, monkeypatch) -> None:
    """Label Studio inserts a request's rows in one transaction that annotators' saves wait behind."""
    import suggest.queuehead

    assert IMPORT_CHUNK <= FIRST_SLICE_MIN  # the first slice is one request at the defaults
    monkeypatch.setattr(suggest.queuehead, "IMPORT_CHUNK", 30)
    ls = FakeLabelStudio([text for text, _ in rt_sample[:200]])
    project = _project(store)
    status = _pusher(store, head=190).push(project, ls)
    imports = [n for name, n in ls.calls if name == "import"]
    assert status["head"]["written"] == 190 == sum(imports)
    assert max(imports) <= 30 and len(imports) == 7, imports  # 100 = 30+30+30+10, then 90 = 30+30+30
    assert ls.calls.index(("update_project", project.model_version)) == 1 + 4, "pointed after the first slice"
    assert len(_pushed(ls, project.model_version)) == 190 == len(store.pushed(PID, project.model_version))


def test_labelled_tasks_are_never_pushed(store, rt_sample) -> None:
    ls = FakeLabelStudio([text for text, _ in rt_sample[:30]])
    done = [ls.add(text, annotated=True) for text, _ in rt_sample[30:40]]
    project = _project(store)
    _pusher(store, head=100).push(project, ls)
    assert not set(done) & set(_pushed(ls, project.model_version))
    assert len(_pushed(ls, project.model_version)) == 30


def test_the_head_is_refilled_from_the_same_ranking(store, rt_sample) -> None:
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:120]], head=20, batch=5)
    version = project.model_version
    head = _pushed(ls, version)
    assert len(head) == 20 and not pusher.needs_refill(project)
    order = sorted(project._queue_scores[1], key=project._queue_scores[1].get)
    labelled = sorted(head, key=head.get)[:16]
    store.upsert_labels(PID, [Label(t, 1000 + t, "fresh", "x", control="sentiment") for t in labelled])
    assert pusher.needs_refill(project), "4 left, below a quarter of the head (at least the batch)"
    assert pusher.refill(project, ls) == 16
    after = _pushed(ls, version)
    assert len(after) == 36 and project.model_version == version
    assert set(after) - set(head) == set(order[20:36]), "the next tasks of the same queue"
    assert len(store.unlabeled_pushed(PID, version)) == 20
    assert pusher.refill(project, ls) == 0, "full again: nothing more"


def test_a_refill_without_a_push_does_nothing(store) -> None:
    project = _project(store)
    pusher = _pusher(store, head=20)
    assert not pusher.needs_refill(project)
    assert pusher.refill(project, FakeLabelStudio(["a"])) == 0


def test_superseded_predictions_are_pruned_in_chunks_and_the_current_version_stays(store, rt_sample) -> None:
    batch = 4
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:60]], head=12, prune_chunk=5,
                                       batch=batch, first_slice=8)
    cold = project.model_version
    store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[:20])])
    assert project.retrain(force=True) is not None
    trained = project.model_version
    cold_head = set(_pushed(ls, cold))
    ls.calls.clear()
    status = pusher.push(project, ls)  # replaces older rows of head tasks, then one prune step
    assert ls.names().count("predictions") == 1, "one listing plans the prune and says which versions are held"
    assert ls.names().count("model_versions") == 1, "one aggregate read: whether the rest of the head may replace " \
        "older rows per task (none for the prune: its listing says which versions are held)"
    trained_head = set(_pushed(ls, trained))
    assert len(trained_head) == 12
    cold_only = cold_head - trained_head
    assert len(cold_only) < 12, "the heads overlap (else this test checks nothing of the replacement)"
    first = [t for t, _ in sorted(_pushed(ls, trained).items(), key=lambda kv: kv[1])][:8]
    kept_old = len(set(first) & cold_head)  # the first slice replaces nothing at push time
    assert kept_old >= 1, "the first slice overlaps the cold head (else the redo path is not checked)"
    served_next = set(first[:NEXT_GUARD])  # what Label Studio serves now (one per concurrent annotator)
    front_old = len(served_next & cold_head)
    assert front_old >= 1, "a task served next held a cold row (else keeping it whole is not checked)"
    assert kept_old > front_old, "a task after those held one too (else the redo path is not checked)"
    cleared: list[int] = []
    clear = ls.delete_task_predictions
    ls.delete_task_predictions = lambda pid, ids: (cleared.extend(ids), clear(pid, ids))[1]
    steps, more = 0, True
    while more:
        deleted, more = pusher.prune(project, ls)
        assert deleted <= 5, "at most a chunk per step"
        steps += 1
        assert set(_pushed(ls, trained)) == trained_head, "the current version's predictions are never touched"
    assert ls.model_versions(PID) == {trained: 12}
    whole = [n for name, n in ls.calls if name == "delete_task_predictions"]
    assert max(whole) <= 5, "a chunk of tasks per Data Manager call"
    assert sum(whole) == 12 - front_old, "every other cold row went with its task, a chunk per call"
    # the rest of the first slice held a cold row beside its current one: cleared and given the current row
    # again (one Data Manager call and one import), never one delete call per row; but the tasks Label Studio
    # serves next are never cleared, not even for a moment (it would serve the task after them): their cold
    # rows go one call per row
    assert not served_next & set(cleared), "a task Label Studio serves next was left without its current row"
    assert ls.names().count("delete_prediction") == front_old
    assert all(len([p for p in ls.predictions_held.values() if p["task"] == t]) == 1 for t in trained_head)
    assert _pushed(ls, trained) == pytest.approx(store.pushed(PID, trained), abs=1e-5)
    assert status["pruned_versions"] in ([], [cold]), "only the superseded version, once it is gone"
    ls.calls.clear()
    assert pusher.prune(project, ls) == (0, False)
    assert not ls.calls, "every superseded version is known gone: the Maintainer's next prune reads nothing"


def test_the_strategy_ranks_only_the_least_certain_candidates(store, rt_sample) -> None:
    ls = FakeLabelStudio([text for text, _ in rt_sample[:120]])
    project = _project(store)
    store.upsert_labels(PID, [Label(1000 + i, 2000 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[150:170])])
    assert project.retrain(force=True) is not None
    loop = LoopSettings(batch_size=5)
    ranked: list[int] = []

    def rank(p, rows):
        ranked.append(len(rows))
        return rank_rows(p, rows, loop)

    pusher = HeadPusher(HeadSettings(10, 5, True, 1, 5, candidates=40), TaskSync(store), rank)
    status = pusher.push(project, ls)
    assert ranked == [40] and status["pool"] == 120 and status["tasks_scored"] == 40
    from backends.uncertainty import certainty
    from suggest.schema import Item

    model = project.published.model
    cert = certainty(model.predict_proba([Item(t) for t, _ in rt_sample[:120]]), project.uncertainty)
    least = set(int(i) + 1 for i in np.argsort(cert, kind="stable")[:40])
    assert set(_pushed(ls, project.model_version)) <= least, "the head comes from the least certain candidates"


def test_the_audit_slice_is_drawn_from_the_whole_pool_not_the_candidates(store, rt_sample) -> None:
    """Issue 14's unbiased estimate needs its audit tasks drawn uniformly from every unlabelled task: the
    queue head ranks only the least certain candidates, so it draws the slice first and ranks it too."""
    ls = FakeLabelStudio([text for text, _ in rt_sample[:120]])
    project = _project(store)
    store.upsert_labels(PID, [Label(1000 + i, 2000 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[150:170])])
    assert project.retrain(force=True) is not None
    loop = LoopSettings(batch_size=5, audit_fraction=1.0)  # every batch slot an audit draw: 5 of 120
    pusher = HeadPusher(HeadSettings(10, 5, True, 1, 5, candidates=40, audit_fraction=1.0), TaskSync(store),
                        lambda p, rows, audit=None: rank_rows(p, rows, loop, audit))
    status = pusher.push(project, ls)
    audited = {s["task_id"]: s["audit_weight"] for s in store.suggestions(PID) if s["audit_weight"] is not None}
    assert len(audited) == 5 and set(audited.values()) == {120 / 5}  # each stands for pool / draws tasks
    assert set(audited) <= set(_pushed(ls, project.model_version))  # in the batch, at the queue's front
    assert 40 <= status["tasks_scored"] <= 45  # the candidates, and audit draws outside them
    from backends.uncertainty import certainty
    from suggest.schema import Item

    cert = certainty(project.published.model.predict_proba([Item(t) for t, _ in rt_sample[:120]]),
                     project.uncertainty)
    least = set(int(i) + 1 for i in np.argsort(cert, kind="stable")[:40])
    assert set(audited) - least, "drawn from the whole pool, not only the 40 least certain (p of none: 0.4%)"


def test_another_models_predictions_survive_a_new_head(store, rt_sample) -> None:
    """Label Studio deletes predictions per task: with another model's predictions in the project, suggest
    never uses that, and removes its own superseded rows one by one."""
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:60]], head=12, prune_chunk=5,
                                       batch=2, first_slice=8)
    theirs = {}
    for task in list(_pushed(ls, project.model_version))[:6]:  # the user's own model predicted head tasks too
        pid_ = ls._next_prediction
        ls.predictions_held[pid_] = {"id": pid_, "task": task, "model_version": "their-model-v3", "score": 0.5,
                                     "result": []}
        ls._next_prediction += 1
        theirs[pid_] = task
    store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[:20])])
    assert project.retrain(force=True) is not None
    pusher.push(project, ls)
    while pusher.prune(project, ls)[1]:
        pass
    assert all(p in ls.predictions_held for p in theirs), "another model's predictions are never deleted"
    assert ls.model_versions(PID)["their-model-v3"] == 6
    assert set(ls.model_versions(PID)) == {"their-model-v3", project.model_version}  # ours superseded: gone


def test_a_new_push_drops_the_prune_plan_made_against_the_last_version(store, rt_sample) -> None:
    """A plan listed under v2 names v2's rows as current; once v3 is pushed it is stale, and following it
    fell back to one delete call per row (400 of them in a 200-save burst)."""
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:60]], head=12, prune_chunk=1,
                                       batch=2, first_slice=8)
    left = []
    for n in (20, 30):
        store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                                  for i, (text, label) in enumerate(rt_sample[:n])])
        assert project.retrain(force=True) is not None
        pusher.push(project, ls)
        left.append(pusher.prune(project, ls)[1])  # plans against this version, works one chunk
    assert left[-1], "the plan made under the last version had work left (else this checks nothing)"
    latest = project.model_version
    ls.calls.clear()
    while pusher.prune(project, ls)[1]:
        pass
    # only the tasks served next go row by row (never cleared, not even for a moment), never the whole plan
    assert ls.names().count("delete_prediction") <= NEXT_GUARD
    assert set(ls.model_versions(PID)) == {latest}


def test_a_suspects_row_beside_a_superseded_one_is_given_back_not_deleted_row_by_row(store, rt_sample) -> None:
    """A labelled task that was in an old head and now holds the review tab's row of the current version is in
    no queue: its superseded rows went one delete call each (0.1-1.2 s apiece at 10,000 tasks, under the
    project's push lock, so the next version waited up to 16 s). It is cleared with its chunk and given its
    current row again as Label Studio listed it."""
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:60]], head=12, prune_chunk=50,
                                       batch=2, first_slice=8)
    cold = project.model_version
    cold_head = sorted(_pushed(ls, cold))
    labelled = [(t, rt_sample[t - 1]) for t in cold_head[:3]]  # task ids are 1.. in the stand-in
    store.upsert_labels(PID, [Label(t, 100 + t, label, text, control="sentiment")
                              for t, (text, label) in labelled])
    store.upsert_labels(PID, [Label(i + 1, 200 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[:20]) if i + 1 not in cold_head[:3]])
    assert project.retrain(force=True) is not None
    trained = project.model_version
    suspect = cold_head[0]
    review = {"task": suspect, "model_version": trained, "score": 0.99,
              "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                          "value": {"choices": ["rotten"]}}]}
    ls.import_predictions(PID, [review])  # the review tab's row, before the push (it may come either side)
    ls.calls.clear()
    pusher.push(project, ls)  # and its first prune step
    while pusher.prune(project, ls)[1]:
        pass
    assert ls.names().count("delete_prediction") == 0, "no row deleted one call at a time"
    held = [p for p in ls.predictions_held.values() if p["task"] == suspect]
    assert [(p["model_version"], p["score"], p["result"]) for p in held] == [
        (trained, 0.99, review["result"])], "the suspect keeps exactly its current row"
    assert set(ls.model_versions(PID)) == {trained}


def test_a_version_published_mid_push_stops_the_rest_of_the_old_head(store, rt_sample, monkeypatch) -> None:
    """At 10,000 tasks the rest of a head (950 rows, 20-40 s) kept the push lock while a newer version
    waited to be served. Once a newer version is published the old push stops between chunks (its queue
    is still refilled while Label Studio serves it), and the newer version's push writes its whole head."""
    import suggest.queuehead

    monkeypatch.setattr(suggest.queuehead, "IMPORT_CHUNK", 30)
    monkeypatch.setattr(suggest.queuehead, "IMPORT_PAUSE", 0.0)
    project = _project(store)
    store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[:20])])
    assert project.retrain(force=True) is not None
    old = project.model_version

    class Publishing(FakeLabelStudio):
        """A Label Studio during whose fifth import (the first after the first slice) a newer version is
        published."""

        def import_predictions(self, project_id, rows, chunk=2000):
            n = super().import_predictions(project_id, rows, chunk)
            if len([c for c in self.calls if c[0] == "import"]) == 5:
                store.upsert_labels(PID, [Label(21, 200, rt_sample[20][1], rt_sample[20][0], control="sentiment")])
                assert project.retrain(force=True) is not None
            return n

    ls = Publishing([text for text, _ in rt_sample[30:200]])
    pusher = _pusher(store, head=140)  # a pool of 149 unlabelled tasks (1-21 are labelled)
    status = pusher.push(project, ls)
    newer = project.model_version
    assert newer != old
    assert FIRST_SLICE_MIN == 100, "the first slice is four chunks of 30 here"
    assert status["head"]["written"] == 130 == len(_pushed(ls, old)), "the old head stopped after its 5th chunk"
    status = pusher.push(project, ls)
    assert status["version"] == newer and status["head"]["written"] == 140


def test_a_big_project_goes_one_row_per_call_from_its_first_push(store, rt_sample, monkeypatch) -> None:
    """Stock Label Studio recounts every task of the project on each bulk import (4.6-6 s a call at 100,000
    tasks, other saves 21x slower meanwhile), one row per call only its task; with Label Studio's batch-only
    flag bulk is cheaper per row but each call holds it longer (saves' p99 2.76x idle against 1.08x) and the
    superseded rows outgrow their prune. So a big project never imports in bulk: from its first push its rows
    go one per call, Label Studio points at the version after a few, and the next version overwrites the
    rows of tasks still in its head in place."""
    import suggest.labelstudio
    import suggest.queuehead

    monkeypatch.setattr(suggest.labelstudio, "ROWS_MIN_TASKS", 200)  # this stand-in's project counts as big
    ls = FakeLabelStudio([text for text, _ in rt_sample[:200]])
    project = _project(store)
    pusher = _pusher(store, head=150, batch=2, first_slice=30)
    status = pusher.push(project, ls)
    version = project.model_version
    names = [name for name, _ in ls.calls]
    assert "import" not in names and status["head"]["import"] == "rows" and status["head"]["written"] == 150
    pointed = ls.calls.index(("update_project", version))
    assert names[:pointed].count("create_prediction") == suggest.queuehead.ROWS_BEFORE_POINT
    assert len(_pushed(ls, version)) == 150

    store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[:20])])
    assert project.retrain(force=True) is not None
    ls.calls.clear()
    status = pusher.push(project, ls)
    names = [name for name, _ in ls.calls]
    assert "import" not in names and status["head"]["import"] == "rows" and "update_prediction" in names
    assert len(_pushed(ls, project.model_version)) == 150


def test_the_pool_of_a_later_push_reads_only_new_tasks_from_the_store(store, rt_sample, monkeypatch) -> None:
    """At 100,000 tasks reading and parsing every task's data again took 1-5 s of each version's time to
    first choice; rows read at an earlier push come from memory, labelled tasks leave, new ones are read."""
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:60]], head=20)
    reads: list[list[int]] = []
    real = store.task_data
    monkeypatch.setattr(store, "task_data", lambda pid, ids: (reads.append(list(ids)), real(pid, ids))[1])
    added = ls.add(rt_sample[60][0])
    pusher.tasksync.sync(ls, PID)
    store.mark_labeled(PID, [1])
    rows = pusher.pool(project)
    assert reads == [[added]], "the pool was read again from the store"
    ids = [row["sentiment"].task_id for row in rows]
    assert ids == [t for t in range(2, 62)] and rows[-1]["sentiment"].text == rt_sample[60][0]
    assert [row["sentiment"].text for row in rows[:2]] == [rt_sample[1][0], rt_sample[2][0]]
    # a task the confirmer re-read (its stored data written again) is read again, alone; nothing else is
    pusher.tasksync.confirmed(PID, [5], [{"id": 5, "data": {"text": "edited in Label Studio"}, "annotations": []}])
    rows = pusher.pool(project)
    assert reads[-1] == [5] and len(reads) == 2, "only the re-read task was read again"
    assert [row["sentiment"].text for row in rows if row["sentiment"].task_id == 5] == ["edited in Label Studio"]
    assert len(pusher.pool(project)) == 60 and len(reads) == 2, "read once: the next pool is all from memory"


def test_the_check_for_deleted_tasks_waits_until_label_studio_serves_the_version(store, rt_sample) -> None:
    """The periodic reconcile's count read took 4.7 s under load at 100,000 tasks; before the listing it put
    one version at 12.4 s from publish to first choice (target 10 s). It runs after the pointing now."""
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:80]], head=40)
    pusher.tasksync.reconcile_seconds = 0.0  # due at every push
    store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[:20])])
    for task in range(1, 11):
        del ls.tasks[task]  # labelled tasks deleted in Label Studio, and no webhook came
    assert project.retrain(force=True) is not None
    ls.calls.clear()
    status = pusher.push(project, ls)
    names = [name for name, _ in ls.calls]
    pointed = ls.calls.index(("update_project", project.model_version))
    assert "task_count" in names and names.index("task_count") > pointed, names[: pointed + 3]
    assert status["task_list"] == {"tasks": 70, "added": 0, "removed": 10, "reconciled": True}
    assert store.task_ids(PID) == list(range(11, 81))


def test_a_push_refused_for_a_task_deleted_with_no_webhook_drops_it_and_pushes_again(store, rt_sample) -> None:
    """Label Studio refuses a whole import that names a task it no longer holds. With the periodic check after
    the pointing, a push that kept failing would never reach it: the refusal checks at once, and the push
    goes again without the deleted tasks."""
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:80]], head=40)
    gone = sorted(store.unlabeled_task_ids(PID))[::3]
    for task in gone:
        del ls.tasks[task]
    store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[:20])])
    assert project.retrain(force=True) is not None
    ls.calls.clear()
    status = pusher.push(project, ls)
    assert ls.names().count("import") >= 2, "the first import was not the refused one"
    assert ls.names().index("task_ids") < ls.names().index("update_project")
    assert not set(store.task_ids(PID)) & set(gone)
    held = {p["task"] for p in ls.predictions_held.values() if p["model_version"] == project.model_version}
    assert held and not held & set(gone) and status["head"]["written"] == len(held)
    assert ls.project["model_version"] == project.model_version

    # nothing deleted meanwhile: a refusal for another reason is raised as it was
    ls.import_predictions = lambda *a, **k: (_ for _ in ()).throw(LabelStudioError("answered 500"))
    assert project.retrain(force=True) is not None
    with pytest.raises(LabelStudioError, match="500"):
        pusher.push(project, ls)


def test_after_the_first_slice_the_heads_writes_rest_to_keep_label_studio_mostly_free(tmp_path, rt_sample,
                                                                                       monkeypatch) -> None:
    """An annotator's save that meets one of our writes waits for it; only the first slice is urgent. With
    `push_duty` 0.25 every later write is followed by a rest three times its length, in row and bulk mode."""
    import time

    import suggest.labelstudio
    import suggest.queuehead

    monkeypatch.setattr(suggest.queuehead, "IMPORT_CHUNK", 10)
    monkeypatch.setattr(suggest.queuehead, "IMPORT_PAUSE", 0.0)

    class Timed(FakeLabelStudio):
        hold = 0.02

        def __init__(self, texts):
            super().__init__(texts)
            self.spans: list[tuple[str, float, float]] = []
            self.watch = lambda: None
            self.version_reads = 0

        def model_versions(self, project_id):
            self.version_reads += 1  # aggregates the whole predictions table in Label Studio: ~1 s at 100,000 tasks
            return super().model_versions(project_id)

        def create_prediction(self, project_id, row):
            self.watch()
            began = time.perf_counter()
            time.sleep(self.hold)
            made = super().create_prediction(project_id, row)
            self.spans.append(("row", began, time.perf_counter()))
            return made

        def import_predictions(self, project_id, rows, chunk=2000):
            self.watch()
            began = time.perf_counter()
            time.sleep(self.hold)
            written = super().import_predictions(project_id, rows, chunk)
            self.spans.append(("bulk", began, time.perf_counter()))
            return written

    def gaps(ls: Timed) -> list[float]:
        return [b[1] - a[2] for a, b in zip(ls.spans, ls.spans[1:], strict=False)]

    texts = [text for text, _ in rt_sample[:120]]
    for rows in (True, False):
        store = Store(tmp_path / ("rows" if rows else "bulk"))
        ls = Timed(texts)
        project, pusher = _paced_pusher(store, ls, rows=rows, head=60, batch=2, first_slice=2 if rows else 20)
        seen: list[tuple] = []
        ls.watch = lambda seen=seen, project=project: seen.append(
            (project.loop_status.get("version"), project.loop_status.get("pushing"),
             (project.loop_status.get("head") or {}).get("written")))
        status = pusher.push(project, ls)
        during = [written for version, pushing, written in seen if pushing and version == project.model_version]
        assert during and during[0] == (2 if rows else 20) and during == sorted(during) and during[-1] < 60, \
            "/metrics shows the version served, and its head growing, while the paced rest is written"
        assert status["pushing"] is False and status["seconds"]["total"] >= status["seconds"]["first_choice"]
        assert ls.version_reads <= 2, f"other models' rows are looked for once per slice: {ls.version_reads}"
        assert status["head"]["written"] == 60 and len(_pushed(ls, project.model_version)) == 60
        pointed = ls.calls.index(("update_project", project.model_version))
        first = len([name for name, _ in ls.calls[:pointed] if name in ("create_prediction", "import")])
        urgent, paced = gaps(ls)[: first - 1], gaps(ls)[first:]
        assert first == 2 and len(paced) >= 3, "the first slice, then the pointing, then the rest"
        assert all(g < 0.05 for g in urgent), f"the first slice goes at once (paced: at least 0.054 s): {urgent}"
        assert min(paced) >= 3 * ls.hold * 0.9, f"each later write rests ~3x its length: {paced}"
        store.close()


def test_a_small_project_imports_in_bulk_however_slow_its_imports(monkeypatch) -> None:
    """Label Studio's recount grows with the project (0.1-0.2 s a call at 1,000 tasks): below ROWS_MIN_TASKS a slow
    bulk call is Label Studio's load (at set-up a 1,300-task project switched on slow calls, and its saves got
    slower), so it keeps bulk; at ROWS_MIN_TASKS the same writes go one row per call."""
    import time

    import suggest.labelstudio
    from suggest.labelstudio import prediction_pace, send_predictions

    class Busy(FakeLabelStudio):
        def import_predictions(self, project_id, rows, chunk=2000):
            time.sleep(0.02)
            return super().import_predictions(project_id, rows, chunk)

    rows = [{"task": 1, "model_version": "v1", "score": 0.5, "result": []}]
    for tasks, by_row in ((1_300, False), (suggest.labelstudio.ROWS_MIN_TASKS, True)):
        ls = Busy(["a"])
        prediction_pace(ls, PID).tasks = tasks
        for _ in range(3):
            send_predictions(ls, PID, rows)
        names = [name for name, _ in ls.calls]
        assert prediction_pace(ls, PID).rows is by_row, tasks
        assert names == (["create_prediction"] * 3 if by_row else ["import"] * 3), tasks


def test_with_a_maintainer_the_push_writes_the_first_slice_and_the_rest_follows_off_the_trainers_thread(
        tmp_path, rt_sample) -> None:
    """The trainer pushes after each publish on its own thread: a paced head (minutes at 100,000 tasks) must not
    hold the next retrain back. The push returns after the first slice ("pushing"), the Maintainer writes the
    rest and then says the push is done."""
    import time


    store, ls, project, pusher = _paced_rows(tmp_path, [text for text, _ in rt_sample[:120]], hold=0.01)
    maintainer = Maintainer(pusher, lambda project: ls)
    try:
        began = time.perf_counter()
        status = pusher.push(project, ls)
        returned = time.perf_counter() - began
        assert status["pushing"] is True and status["head"]["written"] == 2  # the first slice only
        assert project.loop_status is status
        deadline = time.monotonic() + 30
        while status["pushing"] and time.monotonic() < deadline:
            time.sleep(0.05)
        filled = time.perf_counter() - began
        assert status["pushing"] is False and status["head"]["written"] == 60, status["head"]
        assert len(_pushed(ls, project.model_version)) == 60
        assert status["seconds"]["total"] >= status["seconds"]["first_choice"]
        assert filled > 50 * 0.01 * 4 * 0.9 and returned < filled, "the paced rest ran after the push returned"
    finally:
        maintainer.stop()
        store.close()


def test_a_paced_refill_gives_way_to_a_waiting_push(tmp_path, rt_sample) -> None:
    """A paced refill takes minutes at 100,000 tasks; the next version's push must not wait for all of it (one
    waited 160 s): the refill stops at its next part once a push waits for the project's lock."""
    import threading
    import time


    store, ls, project, pusher = _paced_rows(tmp_path, [text for text, _ in rt_sample[:150]], hold=0.02)
    try:
        pusher.push(project, ls)  # no Maintainer: the whole head inline
        head = list(_pushed(ls, project.model_version))
        store.upsert_labels(PID, [Label(task, 1000 + task, "fresh", "x", control="sentiment") for task in head[:50]])
        assert pusher.needs_refill(project)
        refilled: list[int] = []
        worker = threading.Thread(target=lambda: refilled.append(pusher.refill(project, ls)))
        worker.start()  # ~50 rows x 0.02 s x 4 (paced) = 4 s alone
        time.sleep(0.5)
        pusher.on_fill = lambda project: None  # this push writes its first slice only (its rest would be a fill's)
        began = time.perf_counter()
        pusher.push(project, ls)
        waited = time.perf_counter() - began
        worker.join(30)
        assert refilled and 0 < refilled[0] < 50, refilled
        assert waited < 3.0, f"the push waited {waited:.1f} s for the refill"
    finally:
        store.close()


def test_a_waiting_push_cuts_a_paced_rest_short(tmp_path, rt_sample, monkeypatch) -> None:
    """At 10,000 tasks (bulk mode) a paced part imports for ~1 s and rests ~3 s; the next version's push waited out
    the rest (publish to /next first choice up to 9 s in the session-10 run). The rest now ends once a push waits."""
    import threading
    import time

    import suggest.labelstudio
    import suggest.queuehead

    monkeypatch.setattr(suggest.queuehead, "IMPORT_CHUNK", 10)
    monkeypatch.setattr(suggest.queuehead, "IMPORT_PAUSE", 0.0)
    store = Store(tmp_path)
    ls = SlowRows([text for text, _ in rt_sample[:150]], hold=0.0, import_hold=0.4)  # each rest: 1.2 s
    suggest.labelstudio.prediction_pace(ls, PID).rows = False
    pusher = HeadPusher(HeadSettings(60, 2, True, 1, 5, first_slice=60, push_duty=0.25), TaskSync(store),
                        lambda project, rows: rank_rows(project, rows, LoopSettings(2)))
    project = _project(store)
    try:
        pusher.push(project, ls)  # the whole head in its (unpaced) first slice
        head = list(_pushed(ls, project.model_version))
        store.upsert_labels(PID, [Label(task, 1000 + task, "fresh", "x", control="sentiment") for task in head[:50]])
        imports = lambda: sum(1 for name, _ in ls.calls if name == "import")  # noqa: E731
        before = imports()
        refilled: list[int] = []
        worker = threading.Thread(target=lambda: refilled.append(pusher.refill(project, ls)))
        worker.start()  # 50 rows in 5 paced parts: 5 x (0.4 s + 1.2 s rest)
        deadline = time.monotonic() + 10
        while imports() == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the first part is written (counted once its 0.4 s are over) and its 1.2 s rest has begun
        pusher.on_fill = lambda project: None  # this push writes its first slice only
        listed: list[float] = []  # the push lists new tasks first thing once it holds the project
        list_tasks = ls.list_tasks
        ls.list_tasks = lambda *a, **k: listed.append(time.perf_counter()) or list_tasks(*a, **k)
        began = time.perf_counter()
        pusher.push(project, ls)
        waited = listed[0] - began
        worker.join(30)
        assert refilled and refilled[0] == 10, refilled
        assert waited < 0.6, f"the push waited {waited:.2f} s: the rest of the refill's part was not cut short"
    finally:
        store.close()


def test_a_rest_ends_as_soon_as_it_is_told_to() -> None:
    import threading
    import time

    from suggest.labelstudio import rest_after

    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    began = time.perf_counter()
    rest_after(1.0, 0.25, stop.is_set)  # a 3 s rest
    assert 0.15 < time.perf_counter() - began < 1.0
    began = time.perf_counter()
    rest_after(0.1, 0.25)  # no stop: the whole 0.3 s
    assert time.perf_counter() - began >= 0.29


def test_the_pace_never_holds_back_the_rows_annotators_are_about_to_reach(tmp_path, rt_sample, monkeypatch) -> None:
    """A head paced at a low duty writes ~1 row/s on a busy Label Studio; a team labelling faster would run it
    dry and get random tasks. So while fewer than a batch of the version's rows wait unlabelled, writes go at
    once; with a batch or more waiting they rest."""
    import suggest.labelstudio

    rests: list[float] = []  # the duty of every rest after a write (1: none), recorded around the real one
    real_rest = suggest.labelstudio.rest_after
    monkeypatch.setattr(suggest.labelstudio, "rest_after",
                        lambda took, duty, stop=None: rests.append(duty) or real_rest(took, duty, stop))

    class Rows(FakeLabelStudio):
        def __init__(self, texts):
            super().__init__(texts)
            self.after_row = lambda: None

        def create_prediction(self, project_id, row):
            made = super().create_prediction(project_id, row)
            self.after_row()
            return made

    texts = [text for text, _ in rt_sample[:120]]
    for team in (False, True):
        store = Store(tmp_path / ("team" if team else "alone"))
        ls = Rows(texts)
        project, pusher = _paced_pusher(store, ls, rows=True, head=40, batch=10, first_slice=10)
        labels = iter(range(10_000, 20_000))

        def keep_up(project=project, store=store, labels=labels) -> None:  # label all but two of what waits
            waiting = store.unlabeled_pushed(PID, project.model_version)
            store.upsert_labels(PID, [Label(t, next(labels), "fresh", "x", control="sentiment") for t in waiting[2:]])

        if team:
            ls.after_row = keep_up
        assert pusher.pace(PID, "none yet", 0.25) == 1.0, "nothing waiting: no rest"
        rests.clear()
        pusher.push(project, ls)
        paced = rests[10:]  # after the first slice's ten rows, which never rest
        assert len(paced) == 30 and set(rests[:10]) == {1.0}, rests
        if team:  # only the first part, planned before the team labelled, may rest
            assert paced.count(0.25) <= round(ROW_GROUP * 0.25) and paced[-1] == 1.0, \
                f"the head ran low and still rested: {paced}"
        else:
            assert set(paced) == {0.25}, f"a batch or more waiting: every write rests: {paced}"
            assert pusher.pace(PID, project.model_version, 0.25) == 0.25
        store.close()


def test_pruning_is_paced_as_the_heads_writes_are(tmp_path, rt_sample) -> None:
    """A prune is never urgent, and each of its steps is a Label Studio write that other projects' annotators wait
    behind: after a step the Maintainer rests as a paced head does (push_duty 0.25: three times the step)."""
    import time

    class Timed(FakeLabelStudio):
        hold = 0.05

        def __init__(self, texts):
            super().__init__(texts)
            self.spans: list[tuple[float, float]] = []

        def _timed(self, call, *args):
            began = time.perf_counter()
            time.sleep(self.hold)
            out = call(*args)
            self.spans.append((began, time.perf_counter()))
            return out

        def delete_task_predictions(self, project_id, task_ids):
            return self._timed(super().delete_task_predictions, project_id, task_ids)

        def delete_prediction(self, prediction_id):
            return self._timed(super().delete_prediction, prediction_id)

    store = Store(tmp_path)
    ls = Timed([text for text, _ in rt_sample[:60]])
    project, pusher = _paced_pusher(store, ls, rows=False, head=30, batch=4, first_slice=30)
    try:
        pusher.push(project, ls)  # the whole head in its first slice: no fill job
        store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                                  for i, (text, label) in enumerate(rt_sample[:20])])
        assert project.retrain(force=True) is not None
        pusher.push(project, ls)
        assert len(ls.model_versions(PID)) == 2, "superseded rows to prune (else this test checks nothing)"
        ls.spans.clear()
        maintainer = Maintainer(pusher, lambda project: ls, quiet=0.0)
        maintainer.pushed(project)
        deadline = time.monotonic() + 60
        while len(ls.model_versions(PID)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        maintainer.stop()
        assert ls.model_versions(PID) == {project.model_version: 30}
        busy = sum(end - began for began, end in ls.spans)
        elapsed = ls.spans[-1][1] - ls.spans[0][0]
        assert len(ls.spans) >= 3, ls.spans
        assert elapsed >= 2 * busy, f"prune steps went back to back: {elapsed:.2f} s for {busy:.2f} s of writes"
    finally:
        store.close()


class _CountingLock:
    """The project's lock, counting its releases: which work ran inside one holding."""

    def __init__(self):
        import threading

        self._lock, self.releases = threading.Lock(), 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self.releases += 1
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


def test_the_push_prunes_before_it_lets_go_of_the_project(store, rt_sample) -> None:
    """A job waiting for the project's lock (a paced fill holds it for minutes) used to take it as the push let go,
    and the push's own prune step, which never waits, was skipped: at 10,000 tasks ~70 rows of the version before
    the last stayed. The push now prunes before it releases the lock, so nothing can come between."""
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:60]], head=12, prune_chunk=5,
                                       batch=4, first_slice=8)
    store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[:20])])
    assert project.retrain(force=True) is not None
    lock = pusher._locks[PID] = _CountingLock()
    pointed: list[int] = []
    deleted: list[int] = []
    point, delete, clear = ls.update_project, ls.delete_prediction, ls.delete_task_predictions
    ls.update_project = lambda pid, **kw: (pointed.append(lock.releases), point(pid, **kw))[1]
    ls.delete_prediction = lambda *a: (deleted.append(lock.releases), delete(*a))[1]
    ls.delete_task_predictions = lambda pid, ids: (deleted.append(lock.releases), clear(pid, ids))[1]
    pusher.push(project, ls)
    assert pointed and deleted, "the push pointed Label Studio at the new version and pruned (else nothing checked)"
    assert set(deleted) == {pointed[0]}, "a prune step ran after the push had let go of the project's lock"
    assert lock.releases == pointed[0] + 1, "the push held the lock once, through its prune"


def test_a_late_row_of_a_version_known_gone_goes_with_the_next_versions_prune(store, rt_sample) -> None:
    """Pruning reads nothing once every superseded version is known gone, so a row of such a version that
    arrives late (a "Retrieve predictions" answer in flight while the version was superseded) waits for the
    next version's listing, which sees every row, and goes then: the table stays bounded."""
    ls, project, pusher = _pushed_pool(store, [text for text, _ in rt_sample[:60]], head=12, prune_chunk=50,
                                       batch=4, first_slice=8)
    cold = project.model_version
    for n in (20, 30):
        store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                                  for i, (text, label) in enumerate(rt_sample[:n])])
        assert project.retrain(force=True) is not None
        pusher.push(project, ls)
        while pusher.prune(project, ls)[1]:
            pass
        if n == 20:
            assert set(ls.model_versions(PID)) == {project.model_version}
            unpushed = next(t for t in ls.tasks if t not in {p["task"] for p in ls.predictions_held.values()})
            ls._hold({"task": unpushed, "model_version": cold, "score": 0.5, "result": []})  # the late row
            ls.calls.clear()
            assert pusher.prune(project, ls) == (0, False)
            assert not ls.calls, "known gone: no read until a new version is superseded"
    assert set(ls.model_versions(PID)) == {project.model_version}, "the late row went with the next prune"


def _rows_of(ls: FakeLabelStudio, task: int) -> list[dict]:
    return [p for p in ls.predictions_held.values() if p["task"] == task]


def _row_mode_pool(store: Store, rt_sample, *, head: int, prune_chunk: int):
    """60 tasks in row mode (as a big project after slow bulk imports), the zero-shot head pushed, then 20
    labels and a retrain: the next push writes the trained version."""
    import suggest.labelstudio

    ls = FakeLabelStudio([text for text, _ in rt_sample[:60]])
    suggest.labelstudio.prediction_pace(ls, PID).rows = True
    project = _project(store)
    pusher = _pusher(store, head=head, batch=4, prune_chunk=prune_chunk, first_slice=8)
    pusher.push(project, ls)
    cold = {p["task"]: p["id"] for p in ls.predictions_held.values()}
    store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[:20])])
    assert project.retrain(force=True) is not None
    return ls, project, pusher, cold


def test_in_row_mode_a_new_versions_row_overwrites_the_last_ones_in_place(store, rt_sample) -> None:
    """A head task holding the last version's row gets the new version's in place (one PATCH), not a new row
    beside it and a delete later: fewer writes, and the table does not grow with the versions."""
    ls, project, pusher, cold = _row_mode_pool(store, rt_sample, head=12, prune_chunk=5)
    ls.calls.clear()
    pusher.push(project, ls)
    trained = project.model_version
    head = {p["task"]: p["id"] for p in ls.predictions_held.values() if p["model_version"] == trained}
    both = set(cold) & set(head)
    assert len(head) == 12 and both, "the heads overlap (else this test checks nothing)"
    assert all(head[t] == cold[t] for t in both), "the cold row was overwritten in place: same id, new version"
    assert all(len(_rows_of(ls, t)) == 1 for t in head), "no head task holds a second suggest row"
    moved = {t for t in set(head) - both if head[t] in cold.values()}  # taken over from another task
    assert ls.names().count("update_prediction") == len(both) + len(moved)
    assert ls.names().count("create_prediction") == 12 - len(both) - len(moved)
    assert {t: i for t, (v, i) in store.pushed_predictions(PID, list(head)).items() if v == trained} == head
    while pusher.prune(project, ls)[1]:
        pass
    assert ls.model_versions(PID) == {trained: 12}, "only the cold rows of tasks that left the head were pruned"
    assert sorted(ls.predictions_held) == sorted(head.values())


def test_a_new_versions_rows_take_over_superseded_rows_of_tasks_that_left_the_head(store, rt_sample) -> None:
    """In row mode a task with no superseded row of its own gets one of another task's (moved by Label Studio's
    PATCH), so the prune is left nothing to delete for it. Why (issue 17): the prune's Data Manager deletes
    met every slow annotator save at 10,000 tasks. Labelled tasks' rows go first; the rows written before the
    project points at the version take none (Label Studio still serves the last version's queue then)."""
    ls, project, pusher, cold = _row_mode_pool(store, rt_sample, head=12, prune_chunk=5)
    labelled = set(cold) & {label.task_id for label in store.labels(PID)}
    assert labelled, "labelled tasks hold cold rows (else this test checks nothing)"
    ls.calls.clear()
    pusher.push(project, ls)
    trained = project.model_version
    head = {p["task"]: p["id"] for p in ls.predictions_held.values() if p["model_version"] == trained}
    owner = {i: t for t, i in cold.items()}
    moved = {t: owner[i] for t, i in head.items() if i in owner and owner[i] != t}  # to-task -> from-task
    assert moved, "rows were taken over from tasks that left the head"
    assert all(t not in head for t in moved.values()), "a row was never taken from a task of the new head"
    assert set(moved.values()) <= labelled or labelled <= set(moved.values()), "labelled tasks' rows go first"
    pointed = ls.calls.index(("update_project", trained))
    before = [i for name, i in ls.calls[:pointed] if name == "update_prediction"]
    assert all(owner[i] in head and head[owner[i]] == i for i in before), "before pointing: in place only"
    assert not set(store.pushed_predictions(PID, list(moved.values()))), "the store forgot the from-tasks' rows"
    assert {t: i for t, (v, i) in store.pushed_predictions(PID, list(moved)).items() if v == trained} == {
        t: head[t] for t in moved}, "the store names each moved row under its new task"
    while pusher.prune(project, ls)[1]:
        pass
    assert ls.model_versions(PID) == {trained: 12}


def test_with_pruning_off_no_row_is_overwritten(store, rt_sample) -> None:
    """SUGGEST_PRUNE_CHUNK=0 keeps every version's predictions: then nothing is overwritten either."""
    ls, project, pusher, cold = _row_mode_pool(store, rt_sample, head=12, prune_chunk=0)
    ls.calls.clear()
    pusher.push(project, ls)
    assert "update_prediction" not in ls.names()
    assert all(p in ls.predictions_held for p in cold.values()), "every cold row is still there"
    assert len(ls.predictions_held) == 24


def test_a_row_deleted_in_label_studio_meanwhile_is_created_anew(store, rt_sample) -> None:
    ls, project, pusher, cold = _row_mode_pool(store, rt_sample, head=12, prune_chunk=5)
    for prediction_id in cold.values():  # a user removed them in Label Studio (a 404 for each overwrite)
        del ls.predictions_held[prediction_id]
    ls.calls.clear()
    pusher.push(project, ls)
    trained = project.model_version
    assert ls.names().count("update_prediction") >= 1, "the heads overlap (else this test checks nothing)"
    assert ls.names().count("create_prediction") == 12
    assert len(_pushed(ls, trained)) == 12 and len(ls.predictions_held) == 12


def test_a_pruned_row_is_never_patched_again(store, rt_sample) -> None:
    """A task whose superseded row the prune deleted has no row to overwrite: when it comes back into a later
    head its row is created at once. Before, the store still named the deleted row and the next version first
    PATCHed it into a 404 (one wasted Label Studio call each: several per version at 10,000 tasks)."""
    ls, project, pusher, cold = _row_mode_pool(store, rt_sample, head=12, prune_chunk=5)
    pusher.push(project, ls)
    while pusher.prune(project, ls)[1]:
        pass
    pruned = {t for t, i in cold.items() if i not in ls.predictions_held}
    assert pruned, "the cold rows of tasks that left the head were pruned (else this test checks nothing)"
    assert not set(store.pushed_predictions(PID, list(pruned))), "the store forgot the deleted rows"
    store.upsert_labels(PID, [Label(21 + i, 200 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[20:30])])
    assert project.retrain(force=True) is not None
    pusher.settings.queue_head = 50  # the next head takes the pruned tasks back in
    ls.calls.clear()
    pusher.push(project, ls)
    back = pruned & set(_pushed(ls, project.model_version))
    assert back, "pruned tasks came back into the head (else this test checks nothing)"
    patched = [i for name, i in ls.calls if name == "update_prediction"]
    assert patched and all(i in ls.predictions_held for i in patched), "no PATCH of a row that is gone"


def test_a_task_the_prune_cleared_is_not_cleared_again_when_it_comes_back(store, rt_sample) -> None:
    """A task whose rows the prune deleted holds nothing of suggest's: when a later head takes it back, its row
    is written without a Data Manager delete first. Before, the store still named its old version, and each
    such task cost a delete of nothing (0.1-0.4 s of Label Studio; ~100 calls in two minutes at 10,000
    tasks)."""
    ls, project, pusher, cold = _row_mode_pool(store, rt_sample, head=12, prune_chunk=5)
    pusher.push(project, ls)
    assert not [n for n in ls.names() if n.startswith("delete")], "in row mode the push itself deletes nothing"
    moved = {t for t in cold if not _rows_of(ls, t)}  # their rows were taken over
    while pusher.prune(project, ls)[1]:
        pass
    empty = {t for t in cold if not _rows_of(ls, t)} - moved
    assert empty, "the prune cleared tasks (else this test checks nothing)"
    store.upsert_labels(PID, [Label(21 + i, 200 + i, label, text, control="sentiment")
                              for i, (text, label) in enumerate(rt_sample[20:30])])
    assert project.retrain(force=True) is not None
    pusher.settings.queue_head = 50  # the next head takes the cleared tasks back in, and the last version's rows
    pusher.settings.keep_versions = 2  # stay: no superseded row to take over, each task's row is its own
    cleared: list[int] = []
    clear = ls.delete_task_predictions
    ls.delete_task_predictions = lambda pid, ids: (cleared.extend(ids), clear(pid, ids))[1]
    pusher.push(project, ls)
    back = empty & set(_pushed(ls, project.model_version))
    assert back, "cleared tasks came back into the head (else this test checks nothing)"
    assert not back & set(cleared), "a task holding nothing was cleared again"


def test_a_row_overwritten_after_the_prune_planned_it_is_not_deleted(store, rt_sample) -> None:
    """The prune's plan is listed once and followed over many steps; a refill meanwhile may overwrite one of
    the superseded rows it names (its task came into the head). That row holds the current version now:
    the plan must not delete it (here the rows go one by one: every task also holds another model's row)."""
    ls, project, pusher, _ = _row_mode_pool(store, rt_sample, head=40, prune_chunk=1)
    for task in list(ls.tasks):
        ls._hold({"task": task, "model_version": "another-model", "score": 0.5, "result": []})
    pusher.settings.queue_head = 10
    pusher.push(project, ls)
    pusher.prune(project, ls)  # the Maintainer's first step (in row mode the push prunes nothing): the plan
    trained = project.model_version  # is listed, its first row deleted
    planned = set(pusher._prunes[PID].ids)
    assert len(planned) > 10, "the plan has rows left to delete one by one"
    truth = dict(rt_sample[:60])
    head = list(_pushed(ls, trained))
    store.upsert_labels(PID, [Label(t, 500 + t, truth[ls.tasks[t]["data"]["text"]], ls.tasks[t]["data"]["text"],
                                    control="sentiment") for t in head])
    assert pusher.refill(project, ls) == 10
    refilled = {p["id"] for p in ls.predictions_held.values()
                if p["model_version"] == trained and p["task"] not in head}
    overwritten = refilled & planned
    assert overwritten, "a refilled task held a planned row (else this test checks nothing)"
    while pusher.prune(project, ls)[1]:
        pass
    assert all(ls.predictions_held.get(i, {}).get("model_version") == trained for i in refilled), \
        "a row the refill overwrote was deleted by the plan listed before it"
    assert set(ls.model_versions(PID)) == {trained, "another-model"}


def test_in_row_mode_the_project_points_after_a_few_rows_and_the_first_slice_follows_at_once(tmp_path,
                                                                                           rt_sample) -> None:
    """Each one-row write takes Label Studio 0.1-0.3 s, so ten before pointing put 1-3 s into every version's
    time to /next. The project points after ROWS_BEFORE_POINT rows (a team's annotators + 2: Label Studio
    serves a team one of the first annotators + 1 at random), and the rest of the first slice is written at
    once, unpaced, before the push hands the paced rest to the Maintainer."""
    import time

    import suggest.queuehead

    store, ls, project, pusher = _paced_rows(tmp_path, [text for text, _ in rt_sample[:120]], hold=0.0)
    pusher.settings.first_slice = suggest.queuehead.ROWS_FIRST_SLICE
    fills: list[int] = []
    pusher.on_fill = lambda p: fills.append(len(_pushed(ls, p.model_version)))  # the paced rest starts here
    status = pusher.push(project, ls)
    version = project.model_version
    rows = [i for i, (name, _) in enumerate(ls.calls) if name in ("create_prediction", "update_prediction")]
    pointed = ls.calls.index(("update_project", version))
    assert len([i for i in rows if i < pointed]) == suggest.queuehead.ROWS_BEFORE_POINT == 3
    assert fills == [suggest.queuehead.ROWS_FIRST_SLICE] and status["head"]["written"] == fills[0], \
        "the whole first slice is written before the paced rest is handed over"
    assert status["pushing"] is True and status["seconds"]["first_choice"] is not None

    # a team of five annotators: Label Studio picks among the first six, so seven rows go before pointing
    store.upsert_labels(PID, [Label(i + 1, 100 + i, label, text, control="sentiment", annotator=i % 5 + 1)
                              for i, (text, label) in enumerate(rt_sample[:10])])
    assert project.retrain(force=True) is not None
    ls.calls.clear()
    began = time.perf_counter()
    pusher.push(project, ls)
    assert time.perf_counter() - began < 30
    newer = project.model_version
    rows = [i for i, (name, _) in enumerate(ls.calls) if name in ("create_prediction", "update_prediction")]
    pointed = ls.calls.index(("update_project", newer))
    assert len([i for i in rows if i < pointed]) == 5 + 2
    store.close()


def test_the_rows_taken_over_are_labelled_tasks_first_then_the_lowest_ranked_never_the_next_batch(store) -> None:
    """Which superseded rows a new version's rows take over: those of labelled tasks (they serve nothing), then of
    the tasks the new ranking puts last; never one of the next batch the head writes (their own row is
    overwritten in place then)."""
    from suggest.queuehead import _Queue

    ls = FakeLabelStudio([f"text {i}" for i in range(40)])
    TaskSync(store).sync(ls, PID)
    tasks = sorted(ls.tasks)
    store.set_pushed(PID, "old", {t: 0.5 for t in tasks[:30]}, {t: 1000 + t for t in tasks[:30]})
    store.mark_labeled(PID, tasks[25:30])
    ranking = tasks[::-1]  # the new version ranks the tasks in reverse
    queue = _Queue("new", ranking, [[] for _ in ranking], cursor=5)
    pusher = _pusher(store, head=20, batch=4)
    part = [{"task": t} for t in ranking[5:8]]  # tasks holding no superseded row of their own
    reuse: dict[int, int] = {}
    moved = pusher._take_spares(PID, queue, part, reuse, {"old"})
    assert set(moved) == {p["task"] for p in part} and set(reuse) == set(moved)
    assert set(moved.values()) <= set(tasks[25:30]), "labelled tasks' rows go first (in the ranking or not)"
    assert reuse == {to: 1000 + frm for to, frm in moved.items()}
    # more rows than labelled tasks hold, with the head near its end: the next batch is the lowest ranked
    queue.cursor = 35
    soon = set(ranking[35:45])  # tasks 5..1
    moved = pusher._take_spares(PID, queue, [{"task": t} for t in tasks[30:40]], {}, {"old"})
    assert len(moved) == 10
    assert sorted(moved.values()) == [*tasks[5:10], *tasks[25:30]], \
        "labelled tasks' rows, then those of the tasks ranked lowest (the reverse ranking puts low ids last), " \
        "never one of the next batch (tasks 1-5)"
    assert not set(moved.values()) & soon


def test_a_prune_step_goes_before_a_fill_only_when_the_superseded_rows_outgrow_a_head(store, rt_sample) -> None:
    """In row mode the fills take superseded rows over and the push prunes nothing; a fill cut short by each new
    version takes over few, so with no pause the table grew (~7 rows a version at 100,000 tasks). Once more
    superseded rows wait than a head holds (at least two prune steps), a prune step goes before the fill, still
    only while annotators pause."""
    ls, project, pusher, cold = _row_mode_pool(store, rt_sample, head=12, prune_chunk=2)
    maintainer = Maintainer(pusher, lambda project: ls, quiet=0.0)
    maintainer.stop()  # its thread gone: `_next` is asked directly
    assert len(cold) == 12 and pusher.store.spare_count(PID, pusher._overwritable(project, project.model_version)) \
        == 12, "the cold head's 12 rows are superseded now"
    maintainer._pending = {PID: (project, {"fill", "prune"})}
    assert maintainer._next() == (project, "fill"), "12 rows wait, a head holds 12: the fill comes first"
    pusher.settings.queue_head = 5
    assert maintainer._next() == (project, "prune"), "12 rows wait, more than a head of 5"
    maintainer.note_event(PID)
    maintainer.quiet = 60.0
    assert maintainer._next() == (project, "fill"), "annotators are at work: no prune step"
    maintainer.quiet = 0.0
    maintainer._pending = {PID: (project, {"fill"})}
    assert maintainer._next() == (project, "fill"), "no prune asked for"
