"""Multi-label text (`<Choices choice="multiple">` on `<Text>`): one independent probability per label.

Why this design: the same frozen MiniLM encoder and embedding cache as `EmbeddingClassifier`, so a
text is embedded once whichever control reads it, and one class-balanced logistic regression per
label on top (one-vs-rest, `fit_logistic`: scikit-learn's fit without importing scikit-learn).
Each label's prompt (its name, or the Choice's `hint`) joins the training set as a weighted
pseudo-example: a positive for its own label and a negative for the others, so every label can
be trained from the first labelled text and zero-shot fades in.

Thresholds (`thresholds_`): a label with at least `min_per_side` labelled positives and negatives
gets the threshold that maximizes its out-of-fold F1 (`folds`-fold, stratified), else
`default_threshold` (0.5: where class-balanced logistic regression puts equal odds).

Zero-shot (before any labels): a label's probability is a logistic function of the cosine
similarity s between the text and the label prompt, p = sigmoid((s - zero_shot_center) /
zero_shot_temperature), threshold 0.5. The center depends on how the encoder pools layers
(`ZERO_SHOT_CENTERS`): with the last layer alone, cosines of a text with a fitting prompt average
0.21 and with an unrelated one 0.135, and on the test corpus (tests/unit/test_multilabel.py, 300
held-out texts, hints as prompts) a center of 0.10-0.15 gave micro-F1 0.59, against 0.47 for the
single closest label and 0.51-0.54 for "within a margin of the closest label". With layer 4 mixed
in (the default), every cosine is higher (0.35 fitting, 0.30 unrelated) and the best center is
0.30 (micro-F1 0.587; 0.12 would give 0.51).

What the set means: `guess` suggests the labels whose probability clears their threshold. When
none does, it suggests the single most probable label, unless the labelled data showed that an
empty answer is a real answer here (`allow_empty_`: at least one labelled text had no label);
Label Studio drops annotations with no choice, so in practice a project always gets a label.
`probability` is the model's probability of exactly that set (labels independent), and
`certainty` is in [0, 1], LOWER = less certain.

Which certainty (benchmarks/multilabel_study.py, results/multilabel_study.json: pool 400, test 300,
10 random seed labels, batches of 10, 2 seeds, micro-F1 of `guess` at 10..110 labels):
"threshold", the smallest distance of any label's probability from its threshold, each side scaled
to [0, 1], averaged 0.643 over the curve and reached 0.706 at 110 labels; random 0.629 / 0.676;
"entropy" (1 - mean binary entropy) 0.612 / 0.664, below random. Why: the suggested set changes
when one label crosses its threshold, and thresholds are not 0.5 (entropy peaks at 0.5 and
averages away the one label that is in doubt). "entropy" stays available as an option.
Re-run on the layer-pooled vectors (encoders.DEFAULT_LAYERS): every curve rose (at 110 labels
threshold 0.738, random 0.723, entropy 0.719) and the three means are within noise of each other
(threshold 0.669, random 0.676, entropy 0.675; 2 seeds), so "threshold" stays for its reasoning,
not for a measured win; zero-shot micro-F1 0.587 with the re-swept center.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backends.base import Backend, Guess, read_meta
from backends.embedding import CachedTextEmbeddings, fit_logistic, label_prototypes
from backends.encoders import (
    DEFAULT_LAYERS,
    LAST_LAYER_ONLY,
    EmbeddingCache,
    TextEncoder,
    encoder_for_saved,
    shared_text_encoder,
)
from backends.schema import Item

CERTAINTY_METHODS = ("threshold", "entropy")
_THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


ZERO_SHOT_CENTERS: dict[tuple[int, ...], float] = {LAST_LAYER_ONLY: 0.12, DEFAULT_LAYERS: 0.30}
"""Zero-shot sigmoid center per encoder pooling, each the best of a sweep on the test corpus (see above)."""


class MultiLabelHeads:
    """One class-balanced logistic regression per label over vectors, with per-label thresholds.

    The part of a multi-label family that does not care where vectors come from: the text family
    (MiniLM, label prompts as pseudo-examples) and the image family (EfficientNet-Lite0, no prompts)
    share it. Learned state (`classes_`, `coef_` (k, d), `intercept_` (k,), `thresholds_` (k,),
    `allow_empty_`, `n_positive_` (k,)) is set by `fit_embedded` and `load_state` only; before
    that the decision rule uses threshold 0.5 and never suggests an empty set.
    """

    labels: list[str]
    C: float
    folds: int
    min_per_side: int
    default_threshold: float
    certainty: str

    exclusive = False  # one independent probability per label: rows need not sum to 1
    supports_embedded = True

    def _check_settings(self, labels: Sequence[str], certainty: str, default_threshold: float) -> None:
        if len(labels) < 1 or len(set(labels)) != len(labels):
            raise ValueError(f"a multi-label classifier needs distinct labels, got {list(labels)!r}")
        if certainty not in CERTAINTY_METHODS:
            raise ValueError(f"certainty must be one of {CERTAINTY_METHODS}, got {certainty!r}")
        if not 0 < default_threshold < 1:
            raise ValueError(f"default_threshold must be in (0, 1), got {default_threshold}")

    def _priors(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        """Pseudo-examples every head is fitted with: (vectors, 0/1 rows, weight); None for none."""
        return None

    def _coef(self) -> np.ndarray | None:
        return getattr(self, "coef_", None)

    def _thresholds(self) -> np.ndarray:
        found = getattr(self, "thresholds_", None)
        return found if found is not None else np.full(len(self.labels), 0.5)

    def fit_embedded(self, X: np.ndarray, labels: Sequence[Sequence[str]]) -> MultiLabelHeads:
        """Fit the heads and thresholds on already-computed vectors and label sets; returns self."""
        Y = self._indicator(labels)
        X = np.asarray(X, dtype=np.float64)
        self.classes_ = list(self.labels)
        self.coef_, self.intercept_ = self._fit_heads(X, Y)
        self.thresholds_ = self._choose_thresholds(X, Y)
        self.allow_empty_ = bool(len(Y) and (Y.sum(axis=1) == 0).any())
        self.n_positive_ = Y.sum(axis=0).astype(np.int64)
        return self

    def heads_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, k) independent probabilities from the fitted heads."""
        return _sigmoid(np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_)

    def guess_embedded(self, X: np.ndarray, method: str | None = None) -> list[Guess | None]:
        """`guess` from already-computed vectors (the family's `predict_proba_embedded`)."""
        return self.guesses_from(self.predict_proba_embedded(X), method)  # type: ignore[attr-defined]

    def guesses_from(self, proba: np.ndarray, method: str | None = None) -> list[Guess | None]:
        """One label set per row of probabilities, a sorted tuple like a stored answer; `method` as in `guess`."""
        chosen = self.decide(proba)
        joint = np.where(chosen, proba, 1.0 - proba).prod(axis=1)
        cert = self.certainty_of(proba, method if method in CERTAINTY_METHODS else self.certainty)
        return [Guess(tuple(sorted(self.labels[j] for j in np.flatnonzero(row))), float(p), float(c))
                for row, p, c in zip(chosen, joint.tolist(), cert.tolist(), strict=True)]

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """(n, k) bool: the labels suggested per row (see the module docstring for empty rows)."""
        chosen = proba >= self._thresholds()
        if not getattr(self, "allow_empty_", False):
            empty = ~chosen.any(axis=1)
            rows = np.flatnonzero(empty)
            chosen[rows, proba[rows].argmax(axis=1)] = True
        return chosen

    def certainty_of(self, proba: np.ndarray, method: str = "threshold") -> np.ndarray:
        """(n,) in [0, 1], LOWER = less certain.

        "threshold": min over labels of the distance from the threshold, scaled by the room on that
        side ((p - t) / (1 - t) above, (t - p) / t below), so 0 is a label exactly on its threshold.
        "entropy": 1 - the mean binary entropy (bits) of the labels.
        """
        p = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
        if method == "entropy":
            q = np.clip(p, 1e-12, 1 - 1e-12)
            h = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
            return np.clip(1.0 - h.mean(axis=1), 0.0, 1.0)
        if method != "threshold":
            raise ValueError(f"certainty method must be one of {CERTAINTY_METHODS}, got {method!r}")
        t = self._thresholds()
        dist = np.where(p >= t, (p - t) / (1 - t), (t - p) / t)
        return np.clip(dist.min(axis=1), 0.0, 1.0)

    # persistence --------------------------------------------------------------------------------

    def state_meta(self) -> dict:
        """The heads' settings and learned thresholds for meta.json (defaults before a fit)."""
        return {
            "C": self.C,
            "folds": self.folds,
            "min_per_side": self.min_per_side,
            "default_threshold": self.default_threshold,
            "certainty": self.certainty,
            "thresholds": [float(t) for t in self._thresholds()],
            "allow_empty": bool(getattr(self, "allow_empty_", False)),
            "n_positive": [int(n) for n in getattr(self, "n_positive_", np.zeros(len(self.labels), dtype=np.int64))],
        }

    def save_heads(self, directory: Path, meta: dict) -> None:
        """meta.json (+ head.npz with coef and intercept when trained); no pickles."""
        if self._coef() is not None:
            np.savez(Path(directory) / "head.npz", coef=self.coef_, intercept=self.intercept_)
        (Path(directory) / "meta.json").write_text(json.dumps(meta, indent=2))

    def load_state(self, directory: Path, meta: dict) -> None:
        """Learned state back from `save_heads` (coef and intercept only when the model was trained)."""
        self.classes_ = list(self.labels)
        self.thresholds_ = np.asarray(meta["thresholds"], dtype=np.float64)
        self.allow_empty_ = bool(meta["allow_empty"])
        self.n_positive_ = np.asarray(meta["n_positive"], dtype=np.int64)
        if meta["mode"] == "trained":
            with np.load(Path(directory) / "head.npz", allow_pickle=False) as arrays:
                self.coef_ = arrays["coef"].astype(np.float64)
                self.intercept_ = arrays["intercept"].astype(np.float64)

    # training -----------------------------------------------------------------------------------

    def _indicator(self, labels: Sequence[Sequence[str]]) -> np.ndarray:
        """(n, k) 0/1 matrix from label sets; loud about labels outside the config and about bare strings."""
        index = {name: j for j, name in enumerate(self.labels)}
        Y = np.zeros((len(labels), len(self.labels)), dtype=np.int8)
        for i, answer in enumerate(labels):
            if isinstance(answer, str):
                raise ValueError(f"label set {i} is the string {answer!r}; multi-label answers are tuples of labels")
            unknown = sorted(set(answer) - index.keys())
            if unknown:
                raise ValueError(f"labels {unknown} are not among the classes {self.labels}")
            Y[i, [index[a] for a in answer]] = 1
        return Y

    def _fit_heads(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One balanced logistic regression per label, the `_priors` appended as weighted pseudo-examples."""
        k = len(self.labels)
        weights = np.ones(len(X))
        priors = self._priors()
        if priors is not None:
            Xp, Yp, weight = priors
            X = np.vstack([X, Xp.astype(np.float64)])
            Y = np.vstack([Y, Yp])
            weights = np.concatenate([weights, np.full(len(Xp), weight)])
        coef = np.zeros((k, X.shape[1]))
        intercept = np.zeros(k)
        for j in range(k):
            y = Y[:, j]
            if y.min() == y.max():  # one side only: a constant, smoothed probability
                rate = (y.sum() + 0.5) / (len(y) + 1.0)
                intercept[j] = np.log(rate / (1 - rate))
                continue
            head = fit_logistic(X, y, weights, C=self.C, max_iter=2000)  # scikit-learn's fit, without sklearn
            coef[j], intercept[j] = head.coef_[0], head.intercept_[0]
        return coef, intercept

    def _choose_thresholds(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Per label: the out-of-fold F1-optimal threshold when it has `min_per_side` of each, else the default."""
        k = len(self.labels)
        thresholds = np.full(k, self.default_threshold)
        pos = Y.sum(axis=0)
        ready = (pos >= self.min_per_side) & (len(Y) - pos >= self.min_per_side)
        if not ready.any() or self.folds < 2:
            return thresholds
        oof = np.zeros(Y.shape, dtype=np.float64)
        for train, test in _folds(Y, self.folds):
            coef, intercept = self._fit_heads(X[train], Y[train])
            oof[test] = _sigmoid(X[test] @ coef.T + intercept)
        for j in np.flatnonzero(ready):
            thresholds[j] = _best_f1_threshold(oof[:, j], Y[:, j], self.default_threshold)
        return thresholds


class MultiLabelClassifier(CachedTextEmbeddings, MultiLabelHeads, Backend):
    """Frozen text encoder + one class-balanced logistic regression per label, zero-shot until the first fit.

    scikit-learn style: settings in `__init__`, learned state with a trailing underscore, set by
    `fit` and `load` only (see `MultiLabelHeads`). `labels` fixes the column order of
    `predict_proba`. `prototypes_` (the label prompts' vectors) is zero-shot state.
    """

    zero_shot_state = ("prototypes_",)

    def __init__(
        self,
        labels: Sequence[str],
        *,
        hints: dict[str, str] | None = None,
        C: float = 1.0,
        prior_weight: float = 5.0,
        folds: int = 3,
        min_per_side: int = 5,
        default_threshold: float = 0.5,
        zero_shot_center: float | None = None,
        zero_shot_temperature: float = 0.03,
        certainty: str = "threshold",
        encoder: TextEncoder | None = None,
        cache: EmbeddingCache | None = None,
    ):
        self._check_settings(labels, certainty, default_threshold)
        self.labels = list(labels)
        self.hints = dict(hints or {})
        self.C = C
        self.prior_weight = prior_weight
        self.folds = folds
        self.min_per_side = min_per_side
        self.default_threshold = default_threshold
        self.zero_shot_temperature = zero_shot_temperature
        self.certainty = certainty
        self.encoder = encoder or shared_text_encoder()
        self.zero_shot_center = (zero_shot_center if zero_shot_center is not None
                                 else ZERO_SHOT_CENTERS.get(getattr(self.encoder, "layers", DEFAULT_LAYERS), 0.30))
        self.cache = cache
        self.prototypes_: np.ndarray | None = None

    # Backend ----------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return "trained" if self._coef() is not None else "zero-shot"

    def fit(self, items: list[Item], labels: Sequence[Sequence[str]]) -> MultiLabelClassifier:
        """Learn from items and their label sets (sorted tuples, possibly empty); returns self."""
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} label sets")
        self._indicator(labels)  # refuse bad label sets before embedding anything
        X = self.embed(items)
        self._ensure_prototypes()
        return self.fit_embedded(X, labels)

    def predict_proba(self, items: list[Item]) -> np.ndarray:
        """(n, k) independent float64 probabilities, columns in `labels` order (rows need not sum to 1)."""
        return self.predict_proba_embedded(self.embed(items))

    def predict_proba_embedded(self, X: np.ndarray) -> np.ndarray:
        """Probabilities from already-computed embeddings (independent per label: see `exclusive`)."""
        X = np.asarray(X, dtype=np.float64)
        if self._coef() is None:
            self._ensure_prototypes()
            sims = X @ self.prototypes_.T.astype(np.float64)
            return _sigmoid((sims - self.zero_shot_center) / self.zero_shot_temperature)
        return self.heads_proba(X)

    proba_embedded = predict_proba_embedded  # the name before the Backend contract declared it

    def guess(self, items: list[Item], method: str | None = None) -> list[Guess | None]:
        """One label set per item; `method` picks the certainty ("threshold" or "entropy"), others fall
        back to this model's `certainty` (classifier names like "margin" mean nothing for label sets)."""
        if not items:
            return []
        return self.guess_embedded(self.embed(items), method)

    def save(self, directory: Path) -> None:
        """meta.json (settings, thresholds) + head.npz (coef, intercept) when trained; no pickles."""
        meta = {
            "family": "multilabel",
            "encoder_id": self.encoder.encoder_id,
            "labels": self.labels,
            "hints": self.hints,
            "prior_weight": self.prior_weight,
            "zero_shot_center": self.zero_shot_center,
            "zero_shot_temperature": self.zero_shot_temperature,
            "mode": self.mode,
            **self.state_meta(),
        }
        self.save_heads(directory, meta)

    @classmethod
    def load(
        cls, directory: Path, *, encoder: TextEncoder | None = None, cache: EmbeddingCache | None = None
    ) -> MultiLabelClassifier:
        meta = read_meta(directory, "multilabel", "a multi-label one")
        model = cls(
            meta["labels"], hints=meta.get("hints"), C=meta["C"], prior_weight=meta["prior_weight"],
            folds=meta["folds"], min_per_side=meta["min_per_side"], default_threshold=meta["default_threshold"],
            zero_shot_center=meta["zero_shot_center"], zero_shot_temperature=meta["zero_shot_temperature"],
            certainty=meta["certainty"], encoder=encoder_for_saved(meta.get("encoder_id"), encoder), cache=cache,
        )
        model.load_state(directory, meta)
        return model

    # zero-shot --------------------------------------------------------------------------------

    def _priors(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        """Each label's prompt: a positive for its label and a negative for the others."""
        if self.prior_weight <= 0:
            return None
        self._ensure_prototypes()
        return self.prototypes_, np.eye(len(self.labels), dtype=np.int8), self.prior_weight

    def _ensure_prototypes(self) -> None:
        if self.prototypes_ is None:
            self.prototypes_ = label_prototypes(self.encoder, self.labels, self.hints)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _folds(Y: np.ndarray, n_folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Deterministic folds that spread each label's positives (rarest label first) across folds."""
    rng = np.random.default_rng(seed)
    n = len(Y)
    order = rng.permutation(n)
    rarity = Y[order].astype(np.float64) @ (1.0 / np.maximum(Y.sum(axis=0), 1))  # rare labels weigh most
    order = order[np.argsort(-rarity, kind="stable")]
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % n_folds
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(n_folds)]


def _best_f1_threshold(p: np.ndarray, y: np.ndarray, default: float) -> float:
    """The grid threshold with the highest F1; ties go to the one nearest the default."""
    pred = p[:, None] >= _THRESHOLD_GRID[None, :]
    tp = (pred & (y[:, None] == 1)).sum(axis=0)
    fp = (pred & (y[:, None] == 0)).sum(axis=0)
    fn = ((~pred) & (y[:, None] == 1)).sum(axis=0)
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(_THRESHOLD_GRID[best[np.argmin(np.abs(_THRESHOLD_GRID[best] - default))]])
