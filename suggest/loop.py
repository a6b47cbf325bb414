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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from suggest import labelstudio as ls
from suggest.project import Project, task_id_of
from suggest.schema import Item, Prediction
from suggest.strategies import CertaintyStrategy, make_strategy, rank_by_certainty, rank_pool, strategy_for

log = logging.getLogger(__name__)

UNCERTAINTY_SAMPLING = "Uncertainty sampling"


@dataclass(frozen=True)
class LoopSettings:
    batch_size: int = 50
    strategy: str = "auto"  # dense for text, diverse for images (strategies.strategy_for)
    set_sampling: bool = True
    keep_versions: int = 0  # >0: delete older versions' predictions from Label Studio (0: keep all)


def rank_items(project: Project, items: list[Item], settings: LoopSettings) -> tuple[list[Prediction], np.ndarray]:
    """Predictions for a pool whose `score` is the queue position: the diverse batch first.

    Works from the published version's cached embeddings; with no trained version yet (cold
    start) the batch is chosen for typicality and coverage, the pre-annotations are zero-shot.
    """
    published = project.published
    model = published.model
    X = model.embed(items)
    if hasattr(model, "predict_proba_embedded"):
        proba = model.predict_proba_embedded(X)
    else:
        proba = model.predict_proba(items)
    name = "coldstart" if published.record is None else settings.strategy
    strategy = make_strategy(name, random_state=0) if not name.startswith("modal:") else make_strategy(name)
    scores, batch = rank_pool(proba, X, batch_size=settings.batch_size, strategy=strategy)
    base = project.predictions_from_proba(proba, published.version)
    ranked = [Prediction(p.label, p.probability, float(s), p.model_version, p.control)
              for p, s in zip(base, scores, strict=True)]
    project.set_queue_scores(published.version, {
        it.task_id: p.score for it, p in zip(items, ranked, strict=True) if it.task_id is not None
    })
    return ranked, batch


def rank_rows(
    project: Project, rows: list[dict[str, Item]], settings: LoopSettings
) -> tuple[list[list[Prediction]], np.ndarray]:
    """`rank_items` for any project: tasks read for several controls, of any task kind.

    A single text classifier goes through the class-probability path (all strategies, the modAL
    plug-in included). Otherwise each control's model guesses, a task's certainty is its least
    certain control's, and diversity is measured in the first control's embedding space.
    """
    first = project.schema
    if len(project.schemas) == 1 and first.task_kind == "classification" and first.object_type == "text":
        preds, batch = rank_items(project, [row[first.from_name] for row in rows], settings)
        return [[p] for p in preds], batch
    published = project.published
    n = len(rows)
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
            embed_partial = getattr(model, "embed_partial", None)  # images: a broken one must not fail the pool
            vectors = embed_partial([it for _, it in kept])[0] if embed_partial else model.embed([it for _, it in kept])
            X = np.zeros((n, vectors.shape[1]), dtype=np.float32)
            X[[i for i, _ in kept]] = vectors
    if X is None:
        X = np.zeros((n, 1), dtype=np.float32)
    name = "coldstart" if published.record is None else strategy_for(settings.strategy, first.object_type)
    strategy = make_strategy(name, random_state=0) if not name.startswith("modal:") else None
    if not isinstance(strategy, CertaintyStrategy):
        fallback = strategy_for("auto", first.object_type)
        log.info("project %s: strategy %r needs class probabilities; ranking with %r", project.project_id, name,
                 fallback)
        strategy = make_strategy(fallback, random_state=0)
    scores, batch = rank_by_certainty(None if published.record is None else cert, X,
                                      batch_size=settings.batch_size, strategy=strategy)
    # A task with nothing to suggest (an untrained image model, an image that did not load) still gets
    # an empty prediction carrying its queue score: Label Studio orders by it, and accepts the version.
    ranked = [[Prediction(p.label, p.probability, float(s), p.model_version, p.control) for p in row]
              or [Prediction((), 0.0, float(s), published.version, first.from_name)]
              for row, s in zip(preds, scores, strict=True)]
    project.set_queue_scores(published.version, {
        task_id_of(row): float(s) for row, s in zip(rows, scores, strict=True) if task_id_of(row) is not None
    })
    return ranked, batch


class PoolRefresher:
    """Pushes a ranked prediction for every unlabeled task of a project into Label Studio."""

    def __init__(self, settings: LoopSettings, client_for: Callable[[Project], ls.LabelStudioClient | None]):
        self.settings = settings
        self._client_for = client_for

    def refresh(self, project: Project) -> dict:
        client = self._client_for(project)
        if client is None:
            project.loop_status = {
                "enabled": False,
                "reason": "no Label Studio URL and token: connect suggest from Label Studio (its /setup sends "
                          "them) or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY",
            }
            return project.loop_status
        started = time.perf_counter()
        version = project.model_version
        try:
            tasks = client.all_tasks(project.project_id)
            items = ls.unlabeled_rows(tasks, project.schemas, skip_version=version)
            fetched = time.perf_counter()
            if items:
                preds, batch = rank_rows(project, items, self.settings)
                task_ids = [task_id_of(row) for row in items]
                rows = [ls.prediction_import_json(t, p, project.schemas)
                        for t, p in zip(task_ids, preds, strict=True) if p]
                ranked = time.perf_counter()
                client.import_predictions(project.project_id, rows)
                next_tasks = [task_ids[i] for i in batch[:10]]
            else:
                ranked, next_tasks = fetched, []
            pushed = time.perf_counter()
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
        ours = [project.zero_shot_version(), *(r.version for r in project.store.versions(project.project_id))]
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
