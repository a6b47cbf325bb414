"""The engine behind the server: every project of this process, its store, trainer and encoder.

Typed in, typed out: the server turns Label Studio JSON into schema objects (via labelstudio.py)
before calling here, so this layer can be driven by the CLI, benchmarks and tests alike.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from backends.encoders import shared_text_encoder
from suggest.config import Settings
from suggest.labelstudio import LabelStudioClient, labels_from_tasks, parse_controls
from suggest.loop import LoopSettings, PoolRefresher
from suggest.project import Project, open_project
from suggest.schema import BadInput, Label
from suggest.store import ProjectRecord, Store
from suggest.trainer import Trainer
from suggest.worker import ProjectWorker

log = logging.getLogger(__name__)


class UnknownProject(LookupError):
    """A request names a project this backend has never been set up for."""


TRUSTED = "trusted: no Label Studio access to confirm"
CONFIRMED = "confirmed: annotation events are re-read from Label Studio before they count"


class Engine:
    """Owns the store, the warm encoder, the projects and the background trainer."""

    def __init__(self, settings: Settings, *, load_encoder: bool = True):
        self.settings = settings
        self.store = Store(settings.model_dir)
        self.store.sweep_temp_folders()
        self.encoder = shared_text_encoder()
        self._lock = threading.RLock()
        self._ls_lock = threading.Lock()  # a sync and a confirmation never interleave their read and write
        self._credentials: dict[str, tuple[str | None, str | None]] = {}
        self.projects: dict[str, Project] = {}
        self._loaders: dict[str, tuple] = {}  # project id -> (access, ImageLoader), made when first needed
        for record in self.store.projects():
            try:
                self._open(record)
            except Exception as exc:
                log.warning("project %s could not be reopened: %s", record.project_id, exc)
        self.refresher = PoolRefresher(
            LoopSettings(settings.batch_size, settings.strategy, settings.set_sampling, settings.keep_versions),
            self.client
        )
        self.trainer = Trainer(
            debounce=settings.debounce_seconds, max_delay=settings.max_delay_seconds, sync=self.sync,
            on_published=self.refresher.refresh if settings.push else None,
            label_studio_interval=settings.push_interval_seconds,
        )
        self.confirmer = Confirmer(self._confirm)
        for project in list(self.projects.values()):
            self.trainer.request(project)  # labels acknowledged but not yet trained when the last run died
            if self.confirms(project):  # hints lost by a crash, webhooks lost while down
                self.confirmer.add(project.project_id, full=True, events=0)
        if load_encoder:
            threading.Thread(target=self._load_encoder, name="suggest-encoder-load", daemon=True).start()

    def _load_encoder(self) -> None:
        try:
            self.encoder.load()
        except Exception:
            log.exception("the text encoder failed to load")

    def close(self) -> None:
        self.confirmer.stop()
        self.trainer.stop()
        for _, loader in self._loaders.values():
            loader.close()
        self.store.close()

    # projects ---------------------------------------------------------------------------------

    def _open(self, record: ProjectRecord) -> Project:
        pid = record.project_id
        project = open_project(self.store, record, parse_controls(record.label_config), self.settings.uncertainty,
                               load_image=lambda ref: self.load_image(pid, ref))
        self.projects[record.project_id] = project
        self._credentials[record.project_id] = (record.hostname, record.access_token)
        return project

    def setup(self, project_id: str, label_config: str, hostname: str | None, token: str | None) -> Project:
        """Register or refresh a project from /setup; cheap when nothing changed."""
        schema = parse_controls(label_config)  # raises SchemaError before anything is stored
        with self._lock:
            project = self.projects.get(project_id)
            if project is not None and project.label_config == label_config and \
                    self._credentials.get(project_id) == (hostname, token):
                return project
            self.store.save_project(ProjectRecord(project_id, label_config, hostname, token))
            had_access = project is not None and self.confirms(project)
            self._credentials[project_id] = (hostname, token)
            if project is None:
                project = self._open(ProjectRecord(project_id, label_config, hostname, token))
                if self.confirms(project):  # first contact: zero-shot, cold-start queue
                    self.trainer.request(project, push=True)
            elif project.update_config(label_config, schema):
                self.trainer.request(project, push=True)
            if self.confirms(project) and not had_access:  # labels that came unconfirmed, or not at all
                self.confirmer.add(project_id, full=True, events=0)
            return project

    def project(self, project_id: str, label_config: str | None = None) -> Project:
        """The project, registering it from a label config when this is the first we hear of it."""
        with self._lock:
            project = self.projects.get(project_id)
            if project is not None:
                if label_config and label_config != project.label_config:
                    return self.setup(project_id, label_config, *self._credentials.get(project_id, (None, None)))
                return project
        if not label_config:
            raise UnknownProject(
                f"unknown project {project_id}: connect it in Label Studio first (POST /setup) "
                "or send its label_config"
            )
        return self.setup(project_id, label_config, None, None)

    # labels -----------------------------------------------------------------------------------

    def webhook_project(self, project_id: str, label_config: str | None) -> Project:
        """The project a webhook names. A config it carries is applied only when it cannot be checked:
        with Label Studio access, a different config makes the confirmer re-read it from Label Studio."""
        with self._lock:
            project = self.projects.get(project_id)
        if project is not None and label_config and label_config != project.label_config and self.confirms(project):
            self.confirmer.add(project_id, full=True)
            return project
        return self.project(project_id, label_config)

    def record_annotation(
        self, project: Project, annotation_id: int, label: Label | list[Label] | None, task_id: int | None = None
    ) -> None:
        """Upsert (or, for a cancelled or emptied annotation, drop) one annotation, then retrain.

        With Label Studio access the event is only a hint: the confirmer re-reads the task from
        Label Studio in the background and stores what Label Studio holds (webhooks carry no
        credentials, so a forged one must not be able to inject a label).
        """
        labels = [label] if isinstance(label, Label) else list(label or [])
        if self.confirms(project):
            tasks = [t for t in (task_id, *(lb.task_id for lb in labels[:1])) if t is not None]
            self.confirmer.add(project.project_id, tasks, [annotation_id])
            return
        if not labels:
            self.store.delete_annotations(project.project_id, [annotation_id])
        else:
            self.store.upsert_labels(project.project_id, labels)
            for lb in labels:
                project.note_new_text(lb.text, lb.control)
        self.trainer.request(project)

    def delete_annotations(self, project: Project, annotation_ids: list[int]) -> None:
        if self.confirms(project):
            self.confirmer.add(project.project_id, annotations=annotation_ids)
            return
        self.store.delete_annotations(project.project_id, annotation_ids)
        self.trainer.request(project)

    def delete_tasks(self, project: Project, task_ids: list[int]) -> None:
        if task_ids and self.confirms(project):
            self.confirmer.add(project.project_id, task_ids)
        elif task_ids:
            self.store.delete_task_annotations(project.project_id, task_ids)
            self.trainer.request(project)

    def tasks_created(self, project: Project) -> None:
        """New tasks in Label Studio: score and rank them (with the whole pool) in the background."""
        self.trainer.request(project, push=True)

    def start_training(self, project: Project) -> None:
        """START_TRAINING: reconcile with Label Studio, then publish a new version, in the background.

        Debounced like any event: with "start training on annotation submission", Label Studio sends
        one per save, and a burst of saves must make one sync and one version, not one each.
        """
        self.trainer.request(project, force=True, sync=True)

    # Label Studio -----------------------------------------------------------------------------

    def load_image(self, project_id: str, ref: str) -> bytes:
        """An image a task of the project refers to: uploaded to Label Studio, local storage, a URL or inline."""
        from suggest.media import ImageLoader

        project = self.projects.get(project_id)
        access = self._ls_access(project) if project is not None else None
        with self._lock:
            held = self._loaders.get(project_id)
            if held is None or held[0] != access:
                if held is not None:
                    held[1].close()
                client = LabelStudioClient(*access) if access else None
                held = self._loaders[project_id] = (access, ImageLoader(client))
        return held[1].load(ref)

    def _ls_access(self, project: Project) -> tuple[str, str] | None:
        hostname, token = self._credentials.get(project.project_id, (None, None))
        url = self.settings.label_studio_url or hostname
        key = self.settings.label_studio_api_key or token
        return (url, key) if url and key else None

    def confirms(self, project: Project) -> bool:
        """Whether annotation webhooks for this project are checked against Label Studio."""
        return self._ls_access(project) is not None

    def client(self, project: Project) -> LabelStudioClient | None:
        access = self._ls_access(project)
        return LabelStudioClient(*access) if access else None

    def sync(self, project: Project) -> bool:
        """Make the stored labels equal Label Studio's annotations (the source of truth)."""
        client = self.client(project)
        if client is None:
            log.info("project %s: no Label Studio URL/token; training on the labels received by webhook",
                     project.project_id)
            return False
        try:
            with self._ls_lock:
                labels = self._replace_with_label_studio(client, project)
        finally:
            client.close()
        log.info("project %s: reconciled with Label Studio, %d annotations", project.project_id, len(labels))
        return True

    def _replace_with_label_studio(self, client: LabelStudioClient, project: Project) -> list[Label]:
        """Stored labels := every annotation Label Studio holds for the project."""
        labels = labels_from_tasks(client.labeled_tasks(project.project_id), project.schemas)
        self.store.replace_labels(project.project_id, labels)
        return labels

    def _confirm(self, project_id: str, hints: _Hints) -> None:
        """Store what Label Studio holds for the tasks some webhooks named (all tasks when `full`)."""
        project = self.projects.get(project_id)
        client = self.client(project) if project is not None else None
        if client is None:
            log.warning("project %s: no Label Studio access any more; dropping unconfirmed events", project_id)
            return
        pid = project_id
        try:
            with self._ls_lock:
                if hints.full:  # the config may have changed too (a webhook carried another one)
                    config = client.label_config(pid)
                    if config is not None and config != project.label_config:
                        self.setup(pid, config, *self._credentials.get(pid, (None, None)))
                    labels = self._replace_with_label_studio(client, project)
                else:
                    held = self.store.labels(pid)
                    tasks = hints.tasks | {lb.task_id for lb in held if lb.annotation_id in hints.annotations}
                    labels = labels_from_tasks(client.tasks_by_id(pid, sorted(tasks)), project.schemas)
                    kept = {lb.annotation_id for lb in labels}
                    gone = [lb.annotation_id for lb in held if lb.task_id in tasks and lb.annotation_id not in kept]
                    self.store.delete_annotations(pid, gone)
                    self.store.upsert_labels(pid, labels)
                    for lb in labels:
                        project.note_new_text(lb.text, lb.control)
        finally:
            client.close()
        log.info("project %s: confirmed with Label Studio (%s): %d annotation(s)", pid,
                 "all tasks" if hints.full else f"{hints.events} event(s)", len(labels))
        self.trainer.request(project)

    # reporting --------------------------------------------------------------------------------

    def metrics(self, project_id: str | None = None) -> dict:
        with self._lock:
            projects = dict(self.projects)
        if project_id is not None:
            if project_id not in projects:
                raise UnknownProject(f"unknown project {project_id}")
            projects = {project_id: projects[project_id]}
        out = {}
        for pid, project in projects.items():
            entry = project.metrics()
            entry["training"] = self.trainer.is_busy(pid) or self.confirmer.is_busy(pid)
            entry["webhooks"] = CONFIRMED if self.confirms(project) else TRUSTED
            entry["unconfirmed"] = self.confirmer.count(pid)
            entry["confirm_error"] = self.confirmer.errors.get(pid)
            hostname, token = self._credentials.get(pid, (None, None))
            entry["label_studio"] = {
                "url": self.settings.label_studio_url or hostname,
                "token": bool(self.settings.label_studio_api_key or token),
            }
            out[pid] = entry
        return {
            "projects": out,
            "encoder": {"id": self.encoder.encoder_id, "loaded": self.encoder.loaded,
                        "load_seconds": self.encoder.load_seconds},
        }


@dataclass
class _Hints:
    """What unconfirmed webhooks named for one project: tasks and annotations to re-read, or everything."""

    first: float
    last: float
    tasks: set[int] = field(default_factory=set)
    annotations: set[int] = field(default_factory=set)
    full: bool = False
    events: int = 0  # webhook events behind these hints
    not_before: float = 0.0
    failures: int = 0

    def merge(self, other: _Hints) -> None:
        self.events += other.events
        self.tasks |= other.tasks
        self.annotations |= other.annotations
        self.full |= other.full
        self.not_before = max(self.not_before, other.not_before)
        self.failures = max(self.failures, other.failures)


class Confirmer(ProjectWorker):
    """One thread that confirms webhook hints against Label Studio, off the request path.

    Hints coalesce: a project's batch goes out `debounce` s after its last hint (at most `max_delay`
    s after its first), as one export call for the tasks named; a failed call is retried with
    backoff, and nothing unconfirmed counts meanwhile. Hints live in memory: after a crash the
    engine re-reads every project with Label Studio access (`full`), which also recovers webhooks
    sent while the server was down.
    """

    def __init__(self, confirm: Callable[[str, _Hints], None], *, debounce: float = 0.2, max_delay: float = 1.0):
        self._confirm_fn = confirm
        self.debounce, self.max_delay = debounce, max_delay
        self.errors: dict[str, str] = {}
        super().__init__("suggest-confirmer")
        self._pending: dict[str, _Hints] = {}
        self._start()

    def add(self, project_id: str, tasks: Iterable[int] = (), annotations: Iterable[int] = (), *,
            full: bool = False, events: int = 1) -> None:
        """Hints from `events` webhook events (0: a re-read the engine asks for itself)."""
        now = time.monotonic()
        self._merge(project_id, _Hints(now, now, set(tasks), set(annotations), full, events))

    def _merge(self, project_id: str, hints: _Hints) -> None:
        with self._cond:
            held = self._pending.get(project_id)
            if held is None:
                self._pending[project_id] = hints
            else:
                held.merge(hints)
                held.last = max(held.last, hints.last)
            self._cond.notify_all()

    def count(self, project_id: str) -> int:
        """Webhook events waiting for Label Studio's word."""
        with self._cond:
            h = self._pending.get(project_id)
            return 0 if h is None else h.events

    def _loop(self) -> None:
        while True:
            with self._cond:
                pid = None
                while not self._stopped and pid is None:
                    now, sleep = time.monotonic(), 3600.0
                    for key, h in self._pending.items():
                        due = max(min(h.last + self.debounce, h.first + self.max_delay), h.not_before)
                        if due <= now:
                            pid = key
                            break
                        sleep = min(sleep, due - now)
                    else:
                        self._cond.wait(sleep)
                if self._stopped:
                    return
                hints = self._pending.pop(pid)
                self._running = pid
            try:
                self._confirm_fn(pid, hints)
                self.errors.pop(pid, None)
            except Exception as exc:
                self._failed(pid, hints, exc)
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()

    def _failed(self, pid: str, hints: _Hints, exc: Exception) -> None:
        if re.search(r"answered 404 to GET /api/projects/\d+(/export)?$", str(exc).split(":")[0]):
            self.errors[pid] = f"Label Studio has no project {pid}; unconfirmed events dropped ({exc})"
            log.warning("project %s: %s", pid, self.errors[pid])
            return
        hints.failures += 1
        delay = min(60.0, 0.5 * 2**hints.failures)
        hints.not_before = time.monotonic() + delay
        self.errors[pid] = f"cannot confirm with Label Studio, retrying in {delay:.0f} s: {exc}"
        log.warning("project %s: %s", pid, self.errors[pid])
        self._merge(pid, hints)


__all__ = ["BadInput", "Engine", "UnknownProject"]
