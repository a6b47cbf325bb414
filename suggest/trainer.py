"""Background retraining: webhooks only mark a project dirty; one worker thread does the work.

Bursts coalesce: a retrain starts once a project has been quiet for `debounce` seconds (or has
waited `max_delay` seconds since its first pending event), and events that arrive while it trains
make exactly one more retrain afterwards. While a project waits, the worker embeds the newly
labeled texts, so the retrain at the end of a burst only refits the head.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from suggest.labelstudio import LabelStudioError
from suggest.project import Project
from suggest.worker import Background, ProjectWorker

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    first: float
    last: float
    force: bool
    sync: bool
    push: bool = False
    warmed: bool = False
    not_before: float = 0.0  # rate limit on Label Studio calls: not due before this time
    events: int = 1  # requests merged into this one (each webhook of a burst is one)


TRAIN_REST = 2.0  # after a retrain of d seconds the project's next one waits TRAIN_REST x d (see `_due`)
GROWTH = 0.01  # during continuous saves a retrain waits for events worth this share of the labelled set (`_due`)
PUSH_RETRY_FIRST = 5.0  # s before a failed push is retried; doubles per failure in a row
PUSH_RETRY_MAX = 300.0

class Trainer(ProjectWorker):
    """One worker thread for all projects: training never runs inside a request."""

    def __init__(
        self,
        *,
        debounce: float = 0.3,
        max_delay: float = 3.0,
        sync: Callable[[Project], None] | None = None,
        on_published: Callable[[Project], None] | None = None,
        label_studio_interval: float = 5.0,
        push_quiet: float = 2.0,
        max_push_wait: float = 60.0,
        background: Background | None = None,
        on_version: Callable[[Project], None] | None = None,
        reread: Callable[[Project], None] | None = None,
    ):
        self.debounce = debounce
        self.max_delay = max_delay
        self.label_studio_interval = label_studio_interval  # min seconds between syncs, and between pushes
        self._push_failures: dict[str, int] = {}  # project -> pushes failed in a row (retried with backoff)
        self.push_quiet = push_quiet  # seconds without events before a push
        self.max_push_wait = max_push_wait  # ... unless the last push is this old
        self._sync = sync
        self._on_published = on_published
        self._on_version = on_version  # every new version at once (issue 14: queues its analysis; must not block)
        self._reread = reread  # after a round's retrain and push: the full re-read its sync put off (`_train`)
        super().__init__("suggest-trainer", background)
        self._pending: dict[str, tuple[Project, _Pending]] = {}
        self._rest_until: dict[str, float] = {}  # project -> when its next retrain may start
        self._start()

    def request(
        self,
        project: Project,
        *,
        force: bool = False,
        sync: bool = False,
        push: bool = False,
        not_before: float = 0.0,
        last_event: float | None = None,
    ) -> None:
        """Ask for a retrain of `project` (`push`: re-rank the pool even if no new version); never blocks.

        `last_event` keeps the time of the event a deferred push stems from (default: now).
        """
        t = time.monotonic()
        event_at = t if last_event is None else last_event
        with self._cond:
            entry = self._pending.get(project.project_id)
            if entry is None:
                pending = _Pending(first=t, last=event_at, force=force, sync=sync, push=push, not_before=not_before)
                self._pending[project.project_id] = (project, pending)
            else:
                pending = entry[1]
                pending.last = max(pending.last, event_at)
                pending.force |= force
                pending.sync |= sync
                pending.push |= push
                pending.warmed = False
                pending.not_before = max(pending.not_before, not_before)
                pending.events += 1
            self._cond.notify_all()

    def _due(self, now: float) -> tuple[str | None, float]:
        """The project to train now, or how long to sleep until one is due.

        A retrain waits TRAIN_REST times the last one's duration after it: during continuous saves fitting
        then takes at most a third of a core. At 10,000 labels a fit takes 1-2 s and a new one followed
        each, in the process that answers Label Studio's webhooks inside every save; at 1,000 labels the
        rest is a fraction of a second.

        During continuous saves (no `debounce` pause) a retrain, START_TRAINING's too (Label Studio sends one
        per save), is forced after `max_delay` only once the events waiting amount to GROWTH of the labelled
        set; below that it waits for annotators to pause for `push_quiet` (the push waits for that pause too),
        or `max_push_wait` at most. At 10,000 labels a retrain takes ~0.5 s of Python in the process that
        answers the two webhooks inside every save, and a few more labels change nothing Label Studio shows.
        At 1,000 labels and fewer, 10 events are enough, as before."""
        sleep = 3600.0
        for pid, (project, p) in self._pending.items():
            record = project.published.record
            labelled = record.n_labels if record is not None else 0
            if p.push or p.events >= GROWTH * labelled:  # a deferred push keeps its own time (`not_before`)
                waited = min(p.last + self.debounce, p.first + self.max_delay)
            else:
                waited = min(p.last + max(self.debounce, self.push_quiet), p.first + self.max_push_wait)
            due_at = max(waited, p.not_before, self._rest_until.get(pid, 0.0))
            if due_at <= now:
                return pid, 0.0
            sleep = min(sleep, due_at - now)
        return None, sleep

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    pid, sleep = self._due(time.monotonic())
                    if pid is not None:
                        project, pending = self._pending.pop(pid)
                        self._running = pid
                        break
                    warm = next((e for e in self._pending.values() if not e[1].warmed), None)
                    if warm is not None:
                        warm[1].warmed = True
                        break
                    self._cond.wait(sleep)
                if self._stopped:
                    return
            if pid is None:
                self._safely(warm[0], "embedding new labels", warm[0].warm_embeddings)
                continue
            try:
                self._train(project, pending)
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()

    def _train(self, project: Project, pending: _Pending) -> None:
        """Sync (if asked), retrain, push (if there is something new); Label Studio calls are rate-limited.

        During a burst, syncs and pushes would otherwise hit Label Studio after every annotation and
        compete with the annotators' own saves; a deferred one is re-queued, so the last always runs.
        """
        now = time.monotonic()
        sync_later = False
        # A sync re-reads every annotation (one export: at 10,000 tasks seconds of Label Studio's CPU), so it runs
        # at most every `label_studio_interval` s. Waiting for annotators to pause instead (as pushes do) was
        # tried and reverted: a deferred entry carries its delay to every event merged into it, so during
        # continuous saves with START_TRAINING on each, retrains stalled for up to `max_push_wait` s.
        sync_at = project.last_sync_at + self.label_studio_interval
        if pending.sync and self._sync is not None:
            if now >= sync_at:
                project.last_sync_at = now
                deferring = {"defer_reread": True} if self._reread is not None else {}
                self._safely(project, "syncing with Label Studio", partial(self._sync, project, **deferring))
            else:
                sync_later = True
        fit_started = time.monotonic()
        record = self._safely(project, "training", partial(project.retrain, force=pending.force))
        ended = time.monotonic()
        self._rest_until[project.project_id] = ended + TRAIN_REST * (ended - fit_started)
        if record is not None and self._on_version is not None:
            self._safely(project, "queueing the analysis", partial(self._on_version, project))
        want_push = (record is not None or pending.push) and self._on_published is not None
        with self._cond:
            newer = self._pending.get(project.project_id)
            if newer is not None:  # more events already arrived: the next round syncs and pushes instead
                newer[1].push |= want_push
                newer[1].sync |= sync_later
                return
        # Push when annotators pause (a bulk insert into Label Studio's database slows their saves),
        # but at least every `max_push_wait` seconds during continuous work, and never more often
        # than `label_studio_interval`.
        push_at = self._when_due(project.last_push_at, pending.last)
        if want_push and now < push_at:
            self.request(project, push=True, sync=sync_later, not_before=push_at, last_event=pending.last)
            return
        if want_push:
            project.last_push_at = time.monotonic()
            pushed = self._safely(project, "re-ranking the pool in Label Studio",
                                  lambda: self._on_published(project) or True)
            pid = project.project_id
            if pushed:
                self._push_failures.pop(pid, None)
            else:  # e.g. Label Studio's "database is locked" under load: the version must still reach the queue
                failures = self._push_failures[pid] = self._push_failures.get(pid, 0) + 1
                delay = min(PUSH_RETRY_MAX, PUSH_RETRY_FIRST * 2 ** (failures - 1))
                log.warning("project %s: the push will be retried in %.0f s (failure %d)", pid, delay, failures)
                self.request(project, push=True, not_before=time.monotonic() + delay)
        if sync_later:
            self.request(project, sync=True, not_before=project.last_sync_at + self.label_studio_interval)
        if self._reread is not None:  # a periodic full re-read (an export of every labelled task) comes last
            self._safely(project, "re-reading Label Studio", partial(self._reread, project))

    def _when_due(self, last_call: float, last_event: float) -> float:
        """When a Label Studio call (push or sync) may run: once annotators pause, at least every
        `max_push_wait` s during continuous work, never more often than `label_studio_interval`."""
        pause_at = min(last_event + self.push_quiet, last_call + self.max_push_wait)
        return max(last_call + self.label_studio_interval, pause_at)

    @staticmethod
    def _safely(project: Project, what: str, fn: Callable):
        try:
            return fn()
        except LabelStudioError as exc:  # Label Studio unreachable or refusing: the message says it all
            project.last_error = f"{what} failed: {exc}"
            log.warning("project %s: %s failed: %s", project.project_id, what, exc)
            return None
        except Exception as exc:  # the worker must survive any one project's failure
            project.last_error = f"{what} failed: {exc}"
            log.exception("project %s: %s failed", project.project_id, what)
            return None
