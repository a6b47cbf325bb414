"""The contract every model family meets: a scikit-learn-style estimator over Items.

A Backend knows nothing about projects, versions, HTTP or Label Studio. `fit` learns from items
and their labels, `predict_proba` returns one row per item over `classes_`, `embed` returns the
features the strategies rank with, and `save`/`load` persist learned state to a folder the store
hands out (the only files a backend writes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from suggest.schema import Item


class Backend(ABC):
    """Base class for model families; register yours under the `suggest.backends` entry point group."""

    classes_: list[str]

    @abstractmethod
    def fit(self, items: list[Item], labels: list[str]) -> Backend:
        """Learn from labeled items; returns self."""

    @abstractmethod
    def predict_proba(self, items: list[Item]) -> np.ndarray:
        """(n_items, n_classes) float64 probabilities, columns in the order of `classes_`."""

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
