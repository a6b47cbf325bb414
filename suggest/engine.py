"""The engine behind the server: every project of this process, its store, trainer and encoder.

Typed in, typed out: the server turns Label Studio JSON into schema objects (via labelstudio.py)
before calling here, so this layer can be driven by the CLI, benchmarks and tests alike.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from backends.encoders import configure_text_encoder, shared_text_encoder
from backends.finetune import configure_finetune
from backends.images import configure_image_encoder
from backends.memo import shared_memo
from backends.pipeline import configure_classifiers
from backends.registry import Registry, default_registry
from suggest.config import Settings, redact_text, redact_url
from suggest.labelstudio import (
    KEY_HEADER,
    LabelStudioClient,
    LabelStudioError,
    backend_webhook,
    labels_from_tasks,
    parse_controls,
    url_port,
)
from suggest.loop import LoopSettings, PoolRefresher, rank_rows
from suggest.ls_hosts import hostname_problem
from suggest.project import Project, open_project
from suggest.quality.report import metrics_entry
from suggest.queuehead import HeadPusher, HeadSettings, Maintainer
from suggest.schema import BadInput, Label, SchemaError
from suggest.standing.analyst import Analyst, analysis_background
from suggest.store import ProjectRecord, Store, StoreLocked
from suggest.tasksync import TaskSync
from suggest.trainer import Trainer
from suggest.worker import Background, ProjectWorker

log = logging.getLogger(__name__)


class UnknownProject(LookupError):
    """A request names a project this backend has never been set up for."""


class HostNotConfirmed(LabelStudioError):
    """A Label Studio host new to a project does not (yet) look like the same project: labels are kept.
    Not retried on a timer: the next event or START_TRAINING asks again."""


class HostChangeRefused(PermissionError):
    """An unauthenticated request tried to point a confirmed project at another Label Studio host."""


def _host(url: str | None) -> str | None:
    """scheme://host:port of a URL, lower-case, without credentials: what "the same host" means."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{url_port(parts)}"


def _iso(at: float | None) -> str | None:
    return None if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _printable_error(exc: Exception) -> str:
    """An error for logs, /metrics and the store: no `user:pass@` of any URL it quotes."""
    return redact_text(str(exc)) or type(exc).__name__


REVIEW_TAB_WAIT = 60.0  # s the review tab waits for the live loop to point Label Studio at its version
WEBHOOK_GRACE = 2.0  # s after an annotation webhook in which a count difference is left to the webhooks

TRUSTED = "trusted: no Label Studio access to confirm"
CONFIRMED = "confirmed: annotation events are re-read from Label Studio before they count"
SIGNED = ("signed: annotation events that carry this project's key (set in its webhook in Label Studio) count as "
          "sent; any other is re-read from Label Studio before it counts")


class Engine:
    """Owns the store, the warm encoder, the projects and the background trainer."""

    def __init__(self, settings: Settings, *, load_encoder: bool = True):
        self.settings = settings
        self.store = Store(settings.model_dir)
        try:
            self.store.lock()  # before the sweep: another server's half-written version is not debris
        except StoreLocked:
            self.store.close()
            raise
        self.store.sweep_temp_folders()
        configure_text_encoder(settings.text_encoder)  # process-wide, like the encoder it names (issue 15)
        configure_classifiers(settings.text_classifier)
        configure_image_encoder(settings.image_encoder)
        configure_finetune(settings.finetune_min_labels)  # issue 16: the "finetune" family serves text choices
        self.encoder = shared_text_encoder()
        shared_memo().resize(settings.memory_budget_mb * 1024 * 1024)  # one budget for every project's vectors
        self._lock = threading.RLock()
        self._ls_lock = threading.Lock()  # a sync and a confirmation never interleave their read and write
        self._credentials: dict[str, tuple[str | None, str | None]] = {}
        self._confirmed: dict[str, str | None] = {}  # project -> the host whose export last replaced its labels
        self._keys: dict[str, tuple[str, str]] = {}  # project -> (key its webhook carries, the host that has it)
        self._signed_events: dict[str, int] = {}  # project -> annotation events stored on their key, since start
        # project -> (when, Label Studio's count - stored; None when saves raced the export)
        self._full_sync: dict[str, tuple[float, int | None]] = {}
        self._reread_waiting: set[str] = set()  # projects whose periodic full re-read follows the retrain and push
        self._events: dict[str, float] = {}  # project -> when its last annotation webhook came
        self._ls_state: dict[str, tuple[bool | None, str | None, float | None]] = {}  # reachable, error, when
        self._review_tabs: dict[str, dict] = {}  # project -> its review tab: version, tasks, written (and error)
        self._tabs_due: dict[str, tuple] = {}  # project -> (version, tasks, rows) of the review tab still to write
        self.host_changes: dict[str, list[dict]] = {}  # project -> host changes asked for since start
        self.projects: dict[str, Project] = {}
        self._loaders: dict[str, tuple] = {}  # project id -> (access, ImageLoader), made when first needed
        for record in self.store.projects():
            try:
                self._open(record)
            except Exception as exc:
                log.warning("project %s could not be reopened: %s", record.project_id, exc)
        self.background = Background(settings.background_nice, settings.background_thread_budget)
        loop_settings = LoopSettings(settings.batch_size, settings.strategy, settings.set_sampling,
                                     settings.keep_versions, uncertainty=settings.uncertainty,
                                     audit_fraction=settings.audit_fraction)
        # issue 17: the store's task list (incremental sync) and only the queue's head pushed per version
        self.tasksync = TaskSync(self.store, settings.reconcile_seconds)
        head = None
        if settings.queue_head:
            head_settings = HeadSettings(settings.queue_head, settings.batch_size, settings.set_sampling,
                                         settings.keep_versions, settings.prune_chunk, ray_address=settings.ray_address,
                                         audit_fraction=loop_settings.audit_fraction, push_duty=settings.push_duty)
            head = HeadPusher(head_settings, self.tasksync,
                              lambda project, rows, audit=None: rank_rows(project, rows, loop_settings, audit))
        self.refresher = PoolRefresher(loop_settings, self.client, head)
        self.maintainer = Maintainer(head, self.client, background=self.background) if head is not None else None
        self.trainer = Trainer(
            debounce=settings.debounce_seconds, max_delay=settings.max_delay_seconds, sync=self.sync,
            reread=self.reread_waiting,
            on_published=self._after_publish, on_version=lambda project: self.analyst.request(project),
            label_studio_interval=settings.push_interval_seconds, background=self.background,
        )
        # a confirmation read per ~1 s of continuous saves, a few tasks each: Label Studio's export costs ~10 ms a
        # task, and reads batched over 3 s, or until 10% more labels, held it longer and slowed the saves that met
        # them more (p99 1.17x and 1.89x the stub's at 1,000 labels, against 1.13x; issue 20 notes, session 10)
        self.confirmer = Confirmer(self._confirm, background=self.background)
        # issue 14: quality and standing on their own low-priority thread, so a retrain never waits on analysis
        self.analyst = Analyst(self._analyze, analysis_background(self.background))
        self._oof: dict[str, dict | None] = {}
        for project in list(self.projects.values()):
            if project.published.record is not None:
                self.analyst.request(project)  # a version published by a run that died before its analysis
        self._report_cache: dict[tuple[str, str], tuple[object, dict]] = {}  # (project, part) -> (stamp, entry)
        self.finetuner = None  # issue 16: tunes the text encoder on its own thread; the trainer never waits on it
        if settings.finetune_min_labels:
            from suggest.finetuner import FineTuner

            self.finetuner = FineTuner(min_labels=settings.finetune_min_labels, background=self.background,
                                       projects=lambda: list(self.projects.values()),
                                       on_published=lambda project: self.trainer.request(project, force=True))
        for project in list(self.projects.values()):
            self.trainer.request(project)  # labels acknowledged but not yet trained when the last run died
            if self.confirms(project):  # hints lost by a crash, webhooks lost while down
                self.confirmer.add(project.project_id, full=True, events=0)
        if load_encoder:
            threading.Thread(target=self._load_encoder, name="suggest-encoder-load", daemon=True).start()

    def _load_encoder(self) -> None:
        self.background.enter()  # nobody waits on it yet: /health and /setup must not wait on it either
        try:
            self.encoder.load()
        except Exception:
            log.exception("the text encoder failed to load")

    def close(self) -> None:
        self.analyst.stop()
        if self.maintainer is not None:
            self.maintainer.stop()
        self.confirmer.stop()
        if self.finetuner is not None:
            self.finetuner.stop()
        self.trainer.stop()
        for _, loader in self._loaders.values():
            loader.close()
        self.store.close()

    # projects ---------------------------------------------------------------------------------

    def _registry(self, project_id: str) -> Registry:
        """The model families for a project: a hosted model class (SUGGEST_MODEL_CLASS) serves every control."""
        if not self.settings.model_class:
            return default_registry()
        from suggest.hosted import hosted_family

        def label_config() -> str:
            record = self.store.project(project_id)
            return record.label_config if record is not None else ""

        return Registry([hosted_family(self.settings.model_class, project_id, label_config)])

    def _open(self, record: ProjectRecord) -> Project:
        pid = record.project_id
        project = open_project(self.store, record, parse_controls(record.label_config), self.settings.uncertainty,
                               registry=self._registry(pid),
                               load_image=lambda ref: self.load_image(pid, ref), consensus=self.settings.consensus)
        self.projects[record.project_id] = project
        self._credentials[record.project_id] = (record.hostname, record.access_token)
        self._confirmed[record.project_id] = record.confirmed_host
        if record.webhook_key and record.webhook_key_host:
            self._keys[record.project_id] = (record.webhook_key, record.webhook_key_host)
        if record.ls_checked_at is not None:
            self._ls_state[record.project_id] = (record.ls_error is None, record.ls_error, record.ls_checked_at)
        return project

    def setup(self, project_id: str, label_config: str, hostname: str | None, token: str | None, *,
              authenticated: bool = False) -> Project:
        """Register or refresh a project from /setup; cheap when nothing changed.

        `authenticated`: the caller passed basic auth. With auth off any stranger can call /setup, so an
        unauthenticated call may not move a project whose Label Studio host was confirmed to another host
        (HostChangeRefused), may not drop its credentials, and, for a project whose Label Studio can be
        asked, a config it carries only makes suggest re-read the config from Label Studio.
        """
        schema = parse_controls(label_config)  # raises SchemaError before anything is stored
        for control in schema:  # a family that refuses a control as configured (unmappable labels): 422 now
            self._registry(project_id).family_for(control)
        hostname, token = self._setup_access(hostname, token, self._credentials.get(project_id, (None, None))[0])
        with self._lock:
            project = self.projects.get(project_id)
            if project is None:
                record = ProjectRecord(project_id, label_config, hostname, token)
                self.store.save_project(record)
                project = self._open(record)
                if self.confirms(project):  # first contact: zero-shot, cold-start queue, labels already there
                    self.trainer.request(project, push=True)
                    self.confirmer.add(project_id, full=True, events=0)
                return project
            had_access = self.confirms(project)
            access = self._credentials.get(project_id, (None, None))
            new_access = self._checked_access(project_id, access, (hostname, token), authenticated)
            config = label_config
            if config != project.label_config and had_access and not authenticated:
                self.confirmer.add(project_id, full=True, events=0)  # Label Studio says what the config is
                config = project.label_config
            if config == project.label_config and new_access == access:
                return project
            self.store.save_project(ProjectRecord(project_id, config, *new_access))
            self._credentials[project_id] = new_access
            if project.update_config(config, schema):
                self.trainer.request(project, push=True)
            if self.confirms(project) and (not had_access or new_access != access):  # labels to (re)confirm
                self.confirmer.add(project_id, full=True, events=0)
            return project

    def _setup_access(self, hostname: str | None, token: str | None,
                      stored: str | None = None) -> tuple[str | None, str | None]:
        """The (hostname, token) pair to keep from /setup. With LABEL_STUDIO_API_KEY set, /setup's pair is
        neither kept nor used (the env token goes only to LABEL_STUDIO_URL); with LABEL_STUDIO_URL alone
        the token is kept for that URL and the hostname is not. An empty (or blank) value means absent: Label
        Studio sends "" when it has no URL or token to give, and "" must never count as a credential."""
        hostname = (hostname or "").strip() or None
        token = (token or "").strip() or None
        if self.settings.label_studio_api_key:
            return None, None
        if self.settings.label_studio_url:
            return None, token
        # checked when new to the project (Label Studio repeats /setup; the guarded connection checks every time)
        if hostname and hostname != stored and (problem := hostname_problem(hostname)) is not None:
            raise BadInput(redact_text(problem))  # before anything is stored: a stranger's pick of host
        return hostname, token

    def _checked_access(self, pid: str, old: tuple[str | None, str | None], new: tuple[str | None, str | None],
                        authenticated: bool) -> tuple[str | None, str | None]:
        """The project's access after a /setup: `new`, unless a stranger tries to take it elsewhere."""
        if new == old:
            return old
        if not (new[0] or self.settings.label_studio_url) or not new[1]:
            if old[1] and not authenticated:  # a setup without credentials must not turn confirmation off
                log.warning("project %s: ignoring a /setup without Label Studio credentials", pid)
                return old
            return new
        if old[0] and new[0] and _host(old[0]) != _host(new[0]):
            event = {"from": redact_url(old[0]), "to": redact_url(new[0]),
                     "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if not authenticated and self._confirmed.get(pid) == _host(old[0]):
                event["refused"] = "an unauthenticated /setup cannot move a confirmed project"
                self.host_changes.setdefault(pid, []).append(event)
                log.warning("project %s: refused an unauthenticated /setup moving it from %s to %s", pid,
                            event["from"], event["to"])
                raise HostChangeRefused(
                    f"project {pid} is connected to Label Studio at {event['from']}; an unauthenticated /setup "
                    f"cannot move it to {event['to']}. Turn on basic auth (BASIC_AUTH_USER/BASIC_AUTH_PASS, and "
                    "the same credentials on the model's connection in Label Studio) or set LABEL_STUDIO_URL"
                )
            event["accepted"] = "labels are kept until the new host proves to be the same project"
            self.host_changes.setdefault(pid, []).append(event)
            log.warning("project %s: Label Studio host changes from %s to %s", pid, event["from"], event["to"])
        return new

    def project(self, project_id: str, label_config: str | None = None) -> Project:
        """The project, registering it from a label config when this is the first we hear of it.

        A known project keeps its stored config whatever config a request carries: only Label Studio
        (or an authenticated /setup) changes it. A different one makes suggest re-read Label Studio.
        """
        with self._lock:
            project = self.projects.get(project_id)
            if project is not None:
                if label_config and label_config != project.label_config and self.confirms(project):
                    self.confirmer.add(project_id, full=True, events=0)
                return project
        if not label_config:
            raise UnknownProject(
                f"unknown project {project_id}: connect it in Label Studio first (POST /setup) "
                "or send its label_config"
            )
        return self.setup(project_id, label_config, None, None)

    # labels -----------------------------------------------------------------------------------

    def webhook_project(self, project_id: str, label_config: str | None, *, create: bool = True) -> Project:
        """The project a webhook names. A config it carries never replaces the stored one: with Label
        Studio access a different config makes the confirmer re-read it from Label Studio. `create=False`
        (START_TRAINING): an unknown project is an error, never registered."""
        if not create:
            with self._lock:
                if project_id not in self.projects:
                    raise UnknownProject(f"unknown project {project_id}: connect it in Label Studio first")
            label_config = None
        return self.project(project_id, label_config)

    def record_annotation(
        self, project: Project, annotation_id: int, label: Label | list[Label] | None, task_id: int | None = None,
        *, signed: bool = False, task_labelled: bool | None = None,
    ) -> None:
        """Upsert (or, for a cancelled or emptied annotation, drop) one annotation, then retrain.

        With Label Studio access an unsigned event is only a hint: the confirmer re-reads the task from
        Label Studio in the background and stores what Label Studio holds (webhooks carry no
        credentials, so a forged one must not be able to inject a label). A `signed` event carried the
        key suggest put in its webhook's headers (`sign_webhook`): Label Studio sent it, so it is stored
        as it is, with no re-read (issue 20: those re-reads met the slowest saves). `task_labelled`: the
        task's state after this annotation, as the webhook says (the queue's task list follows it).
        """
        labels = [label] if isinstance(label, Label) else list(label or [])
        if self.maintainer is not None:
            self.maintainer.note_event(project.project_id)  # pruning waits for annotators to pause
        self.analyst.note_event(project.project_id)  # so does the analysis of new versions
        self._events[project.project_id] = time.monotonic()  # and a sync's count comparison
        if self.confirms(project) and not signed:
            tasks = [t for t in (task_id, *(lb.task_id for lb in labels[:1])) if t is not None]
            self.confirmer.add(project.project_id, tasks, [annotation_id])
            return
        if not labels:
            self.store.delete_annotations(project.project_id, [annotation_id])
        else:
            self.store.upsert_labels(project.project_id, labels)
            for lb in labels:
                project.note_new_text(lb.text, lb.control)
        if signed:
            self._signed_events[project.project_id] = self._signed_events.get(project.project_id, 0) + 1
        if signed and task_id is not None and task_labelled is not None:
            self.store.mark_labeled(project.project_id, [task_id], task_labelled)
        self.trainer.request(project)
        if signed and self.maintainer is not None:
            self.maintainer.labels_changed(project)  # as after a confirmation: the head refilled before it runs out

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
            self.tasksync.tasks_deleted(project.project_id, task_ids)
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
                client = self._new_client(access) if access else None
                held = self._loaders[project_id] = (access, ImageLoader(
                    client, local_root=self.settings.local_files_root, allow_hosts=self.settings.media_allow_hosts,
                    deadline=self.settings.media_deadline_seconds))
        return held[1].load(ref)

    def _ls_access(self, project: Project) -> tuple[str, str] | None:
        """(url, token), each token only with the URL it came with: LABEL_STUDIO_API_KEY only with
        LABEL_STUDIO_URL, a /setup token with its own hostname (or LABEL_STUDIO_URL, when set)."""
        if self.settings.label_studio_api_key:
            url = self.settings.label_studio_url
            return (url, self.settings.label_studio_api_key) if url else None
        hostname, token = self._credentials.get(project.project_id, (None, None))
        url = self.settings.label_studio_url or hostname
        return (url, token) if url and token else None

    def signed(self, project_id: str | None, presented: str | None) -> bool:
        """Whether a webhook carried the key suggest put in this project's webhook, on the Label Studio host
        the project uses now (a key set on another host proves nothing about this one)."""
        project = self.projects.get(project_id or "")
        if not presented or project is None or not self._key_current(project):
            return False
        return secrets.compare_digest(presented.encode(), self._keys[project.project_id][0].encode())

    def _key_current(self, project: Project) -> bool:
        """The project holds a webhook key set on the Label Studio host it uses now, a host it confirmed."""
        held, access = self._keys.get(project.project_id), self._ls_access(project)
        return held is not None and access is not None and _host(access[0]) == held[1] == self._confirmed.get(
            project.project_id)

    def _sign_webhook(self, client: LabelStudioClient, project: Project) -> None:
        """Put a per-project key in the headers of the webhook Label Studio made for this backend, so that its
        annotation events prove where they came from and need no re-read. Only when exactly one webhook of the
        project can be ours (`backend_webhook`); otherwise events stay confirmed. Failure is not an error."""
        pid, host = project.project_id, _host(client.url)
        held = self._keys.get(pid)
        try:
            hook = backend_webhook(client.webhooks(pid), pid, self.settings.port)
            if hook is None:
                if held is not None:
                    self._keys.pop(pid, None)
                    self.store.set_webhook_key(pid, None, None)
                log.info("project %s: no single webhook of this backend found in Label Studio; annotation events "
                         "are re-read before they count", pid)
                return
            key = held[0] if held is not None and held[1] == host else secrets.token_urlsafe(32)
            headers = {str(k): str(v) for k, v in (hook.get("headers") or {}).items()} if isinstance(
                hook.get("headers"), dict) else {}
            if headers.get(KEY_HEADER) != key:
                headers[KEY_HEADER] = key
                client.set_webhook_headers(hook, headers)
        except LabelStudioError as exc:
            log.warning("project %s: could not sign its webhook in Label Studio (%s); annotation events are re-read "
                        "before they count", pid, exc)
            return
        self.store.set_webhook_key(pid, key, host)
        self._keys[pid] = (key, host)
        log.info("project %s: webhook %s carries this project's key; its annotation events count as sent", pid,
                 hook["id"])

    def confirms(self, project: Project) -> bool:
        """Whether annotation webhooks for this project are checked against Label Studio."""
        return self._ls_access(project) is not None

    def client(self, project: Project) -> LabelStudioClient | None:
        access = self._ls_access(project)
        return self._new_client(access) if access else None

    def _new_client(self, access: tuple[str, str]) -> LabelStudioClient:
        """A client for (url, token); guarded (ls_hosts) unless the URL is the operator's LABEL_STUDIO_URL."""
        return LabelStudioClient(*access, guarded=access[0] != self.settings.label_studio_url)

    def sync(self, project: Project, *, defer_reread: bool = False) -> bool:
        """Make the stored labels equal Label Studio's annotations (the source of truth), cheaply when they are.

        START_TRAINING comes with every save when Label Studio trains on submit. Re-reading every
        annotation each time (one export: at 10,000 labelled tasks seconds of Label Studio's CPU, taken
        from the annotators' saves) is done only when the counts say the store is behind, or when the
        last full re-read is older than `reconcile_seconds` (edits and deletions that came with no webhook).
        `defer_reread` (the trainer's sync before a retrain): a re-read due only by age waits until the
        retrain and push are done (`reread_waiting`). At 10,000 labels it is an export of 10,000 tasks, and
        the last version of a burst waited 17.5 s behind it."""
        pid = project.project_id
        client = self.client(project)
        if client is None:
            log.info("project %s: no Label Studio URL/token; training on the labels received by webhook", pid)
            return False
        now = time.monotonic()
        if defer_reread and pid in self._full_sync and self._key_current(project) and (
                now - self._events.get(pid, -1e9) < WEBHOOK_GRACE):
            # annotators are saving and Label Studio's events come signed (stored as sent): the project read that
            # compares the counts waits for their pause. During a burst a difference is left to the webhooks anyway,
            # and at 1,000 labels the read met the slowest saves (issue 20 notes, session 12)
            client.close()
            self.trainer.request(project, sync=True, not_before=now + WEBHOOK_GRACE)
            return True
        try:
            self._confirm_now(pid)  # webhooks of the same saves: the store catches up before it is compared
            with self._ls_lock, self._reporting(project):
                config, total = client.config_and_total(pid)  # one read of the project, no export
                changed = config is not None and config != project.label_config
                if changed:
                    self._apply_config(project, config)
                known = self._full_sync.get(pid)
                now = time.monotonic()
                age = None if known is None else now - known[0]
                busy = now - self._events.get(pid, -1e9) < WEBHOOK_GRACE  # annotation webhooks arriving
                # a re-read due only by age waits for annotators to pause (at 10,000 labels it is an export of
                # every labelled task: ~30 s of Label Studio's CPU, taken from the saves), at most one more period
                overdue = age is not None and age >= 2 * self.settings.reconcile_seconds
                held = self.store.annotation_count(pid)
                counts_match = known is not None and known[1] is not None and total >= 0 and total - held == known[1]
                if defer_reread and not changed and counts_match and age is not None and (
                        age >= self.settings.reconcile_seconds):
                    self._reread_waiting.add(pid)  # due only by age: nothing this retrain needs
                    log.info("project %s: the periodic full re-read follows this retrain and push", pid)
                    return True
                if not changed and age is not None and (age < self.settings.reconcile_seconds or busy and not overdue):
                    if counts_match:
                        if age >= self.settings.reconcile_seconds:
                            log.info("project %s: the periodic full re-read waits for annotators to pause", pid)
                            self.trainer.request(project, sync=True, not_before=now + WEBHOOK_GRACE)
                        else:
                            log.info("project %s: stored labels match Label Studio's count (%d); no full re-read",
                                     pid, held)
                        return True
                    if total >= 0 and busy:
                        # saves whose webhooks are still on their way: they explain the difference; once
                        # annotators pause the trainer syncs again and compares then
                        log.info("project %s: Label Studio counts %d annotations, the store %d, while webhooks "
                                 "arrive; compared again when annotators pause", pid, total, held)
                        self.trainer.request(project, sync=True, not_before=now + WEBHOOK_GRACE)
                        return True
                labels = self._replace_with_label_studio(client, project)
        finally:
            client.close()
        log.info("project %s: reconciled with Label Studio, %d annotations", pid, len(labels))
        return True

    def reread_waiting(self, project: Project) -> None:
        """After the trainer's retrain and push: the sync its `defer_reread` put off (re-reads in full only
        when due by age and annotators pause, as `sync` always does)."""
        if project.project_id in self._reread_waiting:
            self._reread_waiting.discard(project.project_id)
            self.sync(project)

    def _confirm_now(self, project_id: str) -> None:
        """Confirm the project's waiting webhook hints on this thread (they are put back if that fails)."""
        hints = self.confirmer.take(project_id)
        if hints is None:
            return
        try:
            self._confirm(project_id, hints)
        except Exception as exc:
            self.confirmer.put_back(project_id, hints, exc)
            raise

    def _replace_with_label_studio(self, client: LabelStudioClient, project: Project) -> list[Label]:
        """Stored labels := every annotation Label Studio holds for the project.

        A host that has not replaced this project's labels before must first prove it is the same
        project: the same label config, and a non-empty export when labels are held (a stranger's host,
        or a fresh Label Studio, must not wipe what may be the only copy).
        """
        pid = project.project_id
        host = _host(client.url)
        started, total = time.monotonic(), client.config_and_total(pid)[1]  # before the export: never ahead of it
        labels = labels_from_tasks(client.labeled_tasks(pid), project.schemas)
        if self._confirmed.get(pid) != host:
            held = len(self.store.labels(pid))
            if held:
                config = client.label_config(pid)
                if config != project.label_config:
                    raise HostNotConfirmed(
                        f"Label Studio at {redact_url(client.url)} has another label config for project {pid}; "
                        f"keeping the {held} stored annotation(s) instead of replacing them with its export")
                if not labels:
                    raise HostNotConfirmed(
                        f"Label Studio at {redact_url(client.url)} exports no annotations for project {pid} while "
                        f"suggest holds {held}; keeping them (is it the same Label Studio?)")
        self.store.replace_labels(pid, labels)
        # what Label Studio counts that the store does not keep (machine annotations, unusable ones); known only
        # when no save or deletion landed during the export: one did in a CI run (the count read before the
        # export was one short of what the export held), the remembered difference came out -1, and a later
        # deletion with no webhook then "matched" the counts and was missed. Unknown: the next sync after the
        # annotators pause re-reads everything
        after = client.config_and_total(pid)[1]
        self._full_sync[pid] = (started, total - self.store.annotation_count(pid) if after == total else None)
        if self._confirmed.get(pid) != host:
            self.store.set_label_studio_state(pid, error=None, confirmed_host=host)
            self._confirmed[pid] = host
        return labels

    def _apply_config(self, project: Project, config: str) -> None:
        """A label config read from Label Studio, the only source that may change a connected project's."""
        try:
            schema = parse_controls(config)
        except SchemaError as exc:
            raise LabelStudioError(f"Label Studio's label config for project {project.project_id} cannot be "
                                   f"served: {exc}") from None
        with self._lock:
            self.store.save_project(ProjectRecord(project.project_id, config,
                                                  *self._credentials.get(project.project_id, (None, None))))
            if project.update_config(config, schema):
                self.trainer.request(project, push=True)
        log.info("project %s: label config updated from Label Studio", project.project_id)

    @contextmanager
    def _reporting(self, project: Project):
        """Remember whether the last call to the project's Label Studio worked (/metrics, `suggest status`)."""
        pid = project.project_id
        try:
            yield
        except Exception as exc:
            message = _printable_error(exc)
            self._ls_state[pid] = (False, message, time.time())
            self.store.set_label_studio_state(pid, error=message)
            raise
        if self._ls_state.get(pid, (None,))[0] is not True:
            self.store.set_label_studio_state(pid, error=None)
        self._ls_state[pid] = (True, None, time.time())

    def _confirm(self, project_id: str, hints: _Hints) -> None:
        """Store what Label Studio holds for the tasks some webhooks named (all tasks when `full`)."""
        project = self.projects.get(project_id)
        client = self.client(project) if project is not None else None
        if client is None:
            log.warning("project %s: no Label Studio access any more; dropping unconfirmed events", project_id)
            return
        pid = project_id
        try:
            with self._ls_lock, self._reporting(project):
                if hints.full:  # the config may have changed too (a webhook carried another one)
                    config = client.label_config(pid)
                    if config is not None and config != project.label_config:
                        self._apply_config(project, config)
                    labels = self._replace_with_label_studio(client, project)
                    if self.settings.sign_webhooks:
                        self._sign_webhook(client, project)
                else:
                    held = self.store.labels(pid)
                    tasks = hints.tasks | {lb.task_id for lb in held if lb.annotation_id in hints.annotations}
                    fetched = client.tasks_by_id(pid, sorted(tasks))
                    labels = labels_from_tasks(fetched, project.schemas)
                    self.tasksync.confirmed(pid, tasks, fetched)  # gone tasks leave the task list
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
        if self.maintainer is not None:
            self.maintainer.labels_changed(project)  # the head refilled before Label Studio falls back to random

    # quality ----------------------------------------------------------------------------------

    def _after_publish(self, project: Project) -> None:
        """The trainer's after-publish step (background): re-rank the pool. Quality and standing are not
        computed here: each new version queues them on the analysis worker (Trainer on_version)."""
        if self.settings.push:
            self.refresher.refresh(project)
            if self.maintainer is not None:
                self.maintainer.pushed(project)  # superseded predictions go, in chunks, when annotators pause

    def _analyze(self, project: Project) -> None:
        """The analysis worker's step: the quality report, then standing (which reuses its out-of-fold
        probabilities). Each stores its result, or its error, for readers."""
        quality = self.update_quality(project)
        oof = self._oof.pop(project.project_id, None)
        if quality is None or quality.get("model_version", quality.get("version")) != project.published.version:
            oof = None  # computed for another version (a newer one landed meanwhile): standing computes its own
        self.update_standing(project, oof)
        self.write_review_tab(project)

    def write_review_tab(self, project: Project) -> None:
        """Refresh the "suggest: review" tab in Label Studio with the last report's suspects. Never raises.

        With the live loop on, only once the loop's push of the report's version has ended, its pointing and
        prune steps included (at most REVIEW_TAB_WAIT s; `_loop_handled`), one row per call at the queue head's
        pace, given up when a newer version lands.
        Why (issue 17, 10,000 tasks): written at once, the tab's rows (up to 100 a version) met the version's
        first slice and the annotators' first /next under it, which took 1.4-3.2 s instead of 0.2-0.5 s.

        One row per call, the tab is saved first (which tasks it lists: one call), and the rows that order it
        follow. Why: at ~1.5 s a row, a tab of 20-40 suspects was never finished while annotators produced a
        version every ~15 s, and the tab listed an old version's suspects until a long pause (issue 17,
        sessions 22 and 24). Now it lists the newest version's suspects once the loop has pushed it; only
        their order waits for the rows (a suspect with no row of the current version sorts apart)."""
        from suggest.labelstudio import (
            finish_review_tab,
            prediction_pace,
            rest_after,
            save_review_view,
            send_predictions,
        )

        pid = project.project_id
        due = self._tabs_due.pop(pid, None)
        if due is None:
            return
        version, top, rows = due

        def replaced() -> bool:
            return project.model_version != version or self.analyst.stopping

        if self.settings.push:
            deadline = time.monotonic() + REVIEW_TAB_WAIT
            while not (replaced() or self._loop_handled(project, version)) and time.monotonic() < deadline:
                time.sleep(0.1)
        client = None if replaced() else self.client(project)
        if client is None:
            return
        try:
            with self._reporting(project):
                one_by_one = prediction_pace(client, pid).by_row() and self.settings.push  # else one bulk call
                if one_by_one:  # the tab lists this version's suspects now; their order follows with the rows
                    began = time.perf_counter()
                    save_review_view(client, pid, top)
                    self._review_tab_state(project, version, listed=True)
                    rest_after(time.perf_counter() - began, self.settings.push_duty, replaced)
                parts = [rows[i : i + 1] for i in range(len(rows))] if one_by_one else [rows] if rows else []
                for written, part in enumerate(parts):
                    if replaced():
                        log.info("project %s: the review tab of %s is left (%d of %d parts written%s): a newer "
                                 "version was published", pid, version, written, len(parts),
                                 "; it lists the version's suspects, their order is not in" if one_by_one else "")
                        return
                    made = send_predictions(client, pid, part, duty=self.settings.push_duty if one_by_one else 1.0,
                                            stop=replaced)
                    # rows known by id (one per call): once superseded, a later head takes them over (labelled
                    # tasks' first, queuehead._take_spares), where unknown ones wait for a prune's delete (issue 17:
                    # most of the rows left behind at 10,000 tasks were the tab's)
                    self.store.set_pushed(pid, version, {r["task"]: float(r.get("score") or 0.0) for r in part
                                                         if r["task"] in made}, made)
                finish_review_tab(client, pid, top, version, set_version=self.settings.push and bool(rows),
                                  still_current=lambda: self._loop_handled(project, version), view=not one_by_one)
            self._review_tab_done(project, version, None)
            log.info("project %s: the review tab of %s is written (%d tasks)", pid, version, len(top))
        except Exception as exc:
            self._review_tab_done(project, version, _printable_error(exc))
        finally:
            client.close()

    def update_standing(self, project: Project, oof: dict | None = None) -> dict | None:
        """Compute and store the project's standing for its published version (suggest.standing.report).
        Never raises: a failure is logged and stored."""
        from suggest.standing.report import compute_standing

        pid, published = project.project_id, project.published
        version = published.version
        stamp = self.store.standing_stamp(pid)
        if stamp is not None and stamp[0] == version:
            return None
        seq = published.record.seq if published.record is not None else 0
        n_labels = published.record.n_labels if published.record is not None else 0
        try:
            report, stop_labels, validation = compute_standing(project, oof)
        except Exception as exc:
            log.exception("project %s: computing standing failed", pid)
            self.store.put_standing(pid, version, seq, n_labels, [],
                                    {"error": f"computing standing failed: {_printable_error(exc)}"})
            return None
        self.store.put_validation(pid, version, validation)
        self.store.put_standing(pid, version, seq, report.get("labels", n_labels), stop_labels, report)
        log.info("project %s: standing for %s in %.2f s", pid, version, report.get("seconds", 0.0))
        return report

    def record_served(self, project: Project, rows: list, predictions: list, annotated: list[bool]) -> None:
        """/predict: remember the suggestion each unannotated task was given (standing's agreement estimate)."""
        from suggest.standing.live import record_served

        record_served(project, rows, predictions, annotated)

    def update_quality(self, project: Project) -> dict | None:
        """Compute and store the project's quality report once per published version, and plan its "suggest:
        review" tab (written by `write_review_tab`). Never raises: a failure is logged and stored in the report."""
        from suggest.labelstudio import review_tab_rows
        from suggest.quality.report import compute_report, weighted_labels

        pid, version = project.project_id, project.model_version
        if project.published.record is None:
            return None  # nothing trained yet: no out-of-fold model to doubt labels with
        stamp = self.store.quality_stamp(pid)  # the version only: the report itself can be megabytes
        if stamp is not None and stamp[0] == version:
            held = self.store.quality(pid)
            if held is not None and not held.get("error"):
                return held
        try:
            self._oof[pid] = oof = {}  # out-of-fold probabilities, reused by standing
            report = compute_report(project, oof)
            version = report.get("model_version") or version  # the version it read (a newer one may have landed)
        except Exception as exc:
            log.exception("project %s: computing label quality failed", pid)
            self.store.put_quality(pid, version, {"error": f"computing label quality failed: {_printable_error(exc)}"})
            return None
        if self.settings.consensus == "weighted":
            project.weighted_consensus = weighted_labels(report)
        if self._ls_access(project) is not None:  # written by `write_review_tab`, after standing
            top, rows = review_tab_rows(report["suspects"], version, project.schemas)
            report["review_tab"] = len(top)
            self._review_tabs[pid] = {"version": version, "tasks": len(top), "listed": False, "written": False}
            self._tabs_due[pid] = (version, top, rows)
        self.store.put_quality(pid, version, report)
        log.info("project %s: label quality for %s: %d suspect(s), %.2f s", pid, version,
                 report["counts"]["suspects"], report["seconds"])
        return report

    def _review_tab_state(self, project: Project, version: str, **fields: object) -> None:
        """Update what /metrics says of `version`'s review tab (nothing once a newer version's report replaced it):
        `listed` (its suspects are listed), `written` (their rows are in too), `error`."""
        state = self._review_tabs.get(project.project_id)
        if state is not None and state.get("version") == version:
            self._review_tabs[project.project_id] = {**state, **fields}

    def _review_tab_done(self, project: Project, version: str, error: str | None) -> None:
        """A version's review tab is saved, or failed to be (/metrics shows which)."""
        if error is None:
            self._review_tab_state(project, version, listed=True, written=True)
            return
        self._review_tab_state(project, version, written=False, error=error)
        if self._review_tabs.get(project.project_id, {}).get("version") == version:
            log.warning("project %s: could not refresh the review tab in Label Studio: %s", project.project_id, error)

    @staticmethod
    def _loop_handled(project: Project, version: str) -> bool:
        """Whether the review tab may point Label Studio at `version`: it is still the newest, and the loop has
        already pushed it (or found nothing to push). Before that the loop's push points Label Studio once the
        queue's first slice holds the version; pointed earlier, at a version only the suspects (labelled tasks)
        hold rows of, Label Studio finds no unlabelled task of it and serves random ones until the push."""
        status = project.loop_status if isinstance(project.loop_status, dict) else {}
        # "push" timed: the push is over, its prune steps included (the status shown after the first slice has
        # no "push" yet). Why: the tab's Data Manager calls beside the prune's deletes stretched both (a view
        # saved in 0.1-0.2 s alone took 1.2-2.9 s), and another project's saves waited behind them (issue 17)
        return (project.model_version == version and status.get("version") == version
                and "push" in (status.get("seconds") or {}))

    # reporting --------------------------------------------------------------------------------

    def _cached(self, pid: str, part: str, stamp: object, make: Callable[[], dict]) -> dict:
        """A /metrics part rebuilt only when its stored report changed (stamp: version and time computed)."""
        held = self._report_cache.get((pid, part))
        if held is not None and held[0] == stamp and stamp is not None:
            return held[1]
        entry = make()
        self._report_cache[(pid, part)] = (stamp, entry)
        return entry

    def standing_entry(self, pid: str) -> dict:
        """The standing part of /metrics (and `suggest status --format json`), cached by version."""
        from suggest.standing.report import metrics_entry as standing_metrics

        return self._cached(pid, "standing", self.store.standing_stamp(pid),
                            lambda: standing_metrics(self.store.standing(pid), self.store.standing_history(pid)))

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
            entry["quality"] = self._cached(pid, "quality", self.store.quality_stamp(pid),
                                            lambda p=pid: metrics_entry(self.store.quality(p)))
            if pid in self._review_tabs:  # the "suggest: review" tab in Label Studio: its version, tasks, written
                entry["quality"] = {**entry["quality"], "review_tab": dict(self._review_tabs[pid])}
            entry["standing"] = self.standing_entry(pid)
            entry["training"] = self.trainer.is_busy(pid) or self.confirmer.is_busy(pid)
            entry["analysing"] = self.analyst.is_busy(pid)  # quality and standing, once annotators pause
            entry["maintaining"] = self.maintainer.is_busy(pid) if self.maintainer else False  # refill, prune
            entry["webhooks"] = (SIGNED if self._key_current(project) else CONFIRMED) if self.confirms(project) \
                else TRUSTED
            entry["signed_events"] = self._signed_events.get(pid, 0)
            entry["unconfirmed"] = self.confirmer.count(pid)
            entry["task_list"] = {"tasks": self.store.task_count(pid),
                                  "pruned": self.maintainer.pruned.get(pid, 0) if self.maintainer else 0}
            entry["confirm_error"] = self.confirmer.errors.get(pid)
            access = self._ls_access(project)
            hostname, _ = self._credentials.get(pid, (None, None))
            reachable, error, checked = self._ls_state.get(pid, (None, None, None))
            entry["label_studio"] = {
                "url": redact_url(access[0] if access else (self.settings.label_studio_url or hostname)),
                "token": access is not None,
                "reachable": reachable if access else None,
                "error": error if access else None,
                "checked_at": _iso(checked),
                "confirmed_host": redact_url(self._confirmed.get(pid)),
                "host_changes": self.host_changes.get(pid, [])[-10:],
            }
            if access and reachable is False:
                entry["label_studio"]["fix"] = (
                    "suggest cannot reach Label Studio at this URL, so annotations wait unconfirmed and nothing "
                    "trains. If Label Studio runs elsewhere (Docker: its own hostname), set LABEL_STUDIO_URL to an "
                    "address this host can reach, with LABEL_STUDIO_API_KEY")
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

    def __init__(self, confirm: Callable[[str, _Hints], None], *, debounce: float = 0.2, max_delay: float = 1.0,
                 background: Background | None = None):
        self._confirm_fn = confirm
        self.debounce, self.max_delay = debounce, max_delay
        self.errors: dict[str, str] = {}
        super().__init__("suggest-confirmer", background)
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

    def take(self, project_id: str) -> _Hints | None:
        """The project's waiting hints, for a caller that confirms them itself (a sync about to compare counts)."""
        with self._cond:
            return self._pending.pop(project_id, None)

    def put_back(self, project_id: str, hints: _Hints, exc: Exception) -> None:
        """Hints a caller took and could not confirm: retried here with the usual backoff (or dropped, as here)."""
        self._failed(project_id, hints, exc)

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
        if isinstance(exc, HostNotConfirmed):
            self.errors[pid] = f"{exc}; unconfirmed events dropped"
            log.warning("project %s: %s", pid, self.errors[pid])
            return
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


__all__ = ["BadInput", "Engine", "HostChangeRefused", "UnknownProject"]
