"""The engine's own vocabulary, free of Label Studio JSON and HTTP.

Everything past `labelstudio.py` speaks in these types, so the engine, the backends and the
strategies can be tested and reused without a Label Studio in sight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


class SchemaError(ValueError):
    """A label config this engine cannot serve; the message says what it supports."""


class BadInput(ValueError):
    """Input that names its own problem (a task without text, a label not in the config, ...)."""


@dataclass(frozen=True)
class Schema:
    """One classification control of a project: what to read and which labels to choose from."""

    from_name: str  # the control's name, e.g. "sentiment"
    to_name: str  # the object it labels, e.g. "text"
    value_key: str  # the task data field the object reads, e.g. "text" for value="$text"
    labels: tuple[str, ...]
    object_type: str = "text"
    multiple: bool = False
    hints: dict[str, str] = field(default_factory=dict)  # optional label descriptions (zero-shot prompts)

    def check_label(self, label: str) -> str:
        if label not in self.labels:
            raise BadInput(f"label {label!r} is not in the config's {self.from_name!r} choices {list(self.labels)}")
        return label


@dataclass(frozen=True)
class Item:
    """One thing to label: its text, and the task it came from (None outside Label Studio)."""

    text: str
    task_id: int | None = None

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Label:
    """One annotation's answer for one task."""

    task_id: int
    annotation_id: int
    label: str
    text: str
    ground_truth: bool = False
    updated_at: str = ""


@dataclass(frozen=True)
class Prediction:
    """A suggestion for one item.

    `probability` is the model's confidence in `label`; `score` is in [0, 1] with LOWER meaning
    less certain, which is what Label Studio sorts on (lowest first).
    """

    label: str
    probability: float
    score: float
    model_version: str
