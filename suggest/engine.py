"""The engine behind the server: every project of this process, its store, trainer and encoder.

Typed in, typed out: the server turns Label Studio JSON into schema objects (via labelstudio.py)
before calling here, so this layer can be driven by the CLI, benchmarks and tests alike.
"""

from __future__ import annotations

import logging
import threading

from backends.encoders import shared_text_encoder
from suggest.config import Settings
from suggest.labelstudio import LabelStudioClient, labels_from_tasks, parse_config
from suggest.loop import LoopSettings, PoolRefresher
from suggest.project import Project, open_project
from suggest.schema import BadInput, Label
from suggest.store import ProjectRecord, Store
from suggest.trainer import Trainer

log = logging.getLogger(__name__)


class UnknownProject(LookupError):
    """A request names a project this backend has never been set up for."""


class Engine:
    """Owns the store, the warm encoder, the projects and the background trainer."""

    def __init__(self, settings: Settings, *, load_encoder: bool = True):
        self.settings = settings
        self.store = Store(settings.model_dir)
        self.store.sweep_temp_folders()
        self.encoder = shared_text_encoder()
        self._lock = threading.RLock()
        self._credentials: dict[str, tuple[str | None, str | None]] = {}
        self.projects: dict[str, Project] = {}
        for record in self.store.projects():
            try:
                self._open(record)
            except Exception as exc:
                log.warning("project %s could not be reopened: %s", record.project_id, exc)
        self.refresher = PoolRefresher(
            LoopSettings(settings.batch_size, settings.strategy, settings.set_sampling), self.client
        )
        self.trainer = Trainer(
            debounce=settings.debounce_seconds, max_delay=settings.max_delay_seconds, sync=self.sync,
            on_published=self.refresher.refresh if settings.push else None,
            label_studio_interval=settings.push_interval_seconds,
        )
        if load_encoder:
            threading.Thread(target=self._load_encoder, name="suggest-encoder-load", daemon=True).start()

    def _load_encoder(self) -> None:
        try:
            self.encoder.load()
        except Exception:
            log.exception("the text encoder failed to load")

    def close(self) -> None:
        self.trainer.stop()
        self.store.close()

    # projects ---------------------------------------------------------------------------------

    def _open(self, record: ProjectRecord) -> Project:
        project = open_project(self.store, record, parse_config(record.label_config), self.settings.uncertainty)
        self.projects[record.project_id] = project
        self._credentials[record.project_id] = (record.hostname, record.access_token)
        return project

    def setup(self, project_id: str, label_config: str, hostname: str | None, token: str | None) -> Project:
        """Register or refresh a project from /setup; cheap when nothing changed."""
        schema = parse_config(label_config)  # raises SchemaError before anything is stored
        with self._lock:
            project = self.projects.get(project_id)
            if project is not None and project.label_config == label_config and \
                    self._credentials.get(project_id) == (hostname, token):
                return project
            self.store.save_project(ProjectRecord(project_id, label_config, hostname, token))
            self._credentials[project_id] = (hostname, token)
            if project is None:
                project = self._open(ProjectRecord(project_id, label_config, hostname, token))
                if self.client(project) is not None:  # first contact: zero-shot, cold-start queue
                    self.trainer.request(project, push=True)
                return project
            if project.update_config(label_config, schema):
                self.trainer.request(project, push=True)
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

    def record_annotation(self, project: Project, annotation_id: int, label: Label | None) -> None:
        """Upsert (or, for a cancelled or emptied annotation, drop) one annotation, then retrain."""
        if label is None:
            self.store.delete_annotations(project.project_id, [annotation_id])
        else:
            self.store.upsert_labels(project.project_id, [label])
            project.note_new_text(label.text)
        self.trainer.request(project)

    def delete_annotations(self, project: Project, annotation_ids: list[int]) -> None:
        self.store.delete_annotations(project.project_id, annotation_ids)
        self.trainer.request(project)

    def delete_tasks(self, project: Project, task_ids: list[int]) -> None:
        if task_ids:
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

    def client(self, project: Project) -> LabelStudioClient | None:
        hostname, token = self._credentials.get(project.project_id, (None, None))
        url = self.settings.label_studio_url or hostname
        key = self.settings.label_studio_api_key or token
        if not url or not key:
            return None
        return LabelStudioClient(url, key)

    def sync(self, project: Project) -> bool:
        """Make the stored labels equal Label Studio's annotations (the source of truth)."""
        client = self.client(project)
        if client is None:
            log.info("project %s: no Label Studio URL/token; training on the labels received by webhook",
                     project.project_id)
            return False
        try:
            labels = labels_from_tasks(client.labeled_tasks(project.project_id), project.schema)
        finally:
            client.close()
        self.store.replace_labels(project.project_id, labels)
        log.info("project %s: reconciled with Label Studio, %d annotations", project.project_id, len(labels))
        return True

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
            entry["training"] = self.trainer.is_busy(pid)
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


__all__ = ["BadInput", "Engine", "UnknownProject"]
