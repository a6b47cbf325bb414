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
from dataclasses import dataclass, replace

import numpy as np

from backends.base import Backend, guesses_from_proba
from backends.registry import Context, Registry, default_registry
from suggest.kinds import kind_of, kind_of_answer
from suggest.media import immutable_ref
from suggest.schema import BadInput, Item, Label, Prediction, Schema
from suggest.store import ProjectRecord, Store, VersionRecord

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Published:
    """What /predict serves: one model per control, replaced as a whole, never mutated."""

    models: dict[str, Backend]  # control name -> model
    version: str
    record: VersionRecord | None  # None for the zero-shot starting point

    @property
    def model(self) -> Backend:
        """The first control's model (single-control projects have only this one)."""
        return next(iter(self.models.values()))


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
        counts = Counter(a.label for a in anns)  # answers are hashable: a label, a tuple of labels or spans
        top = max(counts.values())
        resolved[task_id] = next(a for a in latest_first if counts[a.label] == top)
    return resolved


def resolve_weighted(annotations: list[Label], weighted: dict[int, object] | None) -> dict[int, Label]:
    """`resolve_labels`, then, on tasks where a quality report's weighted consensus (task -> label) names
    another label that an annotator gave, the latest annotation that gave it: ground truth still wins and
    a label nobody gave is never invented."""
    resolved = resolve_labels(annotations)
    if not weighted:
        return resolved
    by_task: dict[int, list[Label]] = defaultdict(list)
    for lb in annotations:
        by_task[lb.task_id].append(lb)
    for t, label in weighted.items():
        if t in resolved and not resolved[t].ground_truth and resolved[t].label != label:
            givers = sorted((lb for lb in by_task[t] if lb.label == label),
                            key=lambda a: (a.updated_at, a.annotation_id))
            if givers:
                resolved[t] = givers[-1]
    return resolved


def labels_fingerprint(labels: dict[int, Label], control: str = "") -> str:
    """Identifies a labeled set, so an event received twice does not trigger a new version."""
    digest = hashlib.sha256()
    for task_id in sorted(labels):
        lb = labels[task_id]
        answer = lb.label if isinstance(lb.label, str) else repr(lb.label)
        digest.update(f"{control}\x1f{task_id}\x1f{answer}\x1f{lb.text}\x1e".encode())
    return digest.hexdigest()[:16]


def task_id_of(row: dict[str, Item]) -> int | None:
    """The task a row of per-control Items was read from (every Item of a row carries the same id)."""
    return next(iter(row.values())).task_id if row else None


def min_examples(schema: Schema, labeled: dict[int, Label]) -> bool:
    """Whether a control has enough labels to train (its kind decides: two classes for a classifier)."""
    return kind_of(schema).enough_to_train(labeled)


def control_dir(schema: Schema) -> str:
    """A control's sub-folder inside a version folder."""
    return "control-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in schema.from_name)[:80]


class Project:
    """Holds a labeled set and one model per control; predicts, retrains and publishes versions."""

    def __init__(
        self,
        project_id: str,
        label_config: str,
        schema: Schema | tuple[Schema, ...],
        store: Store,
        *,
        make_backend: Callable[[Schema], Backend],
        load_backend: Callable[[Schema, object], Backend],
        uncertainty: str = "margin",
        load_image: Callable[[str], bytes] | None = None,
        consensus: str = "majority",
    ):
        self.project_id = project_id
        self.consensus = consensus  # which rule picks the label a task trains on: "majority" or "weighted"
        # control -> task -> label from the last quality report's weighted consensus (suggest.quality)
        self.weighted_consensus: dict[str, dict] = {}
        self.label_config = label_config
        self.schemas: tuple[Schema, ...] = (schema,) if isinstance(schema, Schema) else tuple(schema)
        self.store = store
        self.uncertainty = uncertainty
        self.load_image = load_image
        self._make_backend = make_backend
        self._load_backend = load_backend
        self._train_lock = threading.Lock()  # one writer per project
        self._publish_lock = threading.Lock()  # a config change and a publish never interleave
        self._pending_lock = threading.Lock()
        self._pending_texts: list[tuple[str, str]] = []
        self.last_error: str | None = None
        self.loop_status: dict = {"enabled": False, "reason": "no version pushed to Label Studio yet"}
        self.last_sync_at = float("-inf")  # monotonic times of the last Label Studio calls (rate limit)
        self.last_push_at = float("-inf")
        self._queue_scores: tuple[str, dict[int, float]] = ("", {})  # version, task id -> pushed score
        self._claims_lock = threading.Lock()
        self._claims: tuple[str, dict[int, str]] = ("", {})  # version, task id -> who gives Label Studio its prediction
        self.published = self._initial_model()

    # state ------------------------------------------------------------------------------------

    @property
    def schema(self) -> Schema:
        """The first control (the only one in a single-control project)."""
        return self.schemas[0]

    @property
    def model_version(self) -> str:
        return self.published.version

    def our_versions(self) -> list[str]:
        """Every version suggest made for this project, oldest first: the zero-shot one, then each published."""
        return [self.zero_shot_version(), *(r.version for r in self.store.versions(self.project_id))]

    def zero_shot_version(self) -> str:
        key = json.dumps([[s.from_name, s.control, s.multiple, s.object_type, s.labels, s.hints]
                          for s in self.schemas], sort_keys=True)
        if len(self.schemas) == 1 and self.schema.task_kind == "classification":  # unchanged for old stores
            key = json.dumps([self.schema.labels, self.schema.hints], sort_keys=True)
        return "zeroshot-" + hashlib.sha256(key.encode()).hexdigest()[:6]

    def _initial_model(self) -> Published:
        """The newest version whose folder is complete and loads; zero-shot when there is none."""
        self.unserved_versions: dict[str, str] = {}  # newer versions passed over, and why (shown in metrics)
        for record in reversed(self.store.versions(self.project_id)):
            folder = self.store.version_dir(self.project_id, record.version)
            if not self.store.is_complete(self.project_id, record.version):
                log.warning("project %s: version %s is missing or incomplete at %s; skipping it",
                            self.project_id, record.version, folder)
                continue
            models = self._load_version(record.version, folder)
            if models is not None:
                return Published(models, record.version, record)
        return Published({s.from_name: self._make_backend(s) for s in self.schemas}, self.zero_shot_version(), None)

    def _load_version(self, version: str, folder) -> dict[str, Backend] | None:
        models: dict[str, Backend] = {}
        for i, schema in enumerate(self.schemas):
            sub = folder / control_dir(schema)
            if not sub.is_dir():
                if i == 0 and (folder / "meta.json").exists():
                    sub = folder  # a version written before multi-control projects
                else:
                    log.info("project %s: version %s has no model for control %r; not serving it",
                             self.project_id, version, schema.from_name)
                    return None
            try:
                model = self._load_backend(schema, sub)
            except Exception as exc:  # a corrupt folder must not keep the server from starting
                log.warning("project %s: version %s does not load (%s); skipping it", self.project_id, version, exc)
                return None
            trained_for = list(getattr(model, "classes_", []))
            if trained_for != list(schema.labels):
                log.warning("project %s: version %s was trained for labels %s but the config's %r has %s; "
                            "not serving it", self.project_id, version, trained_for, schema.from_name,
                            list(schema.labels))
                self.unserved_versions[version] = (f"control {schema.from_name!r} was trained for labels "
                                                   f"{trained_for}, the config has {list(schema.labels)}")
                return None
            models[schema.from_name] = model
        return models

    def update_config(self, label_config: str, schema: Schema | tuple[Schema, ...]) -> bool:
        """Follow a changed label config; returns True when the controls changed (model reset).

        Under the publish lock: a retrain that started on the old controls cannot publish after this
        (it sees the change and drops its result), so the new labels are served at once, not after a restart.
        """
        with self._publish_lock:
            if label_config == self.label_config:
                return False
            self.label_config = label_config
            schemas = (schema,) if isinstance(schema, Schema) else tuple(schema)
            changed = schemas != self.schemas
            self.schemas = schemas
            if changed:
                self.published = self._initial_model()
            return changed

    def annotations(self) -> list[Label]:
        return self.store.labels(self.project_id)

    def labeled(self, control: str | None = None, rule: str | None = None,
                annotations: list[Label] | None = None) -> dict[int, Label]:
        """Per-task answers of one control (the first by default) after the multi-annotator rule.

        Answers of another kind or outside the config's labels are dropped: the config may have changed since.
        `rule` (default: the project's `consensus`): "majority" is the documented rule; "weighted" takes, on
        tasks several people answered, the last quality report's model-weighted consensus (the annotation
        that gave that label), so a label nobody gave is never invented. `annotations`: read from these instead
        of the store (a retrain passes the snapshot it pins).
        """
        schema = self._schema_of(control)
        kind = kind_of(schema)
        first = self.schema.from_name
        source = self.annotations() if annotations is None else annotations
        mine = [lb for lb in source if (lb.control or first) == schema.from_name]
        weighted = self.weighted_consensus.get(schema.from_name) if (rule or self.consensus) == "weighted" else None
        resolved = resolve_weighted(mine, weighted)
        return {t: lb for t, lb in resolved.items()
                if kind_of_answer(lb.label) is kind and kind.within(lb.label, schema.labels)}

    def _schema_of(self, control: str | None) -> Schema:
        if control is None:
            return self.schema
        for schema in self.schemas:
            if schema.from_name == control:
                return schema
        raise KeyError(f"project {self.project_id} has no control {control!r}")

    # predict ----------------------------------------------------------------------------------

    def predict(self, items: list[Item]) -> list[Prediction]:
        """The first control's predictions for items (see `predict_rows`)."""
        rows = self.predict_rows([{self.schema.from_name: it} for it in items])
        return [row[0] if row else Prediction("", 0.0, 0.0, self.model_version, self.schema.from_name)
                for row in rows]

    def predict_rows(self, rows: list[dict[str, Item]]) -> list[list[Prediction]]:
        """Predictions of the published version for tasks, each read for some controls (name -> Item).

        A task already ranked in the pool keeps its queue score, so a prediction Label Studio stores
        through /predict agrees with the one the loop pushed. An item a control cannot use (an image
        that does not load, a model with nothing to suggest yet) gets no prediction for that control.
        """
        published = self.published  # one read: a concurrent swap cannot mix two versions
        out: list[list[Prediction]] = [[] for _ in rows]
        for schema in self.schemas:
            for i, _, pred in self.guess_control(published, schema, rows)[0]:
                out[i].append(pred)
        version, queue = self._queue_scores
        if version == published.version and queue:
            for row, preds in zip(rows, out, strict=True):
                task_id = task_id_of(row)
                if task_id in queue:
                    preds[:] = [replace(p, score=queue[task_id]) for p in preds]
        return out

    def guess_control(
        self, published: Published, schema: Schema, rows: list[dict[str, Item]]
    ) -> tuple[list[tuple[int, Item, Prediction]], list[tuple[int, Item]]]:
        """One control's predictions for the rows that read it: (row index, item, prediction) for each
        guess, and every (row index, item) the model could use (with or without a guess)."""
        name = schema.from_name
        where = [i for i, row in enumerate(rows) if name in row]
        items = self.prepare(schema, [rows[i][name] for i in where], published.models[name])
        kept = [(i, it) for i, it in zip(where, items, strict=True) if it is not None]
        if not kept:
            return [], []
        guesses = published.models[name].guess([it for _, it in kept], self.uncertainty)
        preds = [(i, it, Prediction(g.value, g.probability, g.certainty, published.version, name))
                 for (i, it), g in zip(kept, guesses, strict=True) if g is not None]
        return preds, kept

    def prepare(self, schema: Schema, items: list[Item], model: Backend | None = None) -> list[Item | None]:
        """Items ready for the control's model: images get their bytes; one that cannot load becomes None.

        An uploaded image read before, whose embedding `model` already holds, is not read again: it
        comes back with its digest only (a re-rank of 10,000 uploads is then a cache lookup, not
        10,000 downloads from Label Studio).
        """
        if schema.object_type != "image":
            return list(items)
        known = self._known_images(items, model)
        ready: list[Item | None] = []
        seen: dict[str, str] = {}
        for i, it in enumerate(items):
            if it.data is not None or i in known:
                ready.append(it if it.data is not None else Item(it.text, it.task_id, digest=known[i]))
                continue
            try:
                if self.load_image is None:
                    raise BadInput("no image loader is configured")
                data = self.load_image(it.text)
            except BadInput as exc:
                log.warning("project %s, task %s: image %r not used: %s", self.project_id, it.task_id,
                            it.text[:200], exc)
                ready.append(None)
                continue
            loaded = Item(it.text, it.task_id, data)
            if (key := immutable_ref(it.text)) is not None:
                seen[key] = loaded.content_hash
            ready.append(loaded)
        if seen:
            self.store.put_digests(seen)
        return ready

    def _known_images(self, items: list[Item], model: Backend | None) -> dict[int, str]:
        """Index -> digest for the uploads whose digest is remembered and whose embedding is cached."""
        if model is None:
            return {}
        keys = {i: key for i, it in enumerate(items) if it.data is None and (key := immutable_ref(it.text))}
        if not keys:
            return {}
        digests = self.store.get_digests(list(set(keys.values())))
        cached = model.cached_hashes(list(set(digests.values())))
        return {i: digests[k] for i, k in keys.items() if digests.get(k) in cached}

    def set_queue_scores(self, version: str, scores: dict[int, float]) -> None:
        """Remember the queue scores the loop pushed for this version (replaced as a whole)."""
        self._queue_scores = (version, scores)

    def claim_predictions(self, version: str, task_ids: list[int], by: str) -> set[int]:
        """Claim tasks whose prediction of `version` Label Studio is about to store; returns those another
        side ("push" or "predict") already claimed, which must not get a second one.

        Why: the loop's bulk import and Label Studio's "Retrieve predictions" (/predict) can cover the same
        tasks at once. Label Studio only skips tasks already holding the version when it starts a retrieval,
        so a push that lands meanwhile would leave every task with two predictions of one version.
        """
        with self._claims_lock:
            held_version, held = self._claims
            if held_version != version:
                held = {}
                self._claims = (version, held)
            taken = {t for t in task_ids if held.get(t, by) != by}
            held.update((t, by) for t in task_ids if t not in taken)
            return taken

    def release_claims(self, version: str, task_ids: list[int], by: str) -> None:
        """Give back claims whose predictions never reached Label Studio (a failed import)."""
        with self._claims_lock:
            held_version, held = self._claims
            if held_version == version:
                for t in task_ids:
                    if held.get(t) == by:
                        del held[t]

    def predictions_from_proba(self, proba: np.ndarray, version: str) -> list[Prediction]:
        return [Prediction(g.value, g.probability, g.certainty, version, self.schema.from_name)
                for g in guesses_from_proba(proba, self.schema.labels, self.uncertainty)]

    # train ------------------------------------------------------------------------------------

    def note_new_text(self, text: str, control: str = "") -> None:
        """Remember a newly labeled text so the trainer can embed it while the burst goes on."""
        with self._pending_lock:
            self._pending_texts.append((control or self.schema.from_name, text))

    def warm_embeddings(self) -> int:
        """Embed the texts labeled since the last call: O(new), so it is cheap to call often."""
        with self._pending_lock:
            pending, self._pending_texts = self._pending_texts, []
        models = self.published.models
        kinds = {s.from_name: s.object_type for s in self.schemas}
        by_control: dict[str, list[Item]] = defaultdict(list)
        for control, text in pending:
            if kinds.get(control) == "text":
                by_control[control].append(Item(text))
        for control, items in by_control.items():
            model = models.get(control)
            if model is not None:
                model.embed(items)
        return len(pending)

    def retrain(self, *, force: bool = False) -> VersionRecord | None:
        """Fit new models on the current labeled sets and publish them together as a new version.

        Returns None when there is nothing new to learn (the same labeled sets as the published
        version, unless forced) or no control has enough labels to train on. A control with too
        few labels keeps its starting model (zero-shot, bootstrap or untrained) in the new version.
        """
        with self._train_lock:
            schemas = self.schemas  # what this round trains for; a config change meanwhile voids it
            annotations, snapshot = self.store.labels_with_head(self.project_id)  # the history position pinned
            labeled = {s.from_name: self.labeled(s.from_name, annotations=annotations) for s in schemas}
            if len(schemas) == 1:
                fingerprint = labels_fingerprint(labeled[schemas[0].from_name])
            else:
                fingerprint = hashlib.sha256("".join(
                    labels_fingerprint(labeled[s.from_name], s.from_name) for s in schemas
                ).encode()).hexdigest()[:16]
            current = self.published.record
            if not force and current is not None and current.info.get("fingerprint") == fingerprint:
                return None
            trainable = [s for s in schemas if min_examples(s, labeled[s.from_name])]
            if not trainable:
                log.info("project %s: %s; zero-shot until a control has enough labels", self.project_id,
                         ", ".join(f"{s.from_name}: {len(labeled[s.from_name])} label(s)" for s in schemas))
                return None
            started = time.perf_counter()
            models: dict[str, Backend] = {}
            counts: dict[str, dict] = {}
            for schema in schemas:
                name = schema.from_name
                old = self.published.models.get(name)
                if schema not in trainable:
                    models[name] = old if old is not None and old.mode != "trained" \
                        else self._make_backend(schema)
                    continue
                models[name] = self._fit(schema, labeled[name], old)
                counts[name] = dict(Counter(kind_of(schema).count_key(lb.label) for lb in labeled[name].values()))
            seconds = time.perf_counter() - started
            n_labels = len(set().union(*(labeled[s.from_name] for s in trainable)))
            info = {"fingerprint": fingerprint,
                    "class_counts": counts[self.schema.from_name] if len(self.schemas) == 1 else counts}
            with self._publish_lock:
                if self.schemas != schemas:
                    log.info("project %s: the label config changed while training; dropping this round",
                             self.project_id)
                    return None
                version = f"v{self.store.next_seq(self.project_id)}-{uuid.uuid4().hex[:6]}"
                record = self.store.publish_version(
                    self.project_id, version, self._saver(models), n_labels=n_labels, train_seconds=seconds,
                    info=info, snapshot=snapshot,
                )
                self.published = Published(models, version, record)
            self.last_error = None
            log.info("project %s: published %s (%d labels, trained in %.2f s)",
                     self.project_id, version, n_labels, seconds)
            return record

    def publish_model(self, control: str, model: Backend, *, info: dict | None = None) -> VersionRecord | None:
        """Publish a version in which `control` is served by `model` (fitted elsewhere: the fine-tuner's
        challenger, issue 16) and every other control keeps its serving model. None if the config changed."""
        with self._train_lock, self._publish_lock:
            if control not in {s.from_name for s in self.schemas}:
                return None
            current = self.published
            models = dict(current.models)
            models[control] = model
            record_info = dict(current.record.info) if current.record is not None else {}
            record_info.update(info or {})
            n_labels = current.record.n_labels if current.record is not None else 0
            version = f"v{self.store.next_seq(self.project_id)}-{uuid.uuid4().hex[:6]}"
            record = self.store.publish_version(self.project_id, version, self._saver(models), n_labels=n_labels,
                                                train_seconds=0.0, info=record_info)
            self.published = Published(models, version, record)
            log.info("project %s: published %s (%s's model replaced)", self.project_id, version, control)
            return record

    def _fit(self, schema: Schema, labeled: dict[int, Label], old: Backend | None) -> Backend:
        tasks = sorted(labeled)
        model = self._make_backend(schema)
        if old is not None:
            model.warm_start_from(old)  # keep warm vectors across versions
        items = self.prepare(schema, [Item(labeled[t].text, t) for t in tasks], model)
        pairs = [(it, labeled[t].label) for t, it in zip(tasks, items, strict=True) if it is not None]
        model.fit([it for it, _ in pairs], [lb for _, lb in pairs])
        return model

    def _saver(self, models: dict[str, Backend]) -> Callable:
        single = len(self.schemas) == 1

        def save(folder) -> None:
            for schema in self.schemas:
                if single:  # one control: the folder itself, as before multi-control projects
                    models[schema.from_name].save(folder)
                    continue
                sub = folder / control_dir(schema)
                sub.mkdir()
                models[schema.from_name].save(sub)

        return save

    def make_backend(self, schema: Schema) -> Backend:
        """A fresh, unfitted model for a control, as a retrain makes it (quality's out-of-fold fits use it)."""
        return self._make_backend(schema)

    def _counts(self) -> tuple[int, int]:
        """(labelled tasks, annotations), recounted only when the store's annotation history moved or the
        config changed: /metrics and the dashboard ask often, and a count reads every annotation (100,000
        annotations: ~1 s)."""
        stamp = (self.store.history_head(self.project_id), self.label_config)
        cached = getattr(self, "_counted", None)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        annotations = self.annotations()
        counts = (len(self.labeled(annotations=annotations)), len({a.annotation_id for a in annotations}))
        self._counted = (stamp, counts)
        return counts

    def metrics(self) -> dict:
        published = self.published
        n_labeled, n_annotations = self._counts()
        out = {
            "labels": n_labeled,
            "annotations": n_annotations,
            "model_version": self.model_version,
            "mode": published.model.mode,
            "labels_config": list(self.schema.labels),
            "versions": [v.as_dict() for v in self.store.versions(self.project_id)],
            "last_error": self.last_error,
            "loop": self.loop_status,
        }
        if len(self.schemas) > 1 or self.schema.task_kind != "classification" or self.schema.object_type != "text":
            out["controls"] = {
                s.from_name: {"kind": s.task_kind, "object": s.object_type, "labels": len(self.labeled(s.from_name)),
                              "mode": published.models[s.from_name].mode}
                for s in self.schemas
            }
        if self.unserved_versions:
            out["unserved_versions"] = dict(self.unserved_versions)
        return out


def default_backend_factory(
    store: Store, registry: Registry | None = None
) -> tuple[Callable[[Schema], Backend], Callable[[Schema, object], Backend]]:
    """Make and load models through the family registry (built-ins and plug-ins), sharing the store's cache."""
    registry = registry or default_registry()
    context = Context(cache=store)

    def make(schema: Schema) -> Backend:
        return registry.make(schema, context)

    def load(schema: Schema, folder: object) -> Backend:
        return registry.load(schema, folder, context)  # type: ignore[arg-type]

    return make, load


def open_project(store: Store, record: ProjectRecord, schemas: Schema | tuple[Schema, ...],
                 uncertainty: str = "margin", load_image: Callable[[str], bytes] | None = None,
                 registry: Registry | None = None, consensus: str = "majority") -> Project:
    make, load = default_backend_factory(store, registry)
    project = Project(record.project_id, record.label_config, schemas, store, make_backend=make, load_backend=load,
                      uncertainty=uncertainty, load_image=load_image, consensus=consensus)
    if consensus == "weighted":
        from suggest.quality.report import weighted_labels

        project.weighted_consensus = weighted_labels(store.quality(record.project_id))
    return project
