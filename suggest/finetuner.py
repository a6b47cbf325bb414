"""Background fine-tuning (issue 16): champion and challenger, off the trainer's thread.

When a text-classification control served by the "finetune" family (backends/finetune.py) has at
least `min_labels` labels, and `growth` times as many as at its last tuning, this worker:

1. scores the serving model (champion) and a challenger tuned inside each of `folds` folds,
   out of fold (`champion_challenger`); a challenger no better than the champion is dropped;
2. tunes the encoder on all labels, fits the head, and embeds the project's unlabelled pool with the
   tuned encoder, so its vectors are in the store (keyed by the tuned encoder's id) before the
   version that needs them exists: the re-rank after the publish reads them, it does not embed;
3. publishes a version whose control has the tuned model, and asks for a retrain: the fast head
   retrain after each burst keeps the tuned encoder (FineTuneClassifier.warm_start_from) and refits
   only the head on labels that arrived meanwhile.

It has its own thread, so a tuning (minutes on a CPU, seconds on a GPU) never delays the head
retrain that follows a burst of annotations; one tuning at a time over all projects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from suggest.project import Project
from suggest.schema import Item
from suggest.worker import Background, ProjectWorker

log = logging.getLogger(__name__)


class FineTuner(ProjectWorker):
    def __init__(self, *, min_labels: int, folds: int = 3, growth: float = 1.5,
                 on_published: Callable[[Project], None] | None = None, background: Background | None = None,
                 projects: Callable[[], list[Project]] | None = None, interval: float = 30.0):
        if min_labels < 1:
            raise ValueError(f"min_labels must be >= 1, got {min_labels}")
        self.min_labels, self.folds, self.growth = min_labels, folds, growth
        self._on_published = on_published
        self._projects, self.interval = projects, interval  # polled: no hook in the trainer's path at all
        self._tuned_at: dict[tuple[str, str], int] = {}  # (project, control) -> labels at the last tuning tried
        self.status: dict[str, dict] = {}  # project -> the last verdict per control, for /metrics
        super().__init__("suggest-finetuner", background)
        self._start()

    def consider(self, project: Project) -> None:
        """Queue `project` if a control is due a tuning; never blocks."""
        if self._due(project):
            with self._cond:
                self._pending[project.project_id] = project
                self._cond.notify_all()

    def _due(self, project: Project) -> list[str]:
        from backends.finetune import FineTuneClassifier

        due = []
        for schema in project.schemas:
            model = project.published.models.get(schema.from_name)
            if not isinstance(model, FineTuneClassifier):
                continue
            n = len(project.labeled(schema.from_name))
            last = self._tuned_at.get((project.project_id, schema.from_name), 0)
            if n >= self.min_labels and n >= last * self.growth and n > last:
                due.append(schema.from_name)
        return due

    def _loop(self) -> None:
        while (project := self._take()) is not None:
            try:
                self.tune(project)
            except Exception as exc:  # a failed tuning leaves the serving version as it is
                log.exception("project %s: fine-tuning failed", project.project_id)
                self.status.setdefault(project.project_id, {})["error"] = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._running = None
                self._cond.notify_all()

    def _take(self) -> Project | None:
        """The next project due a tuning (queued, or found by polling every `interval` s); None once stopped."""
        with self._cond:
            while not self._stopped and not self._pending:
                self._cond.wait(self.interval if self._projects is not None else None)
                for project in self._projects() if self._projects is not None and not self._pending else ():
                    if self._due(project):
                        self._pending[project.project_id] = project
            if self._stopped:
                return None
            project = self._pending.pop(next(iter(self._pending)))
            self._running = project.project_id
            return project

    def tune(self, project: Project) -> list[dict]:
        """One round for every due control of `project` (synchronous: the worker calls it; so may tests)."""
        from backends.finetune import champion_challenger

        verdicts = []
        for control in self._due(project):
            labeled = project.labeled(control)
            tasks = sorted(labeled)
            items = [Item(labeled[t].text, t) for t in tasks]
            labels = [labeled[t].label for t in tasks]
            champion = project.published.models[control]
            version = project.published.version
            self._tuned_at[(project.project_id, control)] = len(tasks)
            started = time.perf_counter()
            verdict = champion_challenger(champion, partial(champion.finetuned, should_stop=self._stop),
                                          items, labels, folds=self.folds)
            verdict.update(control=control, champion_version=version)
            if verdict["publish"]:
                challenger = champion.finetuned(items, labels, should_stop=self._stop)
                if challenger is None:
                    continue
                pool = self._pool_items(project, control)
                t = time.perf_counter()
                challenger.embed(pool)  # into the store under the tuned encoder's id, before the version exists
                verdict.update(pool_embedded=len(pool), pool_embed_seconds=round(time.perf_counter() - t, 1),
                               encoder_id=challenger.encoder.encoder_id)
                record = project.publish_model(control, challenger, info={"finetune": verdict})
                verdict["published"] = None if record is None else record.version
                if record is not None and self._on_published is not None:
                    self._on_published(project)
            verdict["seconds"] = round(time.perf_counter() - started, 1)
            log.info("project %s: fine-tuning %s: %s", project.project_id, control, verdict)
            self.status.setdefault(project.project_id, {})[control] = verdict
            verdicts.append(verdict)
        return verdicts

    def _stop(self) -> bool:
        return self._stopped

    @staticmethod
    def _pool_items(project: Project, control: str) -> list[Item]:
        """The unlabelled tasks' texts for `control`, from the task list the store keeps (empty if none)."""
        schema = next(s for s in project.schemas if s.from_name == control)
        try:
            rows = project.store.unlabeled_tasks(project.project_id)
        except Exception:  # an older store without the task list
            return []
        items = []
        for task_id, data in rows:
            text = data.get(schema.value_key)
            if isinstance(text, str) and text:
                items.append(Item(text, task_id))
        return items
