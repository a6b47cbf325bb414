"""Bounded writes per version (issue 17): push only the queue's head, refill it, prune in small chunks.

Label Studio 1.23's uncertainty sampling (projects/functions/next_task.py) considers only unlabelled
tasks holding a prediction of the project's current `model_version`, lowest `score` first, and falls
back to random when none is left. So a version needs predictions only for the tasks that come next:

- `HeadPusher.push`: rank the whole pool from the store's task list and cached embeddings (no export),
  import the first slice (the batch and a little more), point the project at the version (from here
  `/next` serves the engine's first choice), then import the rest of the head: `queue_head` tasks in
  all, the only rows a version writes. The ranking of the rest stays in memory; `/predict` answers
  any task with its queue score (Project.predict_rows), so "Retrieve predictions" agrees with it.
- `HeadPusher.refill`: when the head's unlabelled tasks fall below a quarter of it (or the batch),
  the next tasks of the same ranking are imported under the same version, before Label Studio runs
  out and falls back to random.
- `HeadPusher.prune`: superseded predictions of suggest's own versions are deleted one row per call
  (each its own short transaction in Label Studio), `prune_chunk` per step, only while annotators
  pause; never Label Studio's one-transaction delete of a whole version.

Where Label Studio's bulk imports are slow (stock 1.23 recounts every task of the project on each), rows
go one per call and the first slice is 10 rows (labelstudio.PredictionPace), the project pointed after the
first 3 of them (a team's annotators + 2). Then a task holding a superseded row of suggest's gets the new
version's in place (the store keeps each pushed row's id), and once the project points at the version a task
with none takes over a superseded row of a task that left the head (labelled ones first): the prune is left
only what no new row took over.

`Maintainer` is the background thread that runs fills and refills at once and prunes when annotators pause (a
step before a fill once the superseded rows outgrow a head, `HeadPusher.backlog_over`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from suggest import labelstudio as ls
from suggest.project import Project
from suggest.schema import Item, Prediction
from suggest.tasksync import SyncResult, TaskSync
from suggest.worker import Background, ProjectWorker

log = logging.getLogger(__name__)

UNCERTAINTY_SAMPLING = "Uncertainty sampling"
FIRST_SLICE_MIN = 100  # the first import: the batch, or this many tasks if more (then /next is right)
IMPORT_CHUNK = 100  # prediction rows per import request (one short transaction each in Label Studio)
IMPORT_PAUSE = 0.05  # seconds between import requests: annotators' saves get the database in between
ROW_GROUP = 25  # in row mode: rows between checks for a newer version (and per delete of superseded rows)
ROWS_FIRST_SLICE = 10  # in row mode: the first slice, written at once, without the head's pace
ROWS_BEFORE_POINT = 3  # in row mode: of those, rows written before the project points at the version (with a team:
# its annotators + 2, as Label Studio serves one of the first annotators + 1 tasks at random); the rest right after


@dataclass
class _Queue:
    """One version's ranking of a project's pool, in queue order, and how far it has been pushed."""

    version: str
    task_ids: list[int]
    preds: list[list[Prediction]]
    cursor: int = 0  # queue positions below this were pushed (or skipped as labelled / already held)
    refills: int = 0
    written: int = 0
    stopped: bool = False  # a newer version was published mid-push: this queue's head is left unfinished
    filling: bool = False  # the rest of the head after the first slice is still to be written (`fill`)
    started: float = 0.0  # when its push began (perf_counter), for the status the fill completes
    _positions: dict[int, int] | None = field(default=None, repr=False)

    def position(self, task_id: int) -> int:
        """A task's place in this ranking (past the end for a task it does not hold)."""
        if self._positions is None:
            self._positions = {t: i for i, t in enumerate(self.task_ids)}
        return self._positions.get(task_id, len(self.task_ids))


@dataclass
class HeadSettings:
    queue_head: int = 1000
    batch_size: int = 50
    set_sampling: bool = True
    keep_versions: int = 1  # suggest versions whose predictions stay (the current one always does)
    prune_chunk: int = 50  # 0: never prune
    candidates: int = 0  # tasks the strategy ranks per version (0: five heads, at least 5,000); see `candidates`
    first_slice: int = FIRST_SLICE_MIN  # imported before the project points at the version (at least the batch)
    ray_address: str | None = None  # a Ray cluster that embeds a big pool's new texts (suggest.distributed)
    ray_min_texts: int = 2000  # fewer texts to embed than this: the local path
    audit_fraction: float = 0.0  # issue 14's audit slice, drawn from the whole pool before the candidates
    push_duty: float = 1.0  # after the first slice: share of the time the head's writes may keep Label Studio busy


@dataclass
class _Prune:
    """Superseded predictions still to delete: whole tasks (every prediction they hold is a superseded one of
    suggest's, so one Data Manager call clears a chunk of tasks) and single rows (tasks that also hold a
    current prediction, or another model's)."""

    ids: list[int] = field(default_factory=list)
    tasks: dict[int, list[int]] = field(default_factory=dict)  # task -> its superseded prediction ids
    redo: dict[int, list[int]] = field(default_factory=dict)  # task -> superseded ids; its other row is current
    listed: dict[int, list[dict]] = field(default_factory=dict)  # redo task -> its current rows as listed
    versions: list[str] = field(default_factory=list)  # the superseded versions this plan removes


def pool_rows(project: Project, tasks: list[tuple[int, dict]]) -> list[dict[str, Item]]:
    """The store's unlabelled tasks read for every control they can be read for (unreadable ones skipped)."""
    rows = []
    for task_id, data in tasks:
        read = ls.task_items({"id": task_id, "data": data}, project.schemas)
        row = {name: it for name, it in read.items() if isinstance(it, Item)}
        if row:
            rows.append(row)
    return rows


NEXT_GUARD = 5  # unlabelled tasks at the front of the queue a prune never clears, not even for a moment


class HeadPusher:
    """Pushes, refills and prunes the queue head of each project (see the module docstring)."""

    def __init__(self, settings: HeadSettings, tasksync: TaskSync,
                 rank: Callable[..., tuple[list[list[Prediction]], np.ndarray]]):
        self.settings = settings
        self.tasksync = tasksync
        self.store = tasksync.store
        self._rank = rank
        self._queues: dict[str, _Queue] = {}
        self._prunes: dict[str, _Prune] = {}
        self._gone: dict[str, list[str]] = {}  # project -> superseded versions no longer in Label Studio
        self._locks: dict[str, threading.Lock] = {}
        self._rows: dict[str, tuple[str, dict[int, dict[str, Item] | None]]] = {}  # see `pool`
        self._guard = threading.Lock()
        # set by a Maintainer (paced pushes): a push writes only the first slice and hands the rest of the head to
        # `fill` on the Maintainer's thread; the trainer's thread, which pushes after each publish, is then free for
        # the next retrain while the paced rest takes minutes
        self.on_fill: Callable[[Project], None] | None = None
        self._pushes_waiting: dict[str, int] = {}  # project -> pushes waiting for its lock (`_push_lock`)

    def _lock(self, pid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(pid, threading.Lock())

    @contextmanager
    def _push_lock(self, pid: str):
        """The project's lock, for a push: while one waits, a paced fill or refill stops at its next part (a
        refill of 780 rows, paced, held the lock for 160 s at 100,000 tasks while the next version waited)."""
        with self._guard:
            self._pushes_waiting[pid] = self._pushes_waiting.get(pid, 0) + 1
        lock = self._lock(pid)
        try:
            lock.acquire()
        finally:
            with self._guard:
                self._pushes_waiting[pid] -= 1
        try:
            yield
        finally:
            lock.release()

    def _push_waiting(self, pid: str) -> bool:
        with self._guard:
            return self._pushes_waiting.get(pid, 0) > 0

    @property
    def low_water(self) -> int:
        """Refill when fewer unlabelled head tasks than this are left."""
        return min(self.settings.queue_head, max(self.settings.batch_size, self.settings.queue_head // 4))

    # push -------------------------------------------------------------------------------------

    def push(self, project: Project, client: ls.LabelStudioClient) -> dict:
        """Sync the task list, rank the pool, push the head of the new version; returns the loop status.

        A push that Label Studio refuses checks the task list for deletions at once, and when some task is gone
        (deleted with no webhook: Label Studio refuses a whole import that names one) pushes again without it.
        Why: the periodic check runs after a push is served, so a push that kept failing would never reach it."""
        try:
            return self._push(project, client)
        except ls.LabelStudioError as exc:
            pid = project.project_id
            try:
                removed = self.tasksync.reconcile(client, pid)
            except ls.LabelStudioError:
                removed = 0
            if not removed:
                raise
            log.warning("project %s: %d task(s) were deleted in Label Studio with no webhook (%s); pushing again "
                        "without them", pid, removed, exc)
            return self._push(project, client)

    def _push(self, project: Project, client: ls.LabelStudioClient) -> dict:
        pid = project.project_id
        started = time.perf_counter()
        with self._push_lock(pid):
            published = project.model_version  # a version published after this point supersedes the push
            # new tasks only: the periodic check for deletions waits until Label Studio serves the version (below)
            sync = self.tasksync.sync(client, pid, reconcile=False)
            ls.prediction_pace(client, pid).tasks = sync.total
            rows = self.pool(project)
            fetched = time.perf_counter()
            version = project.model_version
            next_tasks: list[int] = []
            written = 0
            first_at = None
            pool_size = len(rows)
            self._embed_on_ray(project, rows)
            if rows:
                drawn = self._draw_audit(project, len(rows))
                audited = {next(iter(rows[i].values())).task_id for i in drawn}
                rows = self.candidates(project, rows, keep=drawn)
                at = [i for i, r in enumerate(rows) if next(iter(r.values())).task_id in audited]
                drawn_arg = ((at, pool_size),) if self.settings.audit_fraction else ()  # a ranker may not take it
                preds, batch = self._rank(project, rows, *drawn_arg)
                version = next((p[0].model_version for p in preds if p), version)  # a retrain may have published
                ids = [next(iter(r.values())).task_id for r in rows]
                scores = np.array([p[0].score if p else 1.0 for p in preds], dtype=float)
                order = np.argsort(scores, kind="stable")
                queue = _Queue(version, [ids[i] for i in order], [preds[i] for i in order])
                ranked = time.perf_counter()
                first = min(max(self.settings.batch_size, self.settings.first_slice), self.settings.queue_head)
                before = first
                if ls.prediction_pace(client, pid).by_row():  # one row per call: the rest follows at once
                    first = min(first, ROWS_FIRST_SLICE)
                    before = min(first, self._rows_before_point(pid))
                # the first slice deletes nothing and, before the project points, takes over no other task's row:
                # Label Studio serves the version as soon as it can (in row mode a task's own superseded row is
                # overwritten in place; other older rows are taken over by the rest of the head, or pruned)
                written = self._push_slice(project, client, queue, before, replace=False, recycle=False)
                next_tasks = [ids[i] for i in batch[:10]]
                if written:
                    self._point(client, pid, version)
                    first_at = time.perf_counter()
                    # in row mode the rest of the first slice, unpaced, before the prune steps and the paced rest:
                    # Label Studio serves the version after a few rows (~0.1-0.3 s each), not ten
                    written += self._push_slice(project, client, queue, first - written, replace=False)
                    # the rest of the head is paced and may take minutes: /metrics shows the version served
                    # (and what /next should give) from now on, with the head still growing
                    project.loop_status = self._status(
                        client, pid, version, rows, pool_size, next_tasks, [], written, sync,
                        {"fetch": fetched - started, "rank": ranked - fetched, "first_choice": first_at - started},
                        pushing=True)
                queue.started = started
                if self.on_fill is not None and written and queue.cursor < len(queue.task_ids) and (
                        written < self.settings.queue_head):
                    queue.filling = True  # the Maintainer writes the rest, paced, off the trainer's thread
                else:
                    written += self._push_slice(project, client, queue, self.settings.queue_head - written,
                                                superseded=lambda: project.model_version != published,
                                                duty=self.settings.push_duty)
                self._queues[pid] = queue
                self._prunes.pop(pid, None)  # planned against the last version's rows: listed again when due
            else:
                ranked = fetched
            pushed = time.perf_counter()
            held = written > 0 or version in client.model_versions(pid)
            if held and first_at is None:
                self._point(client, pid, version)
                first_at = time.perf_counter()
            sync = self._reconcile_if_due(client, pid, sync)
            stopped = pid in self._queues and self._queues[pid].stopped
            if written and not stopped and not ls.prediction_pace(client, pid).by_row():
                # before the lock goes: a job waiting for it (a paced fill holds it for minutes) would otherwise
                # take it first, and the superseded rows stayed until the next version
                pruned = self._prune_steps(project, client)
            else:
                # in row mode the rest of the head takes the superseded rows over (`_take_spares`) and the
                # Maintainer prunes what is left when annotators pause. Why (issue 17, 10,000 tasks): pruned here,
                # 50-70 tasks' rows went in Data Manager deletes (0.1-3.5 s each) right after the project pointed
                # at the version, before the fill could take them over, and annotators' saves and first /next
                # waited behind them
                pruned = self._gone.get(pid, [])[-20:]
        done = time.perf_counter()
        filling = pid in self._queues and self._queues[pid].filling
        status = self._status(client, pid, version, rows, pool_size, next_tasks, pruned, written, sync,
                              {"fetch": fetched - started, "rank": ranked - fetched, "push": pushed - ranked,
                               "first_choice": None if first_at is None else first_at - started,
                               **({} if filling else {"total": done - started})}, held=held, pushing=filling)
        if filling and self.on_fill is not None:  # after the status is out: the fill completes it in place
            project.loop_status = status
            self.on_fill(project)
        log.info("project %s: pushed the head of %s (%d of %d tasks scored) in %.2f s", pid, version, written,
                 len(rows), done - started)
        return status

    def _reconcile_if_due(self, client: ls.LabelStudioClient, pid: str, sync: SyncResult) -> SyncResult:
        """The periodic check for tasks deleted with no webhook, after the version is served. Why: its count
        read took 4.7 s under load at 100,000 tasks, and before the listing it put one version at 12.4 s from
        publish to its first choice (target 10 s). A deleted task the head still named meanwhile is skipped by
        the writes that follow (they take only tasks still in the store)."""
        try:
            removed = self.tasksync.reconcile_if_due(client, pid)
        except ls.LabelStudioError as exc:  # the next push tries again; this version is already served
            log.warning("project %s: the check for deleted tasks failed: %s", pid, exc)
            return sync
        if removed is None:
            return sync
        return dataclasses.replace(sync, removed=sync.removed + removed, reconciled=True,
                                   total=self.store.task_count(pid))

    def _status(self, client: ls.LabelStudioClient, pid: str, version: str, rows: list, pool_size: int,
                next_tasks: list[int], pruned: list[str], written: int, sync, seconds: dict[str, float | None], *,
                held: bool = True, pushing: bool = False) -> dict:
        """The loop status /metrics shows: `pushing` while the rest of the head is still being written."""
        return {
            "enabled": True,
            **({} if rows else {"note": "nothing to push: no unlabelled task is waiting for a prediction" + (
                "" if held else ", so Label Studio's model version was left as it was")}),
            "version": version,
            "pushing": pushing,
            "tasks_scored": len(rows),
            "pool": pool_size,
            "next_tasks": next_tasks,
            "pruned_versions": pruned,
            "head": {"size": self.settings.queue_head, "written": written, "refills": 0,
                     "import": "rows" if ls.prediction_pace(client, pid).rows else "bulk"},
            "task_list": {"tasks": sync.total, "added": sync.added, "removed": sync.removed,
                          "reconciled": sync.reconciled},
            "seconds": {k: None if v is None else round(v, 3) for k, v in seconds.items()},
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def pool(self, project: Project) -> list[dict[str, Item]]:
        """The unlabelled pool as rows, in task id order; rows of tasks read at an earlier push come from memory.
        Why: at 100,000 tasks reading and parsing every task's data again took 1-5 s of each version's time
        to Label Studio serving its first choice. A new label config reads everything again; a task whose
        stored data was written again since (`TaskSync.take_touched`) is read again."""
        pid = project.project_id
        memo = self._rows.get(pid)
        touched = self.tasksync.take_touched(pid)
        if memo is None or memo[0] != project.label_config:
            memo = self._rows[pid] = (project.label_config, {})
        known = memo[1]
        for task in touched:
            known.pop(task, None)
        ids = sorted(self.store.unlabeled_task_ids(pid))
        missing = [t for t in ids if t not in known]
        for start in range(0, len(missing), 5000):
            data = self.store.task_data(pid, missing[start : start + 5000])
            read = pool_rows(project, sorted(data.items()))
            by_id = {next(iter(row.values())).task_id: row for row in read}
            known.update((t, by_id.get(t)) for t in missing[start : start + 5000])  # None: unreadable, skipped
        if len(known) > len(ids):
            waiting = set(ids)
            for gone in [t for t in known if t not in waiting]:  # labelled or deleted since
                del known[gone]
        return [row for row in (known[t] for t in ids) if row is not None]

    def _embed_on_ray(self, project: Project, rows: list[dict[str, Item]]) -> None:
        """With a Ray address, a pool's texts not yet in the embedding cache (a first sync of a big project)
        are embedded as a Ray Data job into that cache; without Ray, or below `ray_min_texts`, nothing
        happens here and ranking embeds locally as always."""
        if not self.settings.ray_address:
            return
        from suggest.distributed import embed_or_local

        text_controls = {s.from_name for s in project.schemas if s.object_type == "text"}
        texts = list(dict.fromkeys(it.text for row in rows for name, it in row.items() if name in text_controls))
        if len(texts) >= self.settings.ray_min_texts:
            report = embed_or_local(texts, self.store, self.settings.ray_address)
            if report is not None and report.embedded:
                log.info("project %s: %d new texts embedded on Ray in %.1f s", project.project_id, report.embedded,
                         report.seconds)

    def _draw_audit(self, project: Project, pool_size: int) -> np.ndarray:
        """Issue 14's audit slice for this version, uniform over the whole unlabelled pool (positions in it):
        drawn before the pool is narrowed to the least certain candidates, or the unbiased estimate would
        only ever see hard tasks."""
        published = project.published
        if not self.settings.audit_fraction or published.record is None:
            return np.array([], dtype=int)
        from suggest.strategies.ranking import draw_audit

        rng = np.random.default_rng(zlib.crc32(f"{project.project_id}/{published.version}/audit".encode()))
        return draw_audit(pool_size, fraction=self.settings.audit_fraction, batch_size=self.settings.batch_size,
                          rng=rng)

    def candidates(self, project: Project, rows: list[dict[str, Item]],
                   keep: np.ndarray | None = None) -> list[dict[str, Item]]:
        """The rows the strategy ranks: the least certain `candidates` of the pool (a seeded random sample
        before the first trained version). Why: dense and diverse weigh each task's density among the
        others, quadratic in the rows (10,000 tasks: 0.9 s on a quiet 2-core machine, 5-10 s on a busy
        one; 100,000 would be 100 times that); the head only needs the front of the queue. The others are
        scored when Label Studio asks through /predict, or at a later version."""
        m = self.settings.candidates or max(5 * self.settings.queue_head, 5000)
        if len(rows) <= m:
            return rows
        published = project.published
        if published.record is None:
            chosen = np.random.default_rng(0).choice(len(rows), m, replace=False)
        else:
            from backends.uncertainty import certainty
            from suggest.loop import _one_text_classifier, _read_pool

            model = published.model
            if _one_text_classifier(project) and model.gives_proba:  # arrays only: no Prediction per task
                items = [row[project.schema.from_name] for row in rows]
                X = model.embed(items)
                proba = model.predict_proba_embedded(X) if model.supports_embedded else model.predict_proba(items)
            else:
                pool = _read_pool(project, published, rows)
                proba = pool.proba
            cert = certainty(proba, project.uncertainty) if proba is not None else pool.cert
            chosen = np.argsort(cert, kind="stable")[:m]
        if keep is not None and len(keep):  # the audit slice is ranked whatever its certainty
            chosen = np.union1d(chosen, keep)
        return [rows[i] for i in np.sort(chosen)]

    def _prune_steps(self, project: Project, client: ls.LabelStudioClient) -> list[str]:
        """At most four prune steps right after a push in bulk mode (in row mode the head's rows take the superseded
        ones over instead, see `_push`), inside the push's lock; returns the superseded versions that are gone from
        Label Studio now. The Maintainer carries on with what is left."""
        pid = project.project_id
        if self.settings.prune_chunk <= 0:
            return []
        try:
            more, steps = True, 0
            while more and steps < 4:  # bounded: the Maintainer carries on with the rest
                _, more = self._prune(project, client, None)
                steps += 1
            return self._gone.get(pid, [])[-20:]  # every superseded version removed so far (the newest 20)
        except ls.LabelStudioError as exc:
            log.warning("project %s: pruning after the push failed: %s", pid, exc)
            return []

    def _rows_before_point(self, pid: str) -> int:
        """Rows a version needs in Label Studio before the project points at it, in row mode. Label Studio 1.23
        serves the first unlocked task of the version to a lone annotator, and one of the first annotators + 1
        at random to a team (`_try_uncertainty_sampling`): with fewer rows a team's /next could find every one
        locked and fall back to random. The store's distinct annotators stand in for Label Studio's members."""
        annotators = len(self.store.annotator_counts(pid))
        return min(ROWS_FIRST_SLICE, max(ROWS_BEFORE_POINT, annotators + 2))

    def _point(self, client: ls.LabelStudioClient, pid: str, version: str) -> None:
        fields: dict = {"model_version": version}
        if self.settings.set_sampling:
            fields["sampling"] = UNCERTAINTY_SAMPLING
        client.update_project(pid, **fields)

    def _push_slice(self, project: Project, client: ls.LabelStudioClient, queue: _Queue, n: int, *,
                    replace: bool = True, superseded: Callable[[], bool] = lambda: False, duty: float = 1.0,
                    recycle: bool = True) -> int:
        """Import the next `n` unlabelled tasks of the queue not yet holding its version; returns rows written.

        Stops between chunks once `superseded()`: a newer version was published meanwhile, and the rest of
        this head would only keep the newer version's push waiting for the lock (at 10,000 tasks the head's
        remaining 950 rows took 20-40 s, and the next version's first choice waited for them).
        `duty` < 1 paces the writes (`labelstudio.rest_after`): the rest of a head is needed only before
        annotators reach it, while every write is time an annotator's save may wait for Label Studio."""
        pid = project.project_id
        if n <= 0:
            return 0
        waiting = set(self.store.unlabeled_task_ids(pid))
        picked: list[int] = []
        while queue.cursor < len(queue.task_ids) and len(picked) < n:
            if queue.task_ids[queue.cursor] in waiting and queue.preds[queue.cursor]:
                picked.append(queue.cursor)
            queue.cursor += 1
        if not picked:
            return 0
        scores = {queue.task_ids[i]: queue.preds[i][0].score for i in picked}
        # In chunks, with a pause between them: Label Studio inserts each request's rows in one transaction,
        # and on SQLite an annotator's save waits for the write lock while it runs (900 rows at once held it
        # for seconds on a busy machine; a chunk of IMPORT_CHUNK holds it for a fraction of one). In a big
        # project (5,000+ tasks), one row per call (labelstudio.PredictionPace).
        by_row = ls.prediction_pace(client, pid).by_row()  # the same answer send_predictions acts on
        group = max(1, round(ROW_GROUP * min(duty, 1.0)))  # paced rows: the check for a newer version stays ~2 s apart
        # whether older suggest rows may go per task: checked once per slice, not per part (Label Studio's
        # model-versions read aggregates the whole predictions table: ~1 s at 100,000 tasks)
        replacing = replace and self.settings.prune_chunk > 0 and self._only_ours(client, project, queue.version)
        overwritable = self._overwritable(project, queue.version) if by_row else set()
        written = 0
        start = 0
        while start < len(picked):
            part_at = picked[start : start + (group if by_row else IMPORT_CHUNK)]
            if start and not by_row:
                time.sleep(IMPORT_PAUSE)
            if superseded():
                log.info("project %s: the rest of the head of %s (%d rows) is left: a newer version was published, "
                         "or a push waits for the project", pid, queue.version, len(picked) - start)
                queue.stopped = True
                return written
            start += len(part_at)
            # claimed a part at a time, as it is written: a paced head takes minutes, and "Retrieve predictions"
            # meanwhile answers (through /predict) every task the push has not reached; those it skips
            ids = [queue.task_ids[i] for i in part_at]
            covered = project.claim_predictions(queue.version, ids, "push")
            self.store.set_pushed(pid, queue.version, {t: scores[t] for t in ids if t in covered})
            part = [ls.prediction_import_json(queue.task_ids[i], queue.preds[i], project.schemas)
                    for i in part_at if queue.task_ids[i] not in covered]
            if not part:
                continue
            now = self.pace(pid, queue.version, duty)
            reuse = {t: i for t, (v, i) in self.store.pushed_predictions(pid, [r["task"] for r in part]).items()
                     if v in overwritable} if overwritable else {}
            moved = self._take_spares(pid, queue, part, reuse, overwritable) if recycle else {}
            try:
                if replacing:
                    began = time.perf_counter()
                    if self._replace_old(client, project, queue.version, [r["task"] for r in part if r["task"]
                                                                          not in reuse]):
                        ls.rest_after(time.perf_counter() - began, now, superseded)
                made = ls.send_predictions(client, pid, part, duty=now, stop=superseded, reuse=reuse)
            except Exception:
                project.release_claims(queue.version, [r["task"] for r in part], "push")
                self.store.move_pushed(pid, {u: t for t, u in moved.items()})  # unknown now: the prune lists them
                raise
            self.store.move_pushed(pid, {u: t for t, u in moved.items()})
            self._unplan(pid, {i for t, i in reuse.items() if made.get(t) == i})
            self.store.set_pushed(pid, queue.version, {r["task"]: scores[r["task"]] for r in part}, made)
            queue.written += len(part)
            written += len(part)
            status = project.loop_status
            if isinstance(status, dict) and status.get("pushing") and status.get("version") == queue.version:
                status["head"]["written"] = queue.written  # /metrics follows a paced head as it grows
        return written

    def _take_spares(self, pid: str, queue: _Queue, part: list[dict], reuse: dict[int, int],
                     overwritable: set[str]) -> dict[int, int]:
        """Rows of `part` with no superseded row of their own take over one from another task (added to `reuse`:
        Label Studio moves a row to another task with the same PATCH that rewrites it); returns to-task ->
        from-task. Labelled tasks' rows go first, then those of the tasks ranked lowest now; never an unlabelled
        one of the next batch the head writes (at least ROWS_FIRST_SLICE: their own rows are overwritten in place).
        Why (issue 17): the prune's Data Manager deletes (0.1-3.5 s each at 10,000 tasks, one transaction with a
        counter update per row) met every slow annotator save; a row taken over is never deleted. Sparing the
        whole head's tasks (1,000) left most superseded rows unused: a version's fill writes ~40 rows before the
        next version supersedes it, and the table grew by ~5 rows a version."""
        need = [r["task"] for r in part if r["task"] not in reuse]
        if not need or not overwritable:
            return {}
        near = max(self.settings.batch_size, ROWS_FIRST_SLICE)
        writing = {r["task"] for r in part}
        soon = set(queue.task_ids[queue.cursor : queue.cursor + near])  # a labelled one is skipped, not written
        spares = sorted(((t, i, done) for t, i, done in self.store.spare_predictions(pid, overwritable)
                         if t not in writing and (done or t not in soon)),
                        key=lambda s: (not s[2], -queue.position(s[0]), s[0]))
        moved = {}
        for to, (frm, row, _) in zip(need, spares, strict=False):
            reuse[to] = row
            moved[to] = frm
        return moved

    def backlog_over(self, project: Project) -> bool:
        """Whether more superseded rows of suggest's wait than a head takes over in a while (`queue_head`, at least
        two prune steps). Then a prune step may go before a paced fill (`Maintainer._next`). Why: in row mode the
        fills take superseded rows over and the push prunes nothing, but a fill cut short by each new version takes
        over ~10 rows a version. At 100,000 tasks, under a version every ~15 s and no pause, the table grew by ~7
        rows a version. This keeps it bounded."""
        if self.settings.prune_chunk <= 0:
            return False
        limit = max(self.settings.queue_head, 2 * self.settings.prune_chunk)
        stale = self._overwritable(project, project.model_version)
        return self.store.spare_count(project.project_id, stale) > limit

    def pace(self, pid: str, version: str, duty: float) -> float:
        """The duty for the next paced write: `duty`, or 1 (no rest) while fewer than a batch of the version's
        rows wait unlabelled in Label Studio. Why: a slow pace (0.1) keeps annotators' saves near their idle
        latency (benchmarks/push_save_cost.py), but a head written at ~1 row/s could run dry under a team
        labelling faster than that, and then Label Studio serves random tasks; so the pace never holds back
        the rows annotators are about to reach, only the ones beyond the next batch."""
        if duty >= 1.0:
            return 1.0
        return duty if len(self.store.unlabeled_pushed(pid, version)) >= self.settings.batch_size else 1.0

    def _only_ours(self, client: ls.LabelStudioClient, project: Project, version: str) -> bool:
        """Whether every prediction in the project is one of suggest's versions (then `_replace_old` may delete
        per task). Label Studio's delete takes every prediction of a task; with another model's there, `prune`
        removes suggest's rows one by one. SUGGEST_PRUNE_CHUNK=0 keeps them all."""
        pid = project.project_id
        ours = {*project.our_versions(), version}
        foreign = sorted(set(client.model_versions(pid)) - ours)
        if foreign:
            log.info("project %s: predictions of other models (%s) are in Label Studio; superseded suggest "
                     "predictions are removed one by one instead of per task", pid, ", ".join(foreign[:3]))
        return not foreign

    def _overwritable(self, project: Project, version: str) -> set[str]:
        """suggest's versions whose rows a row of `version` may overwrite in place: every older one of ours
        beyond `keep_versions` (none while pruning is off: SUGGEST_PRUNE_CHUNK=0 keeps every version's rows)."""
        if self.settings.prune_chunk <= 0:
            return set()
        ours = project.our_versions()
        return set(ours) - set(ours[-max(1, self.settings.keep_versions):]) - {version}

    def _unplan(self, pid: str, overwritten: set[int]) -> None:
        """Rows just overwritten in place hold the current version now: the prune's plan, listed before, must
        not delete them."""
        work = self._prunes.get(pid)
        if work is None or not overwritten:
            return
        work.ids = [i for i in work.ids if i not in overwritten]
        for plan in (work.tasks, work.redo):
            for task in [t for t, ids in plan.items() if set(ids) & overwritten]:
                if left := [i for i in plan[task] if i not in overwritten]:
                    plan[task] = left
                else:
                    del plan[task]
                    work.listed.pop(task, None)

    def _replace_old(self, client: ls.LabelStudioClient, project: Project, version: str, task_ids: list[int]) -> bool:
        """Tasks about to get this version's prediction lose the older one suggest pushed before, a chunk of
        tasks per call (Label Studio's Data Manager deletes per task, in one short transaction); True when a call
        was made. Why: a new head overlaps the last one, and deleting those superseded rows one call each later
        was far too slow (0.3 to 1 s a call on a busy 2-core machine: the table grew by 700 rows a version)."""
        pid = project.project_id
        chunk = self.settings.prune_chunk
        old = [t for t, v in self.store.pushed_versions(pid, task_ids).items() if v != version]
        for start in range(0, len(old), chunk):
            client.delete_task_predictions(pid, old[start : start + chunk])
        return bool(old)

    # refill -----------------------------------------------------------------------------------

    def needs_refill(self, project: Project) -> bool:
        queue = self._queues.get(project.project_id)
        if queue is None or queue.cursor >= len(queue.task_ids):  # the version Label Studio points at
            return False
        return len(self.store.unlabeled_pushed(project.project_id, queue.version)) < self.low_water

    def fill(self, project: Project, client: ls.LabelStudioClient) -> int:
        """Write the rest of a head whose push wrote only its first slice (`on_fill`), paced by `push_duty`,
        stopping once a newer version is published; then the loop status says the push is done."""
        pid = project.project_id
        with self._lock(pid):
            queue = self._queues.get(pid)
            if queue is None or not queue.filling:
                return 0
            try:
                written = self._push_slice(project, client, queue, self.settings.queue_head - queue.written,
                                           superseded=lambda: project.model_version != queue.version
                                           or self._push_waiting(pid), duty=self.settings.push_duty)
            finally:
                queue.filling = False
                status = project.loop_status
                if isinstance(status, dict) and status.get("version") == queue.version and status.get("pushing"):
                    status["pushing"] = False
                    status["head"]["written"] = queue.written
                    # a new dict, not a new key: /metrics may be serialising this status on another thread
                    status["seconds"] = {**(status.get("seconds") or {}),
                                         "total": round(time.perf_counter() - queue.started, 3)}
        log.info("project %s: wrote the rest of the head of %s (%d rows, %d in all)%s", pid, queue.version,
                 written, queue.written, "; stopped for a newer version" if queue.stopped else "")
        return written

    def refill(self, project: Project, client: ls.LabelStudioClient) -> int:
        """Top the head up to `queue_head` unlabelled tasks from the same version's ranking."""
        pid = project.project_id
        with self._lock(pid):
            queue = self._queues.get(pid)
            # a queue whose push stopped for a newer version is still the one Label Studio serves until that
            # version's push (which may wait for annotators to pause): it is refilled as any other
            if queue is None or queue.filling or not self.needs_refill(project):
                return 0
            left = len(self.store.unlabeled_pushed(pid, queue.version))
            written = self._push_slice(project, client, queue, self.settings.queue_head - left,
                                       superseded=lambda: self._push_waiting(pid), duty=self.settings.push_duty)
            queue.refills += 1
        if written:
            log.info("project %s: refilled the head of %s with %d tasks (%d were left)", pid, queue.version,
                     written, left)
            status = project.loop_status if isinstance(project.loop_status, dict) else {}
            if status.get("version") == queue.version and isinstance(status.get("head"), dict):
                status["head"]["refills"] = queue.refills
                status["head"]["written"] = queue.written
        return written

    # prune ------------------------------------------------------------------------------------

    def stale_versions(self, project: Project) -> list[str]:
        ours = project.our_versions()
        kept = set(ours[-max(1, self.settings.keep_versions):]) | {project.model_version}
        queue = self._queues.get(project.project_id)
        if queue is not None:
            kept.add(queue.version)
        return [v for v in ours if v not in kept]

    def prune(self, project: Project, client: ls.LabelStudioClient, budget: int | None = None) -> tuple[int, bool]:
        """Delete up to `budget` (default `prune_chunk`) superseded predictions; returns (deleted, more left).
        Listing included, never beside a push or refill of the same project (a listing taken mid-push saw
        half-replaced rows and planned deletes against the old version)."""
        with self._lock(project.project_id):
            return self._prune(project, client, budget)

    def _prune(self, project: Project, client: ls.LabelStudioClient, budget: int | None) -> tuple[int, bool]:
        pid = project.project_id
        budget = self.settings.prune_chunk if budget is None else budget
        if budget <= 0:
            return 0, False
        order = self.stale_versions(project)
        stale = set(order)
        gone = self._gone.setdefault(pid, [])
        work = self._prunes.get(pid)
        if work is None or not (work.ids or work.tasks or work.redo):
            self._prunes.pop(pid, None)
            if not stale - set(gone):
                return 0, False  # no read: every superseded version is known gone (a new one comes with a push)
            # One read plans the prune and says which versions Label Studio holds (a model-versions read before
            # it, and another after, cost ~55 ms of Label Studio each at 10,000 tasks, as much as this listing of
            # a pruned table). The listing holds every row, so a late row of a version known gone is found too.
            listing = client.predictions(pid)
            held = {p["model_version"] for p in listing}
            gone += [v for v in order if v not in held and v not in gone]
            if not stale & held:
                return 0, False
            by_task: dict[int, list[dict]] = {}
            for p in listing:
                if p["id"] is not None and p["task"] is not None:
                    by_task.setdefault(p["task"], []).append(p)
            work = self._prunes[pid] = _Prune(versions=[v for v in order if v in held])
            queue = self._queues.get(pid)
            ours = {*stale, *project.our_versions()}
            only_ours = set(held) <= ours | ({queue.version} if queue else set())
            for task, preds in by_task.items():
                old = [p["id"] for p in preds if p["model_version"] in stale]
                if old and len(old) == len(preds):
                    work.tasks[task] = old
                elif old and queue is not None and only_ours and all(
                        p["model_version"] in stale or p["model_version"] == queue.version for p in preds):
                    work.redo[task] = old  # a head task: cleared and given its current row again
                    work.listed[task] = [_reimport(p) for p in preds if p["model_version"] not in stale]
                else:
                    work.ids += old
            log.info("project %s: superseded predictions to prune: %d task(s) cleared whole, %d head task(s) "
                     "cleared and re-given their current row, %d row(s) one by one (versions held: %s)", pid,
                     len(work.tasks), len(work.redo), len(work.ids), ", ".join(sorted(held))[:300])
        deleted = 0
        queue = self._queues.get(pid)
        current = set(self.store.pushed(pid, queue.version)) if queue is not None else set()
        if work.tasks:
            chunk = sorted(work.tasks)[:budget]
            whole = {t: work.tasks.pop(t) for t in chunk}
            for t in [t for t in chunk if t in current]:  # pushed again since the listing: cleared and given its
                work.redo[t] = whole.pop(t)  # current row again
            if whole:
                deleted += client.delete_task_predictions(pid, list(whole))
                self.store.forget_predictions(pid, tasks=list(whole))
        elif work.redo:
            deleted += self._redo(project, client, queue, work, budget)
        else:
            removed: list[int] = []
            try:
                while work.ids and deleted < budget:
                    removed.append(work.ids.pop())
                    if client.delete_prediction(removed[-1]):
                        deleted += 1
            finally:
                self.store.forget_predictions(pid, ids=removed)  # gone either way: deleted now, or already
        more = bool(work.ids or work.tasks or work.redo)
        if not more:  # the plan held every row of its versions: they are gone (no read to confirm it)
            gone += [v for v in work.versions if v not in gone]
        return deleted, more

    def _redo(self, project: Project, client: ls.LabelStudioClient, queue: _Queue | None, work: _Prune,
              budget: int) -> int:
        """Head tasks holding a superseded row beside the current one: one Data Manager call clears a chunk of
        them and one import gives them their current rows again (two calls, where deleting the superseded
        rows one by one took one call each: 1,100 calls in a 200-save burst on a 100-task pool). For the
        moment between the two calls those tasks hold no prediction, so Label Studio would serve the next
        task instead (issue 17: /next served the second choice once, mid-prune). So the first `NEXT_GUARD`
        unlabelled tasks of the queue (what /next serves now, one per concurrent annotator) are never
        cleared: their superseded rows go one call per row, a handful at most. (Guarding the whole next
        batch cost dozens of calls per prune on a small pool, or, left for later, never pruned a pool no
        bigger than a batch.)"""
        pid = project.project_id
        chunk = sorted(work.redo)[:budget]
        olds = {t: work.redo.pop(t) for t in chunk}
        at = {t: i for i, t in enumerate(queue.task_ids)} if queue is not None else {}
        current = self.store.pushed(pid, queue.version) if queue is not None else {}
        rows, missing = [], {"queue": 0, "pushed": 0, "prediction": 0}
        waiting = self.store.unlabeled_pushed(pid, queue.version) if queue is not None else []
        guarded = set(sorted(waiting, key=lambda t: at.get(t, len(at)))[:NEXT_GUARD])
        for t in chunk:
            i = at.get(t)
            listed = work.listed.pop(t, None)
            if t in guarded:
                work.ids += olds[t]  # served next: never without its current row, not even for a moment
                continue
            if i is not None and t in current and queue.preds[i]:
                rows.append(ls.prediction_import_json(t, queue.preds[i], project.schemas))
                continue
            if i is None and listed and all(r is not None for r in listed):
                # not in the queue (labelled since, or a review-tab suspect): its current rows as listed
                rows.extend(listed)
                continue
            missing["queue" if i is None else "pushed" if t not in current else "prediction"] += 1
            work.ids += olds[t]  # no current row to give back: its superseded rows go one by one
        if any(missing.values()):
            log.info("project %s: %s head task(s) pruned row by row (not in the queue / not pushed / no "
                     "prediction)", project.project_id, "/".join(str(v) for v in missing.values()))
        if not rows:
            return 0
        given = list(dict.fromkeys(r["task"] for r in rows))
        client.delete_task_predictions(pid, given)
        self.store.forget_predictions(pid, tasks=given)  # their current rows come back with new ids
        made = ls.send_predictions(client, pid, rows)
        if queue is not None:  # one row per call: the new ids, for the next version to overwrite (a bulk import
            back = made if ls.prediction_pace(client, pid).by_row() else given  # answers none)
            self.store.set_pushed(pid, queue.version, {t: current[t] for t in back if t in current}, made)
        return sum(len(olds[t]) for t in given)


def _reimport(listed: dict) -> dict | None:
    """A listed prediction as an import row that recreates it (None when the listing lacks its result)."""
    if not isinstance(listed.get("result"), list):
        return None
    row = {"task": listed["task"], "result": listed["result"], "model_version": listed["model_version"]}
    if isinstance(listed.get("score"), int | float):
        row["score"] = listed["score"]
    return row


class Maintainer(ProjectWorker):
    """Writes the paced rest of heads and refills them as soon as they run low; prunes in chunks once annotators
    pause (`quiet` s), a step before a fill when the superseded rows outgrow a head."""

    def __init__(self, head: HeadPusher, client_for: Callable[[Project], ls.LabelStudioClient | None], *,
                 quiet: float = 2.0, background: Background | None = None):
        self.head = head
        self.quiet = quiet
        self._client_for = client_for
        self.pruned: dict[str, int] = {}
        self._events: dict[str, float] = {}
        self._prune_rest: dict[str, float] = {}  # the next prune step of a project waits until then (monotonic)
        if head.settings.push_duty < 1.0:  # paced: the rest of each head is written here (`fill`)
            head.on_fill = lambda project: self._add(project, "fill")
        super().__init__("suggest-queue-head", background)
        self._pending: dict[str, tuple[Project, set[str]]] = {}
        self._start()

    def note_event(self, project_id: str) -> None:
        """An annotator saved: pruning waits `quiet` s from now."""
        self._events[project_id] = time.monotonic()

    def labels_changed(self, project: Project) -> None:
        if self.head.needs_refill(project):
            self._add(project, "refill")

    def pushed(self, project: Project) -> None:
        if self.head.settings.prune_chunk > 0:
            self._add(project, "prune")

    def _add(self, project: Project, job: str) -> None:
        with self._cond:
            entry = self._pending.setdefault(project.project_id, (project, set()))
            entry[1].add(job)
            self._cond.notify_all()

    def _next(self) -> tuple[Project, str] | float:
        now, wait = time.monotonic(), 3600.0
        for project, jobs in self._pending.values():
            if {"fill", "prune"} <= jobs and self._prune_due(project) <= now and self.head.backlog_over(project):
                return project, "prune"  # one step before the fill: the fills fell behind (HeadPusher.backlog_over)
            for job in ("fill", "refill"):  # the head comes first; pruning waits for annotators to pause
                if job in jobs:
                    return project, job
        for project, _ in self._pending.values():
            due = self._prune_due(project)
            if due <= now:
                return project, "prune"
            wait = min(wait, due - now)
        return wait

    def _prune_due(self, project: Project) -> float:
        """When the project's next prune step may run (monotonic): annotators paused `quiet` s, and its rest done."""
        return max(self._events.get(project.project_id, 0.0) + self.quiet,
                   self._prune_rest.get(project.project_id, 0.0))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    picked = self._next()
                    if not isinstance(picked, float):
                        break
                    self._cond.wait(picked)
                if self._stopped:
                    return
                project, job = picked
                pid = project.project_id
                jobs = self._pending[pid][1]
                jobs.discard(job)
                if not jobs:
                    del self._pending[pid]
                self._running = pid
            more = False
            try:
                client = self._client_for(project)
                if client is not None:
                    try:
                        if job == "fill":
                            self.head.fill(project, client)
                        elif job == "refill":
                            self.head.refill(project, client)
                        else:
                            began = time.monotonic()
                            deleted, more = self.head.prune(project, client)
                            self.pruned[pid] = self.pruned.get(pid, 0) + deleted
                            # paced as a head's writes are: a prune is never urgent, and each step is a
                            # Label Studio write other projects' annotators may wait behind
                            rest = ls.rest_seconds(time.monotonic() - began, self.head.settings.push_duty)
                            self._prune_rest[pid] = time.monotonic() + rest
                    finally:
                        client.close()
            except Exception as exc:
                log.warning("project %s: %s of the queue head failed: %s", pid, job, exc)
            finally:
                with self._cond:
                    self._running = None
                    if more:
                        self._pending.setdefault(pid, (project, set()))[1].add("prune")
                    self._cond.notify_all()
