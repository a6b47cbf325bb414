"""The default model family: a frozen sentence encoder with a scikit-learn head on top.

Why this design: the encoder is the expensive part and never changes, so every text is embedded
once and cached; a retrain only refits a logistic-regression head on cached vectors, which takes
a fraction of a second at thousands of labels. Before two classes have labels, the head is
replaced by zero-shot scoring: cosine similarity between the text and a short prompt built from
each label name (or the Choice's `hint` attribute when the config gives one). Once trained, those
same label prompts stay in the head's training set as weighted pseudo-examples (`prior_weight`):
measured on Rotten Tomatoes, that lifts accuracy at 50-200 labels by about 0.01 with bare label
names and by 0.02 with descriptive hints, and lets the head predict classes with no example yet.

Why C=3 (not scikit-learn's 1): on the layer-pooled vectors (backends/encoders.DEFAULT_LAYERS) a
weaker penalty picks better batches under the `dense` strategy. Rotten Tomatoes, 100 labels, mean
of 10 seeds chosen on seeds 0-9 and confirmed on seeds 10-19: C=1 0.698 / 0.688, C=2 0.710 / 0.714,
C=3 0.715 / 0.718, C=4 0.714 / 0.723 (benchmarks/label_efficiency_rt.py); with random batches C
hardly matters (0.693 at C=1 and 2), and on the 2016 debates (party, speaker) C=3 adds 1-3 points.

The head never needs scikit-learn at run time: `fit_logistic` minimizes exactly the objective
of scikit-learn's `LogisticRegression(solver="lbfgs", class_weight="balanced")` with the same
SciPy L-BFGS-B call and settings (tests/unit/test_embedding_head.py holds coefficients and
probabilities to scikit-learn's), and `LinearHead` predicts in NumPy. Importing scikit-learn (with
the scipy.stats and pandas it pulls in) cost about 75 MiB of the server's resident memory, while
scipy.optimize is already loaded by transformers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.base import Backend
from backends.encoders import EmbeddingCache, TextEncoder, cached_encode, encoder_for_saved, shared_text_encoder
from backends.memo import SharedMemo
from backends.schema import Item

ZERO_SHOT_TEMPLATES = ("{}", "This text is about {}.", "A {} example.")


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


def fit_logistic(
    X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None, *, C: float = 1.0,
    max_iter: int = 100, tol: float = 1e-4, class_weight: str | None = "balanced", init: LinearHead | None = None,
) -> LinearHead:
    """L2-penalized logistic regression, the same fit as scikit-learn 1.9's lbfgs solver.

    Same objective (mean weighted log-loss + ||W||^2 / (2 C sum(w)), intercepts unpenalized; the
    multinomial loss over all k classes, the binomial one for two), the same "balanced" class
    weights (weighted counts), the same start (zeros, F-ordered parameters) and the same
    `scipy.optimize.minimize("L-BFGS-B")` options, so it stops where scikit-learn stops.

    `init`: a head over the same classes to start from instead of zeros (the problem is convex, so only
    the number of iterations changes: the quality report's out-of-fold fits start from the served head).
    """
    from scipy.optimize import minimize

    X = np.ascontiguousarray(X, dtype=np.float64)
    classes, y_ind = np.unique(np.asarray(y), return_inverse=True)
    n, d = X.shape
    k = len(classes)
    if k < 2:
        raise ValueError(f"logistic regression needs at least 2 classes, got {list(classes)}")
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).copy()
    if class_weight == "balanced":
        counts = np.bincount(y_ind, weights=sw, minlength=k)
        sw *= (counts.sum() / (k * counts))[y_ind]
    elif class_weight is not None:
        raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
    sw_sum = float(sw.sum())
    l2 = 1.0 / (C * sw_sum)
    options = {"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps}

    if k == 2:
        target = (y_ind == 1).astype(np.float64)

        def binomial(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = X @ w[:d] + w[d]
            loss = np.logaddexp(0.0, z) - target * z
            grad_pointwise = sw * (_expit(z) - target) / sw_sum
            grad = np.empty_like(w)
            grad[:d] = X.T @ grad_pointwise + l2 * w[:d]
            grad[d] = grad_pointwise.sum()
            return float((sw * loss).sum() / sw_sum) + 0.5 * l2 * float(w[:d] @ w[:d]), grad

        w0 = np.zeros(d + 1)
        same, flipped = list(classes), list(classes[::-1])
        if init is not None and list(init.classes_) in (same, flipped) and init.coef_.shape == (1, d):
            sign = 1.0 if list(init.classes_) == same else -1.0
            w0 = sign * np.concatenate([init.coef_.ravel(), init.intercept_.ravel()])
        w = minimize(binomial, w0, method="L-BFGS-B", jac=True, options=options).x
        return LinearHead(classes, w[:d].reshape(1, d).copy(), w[d:].copy())

    onehot = np.zeros((n, k))
    onehot[np.arange(n), y_ind] = 1.0

    def multinomial(w: np.ndarray) -> tuple[float, np.ndarray]:
        W = w.reshape((k, d + 1), order="F")
        z = X @ W[:, :d].T + W[:, d]
        top = z.max(axis=1, keepdims=True)
        e = np.exp(z - top)
        total = e.sum(axis=1, keepdims=True)
        loss = (np.log(total) + top).ravel() - z[np.arange(n), y_ind]
        grad_pointwise = sw[:, None] * (e / total - onehot) / sw_sum
        grad = np.empty((k, d + 1), order="F")
        grad[:, :d] = grad_pointwise.T @ X + l2 * W[:, :d]
        grad[:, d] = grad_pointwise.sum(axis=0)
        penalty = 0.5 * l2 * float((W[:, :d] ** 2).sum())
        return float((sw * loss).sum() / sw_sum) + penalty, grad.ravel(order="F")

    start = np.zeros((k, d + 1), order="F")
    if init is not None and sorted(init.classes_.tolist()) == sorted(classes.tolist()) and init.coef_.shape == (k, d):
        row = {c: i for i, c in enumerate(init.classes_.tolist())}
        order = [row[c] for c in classes.tolist()]
        start[:, :d], start[:, d] = init.coef_[order], init.intercept_[order]
    w0 = start.ravel(order="F")
    W = minimize(multinomial, w0, method="L-BFGS-B", jac=True, options=options).x.reshape((k, d + 1), order="F")
    return LinearHead(classes, np.ascontiguousarray(W[:, :d]), W[:, d].copy())


def _expit(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def warm_head(old: object) -> LinearHead | None:
    """The head a refit starts from: the replaced version's (issue 20).

    The loss is convex, so the start changes only the number of L-BFGS iterations, not where the fit ends
    (to the solver's tolerance: probabilities within a few thousandths). A retrain after a few more labels
    starts next to its optimum: at 10,000 labels a cold fit takes seconds of the CPU the annotators' saves
    need."""
    head = getattr(old, "head_", None)
    return head if isinstance(head, LinearHead) else None


class CachedTextEmbeddings(SharedMemo):
    """`embed` for text families on the shared encoder: the process's RAM memo (one byte budget for every
    project, backends.memo), then the (encoder id, content hash) cache in the store."""

    encoder: TextEncoder
    cache: EmbeddingCache | None

    def warm_start_from(self, old: object) -> None:
        """The process memo already holds the previous version's vectors; an offline harness's dict is kept.
        The old head is the next fit's starting point (`warm_head`)."""
        self.share_memo_of(old)
        self.warm_head_ = warm_head(old)

    def embed(self, items: list[Item], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return cached_encode(
            self.encoder, [it.text for it in items], [it.content_hash for it in items],
            self.cache, self._memory, progress,
        )


class EmbeddingClassifier(CachedTextEmbeddings, Backend):
    """Frozen encoder + logistic regression (class-balanced, C=3), zero-shot until two classes are labeled.

    Parameters follow scikit-learn: settings in `__init__`, learned state with a trailing
    underscore (`classes_`, `head_`: None while fewer than two classes have examples), set by `fit`
    and `load` only. `labels` fixes the column order of `predict_proba` (the config's order), so a
    class with no example yet gets probability 0 from the trained head. `prototypes_` (the label
    prompts' vectors) is zero-shot state, built from the parameters on first use.
    """

    supports_embedded = True
    zero_shot_state = ("prototypes_",)

    def __init__(
        self,
        labels: list[str],
        *,
        hints: dict[str, str] | None = None,
        C: float = 3.0,
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
        self.prototypes_: np.ndarray | None = None

    # Backend ----------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return "trained" if self._head() is not None else "zero-shot"

    def _head(self) -> LinearHead | None:
        """The fitted head; None before `fit`/`load` and while fewer than two classes have examples."""
        return getattr(self, "head_", None)

    def fit(self, items: list[Item], labels: list[str]) -> EmbeddingClassifier:
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {self.labels}")
        self.classes_ = list(self.labels)
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
        self.head_ = fit_logistic(X, np.asarray(labels), weights, C=self.C, max_iter=2000,
                                  init=getattr(self, "warm_head_", None))
        return self

    def predict_proba(self, items: list[Item]) -> np.ndarray:
        return self.predict_proba_embedded(self.embed(items))

    def predict_proba_embedded(self, X: np.ndarray) -> np.ndarray:
        """Probabilities from already-computed embeddings (the pool re-rank path)."""
        X = np.asarray(X, dtype=np.float64)
        head = self._head()
        if head is None:
            self._ensure_prototypes()
            logits = X @ self.prototypes_.T.astype(np.float64) / self.zero_shot_temperature
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            return p / p.sum(axis=1, keepdims=True)
        out = np.zeros((len(X), len(self.labels)), dtype=np.float64)
        cols = [self.labels.index(c) for c in head.classes_]
        out[:, cols] = head.predict_proba(X)
        return out

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
        head = self._head()
        if head is not None:
            meta["head_classes"] = [str(c) for c in head.classes_]
            np.savez(directory / "head.npz", coef=head.coef_, intercept=head.intercept_)
        (directory / "meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(
        cls, directory: Path, *, encoder: TextEncoder | None = None, cache: EmbeddingCache | None = None
    ) -> EmbeddingClassifier:
        meta = json.loads((Path(directory) / "meta.json").read_text())
        model = cls(
            meta["labels"], hints=meta.get("hints"), C=meta["C"], prior_weight=meta.get("prior_weight", 0.0),
            zero_shot_temperature=meta["zero_shot_temperature"], cache=cache,
            encoder=encoder_for_saved(meta.get("encoder_id"), encoder),
        )
        model.classes_ = list(model.labels)
        model.head_ = None
        if meta["mode"] == "trained":
            with np.load(Path(directory) / "head.npz", allow_pickle=False) as arrays:
                coef, intercept = arrays["coef"].astype(np.float64), arrays["intercept"].astype(np.float64)
            model.head_ = LinearHead(np.asarray(meta["head_classes"]), coef, intercept)
        return model

    # zero-shot --------------------------------------------------------------------------------

    def _ensure_prototypes(self) -> None:
        if self.prototypes_ is None:
            self.prototypes_ = label_prototypes(self.encoder, self.labels, self.hints)


def label_prototypes(encoder: TextEncoder, labels: list[str], hints: dict[str, str]) -> np.ndarray:
    """(k, dim) float32: one unit vector per label, the mean embedding of its prompts (hint, else templates)."""
    prompts = [_label_prompts(label, hints) for label in labels]
    vectors = encoder.encode([p for group in prompts for p in group])
    protos, start = [], 0
    for group in prompts:
        v = vectors[start : start + len(group)].mean(axis=0)
        protos.append(v / max(np.linalg.norm(v), 1e-9))
        start += len(group)
    return np.stack(protos).astype(np.float32)


def _label_prompts(label: str, hints: dict[str, str]) -> list[str]:
    if label in hints and hints[label].strip():
        return [hints[label].strip()]
    name = label.replace("_", " ").strip()
    return [t.format(name) for t in ZERO_SHOT_TEMPLATES]
