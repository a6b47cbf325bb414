"""The shared vocabulary of the engine and the model families, free of Label Studio JSON and HTTP.

Everything past `suggest/labelstudio.py` speaks in these types, so the engine, the backends and the
strategies can be tested and reused without a Label Studio in sight. It lives in `backends` (and
`suggest/schema.py` re-exports it) so that the dependency runs one way: `suggest` imports
`backends`, never the reverse, and a model family (a plug-in too) needs only this package.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property


class SchemaError(ValueError):
    """A label config this engine cannot serve; the message says what it supports."""


class BadInput(ValueError):
    """Input that names its own problem (a task without text, a label not in the config, ...)."""


@dataclass(frozen=True)
class Span:
    """A labeled stretch of text: `text[start:end]`, offsets in Python characters (code points).

    `score` is the model's confidence in this span (None for an annotator's span).
    """

    start: int
    end: int
    label: str
    text: str = ""
    score: float | None = field(default=None, compare=False)


# What one control's answer for one item is: a label (single choice), a set of labels (multiple
# choice, sorted tuple) or the entity spans of a text (sorted by start).
Answer = str | tuple[str, ...] | tuple[Span, ...]


@dataclass(frozen=True)
class Schema:
    """One control of a project that suggest serves: what to read and which labels to choose from.

    The kind of task follows from `control` and `multiple`: "choices" single -> classification,
    "choices" multiple -> multi-label, "labels" -> entity spans; `object_type` is "text" or "image".
    """

    from_name: str  # the control's name, e.g. "sentiment"
    to_name: str  # the object it labels, e.g. "text"
    value_key: str  # the task data field the object reads, e.g. "text" for value="$text"
    labels: tuple[str, ...]
    object_type: str = "text"
    multiple: bool = False
    hints: dict[str, str] = field(default_factory=dict)  # optional label descriptions (zero-shot prompts)
    control: str = "choices"  # "choices" or "labels"
    # spans only: label -> the spaCy entity types that bootstrap it, from <Label value="Firm" entity="ORG"/>;
    # () means none (the label gets no bootstrap suggestions); labels not named keep the default map
    entities: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # a pre-trained classifier (backends/pipeline.py): the name from <Choices model="..."> (None: the default one,
    # "none": no classifier), and label -> the classifier's labels from <Choice value="fresh" model_label="POSITIVE"/>
    model: str | None = None
    model_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def task_kind(self) -> str:
        """ "classification", "multilabel" or "spans"."""
        if self.control == "labels":
            return "spans"
        return "multilabel" if self.multiple else "classification"

    def check_label(self, label: str) -> str:
        if label not in self.labels:
            raise BadInput(f"label {label!r} is not in the config's {self.from_name!r} labels {list(self.labels)}")
        return label


@dataclass(frozen=True)
class Item:
    """One thing to label: its text (for an image, the reference the task gives), the image bytes
    once loaded, and the task it came from (None outside Label Studio). `digest` is the sha256 of
    an image's bytes when they are known without reading them again (an upload seen before)."""

    text: str
    task_id: int | None = None
    data: bytes | None = field(default=None, repr=False)
    digest: str | None = field(default=None, repr=False)

    @cached_property
    def content_hash(self) -> str:
        """Cache key: the bytes of an image (or their known digest), else the text. Kept once computed (the
        item is frozen): the queue head keeps a big pool's items between versions and looks up each one's
        vector per version (100,000 sha256s: ~0.2 s a version)."""
        if self.data is None and self.digest:
            return self.digest
        payload = self.data if self.data is not None else self.text.encode("utf-8")
        return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class Label:
    """One annotation's answer for one task."""

    task_id: int
    annotation_id: int
    label: Answer
    text: str  # the item's text, or an image's reference
    ground_truth: bool = False
    updated_at: str = ""
    control: str = ""  # the control's from_name ("" in stores written before multi-control projects)
    # who and when, for agreement and consensus (None / "" in stores written before they were kept)
    annotator: int | None = None  # Label Studio's `completed_by` (a user id)
    created_at: str = ""
    lead_time: float | None = None  # seconds the annotator spent, as Label Studio measured it


@dataclass(frozen=True)
class Prediction:
    """A suggestion for one item.

    `probability` is the model's confidence in `label`; `score` is in [0, 1] with LOWER meaning
    less certain, which is what Label Studio sorts on (lowest first).
    """

    label: Answer
    probability: float
    score: float
    model_version: str
    control: str = ""  # the control's from_name; "" means the project's first control


def answer_to_json(value: Answer) -> object:
    """An answer as plain JSON: a label, a list of labels, or a list of {start, end, label, text} spans."""
    if isinstance(value, str):
        return value
    return [{"start": v.start, "end": v.end, "label": v.label, "text": v.text} if isinstance(v, Span) else v
            for v in value]
