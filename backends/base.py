"""The contract every model family meets: a scikit-learn-style estimator over Items.

A Backend knows nothing about projects, versions, HTTP or Label Studio. `fit` learns from items
and their answers, `guess` returns one suggestion per item, `embed` returns the features the
strategies rank with, and `save`/`load` persist learned state to a folder the store hands out
(the only files a backend writes).

Classifiers (single choice) also offer `predict_proba`, which the ranking strategies use; the
other families (multi-label, spans) give a per-item `certainty` through `guess`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suggest.schema import Answer, Item


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
    from suggest.strategies import certainty

    best = proba.argmax(axis=1)
    top = proba[np.arange(len(proba)), best]
    cert = certainty(proba, method)
    return [Guess(classes[b], float(p), float(c)) for b, p, c in zip(best.tolist(), top.tolist(), cert.tolist(),
                                                                      strict=True)]


class Backend(ABC):
    """Base class for model families; register yours under the `suggest.backends` entry point group."""

    classes_: list[str]
    mode: str = "trained"  # "trained", "zero-shot", "bootstrap" or "untrained"

    @abstractmethod
    def fit(self, items: list[Item], labels: list[Answer]) -> Backend:
        """Learn from labeled items; returns self."""

    def predict_proba(self, items: list[Item]) -> np.ndarray:
        """(n_items, n_classes) float64 probabilities, columns in the order of `classes_`."""
        raise NotImplementedError(f"{type(self).__name__} gives no class probabilities")

    def guess(self, items: list[Item], method: str = "margin") -> list[Guess | None]:
        """One suggestion per item (None: nothing to suggest); classifiers derive it from `predict_proba`."""
        if not items:
            return []
        return list(guesses_from_proba(self.predict_proba(items), self.classes_, method))

    @abstractmethod
    def embed(self, items: list[Item]) -> np.ndarray:
        """(n_items, dim) float32 features, used for diversity and cold-start ranking."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write learned state into an existing, empty directory."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, **kwargs) -> Backend:
        """Rebuild a fitted backend from what `save` wrote."""
