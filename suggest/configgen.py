"""`suggest config` (issue 18): write a label config that label-studio-sdk validates and suggest serves.

`choices_config(["a", "b"])`, `labels_config(["PER", "ORG"])`; with `guess_from_data(path)` the object
type (text or image) and the task field come from a CSV or JSONL file. Every config is checked by
`validate` before it is returned: label-studio-sdk's schema, name and toName checks, then
suggest's own parser (what `/setup` runs), so a generated config is never refused at connect time.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

from suggest.schema import BadInput, Schema

OBJECTS = ("text", "image")
_IMAGE = re.compile(r"^(data:image/|https?://\S+\.(png|jpe?g|gif|bmp|webp|tiff?)(\?\S*)?$|"
                    r"\S+\.(png|jpe?g|gif|bmp|webp|tiff?)$|/data/(upload|local-files)/)", re.IGNORECASE)
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _names(values: list[str], what: str) -> list[str]:
    names = [v.strip() for v in values if v.strip()]
    if not names:
        example = "--choices positive,negative" if what == "--choices" else "--labels PER,ORG"
        raise BadInput(f"{what}: give at least one name, e.g. {example}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadInput(f"{what}: {', '.join(dupes)} named more than once")
    if what == "--choices" and len(names) < 2:
        raise BadInput("--choices: give at least two choices (a classifier needs two classes)")
    return names


def _field(field: str) -> str:
    if not _FIELD.match(field):
        raise BadInput(f"the task field must be a plain name (letters, digits, _), got {field!r}")
    return field


def choices_config(choices: list[str], *, multiple: bool = False, object_type: str = "text",
                   field: str | None = None, name: str = "label") -> str:
    """`<Choices>` on a `<Text>` or `<Image>`: single choice, or several with `multiple`."""
    if object_type not in OBJECTS:
        raise BadInput(f"--object must be one of {', '.join(OBJECTS)}, got {object_type!r}")
    names = _names(choices, "--choices")
    field = _field(field or object_type)
    tag = "Text" if object_type == "text" else "Image"
    body = "".join(f"\n    <Choice value={quoteattr(c)}/>" for c in names)
    choice = "multiple" if multiple else "single-radio"
    config = (f'<View>\n  <{tag} name="{object_type}" value="${field}"/>\n'
              f'  <Choices name={quoteattr(name)} toName="{object_type}" choice="{choice}" showInLine="true">'
              f'{body}\n  </Choices>\n</View>\n')
    validate(config)
    return config


def labels_config(labels: list[str], *, object_type: str = "text", field: str | None = None,
                  name: str = "label") -> str:
    """`<Labels>` (entity spans) on a `<Text>`."""
    if object_type != "text":
        raise BadInput("--labels makes entity spans on text; suggest serves no regions on images "
                       "(use --choices for image classification)")
    names = _names(labels, "--labels")
    field = _field(field or "text")
    body = "".join(f"\n    <Label value={quoteattr(lb)}/>" for lb in names)
    config = (f'<View>\n  <Labels name={quoteattr(name)} toName="text">{body}\n  </Labels>\n'
              f'  <Text name="text" value="${field}"/>\n</View>\n')
    validate(config)
    return config


def validate(config: str) -> tuple[Schema, ...]:
    """label-studio-sdk's validation, then suggest's parser; BadInput says what is wrong."""
    from label_studio_sdk.label_interface import LabelInterface

    from suggest.labelstudio import parse_controls
    from suggest.schema import SchemaError

    try:
        LabelInterface(config).validate()
    except Exception as exc:  # the SDK raises several types
        raise BadInput(f"label-studio-sdk refuses the config: {exc}") from None
    try:
        return parse_controls(config)
    except SchemaError as exc:
        raise BadInput(str(exc)) from None


def _rows(path: Path, limit: int = 200) -> list[dict]:
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    rows: list[dict] = []
    try:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            with path.open(encoding="utf-8") as f:
                head = f.read(1)
                f.seek(0)
                if head == "[":  # a JSON list (Label Studio's own import shape)
                    data = json.load(f)
                    rows = [r.get("data", r) if isinstance(r, dict) else {} for r in data[:limit]]
                else:
                    for n, line in enumerate(f, start=1):
                        if len(rows) >= limit:
                            break
                        if line.strip():
                            try:
                                row = json.loads(line)
                            except ValueError as exc:
                                raise BadInput(f"{path}:{n} is not JSON ({exc})") from None
                            rows.append(row if isinstance(row, dict) else {})
        else:
            with path.open(encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f):
                    rows.append(row)
                    if len(rows) >= limit:
                        break
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not UTF-8 text (CSV or JSONL expected)") from None
    if not rows:
        raise BadInput(f"{path} holds no rows (CSV with a header row, or JSON lines, expected)")
    return rows


def guess_from_data(path: Path | str, field: str | None = None) -> tuple[str, str]:
    """(object type, field) for the tasks in a CSV or JSONL file: the named field, else the string field
    that looks like image references (URL or path with an image extension, data: URI), else the one with
    the longest texts."""
    path = Path(path)
    rows = _rows(path)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    strings = {k: [r[k] for r in rows if isinstance(r.get(k), str) and r[k].strip()] for k in keys}
    if field is not None:
        if field not in keys:
            raise BadInput(f"{path} has no field {field!r} (fields: {', '.join(keys)})")
        candidates = [field]
    else:
        candidates = [k for k in keys if strings[k] and _FIELD.match(str(k))]
        if not candidates:
            raise BadInput(f"{path}: no field holds text (fields: {', '.join(map(str, keys))})")
    images = [k for k in candidates if strings[k] and sum(bool(_IMAGE.match(v.strip())) for v in strings[k])
              >= 0.8 * len(strings[k])]
    if images:
        return "image", images[0]
    if field is not None and not strings[field]:
        raise BadInput(f"{path}: field {field!r} holds no text")
    best = max(candidates, key=lambda k: sum(len(v) for v in strings[k]) / max(len(strings[k]), 1))
    return "text", best


__all__ = ["OBJECTS", "choices_config", "guess_from_data", "labels_config", "validate"]
