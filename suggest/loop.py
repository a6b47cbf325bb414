"""The live active-learning loop: after each new version, re-score the whole pool in Label Studio.

Label Studio never re-scores its tasks after a retrain, and its Community UI hides uncertainty
sampling, so `suggest` does both itself: it reads every task (one export call), scores the
unlabeled ones with the newly published model from cached embeddings, picks the next batch to be
uncertain AND diverse, bulk-imports one prediction per task whose `score` encodes that order
(lowest first), then points the project's `model_version` at the new version and turns on
uncertainty sampling, so Label Studio's score column and its label stream (`/next`) follow.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from suggest import labelstudio as ls
from suggest.project import Project, Published, task_id_of
from suggest.queuehead import HeadPusher
from suggest.schema import Item, Prediction
from suggest.standing.live import record_ranked
from suggest.strategies import (
    CERTAINTY_METHODS,
    CertaintyStrategy,
    QueryStrategy,
    make_strategy,
    rank_by_certainty,
    rank_pool,
    strategy_for,
)
from suggest.strategies.ranking import mix_audit

log = logging.getLogger(__name__)

UNCERTAINTY_SAMPLING = "Uncertainty sampling"


@dataclass(frozen=True)
class LoopSettings:
    """How the loop orders a project's queue.

    `strategy` is how the batch at the top is chosen; `uncertainty` is how a task's certainty is
    measured: the score of every task after the batch, and what dense and diverse weigh. The engine
    passes Settings.uncertainty, the measure it opens projects with (Project.uncertainty): the
    per-control route ranks by the certainties of the project's own guesses, so the two must agree.
    """

    batch_size: int = 50
    strategy: str = "auto"  # dense for text, diverse for images (strategies.strategy_for)
    set_sampling: bool = True
    keep_versions: int = 0  # >0: delete older versions' predictions from Label Studio (0: keep all)
    uncertainty: str = "margin"  # margin | least_confidence | entropy (SUGGEST_UNCERTAINTY)
    audit_fraction: float = 0.0  # issue 14: a uniform random audit slice mixed into each batch (SUGGEST_AUDIT_FRACTION)

    def __post_init__(self) -> None:
        if self.uncertainty not in CERTAINTY_METHODS:
            raise ValueError(f"uncertainty must be one of {CERTAINTY_METHODS}, got {self.uncertainty!r}")


@dataclass(frozen=True)
class _Pool:
    """What the published version says about the pool: predictions per task, and what ranking needs."""

    preds: list[list[Prediction]]
    X: np.ndarray  # one embedding per task (zeros where a task has none)
    proba: np.ndarray | None  # class probabilities: a single text classifier (then `cert` is None)
    cert: np.ndarray | None  # per task, its least certain control's certainty (1.0 where no control guessed)


def rank_rows(
    project: Project, rows: list[dict[str, Item]], settings: LoopSettings,
    audit: tuple[list[int], int] | None = None,
) -> tuple[list[list[Prediction]], np.ndarray]:
    """Predictions for a pool of tasks whose `score` is the queue position; returns them and the batch.

    `audit` = (row positions, N): the audit slice already drawn uniformly from a pool of N tasks that
    these rows are a part of (the queue head's candidates); None: drawn here from these rows.

    Each task is read for the controls it has (control name -> Item). The batch comes first in
    batch order, every other task after it by its certainty, least certain first. A single text
    classifier is ranked from its class probabilities (so strategies that need the matrix, such as
    modal:, work); any other project from each task's least certain control, with diversity in the
    first control's embedding space (a task then has one certainty, so a strategy named after another
    measure picks by that one). With no trained version yet (cold start) the batch is chosen for
    typicality and coverage, and the pre-annotations are zero-shot.
    """
    published = project.published  # one read: a concurrent swap cannot mix two versions
    cold = published.record is None
    pool = _read_pool(project, published, rows)
    strategy = _strategy(project, settings, cold, pool.proba is not None)
    if pool.proba is not None:
        scores, batch = rank_pool(pool.proba, pool.X, batch_size=settings.batch_size, strategy=strategy,
                                  method=settings.uncertainty)
    else:
        scores, batch = rank_by_certainty(None if cold else pool.cert, pool.X, batch_size=settings.batch_size,
                                          strategy=strategy)
    drawn = audit
    audit: dict[int, float] = {}
    if not cold and settings.audit_fraction > 0:  # issue 14: the audit slice (unbiased accuracy estimate)
        rng = np.random.default_rng(zlib.crc32(f"{project.project_id}/{published.version}".encode()))
        scores, batch, rows_audited, weight = mix_audit(
            scores, batch, fraction=settings.audit_fraction, batch_size=settings.batch_size, rng=rng,
            drawn=None if drawn is None else (np.asarray(drawn[0], dtype=int), drawn[1]))
        audit = {t: weight for i in rows_audited if (t := task_id_of(rows[int(i)])) is not None}
    # A task with nothing to suggest (an untrained image model, an image that did not load) still gets
    # an empty prediction carrying its queue score: Label Studio orders by it, and accepts the version.
    ranked = [[replace(p, score=float(s)) for p in row]
              or [Prediction((), 0.0, float(s), published.version, project.schema.from_name)]
              for row, s in zip(pool.preds, scores, strict=True)]
    project.set_queue_scores(published.version, {
        task_id_of(row): float(s) for row, s in zip(rows, scores, strict=True) if task_id_of(row) is not None
    })
    record_ranked(project, rows, ranked, audit)  # issue 14: what each task shows, the audit slice, the stop set
    return ranked, batch


def _one_text_classifier(project: Project) -> bool:
    """Whether the project is ranked from class probabilities (see `rank_rows`)."""
    first = project.schema
    return len(project.schemas) == 1 and first.task_kind == "classification" and first.object_type == "text"


def _read_pool(project: Project, published: Published, rows: list[dict[str, Item]]) -> _Pool:
    """Embeddings and guesses of the published version for every task, from the embedding cache."""
    n = len(rows)
    if _one_text_classifier(project) and published.model.gives_proba:  # a hosted class gives scores, not proba
        items = [row[project.schema.from_name] for row in rows]
        model = published.model
        X = model.embed(items)
        proba = model.predict_proba_embedded(X) if model.supports_embedded else model.predict_proba(items)
        preds = project.predictions_from_proba(proba, published.version)
        return _Pool([[p] for p in preds], X, proba, None)
    cert = np.ones(n)
    X: np.ndarray | None = None
    preds: list[list[Prediction]] = [[] for _ in rows]
    for schema in project.schemas:
        guessed, kept = project.guess_control(published, schema, rows)
        for i, _, pred in guessed:
            preds[i].append(pred)
            cert[i] = min(cert[i], pred.score)
        if X is None and kept:
            model = published.models[schema.from_name]
            vectors = model.embed_partial([it for _, it in kept])[0]  # a broken image must not fail the pool
            X = np.zeros((n, vectors.shape[1]), dtype=np.float32)
            X[[i for i, _ in kept]] = vectors
    return _Pool(preds, np.zeros((n, 1), dtype=np.float32) if X is None else X, None, cert)


def _strategy(project: Project, settings: LoopSettings, cold: bool, has_proba: bool) -> QueryStrategy:
    """The strategy that picks the batch, weighing `settings.uncertainty`; coldstart before the first model.

    Without class probabilities a strategy that needs them (modal:) gives way to "auto", unbuilt, so a
    modAL that is not installed cannot fail the push.
    """
    object_type = project.schema.object_type
    name = "coldstart" if cold else strategy_for(settings.strategy, object_type)
    modal = name.startswith("modal:")
    seeded = {} if modal else {"random_state": 0}  # seeded: the same pool ranks the same way
    strategy = None if modal and not has_proba else make_strategy(name, method=settings.uncertainty, **seeded)
    if strategy is not None and (has_proba or isinstance(strategy, CertaintyStrategy)):
        return strategy
    fallback = strategy_for("auto", object_type)
    log.info("project %s: strategy %r needs class probabilities; ranking with %r", project.project_id, name, fallback)
    return make_strategy(fallback, method=settings.uncertainty, random_state=0)


class PoolRefresher:
    """Pushes a ranked prediction for every unlabeled task of a project into Label Studio."""

    def __init__(self, settings: LoopSettings, client_for: Callable[[Project], ls.LabelStudioClient | None],
                 head: HeadPusher | None = None):
        self.settings = settings
        self._client_for = client_for
        self.head = head  # issue 17: push only the queue's head from the store's task list (no export)

    def refresh(self, project: Project) -> dict:
        client = self._client_for(project)
        if client is None:
            project.loop_status = {
                "enabled": False,
                "reason": "no Label Studio URL and token: connect suggest from Label Studio (its /setup sends "
                          "them) or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY",
            }
            return project.loop_status
        if self.head is not None:
            try:
                project.loop_status = self.head.push(project, client)
            finally:
                client.close()
            return project.loop_status
        started = time.perf_counter()
        version = project.model_version
        try:
            tasks = client.all_tasks(project.project_id)
            items = ls.unlabeled_rows(tasks, project.schemas, skip_version=version)
            fetched = time.perf_counter()
            rows: list[dict] = []
            if items:
                preds, batch = rank_rows(project, items, self.settings)
                task_ids = [task_id_of(row) for row in items]
                # Tasks a /predict (Label Studio's "Retrieve predictions") answered while this push ranked
                # already get a prediction of this version from Label Studio: never a second one.
                version = next((p[0].model_version for p in preds if p), version)  # a retrain may have published
                covered = project.claim_predictions(version, [t for t in task_ids if t is not None], "push")
                rows = [ls.prediction_import_json(t, p, project.schemas)
                        for t, p in zip(task_ids, preds, strict=True) if p and t not in covered]
                ranked = time.perf_counter()
                try:
                    client.import_predictions(project.project_id, rows)
                except Exception:
                    project.release_claims(version, [row["task"] for row in rows], "push")
                    raise
                next_tasks = [task_ids[i] for i in batch[:10]]
            else:
                ranked, next_tasks = fetched, []
            pushed = time.perf_counter()
            # Nothing imported (every task labelled, or all already predicted through /predict): Label Studio
            # refuses a model_version none of its predictions carry (400), so only point at one it holds.
            held = bool(rows) or version in client.model_versions(project.project_id)
            if held:
                fields: dict = {"model_version": version}
                if self.settings.set_sampling:
                    fields["sampling"] = UNCERTAINTY_SAMPLING
                client.update_project(project.project_id, **fields)
            updated = time.perf_counter()
            pruned = self._prune(client, project, version)
        finally:
            client.close()
        done = time.perf_counter()
        project.loop_status = {
            "enabled": True,
            **({} if held else {"note": "nothing to push: no unlabelled task is waiting for a prediction, so "
                                        "Label Studio's model version was left as it was"}),
            "version": version,
            "tasks_scored": len(items),
            "next_tasks": next_tasks,
            "pruned_versions": pruned,
            "seconds": {"fetch": round(fetched - started, 3), "rank": round(ranked - fetched, 3),
                        "push": round(pushed - ranked, 3), "prune": round(done - updated, 3),
                        "total": round(done - started, 3)},
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        log.info("project %s: pushed %d ranked predictions of %s in %.2f s",
                 project.project_id, len(items), version, done - started)
        return project.loop_status

    def _prune(self, client: ls.LabelStudioClient, project: Project, current: str) -> list[str]:
        """Delete Label Studio's predictions of this project's older suggest versions; keeps the newest
        `keep_versions`. Why: every re-rank adds a prediction to every unlabeled task (10,000 tasks and
        50 retrains would leave 500,000 rows in Label Studio's database, and in every export). Only
        versions suggest published are touched; a failure is logged and never fails the push.
        Off by default: Label Studio deletes a version in one transaction at about 3.6 ms per
        prediction (measured, 1.23.2 on SQLite: 3.6 s for 1,000), and on SQLite that transaction holds
        the write lock, so annotators' submits wait while it runs."""
        keep = self.settings.keep_versions
        if keep <= 0:
            return []
        ours = project.our_versions()
        kept = set(ours[-keep:]) | {current}
        try:
            held = client.model_versions(project.project_id)
            stale = [v for v in ours if v in held and v not in kept]
            for version in stale:
                client.delete_model_version(project.project_id, version)
        except ls.LabelStudioError as exc:
            log.warning("project %s: could not prune old versions' predictions: %s", project.project_id, exc)
            return []
        if stale:
            log.info("project %s: removed the predictions of %s from Label Studio", project.project_id, stale)
        return stale
