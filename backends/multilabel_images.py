"""Multi-label images (`<Choices choice="multiple">` on `<Image>`): one independent probability per label.

Why this design: the two pieces already exist and are measured. The vectors are the image family's
(frozen EfficientNet-Lite0, cached by (encoder id, sha256 of the bytes), broken images reported per
item, never sinking a batch); the decision is the text multi-label family's (one class-balanced
logistic regression per label, out-of-fold F1 thresholds once a label has `min_per_side` examples
of each side, "threshold" certainty; see backends/multilabel.py). There is no offline zero-shot
image model, so until the first fit the model is "untrained" and suggests nothing, while `embed`
already serves cold-start ranking; and there are no label prompts to add as pseudo-examples, so a
label seen on one side only gets a constant, smoothed probability until it has both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backends.base import Backend, Guess, read_meta
from backends.encoders import EmbeddingCache
from backends.images import CachedImageEmbeddings, ImageEncoder, saved_image_encoder, shared_image_encoder
from backends.multilabel import MultiLabelHeads
from backends.schema import Item


class MultiLabelImageClassifier(CachedImageEmbeddings, MultiLabelHeads, Backend):
    """Frozen EfficientNet-Lite0 + one class-balanced logistic regression per label; "untrained" until fit.

    scikit-learn style: settings in `__init__`; learned state (`classes_`, `coef_`, `intercept_`,
    `thresholds_`, `allow_empty_`, `n_positive_`, `skipped_`) set by `fit` and `load` only. C=3 as
    for single-choice images (L2-normalized EfficientNet features). Items carry their image bytes.
    """

    def __init__(
        self,
        labels: Sequence[str],
        *,
        C: float = 3.0,
        folds: int = 3,
        min_per_side: int = 5,
        default_threshold: float = 0.5,
        certainty: str = "threshold",
        encoder: ImageEncoder | None = None,
        cache: EmbeddingCache | None = None,
    ):
        self._check_settings(labels, certainty, default_threshold)
        self.labels = list(labels)
        self.C = C
        self.folds = folds
        self.min_per_side = min_per_side
        self.default_threshold = default_threshold
        self.certainty = certainty
        self.encoder = encoder or shared_image_encoder()
        self.cache = cache

    @property
    def mode(self) -> str:
        return "trained" if self._coef() is not None else "untrained"

    def fit(self, items: list[Item], labels: Sequence[Sequence[str]]) -> MultiLabelImageClassifier:
        """Fit the heads; labelled images that cannot be used are left out (logged, kept in `skipped_`)."""
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} label sets")
        self._indicator(labels)  # refuse bad label sets before decoding anything
        X, keep, self.skipped_ = self.embed_labelled(items)
        if not keep:  # nothing usable: stay untrained
            self.classes_ = list(self.labels)
            return self
        return self.fit_embedded(X, [labels[i] for i in keep])

    def predict_proba(self, items: list[Item]) -> np.ndarray:
        """(n, k) independent probabilities (0.5 everywhere while untrained, without decoding anything)."""
        if self._coef() is None:
            return np.full((len(items), len(self.labels)), 0.5)
        return self.predict_proba_embedded(self.embed(items))

    def predict_proba_embedded(self, X: np.ndarray) -> np.ndarray:
        """Probabilities from already-computed embeddings; 0.5 everywhere while untrained."""
        if self._coef() is None:
            return np.full((len(X), len(self.labels)), 0.5)
        return self.heads_proba(X)

    def guess(self, items: list[Item], method: str | None = None) -> list[Guess | None]:
        """One label set per item; None while untrained and for an image that cannot be used.

        `method` may name one of the multi-label certainties ("threshold", "entropy"); a classifier's
        name such as "margin" falls back to `certainty`.
        """
        if self._coef() is None or not items:
            return [None] * len(items)
        X, ok = self.embed_usable(items)
        out: list[Guess | None] = [None] * len(items)
        if ok:
            for i, g in zip(ok, self.guess_embedded(X, method), strict=True):
                out[i] = g
        return out

    def save(self, directory: Path) -> None:
        meta = {
            "family": "images-multilabel",
            "encoder_id": self.encoder.encoder_id,
            "image_size": self.encoder.size,
            "labels": self.labels,
            "mode": self.mode,
            **self.state_meta(),
        }
        self.save_heads(directory, meta)

    @classmethod
    def load(
        cls, directory: Path, *, encoder: ImageEncoder | None = None, cache: EmbeddingCache | None = None
    ) -> MultiLabelImageClassifier:
        meta = read_meta(directory, "images-multilabel", "a multi-label image one")
        model = cls(meta["labels"], C=meta["C"], folds=meta["folds"], min_per_side=meta["min_per_side"],
                    default_threshold=meta["default_threshold"], certainty=meta["certainty"],
                    encoder=saved_image_encoder(directory, meta, encoder), cache=cache)
        model.load_state(directory, meta)
        model.skipped_ = {}
        return model
