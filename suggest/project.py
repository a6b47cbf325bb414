"""A Project: one Label Studio project's labeled set, its published model and its versions.

Predictions always come from the last *published* version, held in memory as one immutable
(model, version) pair that a retrain swaps atomically, so annotators never wait on training and
never see a half-trained model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backends.base import Backend
from backends.embedding import EmbeddingClassifier
from suggest.schema import Item, Label, Prediction, Schema
from suggest.store import ProjectRecord, Store, VersionRecord
from suggest.strategies import certainty

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Published:
    """What /predict serves: replaced as a whole, never mutated."""

    model: Backend
    version: str
    record: VersionRecord | None  # None for the zero-shot starting point


def resolve_labels(annotations: list[Label]) -> dict[int, Label]:
    """One label per task from all its annotations.

    The rule: a ground-truth annotation wins (the latest one if several); otherwise the majority
    label among the task's annotations; a tie goes to the most recently updated annotation.
    """
    by_task: dict[int, list[Label]] = defaultdict(list)
    for ann in annotations:
        by_task[ann.task_id].append(ann)
    resolved: dict[int, Label] = {}
    for task_id, anns in by_task.items():
        latest_first = sorted(anns, key=lambda a: (a.updated_at, a.annotation_id), reverse=True)
        truth = [a for a in latest_first if a.ground_truth]
        if truth:
            resolved[task_id] = truth[0]
            continue
        counts = Counter(a.label for a in anns)
        top = max(counts.values())
        resolved[task_id] = next(a for a in latest_first if counts[a.label] == top)
    return resolved


def labels_fingerprint(labels: dict[int, Label]) -> str:
    """Identifies a labeled set, so an event received twice does not trigger a new version."""
    digest = hashlib.sha256()
    for task_id in sorted(labels):
        lb = labels[task_id]
        digest.update(f"{task_id}\x1f{lb.label}\x1f{lb.text}\x1e".encode())
    return digest.hexdigest()[:16]


class Project:
    """Holds a labeled set and a model; predicts, retrains and publishes versions."""

    def __init__(
        self,
        project_id: str,
        label_config: str,
        schema: Schema,
        store: Store,
        *,
        make_backend: Callable[[Schema], Backend],
        load_backend: Callable[[Schema, object], Backend],
        uncertainty: str = "margin",
    ):
        self.project_id = project_id
        self.label_config = label_config
        self.schema = schema
        self.store = store
        self.uncertainty = uncertainty
        self._make_backend = make_backend
        self._load_backend = load_backend
        self._train_lock = threading.Lock()  # one writer per project
        self._pending_lock = threading.Lock()
        self._pending_texts: list[str] = []
        self.last_error: str | None = None
        self.loop_status: dict = {"enabled": False, "reason": "no version pushed to Label Studio yet"}
        self.last_sync_at = float("-inf")  # monotonic times of the last Label Studio calls (rate limit)
        self.last_push_at = float("-inf")
        self._queue_scores: tuple[str, dict[int, float]] = ("", {})  # version, task id -> pushed score
        self.published = self._initial_model()

    # state ------------------------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        return self.published.version

    def zero_shot_version(self) -> str:
        key = json.dumps([self.schema.labels, self.schema.hints], sort_keys=True)
        return "zeroshot-" + hashlib.sha256(key.encode()).hexdigest()[:6]

    def _initial_model(self) -> Published:
        """The newest version whose folder is complete and loads; zero-shot when there is none."""
        for record in reversed(self.store.versions(self.project_id)):
            folder = self.store.version_dir(self.project_id, record.version)
            if not self.store.is_complete(self.project_id, record.version):
                log.warning("project %s: version %s is missing or incomplete at %s; skipping it",
                            self.project_id, record.version, folder)
                continue
            try:
                model = self._load_backend(self.schema, folder)
            except Exception as exc:  # a corrupt folder must not keep the server from starting
                log.warning("project %s: version %s does not load (%s); skipping it",
                            self.project_id, record.version, exc)
                continue
            if list(getattr(model, "classes_", [])) != list(self.schema.labels):
                log.info("project %s: version %s was trained for other labels; not serving it",
                         self.project_id, record.version)
                continue
            return Published(model, record.version, record)
        return Published(self._make_backend(self.schema), self.zero_shot_version(), None)

    def update_config(self, label_config: str, schema: Schema) -> bool:
        """Follow a changed label config; returns True when the labels changed (model reset)."""
        if label_config == self.label_config:
            return False
        self.label_config = label_config
        changed = schema != self.schema
        self.schema = schema
        if changed:
            self.published = self._initial_model()
        return changed

    def annotations(self) -> list[Label]:
        return self.store.labels(self.project_id)

    def labeled(self) -> dict[int, Label]:
        """Per-task labels after the multi-annotator rule, restricted to the config's labels."""
        valid = set(self.schema.labels)
        return {t: lb for t, lb in resolve_labels(self.annotations()).items() if lb.label in valid}

    # predict ----------------------------------------------------------------------------------

    def predict(self, items: list[Item]) -> list[Prediction]:
        """Predictions from the published version; a task already ranked in the pool keeps its queue score.

        So a prediction Label Studio stores through /predict agrees with the one the loop pushed.
        """
        published = self.published  # one read: a concurrent swap cannot mix two versions
        if not items:
            return []
        proba = published.model.predict_proba(items)
        preds = self.predictions_from_proba(proba, published.version)
        version, queue = self._queue_scores
        if version != published.version or not queue:
            return preds
        return [
            Prediction(p.label, p.probability, queue[it.task_id], p.model_version) if it.task_id in queue else p
            for it, p in zip(items, preds, strict=True)
        ]

    def set_queue_scores(self, version: str, scores: dict[int, float]) -> None:
        """Remember the queue scores the loop pushed for this version (replaced as a whole)."""
        self._queue_scores = (version, scores)

    def predictions_from_proba(self, proba: np.ndarray, version: str) -> list[Prediction]:
        labels = self.schema.labels
        best = proba.argmax(axis=1)
        top = proba[np.arange(len(proba)), best]
        scores = certainty(proba, self.uncertainty)
        return [
            Prediction(labels[b], float(p), float(s), version)
            for b, p, s in zip(best.tolist(), top.tolist(), scores.tolist(), strict=True)
        ]

    # train ------------------------------------------------------------------------------------

    def note_new_text(self, text: str) -> None:
        """Remember a newly labeled text so the trainer can embed it while the burst goes on."""
        with self._pending_lock:
            self._pending_texts.append(text)

    def warm_embeddings(self) -> int:
        """Embed the texts labeled since the last call: O(new), so it is cheap to call often."""
        with self._pending_lock:
            texts, self._pending_texts = self._pending_texts, []
        model = self.published.model
        if texts and hasattr(model, "embed"):
            model.embed([Item(t) for t in texts])
        return len(texts)

    def retrain(self, *, force: bool = False) -> VersionRecord | None:
        """Fit a new model on the current labeled set and publish it as a new version.

        Returns None when there is nothing new to learn (the same labeled set as the published
        version, unless forced) or too few classes to train on.
        """
        with self._train_lock:
            labeled = self.labeled()
            fingerprint = labels_fingerprint(labeled)
            current = self.published.record
            if not force and current is not None and current.info.get("fingerprint") == fingerprint:
                return None
            classes = {lb.label for lb in labeled.values()}
            if len(classes) < 2:
                log.info("project %s: %d label(s) in %d class(es); zero-shot until 2 classes have labels",
                         self.project_id, len(labeled), len(classes))
                return None
            started = time.perf_counter()
            tasks = sorted(labeled)
            model = self._make_backend(self.schema)
            if hasattr(model, "_memory") and hasattr(self.published.model, "_memory"):
                model._memory = self.published.model._memory  # keep warm vectors across versions
            model.fit([Item(labeled[t].text, t) for t in tasks], [labeled[t].label for t in tasks])
            seconds = time.perf_counter() - started
            version = f"v{self.store.next_seq(self.project_id)}-{uuid.uuid4().hex[:6]}"
            counts = Counter(labeled[t].label for t in tasks)
            record = self.store.publish_version(
                self.project_id, version, model.save,
                n_labels=len(tasks), train_seconds=seconds,
                info={"fingerprint": fingerprint, "class_counts": dict(counts)},
            )
            self.published = Published(model, version, record)
            self.last_error = None
            log.info("project %s: published %s (%d labels, trained in %.2f s)",
                     self.project_id, version, len(tasks), seconds)
            return record

    def metrics(self) -> dict:
        return {
            "labels": len(self.labeled()),
            "annotations": len(self.annotations()),
            "model_version": self.model_version,
            "mode": getattr(self.published.model, "mode", "trained"),
            "labels_config": list(self.schema.labels),
            "versions": [v.as_dict() for v in self.store.versions(self.project_id)],
            "last_error": self.last_error,
            "loop": self.loop_status,
        }


def default_backend_factory(store: Store) -> tuple[Callable[[Schema], Backend], Callable[[Schema, object], Backend]]:
    """Make and load the default model family, sharing the process-wide encoder and the store's cache."""

    def make(schema: Schema) -> Backend:
        return EmbeddingClassifier(list(schema.labels), hints=schema.hints, cache=store)

    def load(schema: Schema, folder: object) -> Backend:
        return EmbeddingClassifier.load(folder, cache=store)  # type: ignore[arg-type]

    return make, load


def open_project(store: Store, record: ProjectRecord, schema: Schema, uncertainty: str = "margin") -> Project:
    make, load = default_backend_factory(store)
    return Project(record.project_id, record.label_config, schema, store,
                   make_backend=make, load_backend=load, uncertainty=uncertainty)
