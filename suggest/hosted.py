"""The adapter that hosts a LabelStudioMLBase-shaped class (suggest/mlbase.py) as a model family: "hosted".

Why here and not in `backends`: such a class speaks Label Studio JSON (tasks in, predictions out),
and that JSON stays in this module and labelstudio.py, never in the engine. To the engine the hosted
class is one more Backend: `guess` turns Items into tasks, calls the class's `predict` and reads the
control's answer and `score` back from the result JSON; `fit` hands it every labeled task with its
annotation. The engine then does the rest as for any family: retrains in the background, coalesced;
publishes a version per fit (a new instance, given the previous one's `get`/`set` state first);
scores the pool by the predictions' `score` (lower: less certain, first in the queue) and pushes it.

One instance per control (a one-control project, the usual case, makes one). The class's own
`model_version` is kept in its state; predictions carry suggest's version, the one Label Studio is
told about. `embed` (diversity of the batch put first) uses the shared text encoder on the task's text.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends.base import Backend, Guess
from backends.embedding import CachedTextEmbeddings
from backends.encoders import EmbeddingCache, TextEncoder, shared_text_encoder
from backends.registry import Context, Family
from backends.schema import Answer, Item, Schema, Span
from suggest.mlbase import SuggestMLBase, import_model_class

log = logging.getLogger(__name__)

NAME = "hosted"


class HostedModel(CachedTextEmbeddings, Backend):
    """A user's model class behind the Backend contract; the class's predictions' `score` is the certainty."""

    gives_proba = False

    def __init__(
        self, labels: list[str], *, schema: Schema, model_class: type, project_id: str, label_config: str,
        encoder: TextEncoder | None = None, cache: EmbeddingCache | None = None,
    ):
        self.labels = list(labels)
        self.schema = schema
        self.model_class = model_class
        self.project_id = project_id
        self.label_config = label_config
        self.encoder = encoder or shared_text_encoder()
        self.cache = cache
        self.instance = model_class(project_id=project_id, label_config=label_config)
        self._lock = threading.Lock()  # /predict and the pool re-rank may call the same instance at once

    @property
    def mode(self) -> str:
        return "trained" if getattr(self, "fitted_", False) else "bootstrap"

    # Label Studio JSON, both ways --------------------------------------------------------------------

    def _task(self, item: Item, index: int) -> dict:
        task_id = item.task_id if item.task_id is not None else -(index + 1)
        return {"id": task_id, "data": {self.schema.value_key: item.text}}

    def _results(self, answer: Answer) -> list[dict]:
        base = {"from_name": self.schema.from_name, "to_name": self.schema.to_name}
        if self.schema.task_kind == "spans":
            return [{**base, "type": "labels", "value": {"start": s.start, "end": s.end, "text": s.text,
                                                         "labels": [s.label]}} for s in answer]  # type: ignore[union-attr]
        choices = [answer] if isinstance(answer, str) else list(answer)
        return [{**base, "type": "choices", "value": {"choices": choices}}]

    def _answer(self, prediction: dict) -> tuple[Answer | None, float | None]:
        """This control's answer in one prediction, and its score (the result's, else the prediction's)."""
        mine = [r for r in map(_as_dict, prediction.get("result") or [])
                if r.get("from_name", self.schema.from_name) == self.schema.from_name]
        score = next((r["score"] for r in mine if isinstance(r.get("score"), int | float)), prediction.get("score"))
        score = float(score) if isinstance(score, int | float) else None
        valid = set(self.labels)
        if self.schema.task_kind == "spans":
            spans = []
            for r in mine:
                v = _as_dict(r.get("value") or {})
                for label in v.get("labels") or []:
                    if label in valid and isinstance(v.get("start"), int) and isinstance(v.get("end"), int):
                        spans.append(Span(v["start"], v["end"], label, str(v.get("text", "")), r.get("score")))
            return (tuple(sorted(spans, key=lambda s: (s.start, s.end, s.label))) if spans else None), score
        chosen = [c for r in mine for c in (_as_dict(r.get("value") or {}).get("choices") or []) if c in valid]
        if not chosen:
            return None, score
        if self.schema.task_kind == "multilabel":
            return tuple(sorted(set(chosen))), score
        return chosen[0], score

    # Backend ---------------------------------------------------------------------------------------

    def guess(self, items: list[Item], method: str = "margin") -> list[Guess | None]:
        """The class's predictions; its `score` is the probability and the certainty (0.5 when it gives none)."""
        if not items:
            return []
        with self._lock:
            raw = self.instance.predict([self._task(it, i) for i, it in enumerate(items)], context=None)
        predictions = list(getattr(raw, "predictions", raw) or [])
        if len(predictions) != len(items):
            raise ValueError(f"{self.model_class.__name__}.predict returned {len(predictions)} predictions for "
                             f"{len(items)} tasks")
        out: list[Guess | None] = []
        for prediction in map(_as_dict, predictions):
            answer, score = self._answer(prediction)
            if answer is None:
                out.append(None)
                continue
            p = min(1.0, max(0.0, 0.5 if score is None else score))
            out.append(Guess(answer, p, p))
        return out

    def fit(self, items: list[Item], labels: list[Answer]) -> HostedModel:
        """Hand the class every labeled task with its annotation (`fit("START_TRAINING", data, tasks=...)`)."""
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        self.classes_ = list(self.labels)
        tasks = [{**self._task(it, i), "annotations": [{"id": i + 1, "result": self._results(label)}]}
                 for i, (it, label) in enumerate(zip(items, labels, strict=True))]
        fit = getattr(self.instance, "fit", None)
        if callable(fit):
            data = {"action": "START_TRAINING", "project": {"id": self.project_id}, "tasks": tasks}
            with self._lock:
                fit("START_TRAINING", data, tasks=tasks)
        self.fitted_ = True
        return self

    def warm_start_from(self, old: Backend) -> None:
        """The new instance starts from the previous version's state (its get/set values)."""
        super().warm_start_from(old)
        if isinstance(old, HostedModel) and isinstance(old.instance, SuggestMLBase) and \
                isinstance(self.instance, SuggestMLBase):
            self.instance._state = copy.deepcopy(old.instance._state)

    def save(self, directory: Path) -> None:
        state = self.instance._state if isinstance(self.instance, SuggestMLBase) else None
        meta = {"family": NAME, "class": f"{self.model_class.__module__}:{self.model_class.__qualname__}",
                "labels": self.labels, "fitted": self.mode == "trained", "state": state,
                "encoder_id": self.encoder.encoder_id}
        (Path(directory) / "meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path, *, schema: Schema, model_class: type, project_id: str, label_config: str,
             cache: EmbeddingCache | None = None) -> HostedModel:
        meta = json.loads((Path(directory) / "meta.json").read_text())
        if meta.get("family") != NAME:
            raise ValueError(f"{directory} holds a {meta.get('family')!r} model, not a hosted model class")
        model = cls(meta["labels"], schema=schema, model_class=model_class, project_id=project_id,
                    label_config=label_config, cache=cache)
        if isinstance(model.instance, SuggestMLBase) and meta.get("state") is not None:
            model.instance._state = dict(meta["state"])
        model.classes_ = list(model.labels)
        if meta.get("fitted"):
            model.fitted_ = True
        return model


def _as_dict(obj: Any) -> dict:
    """A prediction or result as a dict, whether the class returns dicts or pydantic objects (label_studio_ml's)."""
    if isinstance(obj, dict):
        return obj
    for method in ("model_dump", "dict"):
        if callable(getattr(obj, method, None)):
            return getattr(obj, method)()
    return dict(getattr(obj, "__dict__", {}))


def hosted_family(model_class: type | str, project_id: str, label_config: Callable[[], str]) -> Family:
    """The family serving every control of one project with the class; `label_config()` reads the current config."""
    cls = import_model_class(model_class) if isinstance(model_class, str) else model_class

    def make(schema: Schema, context: Context) -> Backend:
        return HostedModel(list(schema.labels), schema=schema, model_class=cls, project_id=project_id,
                           label_config=label_config(), cache=context.cache)

    def load(schema: Schema, folder: Path, context: Context) -> Backend:
        return HostedModel.load(folder, schema=schema, model_class=cls, project_id=project_id,
                                label_config=label_config(), cache=context.cache)

    return Family(NAME, lambda schema: True, make, load, first=True)
