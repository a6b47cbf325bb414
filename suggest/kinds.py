"""Control kinds: each kind of answer a control gives, defined once.

A kind says what its answers look like, how they are stored (as JSON, under an explicit tag: the
store never guesses a kind from a value's shape), whether they fit the config's labels, when a
labeled set is enough to train on, and how an answer counts in a version's class counts. Which
model serves a kind is the family registry's business (`backends.registry`); reading and writing
Label Studio's JSON for a kind is `suggest.labelstudio`'s (its `_READERS` and `_WRITERS` tables).

Adding a kind: subclass `ControlKind`, add one line to `KINDS`, give `Schema.task_kind` its name,
and add its reader and writer to labelstudio.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from suggest.schema import Answer, Label, Schema, Span


class ControlKind:
    """The behaviour every kind shares; subclasses override what differs."""

    name: str = ""

    def encode(self, answer: Answer) -> object:
        """The answer as plain JSON for the store."""
        return answer if isinstance(answer, str) else list(answer)

    def decode(self, value: object) -> Answer:
        """Inverse of `encode`."""
        return value if isinstance(value, str) else tuple(str(v) for v in value)  # type: ignore[union-attr]

    def label_names(self, answer: Answer) -> Iterable[str]:
        """Every label the answer uses (to check it against the config's labels)."""
        return (answer,) if isinstance(answer, str) else answer  # type: ignore[return-value]

    def within(self, answer: Answer, labels: Iterable[str]) -> bool:
        """Whether the answer only uses these labels (after a config change it may not)."""
        valid = set(labels)
        return all(name in valid for name in self.label_names(answer))

    def enough_to_train(self, labeled: dict[int, Label]) -> bool:
        """Two labeled items: fewer teach a model nothing."""
        return len(labeled) >= 2

    def count_key(self, answer: Answer) -> str:
        """What the answer adds one to in a version's class counts."""
        return answer if isinstance(answer, str) else "|".join(self.label_names(answer))


class SingleChoice(ControlKind):
    """`<Choices>` single: one label per item."""

    name = "classification"

    def decode(self, value: object) -> Answer:
        return str(value)

    def enough_to_train(self, labeled: dict[int, Label]) -> bool:
        """Two classes: a classifier needs something to tell apart."""
        return len({lb.label for lb in labeled.values()}) >= 2


class MultipleChoice(ControlKind):
    """`<Choices choice="multiple">`: a sorted set of labels per item."""

    name = "multilabel"


class Spans(ControlKind):
    """`<Labels>` on text: the entity spans of a text (none is an answer too: "no entities here")."""

    name = "spans"

    def encode(self, answer: Answer) -> object:
        return [[sp.start, sp.end, sp.label, sp.text] for sp in answer]  # type: ignore[union-attr]

    def decode(self, value: object) -> Answer:
        return tuple(Span(int(s), int(e), str(lb), str(tx)) for s, e, lb, tx in value)  # type: ignore[union-attr]

    def label_names(self, answer: Answer) -> Iterable[str]:
        return (sp.label for sp in answer)  # type: ignore[union-attr]

    def count_key(self, answer: Answer) -> str:
        return f"{len(answer)} spans"


KINDS: dict[str, ControlKind] = {kind.name: kind for kind in (SingleChoice(), MultipleChoice(), Spans())}


def kind_of(schema: Schema) -> ControlKind:
    """The kind of a control, from its config."""
    return KINDS[schema.task_kind]


def kind_of_answer(answer: Answer) -> ControlKind:
    """The kind of an answer, where no config is at hand. Unambiguous for a live value (a str, a tuple of
    str, a tuple of Span); an empty tuple can only be spans, since a choices control with nothing chosen
    gives no answer at all (labelstudio.annotation_labels)."""
    if isinstance(answer, str):
        return KINDS["classification"]
    if not answer or isinstance(answer[0], Span):
        return KINDS["spans"]
    return KINDS["multilabel"]


def legacy_kind(value: object) -> ControlKind:
    """The kind of an answer stored before answers carried their tag (migration only)."""
    if isinstance(value, str):
        return KINDS["classification"]
    if isinstance(value, list) and value and not isinstance(value[0], list):
        return KINDS["multilabel"]
    return KINDS["spans"]


__all__ = ["KINDS", "ControlKind", "MultipleChoice", "SingleChoice", "Spans", "kind_of", "kind_of_answer",
           "legacy_kind"]
