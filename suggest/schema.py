"""The engine's own vocabulary: Schema, Item, Label, Prediction, Span, Answer and the input errors.

Defined in `backends/schema.py`, below both packages, so the model families never import `suggest`;
re-exported here so the engine keeps speaking of `suggest.schema`.
"""

from backends.schema import (
    Answer,
    BadInput,
    Item,
    Label,
    Prediction,
    Schema,
    SchemaError,
    Span,
    answer_to_json,
)

__all__ = ["Answer", "BadInput", "Item", "Label", "Prediction", "Schema", "SchemaError", "Span", "answer_to_json"]
