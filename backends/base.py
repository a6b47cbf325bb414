"""The contract every model family meets: a scikit-learn-style estimator over Items.

A Backend knows nothing about projects, versions, HTTP or Label Studio. This module is the one
place that says what a family must do and what it may offer:

Required (abstract): `fit(items, labels) -> self`, `embed(items, progress=None)` ((n, dim) float32
features the strategies rank with), `save(directory)` and the classmethod `load(directory, **kw)`,
plus a `labels` parameter (the control's labels, in config order: the columns of `predict_proba`).

Optional, with the default each gets here (declare what you offer with the class attributes):

- `predict_proba(items)`: (n, k) float64, columns in `labels` order. `gives_proba` says it works;
  `exclusive` says the rows are one distribution (sum to 1) rather than independent per-label
  probabilities (multi-label). Default: NotImplementedError (spans give none).
- `predict_proba_embedded(X)`: the same from vectors `embed` returned, so a pool re-rank never
  re-embeds. `supports_embedded` says it works. Default: NotImplementedError.
- `guess(items, method)`: one Guess (or None) per item. Default: from `predict_proba`.
- `embed_partial(items) -> (X, errors)`: what embeds, with zero rows and index -> problem for the
  items that cannot (a broken image). Default: `embed` everything, no errors.
- `cached_hashes(hashes) -> set`: which content hashes are embedded already, so the caller can skip
  fetching them. Default: none.
- `warm_start_from(old)`: take over warm state (an embedding memo) from the previous version's model
  before `fit`. Default: nothing.
- `mode`: "trained", "zero-shot", "bootstrap" or "untrained". Default: "trained".

scikit-learn style: parameters are set in `__init__` and nothing else; learned state carries a
trailing underscore and exists only after `fit` or `load` (`classes_`, equal to `labels`, among it).
State that a family builds before any fit from its parameters alone (zero-shot label prototypes, a
bootstrap's entity map) is named in `zero_shot_state`. backends/checks.py tests all of this.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from backends.schema import Answer, Item
from backends.uncertainty import certainty


@dataclass(frozen=True)
class Guess:
    """A model's suggestion for one item.

    `value` is a label, a sorted tuple of labels (multi-label) or a tuple of Spans (each with its
    own score); `probability` is the model's confidence in `value`; `certainty` is in [0, 1], LOWER
    meaning less certain: the queue order.
    """

    value: Answer
    probability: float
    certainty: float


def guesses_from_proba(proba: np.ndarray, classes: list[str] | tuple[str, ...], method: str = "margin") -> list[Guess]:
    """A classifier's suggestion per row: the most probable class, its probability, the row's certainty."""
    best = proba.argmax(axis=1)
    top = proba[np.arange(len(proba)), best]
    cert = certainty(proba, method)
    return [Guess(classes[b], float(p), float(c)) for b, p, c in zip(best.tolist(), top.tolist(), cert.tolist(),
                                                                      strict=True)]


def read_meta(directory: Path, family: str, what: str) -> dict:
    """A saved model's meta.json, refusing a folder another family wrote (`what` names this one)."""
    meta = json.loads((Path(directory) / "meta.json").read_text())
    if meta.get("family") != family:
        raise ValueError(f"{directory} holds a {meta.get('family')!r} model, not {what}")
    return meta


class Backend(ABC):
    """Base class for model families; serve yours through a `Family` (backends/registry.py)."""

    labels: list[str]  # parameter: the control's labels in config order (the columns of predict_proba)
    classes_: list[str]  # learned: the same labels, set by fit and load

    mode: str = "trained"  # "trained", "zero-shot", "bootstrap" or "untrained"

    gives_proba: ClassVar[bool] = True  # predict_proba works
    exclusive: ClassVar[bool] = True  # predict_proba rows sum to 1 (False: one independent probability per label)
    supports_embedded: ClassVar[bool] = False  # predict_proba_embedded works on embed()'s vectors
    zero_shot_state: ClassVar[tuple[str, ...]] = ()  # trailing-underscore attributes that exist before fit

    @abstractmethod
    def fit(self, items: list[Item], labels: list[Answer]) -> Backend:
        """Learn from labeled items; returns self."""

    def predict_proba(self, items: list[Item]) -> np.ndarray:
        """(n_items, n_labels) float64 probabilities, columns in the order of `labels`."""
        raise NotImplementedError(f"{type(self).__name__} gives no class probabilities")

    def predict_proba_embedded(self, X: np.ndarray) -> np.ndarray:
        """`predict_proba` from the vectors `embed` returned (the pool re-rank path)."""
        raise NotImplementedError(f"{type(self).__name__} does not predict from embeddings (supports_embedded)")

    def guess(self, items: list[Item], method: str = "margin") -> list[Guess | None]:
        """One suggestion per item (None: nothing to suggest); classifiers derive it from `predict_proba`."""
        if not items:
            return []
        return list(guesses_from_proba(self.predict_proba(items), self.labels, method))

    @abstractmethod
    def embed(self, items: list[Item], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(n_items, dim) float32 features, used for diversity and cold-start ranking."""

    def embed_partial(
        self, items: list[Item], progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Vectors for what can be embedded and index -> problem for what cannot (zero rows there)."""
        return (self.embed(items) if progress is None else self.embed(items, progress)), {}

    def cached_hashes(self, hashes: list[str]) -> set[str]:
        """Which of these content hashes already have an embedding (their items need not be read again)."""
        return set()

    def warm_start_from(self, old: Backend) -> None:
        """Take over warm state from the model this one replaces (called before `fit`); default: nothing."""
        return None

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write learned state into an existing, empty directory."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, **kwargs) -> Backend:
        """Rebuild a fitted backend from what `save` wrote."""
