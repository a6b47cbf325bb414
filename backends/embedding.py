"""The default model family: a frozen sentence encoder with a scikit-learn head on top.

Why this design: the encoder is the expensive part and never changes, so every text is embedded
once and cached; a retrain only refits a logistic-regression head on cached vectors, which takes
a fraction of a second at thousands of labels. Before two classes have labels, the head is
replaced by zero-shot scoring: cosine similarity between the text and a short prompt built from
each label name (or the Choice's `hint` attribute when the config gives one). Once trained, those
same label prompts stay in the head's training set as weighted pseudo-examples (`prior_weight`):
measured on Rotten Tomatoes, that lifts accuracy at 50-200 labels by about 0.01 with bare label
names and by 0.02 with descriptive hints, and lets the head predict classes with no example yet.

scikit-learn fits the head but never serves it: the fitted coefficients live in a `LinearHead`
that predicts in NumPy, and scikit-learn is imported inside `fit` only. Importing it (with the
scipy.stats and pandas it pulls in) costs about 75 MiB of resident memory in a server that may
only ever predict from a saved version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.base import Backend
from backends.encoders import EmbeddingCache, TextEncoder, cached_encode, shared_text_encoder
from suggest.schema import Item

ZERO_SHOT_TEMPLATES = ("{}", "This text is about {}.", "A {} example.")
_MEMORY_CAP = 200_000  # vectors kept in RAM per backend instance (~300 MB at 384-d float32)


@dataclass(frozen=True)
class LinearHead:
    """A fitted logistic-regression head as plain arrays, predicting exactly as scikit-learn's does.

    Same arithmetic as `LogisticRegression.predict_proba` (scikit-learn 1.9): the logistic of the
    single decision score for two classes, a softmax of the scores otherwise. tests/unit/
    test_embedding_head.py holds both to within 1e-12.
    """

    classes_: np.ndarray  # (k,) the labels seen in training, sorted
    coef_: np.ndarray  # (1, d) for two classes, else (k, d)
    intercept_: np.ndarray  # (1,) or (k,)

    @classmethod
    def from_estimator(cls, estimator) -> LinearHead:
        """Copy the learned state out of a fitted scikit-learn linear classifier."""
        return cls(
            np.asarray(estimator.classes_), np.asarray(estimator.coef_, dtype=np.float64),
            np.asarray(estimator.intercept_, dtype=np.float64),
        )

    @property
    def n_features_in_(self) -> int:
        return int(self.coef_.shape[1])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {X.shape}; the head expects (n, {self.n_features_in_})")
        scores = X @ self.coef_.T + self.intercept_
        return scores.reshape(-1) if scores.shape[1] == 1 else scores

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, k) float64 probabilities, columns in `classes_` order."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-scores))
            return np.stack([1 - p, p], axis=1)
        scores -= scores.max(axis=1).reshape((-1, 1))
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape((-1, 1))
        return scores


class EmbeddingClassifier(Backend):
    """Frozen encoder + logistic regression (class-balanced, C=1), zero-shot until two classes are labeled.

    Parameters follow scikit-learn: settings in `__init__`, learned state with a trailing
    underscore. `labels` fixes the column order of `predict_proba` (the config's order), so a
    class with no example yet gets probability 0 from the trained head.
    """

    def __init__(
        self,
        labels: list[str],
        *,
        hints: dict[str, str] | None = None,
        C: float = 1.0,
        prior_weight: float = 5.0,
        zero_shot_temperature: float = 0.05,
        encoder: TextEncoder | None = None,
        cache: EmbeddingCache | None = None,
    ):
        if len(labels) < 2:
            raise ValueError(f"a classifier needs at least 2 labels, got {labels!r}")
        self.labels = list(labels)
        self.hints = dict(hints or {})
        self.C = C
        self.prior_weight = prior_weight
        self.zero_shot_temperature = zero_shot_temperature
        self.encoder = encoder or shared_text_encoder()
        self.cache = cache
        self.classes_ = list(labels)
        self.head_: LinearHead | None = None
        self.prototypes_: np.ndarray | None = None
        self._memory: dict[str, np.ndarray] = {}

    # Backend ----------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return "trained" if self.head_ is not None else "zero-shot"

    def fit(self, items: list[Item], labels: list[str]) -> EmbeddingClassifier:
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {self.labels}")
        if len(set(labels)) < 2:
            self.head_ = None
            self._ensure_prototypes()
            return self
        X = self.embed(items).astype(np.float64)
        self._ensure_prototypes()
        if self.prior_weight > 0:  # label descriptions as weighted pseudo-examples: zero-shot fades in
            X = np.vstack([X, self.prototypes_.astype(np.float64)])
            labels = [*labels, *self.labels]
        weights = np.concatenate([np.ones(len(items)), np.full(len(X) - len(items), self.prior_weight)])
        from sklearn.linear_model import LogisticRegression  # only when training: see the module docstring

        head = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000)
        head.fit(X, np.asarray(labels), sample_weight=weights)
        self.head_ = LinearHead.from_estimator(head)
        return self

    def predict_proba(self, items: list[Item]) -> np.ndarray:
        return self.predict_proba_embedded(self.embed(items))

    def predict_proba_embedded(self, X: np.ndarray) -> np.ndarray:
        """Probabilities from already-computed embeddings (the pool re-rank path)."""
        X = np.asarray(X, dtype=np.float64)
        if self.head_ is None:
            self._ensure_prototypes()
            logits = X @ self.prototypes_.T.astype(np.float64) / self.zero_shot_temperature
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            return p / p.sum(axis=1, keepdims=True)
        out = np.zeros((len(X), len(self.labels)), dtype=np.float64)
        cols = [self.labels.index(c) for c in self.head_.classes_]
        out[:, cols] = self.head_.predict_proba(X)
        return out

    def embed(self, items: list[Item], progress: Callable[[int], None] | None = None) -> np.ndarray:
        if len(self._memory) > _MEMORY_CAP:
            self._memory.clear()
        return cached_encode(
            self.encoder, [it.text for it in items], [it.content_hash for it in items],
            self.cache, self._memory, progress,
        )

    def save(self, directory: Path) -> None:
        meta = {
            "family": "embedding",
            "encoder_id": self.encoder.encoder_id,
            "labels": self.labels,
            "hints": self.hints,
            "C": self.C,
            "prior_weight": self.prior_weight,
            "zero_shot_temperature": self.zero_shot_temperature,
            "mode": self.mode,
        }
        if self.head_ is not None:
            meta["head_classes"] = [str(c) for c in self.head_.classes_]
            np.savez(directory / "head.npz", coef=self.head_.coef_, intercept=self.head_.intercept_)
        (directory / "meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(
        cls, directory: Path, *, encoder: TextEncoder | None = None, cache: EmbeddingCache | None = None
    ) -> EmbeddingClassifier:
        meta = json.loads((Path(directory) / "meta.json").read_text())
        model = cls(
            meta["labels"], hints=meta.get("hints"), C=meta["C"], prior_weight=meta.get("prior_weight", 0.0),
            zero_shot_temperature=meta["zero_shot_temperature"], encoder=encoder, cache=cache,
        )
        if meta["mode"] == "trained":
            with np.load(Path(directory) / "head.npz", allow_pickle=False) as arrays:
                coef, intercept = arrays["coef"].astype(np.float64), arrays["intercept"].astype(np.float64)
            model.head_ = LinearHead(np.asarray(meta["head_classes"]), coef, intercept)
        return model

    # zero-shot --------------------------------------------------------------------------------

    def _ensure_prototypes(self) -> None:
        """One unit vector per label: the mean embedding of its prompts."""
        if self.prototypes_ is not None:
            return
        prompts = [self._prompts(label) for label in self.labels]
        flat = [p for group in prompts for p in group]
        vectors = self.encoder.encode(flat)
        protos, start = [], 0
        for group in prompts:
            v = vectors[start : start + len(group)].mean(axis=0)
            protos.append(v / max(np.linalg.norm(v), 1e-9))
            start += len(group)
        self.prototypes_ = np.stack(protos).astype(np.float32)

    def _prompts(self, label: str) -> list[str]:
        if label in self.hints and self.hints[label].strip():
            return [self.hints[label].strip()]
        name = label.replace("_", " ").strip()
        return [t.format(name) for t in ZERO_SHOT_TEMPLATES]
