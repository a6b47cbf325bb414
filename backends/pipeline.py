"""A user's pre-trained text classifier (a transformers `pipeline()` folder) as a model family: "pipeline".

Why: a team with a fine-tuned sentiment or topic model should get its answers as pre-annotations
from the first task, and not lose them once annotators start: the classifier's probabilities become
a prior on the trained head (a product of experts, log p = log p_head + w log p_prior). Whether the
prior helps is measured, not assumed: at each fit, cross-validated log-loss on the labels picks w
among PRIOR_WEIGHTS (0 = head alone). With too few labels to measure (under 20), w stays 1: on
Rotten Tomatoes (benchmarks/byo_model.py) folds of 10 labels dropped a useful prior in 2 of 5 seeds
(0.47 and 0.59 accuracy where the classifier alone gave 0.69), while from 20 labels on the measured
prior + head beat the head alone at every checkpoint (+1.5 to +5 points, results/byo_model.json).

Labels map onto the config's by name, case-insensitively (spaces, `_` and `-` alike), or per label
with `<Choice value="fresh" model_label="POSITIVE"/>` (several: "POSITIVE,VERY_POSITIVE"; "none":
the model never gives this label). A config label that maps to nothing is refused with the model's
labels in the message, so it is a 422 at /setup, not silent nonsense.

Which classifier serves a control: SUGGEST_TEXT_CLASSIFIER is a folder (then every single-choice
text control uses it) or `name=folder` pairs, comma-separated, that a control picks with
`<Choices ... model="name">`; `model="none"` keeps a control on the plain embedding family. The
label config names a model, never a path: configs arrive over HTTP.

The classifier's outputs are cached like embeddings, by ("pipeline:" + the model's identity,
content hash), and `embed` returns [encoder vector, classifier probabilities], so a pool re-rank
after a retrain runs neither model again.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backends.base import Backend
from backends.embedding import EmbeddingClassifier
from backends.encoders import EmbeddingCache, TextEncoder, cached_encode
from backends.memo import memo_for
from backends.schema import Item, Schema, SchemaError
from backends.user_encoder import check_model_folder, model_identity

log = logging.getLogger(__name__)

PRIOR_WEIGHTS = (0.0, 0.5, 1.0)
MIN_LABELS_TO_MEASURE = 20  # fewer labels (or fewer than 2 of some class): keep the prior at weight 1 (see below)
NONE = "none"
_FLOOR = 1e-4  # a prior never says "impossible": the head can still overrule it


# which classifier serves a control (process-wide, from SUGGEST_TEXT_CLASSIFIER) ------------------------------


_classifiers: dict[str, str] = {}  # name ("" for the default) -> folder


def parse_classifiers(value: str | None) -> dict[str, str]:
    """'folder' -> {'': folder}; 'a=folder1,b=folder2' -> {'a': folder1, 'b': folder2}."""
    if not value or not value.strip():
        return {}
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if len(entries) == 1 and "=" not in entries[0]:
        return {"": entries[0]}
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, folder = entry.partition("=")
        if not sep or not name.strip() or not folder.strip() or name.strip().lower() == NONE:
            raise ValueError(f"expected a model folder or name=folder pairs separated by commas, got {entry!r}")
        out[name.strip()] = folder.strip()
    return out


def configure_classifiers(value: str | None) -> None:
    """Set the process's classifiers from SUGGEST_TEXT_CLASSIFIER's value (None or "": none)."""
    global _classifiers
    _classifiers = parse_classifiers(value)


TASKS = {"classification": "text-classification", "spans": "token-classification"}


def model_task(folder: str) -> str:
    """"token-classification" for a ...ForTokenClassification folder, else "text-classification"."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return "text-classification"
    archs = config.get("architectures") or []
    return "token-classification" if any(a.endswith("ForTokenClassification") for a in archs) else \
        "text-classification"


def classifier_for(schema: Schema) -> str | None:
    """The folder of the model serving this control (a text classifier for single-choice text, a token classifier
    for spans), None when none does; SchemaError for an unknown name or a model of the other task."""
    task = TASKS.get(schema.task_kind) if schema.object_type == "text" else None
    if task is None:
        return None
    name = schema.model
    if name is None:
        folder = _classifiers.get("")
        return folder if folder is not None and model_task(folder) == task else None
    if name.lower() == NONE:
        return None
    tag = "Labels" if schema.control == "labels" else "Choices"
    if name not in _classifiers:
        known = ", ".join(sorted(n for n in _classifiers if n)) or "none"
        raise SchemaError(f"<{tag} name={schema.from_name!r} model={name!r}>: no model of that name "
                          f"(SUGGEST_TEXT_CLASSIFIER names: {known})")
    if model_task(_classifiers[name]) != task:
        raise SchemaError(f"<{tag} name={schema.from_name!r} model={name!r}>: {_classifiers[name]} is a "
                          f"{model_task(_classifiers[name])} model; this control needs {task}")
    return _classifiers[name]


def supports(schema: Schema) -> bool:
    """A single-choice text control with a classifier; an unmappable one raises SchemaError (refused, not skipped)."""
    folder = classifier_for(schema) if schema.task_kind == "classification" else None
    if folder is None:
        return False
    map_labels(schema.labels, shared_scorer(folder).model_labels, schema.model_labels, schema.from_name)
    return True


# label mapping ---------------------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]+", " ", name).strip().casefold()


def map_labels(
    labels: tuple[str, ...] | list[str], model_labels: tuple[str, ...] | list[str],
    overrides: dict[str, tuple[str, ...]] | None = None, control: str = "",
) -> dict[str, tuple[str, ...]]:
    """Config label -> the model labels whose probabilities it takes (by name, or `model_label=`); SchemaError
    when a label maps to nothing, a model label is claimed twice, or an override names a label the model lacks."""
    overrides = overrides or {}
    by_norm = {_norm(m): m for m in model_labels}
    where = f"<Choices name={control!r}>" if control else "the config"
    out: dict[str, tuple[str, ...]] = {}
    missing: list[str] = []
    for label in labels:
        if label in overrides:
            names = tuple(n for n in overrides[label] if _norm(n) != NONE)
            unknown = [n for n in names if _norm(n) not in by_norm]
            if unknown:
                raise SchemaError(f"{where}: <Choice value={label!r} model_label=...> names {unknown}, which the "
                                  f"classifier does not have; its labels are {list(model_labels)}")
            out[label] = tuple(by_norm[_norm(n)] for n in names)
        elif _norm(label) in by_norm:
            out[label] = (by_norm[_norm(label)],)
        else:
            missing.append(label)
    if missing:
        raise SchemaError(
            f"{where}: labels {missing} match none of the classifier's labels {list(model_labels)} (case-insensitive); "
            f"map each with <Choice value=\"...\" model_label=\"...\"/>, or model_label=\"none\" for a label the model "
            "never gives")
    claimed = [m for names in out.values() for m in names]
    twice = sorted({m for m in claimed if claimed.count(m) > 1})
    if twice:
        raise SchemaError(f"{where}: classifier labels {twice} are mapped to more than one choice")
    if not claimed:
        raise SchemaError(f"{where}: no choice maps to any of the classifier's labels {list(model_labels)}")
    return out


# the classifier's outputs, cached like embeddings -----------------------------------------------------------


class PipelineScorer:
    """A text-classification `pipeline()` over a local folder: (n, m) probabilities in the model's label order.

    Shaped like an encoder (`encoder_id`, `dim`, `encode`) so `cached_encode` caches its outputs by content hash.
    """

    task = "text-classification"

    def __init__(self, folder: str):
        self.folder = check_model_folder(folder, classifier=True)
        config = json.loads((self.folder / "config.json").read_text())
        id2label = {int(k): str(v) for k, v in config["id2label"].items()}
        self.model_labels: tuple[str, ...] = tuple(id2label[i] for i in sorted(id2label))
        self.identity = model_identity(self.folder)
        self._pipe = None
        self._lock = threading.Lock()

    @property
    def encoder_id(self) -> str:
        return f"pipeline:{self.identity}"

    @property
    def dim(self) -> int:
        return len(self.model_labels)

    def load(self) -> PipelineScorer:
        with self._lock:
            if self._pipe is None:
                import os

                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from transformers import pipeline

                self._pipe = pipeline(self.task, model=str(self.folder), tokenizer=str(self.folder), device=-1)
                log.info("text classifier %s ready (labels %s)", self.identity, list(self.model_labels))
        return self

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        self.load()
        column = {m: j for j, m in enumerate(self.model_labels)}
        with self._lock:
            rows = self._pipe(list(texts), top_k=None, batch_size=32, truncation=True)
        for i, row in enumerate(rows):
            for entry in row:
                out[i, column[entry["label"]]] = entry["score"]
        if progress:
            progress(len(texts))
        return out


_shared_models: dict[tuple[type, str], object] = {}
_shared_lock = threading.Lock()


def shared_model(kind: type, folder: str):
    """One `kind(folder)` per process (a pipeline loads on first use and stays warm)."""
    with _shared_lock:
        if (kind, folder) not in _shared_models:
            _shared_models[(kind, folder)] = kind(folder)
        return _shared_models[(kind, folder)]


def shared_scorer(folder: str) -> PipelineScorer:
    return shared_model(PipelineScorer, folder)


# the family ------------------------------------------------------------------------------------------------


class PipelineClassifier(Backend):
    """A pre-trained classifier's answers before any label; after, a trained head with it as a measured prior.

    Parameters: `model` (the classifier's folder), `label_map` (the config's `model_label` overrides), `prior`
    ("auto": measured; or a fixed weight), and the head's (`hints`, `C`, `prior_weight` of the label prompts).
    Learned: `classes_`, `weight_` (the prior's weight), `measured_` (cross-validated log-loss per weight).
    """

    supports_embedded = True

    def __init__(
        self, labels: list[str], *, model: str, label_map: dict[str, tuple[str, ...]] | None = None,
        hints: dict[str, str] | None = None, prior: str | float = "auto", C: float = 3.0, prior_weight: float = 5.0,
        encoder: TextEncoder | None = None, cache: EmbeddingCache | None = None,
    ):
        if prior != "auto" and not (isinstance(prior, int | float) and prior >= 0):
            raise ValueError(f"prior must be 'auto' or a weight >= 0, got {prior!r}")
        self.labels = list(labels)
        self.model = model
        self.label_map = {k: tuple(v) for k, v in (label_map or {}).items()}
        self.prior = prior
        self.cache = cache
        self.scorer = shared_scorer(model)
        self.mapping = map_labels(self.labels, self.scorer.model_labels, self.label_map)
        index = {m: j for j, m in enumerate(self.scorer.model_labels)}
        self._project = np.zeros((self.scorer.dim, len(self.labels)))  # model probabilities -> config labels
        for k, label in enumerate(self.labels):
            for m in self.mapping[label]:
                self._project[index[m], k] = 1.0
        self.head = EmbeddingClassifier(self.labels, hints=hints, C=C, prior_weight=prior_weight, encoder=encoder,
                                        cache=cache)
        self.encoder = self.head.encoder

    @property
    def mode(self) -> str:
        return "trained" if self.head._head() is not None else "bootstrap"

    # features: [encoder vector, classifier probabilities] ---------------------------------------------

    def embed(self, items: list[Item], progress: Callable[[int], None] | None = None) -> np.ndarray:
        E = self.head.embed(items, progress)
        store = getattr(self.cache, "memo_key", "none")
        S = cached_encode(self.scorer, [it.text for it in items], [it.content_hash for it in items], self.cache,
                          memo_for(f"{self.scorer.encoder_id}|{store}"))
        return np.hstack([E, S]).astype(np.float32, copy=False)

    def prior_proba(self, S: np.ndarray) -> np.ndarray:
        """The classifier's probabilities over the config's labels (rows renormalized; uniform where it gives none)."""
        P = np.asarray(S, dtype=np.float64) @ self._project
        total = P.sum(axis=1, keepdims=True)
        P = np.where(total > 1e-12, P / np.maximum(total, 1e-12), 1.0 / len(self.labels))
        P = (P + _FLOOR) / (1.0 + _FLOOR * len(self.labels))
        return P

    def predict_proba(self, items: list[Item]) -> np.ndarray:
        return self.predict_proba_embedded(self.embed(items))

    def predict_proba_embedded(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        d = X.shape[1] - self.scorer.dim
        prior = self.prior_proba(X[:, d:])
        if self.head._head() is None:
            return prior
        return _combine(self.head.predict_proba_embedded(X[:, :d]), prior, self.weight_)

    # training and the measurement of the prior -------------------------------------------------------

    def fit(self, items: list[Item], labels: list[str]) -> PipelineClassifier:
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        self.classes_ = list(self.labels)
        self.head.fit(items, labels)
        self.weight_, self.measured_ = 1.0, {}
        if self.head._head() is None:
            return self
        if self.prior != "auto":
            self.weight_ = float(self.prior)
            return self
        self.weight_, self.measured_ = self._measure(items, labels)
        return self

    def _measure(self, items: list[Item], labels: list[str]) -> tuple[float, dict[str, float]]:
        """Cross-validated log-loss of head x prior^w for each w in PRIOR_WEIGHTS; the lowest wins (ties: less)."""
        y = np.asarray(labels)
        counts = {c: int((y == c).sum()) for c in sorted(set(labels))}
        folds = min(5, min(counts.values()))
        if len(items) < MIN_LABELS_TO_MEASURE or folds < 2:
            return 1.0, {}
        X = self.embed(items).astype(np.float64)
        d = X.shape[1] - self.scorer.dim
        prior = self.prior_proba(X[:, d:])
        rng = np.random.default_rng(0)
        fold_of = np.empty(len(y), dtype=int)
        for c in counts:  # stratified: every fold sees every class
            idx = np.flatnonzero(y == c)
            fold_of[rng.permutation(idx)] = np.arange(len(idx)) % folds
        truth = np.asarray([self.labels.index(v) for v in labels])
        losses = np.zeros(len(PRIOR_WEIGHTS))
        for f in range(folds):
            train, test = fold_of != f, fold_of == f
            head = EmbeddingClassifier(self.labels, hints=self.head.hints, C=self.head.C,
                                       prior_weight=self.head.prior_weight, encoder=self.encoder)
            head.prototypes_ = self.head.prototypes_
            head._memory = {it.content_hash: X[i, :d].astype(np.float32) for i, it in enumerate(items)}
            head.fit([it for it, keep in zip(items, train, strict=True) if keep], list(y[train]))
            p_head = head.predict_proba_embedded(X[test, :d])
            for j, w in enumerate(PRIOR_WEIGHTS):
                p = _combine(p_head, prior[test], w)
                losses[j] -= np.log(np.clip(p[np.arange(test.sum()), truth[test]], 1e-12, 1.0)).sum()
        losses /= len(y)
        best = int(np.flatnonzero(losses <= losses.min() + 1e-9)[0])
        return float(PRIOR_WEIGHTS[best]), {str(w): round(float(v), 5) for w, v in zip(PRIOR_WEIGHTS, losses,
                                                                                       strict=True)}

    def warm_start_from(self, old: Backend) -> None:
        if isinstance(old, PipelineClassifier):
            self.head.warm_start_from(old.head)
            if self.head.prototypes_ is None and old.head.prototypes_ is not None and old.head.encoder is self.encoder:
                self.head.prototypes_ = old.head.prototypes_

    def cached_hashes(self, hashes: list[str]) -> set[str]:
        return set()

    # persistence ------------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        (directory / "head").mkdir()
        self.head.save(directory / "head")
        meta = {"family": "pipeline", "labels": self.labels, "model": self.model,
                "model_identity": self.scorer.identity, "label_map": self.label_map, "prior": self.prior,
                "mode": self.mode, "weight": getattr(self, "weight_", None), "measured": getattr(self, "measured_", {})}
        (directory / "meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path, *, encoder: TextEncoder | None = None,
             cache: EmbeddingCache | None = None) -> PipelineClassifier:
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("family") != "pipeline":
            raise ValueError(f"{directory} holds a {meta.get('family')!r} model, not a pipeline classifier")
        head = EmbeddingClassifier.load(directory / "head", encoder=encoder, cache=cache)
        model = cls(meta["labels"], model=meta["model"], label_map={k: tuple(v) for k, v in meta["label_map"].items()},
                    hints=head.hints, prior=meta["prior"], C=head.C, prior_weight=head.prior_weight,
                    encoder=head.encoder, cache=cache)
        if model.scorer.identity != meta["model_identity"]:
            raise ValueError(f"the classifier at {meta['model']} changed since this version was trained "
                             f"({meta['model_identity']} -> {model.scorer.identity})")
        model.head = head
        model.classes_ = list(model.labels)
        model.weight_ = 1.0 if meta.get("weight") is None else float(meta["weight"])
        model.measured_ = dict(meta.get("measured") or {})
        return model


def _combine(p_head: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    """Rows of p_head * prior^weight, renormalized (weight 0: the head alone)."""
    if weight == 0:
        return p_head
    logp = np.log(np.clip(p_head, 1e-12, 1.0)) + weight * np.log(prior)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)
