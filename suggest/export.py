"""Annotations as a data set (issue 18): a project's annotations, now or as a version trained on them, in
JSON lines, CSV, CoNLL (BIO), Parquet or Label Studio's import format.

Every format holds, per task, the consensus answer of each control (the documented rule of
`suggest.project.resolve_labels`: ground truth, then majority, then the latest; or, asked for, the last
quality report's weighted consensus as SUGGEST_CONSENSUS=weighted trains on it) and each annotation's
own answer with its annotator. Formats:

- `jsonl`: one line per (annotation, control), as `suggest export` always printed (task_id,
  annotation_id, control, label, text, ground_truth), plus annotator, created_at, updated_at,
  lead_time and the task's `consensus` for that control.
- `csv`: one row per task: task_id, the task's data fields, then per control a column named after it
  (the consensus; multi-label and spans as JSON) and `<control>_annotations` (JSON list of
  {annotation_id, annotator, ground_truth, answer}).
- `parquet`: the same columns as csv, typed: a label is a string, a multi-label answer a list of
  strings, spans a list of {start, end, label, text}; `<control>_annotations` a list of structs.
  pandas and Hugging Face `datasets` read it as it is.
- `conll`: the consensus spans of one `<Labels>` control in BIO, one token a line:
  `token<TAB>start<TAB>end<TAB>tag`, offsets in the task's text (Python characters); each task opens
  with `# task_id = N` and `# text = <JSON string>` and ends with a blank line.
- `label-studio`: a JSON list of tasks Label Studio imports (data, annotations with result,
  completed_by, ground_truth, lead_time).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from suggest.schema import Answer, BadInput, Label, Schema, Span, answer_to_json

FORMATS = ("jsonl", "csv", "conll", "parquet", "label-studio")
BINARY_FORMATS = ("parquet",)


@dataclass
class TaskRecord:
    """One task of an export: its data, the consensus per control and every annotation's Labels."""

    task_id: int
    data: dict[str, str] = field(default_factory=dict)
    consensus: dict[str, Label] = field(default_factory=dict)  # control -> the Label the rule picked
    annotations: dict[int, list[Label]] = field(default_factory=dict)  # annotation id -> its Labels (per control)


def read_labels(store: Any, project_id: str, version: str | None = None) -> list[Label]:
    """The project's annotations now, or exactly those a version trained on (its pinned history snapshot)."""
    if version is None:
        return store.labels(project_id)
    return store.labels_of_version(project_id, version)


def task_records(labels: Iterable[Label], schemas: tuple[Schema, ...],
                 weighted: dict[str, dict[int, Any]] | None = None) -> list[TaskRecord]:
    """Group Labels per task (in task order) with the consensus answer of each control; `weighted`
    (control -> task -> label, a quality report's weighted consensus) as a retrain with
    SUGGEST_CONSENSUS=weighted takes it."""

    first = schemas[0].from_name
    by_name = {s.from_name: s for s in schemas}
    records: dict[int, TaskRecord] = {}
    per_control: dict[str, list[Label]] = defaultdict(list)
    for lb in labels:
        control = lb.control or first
        rec = records.get(lb.task_id)
        if rec is None:
            rec = records[lb.task_id] = TaskRecord(lb.task_id)
        schema = by_name.get(control)
        rec.data[schema.value_key if schema is not None else control] = lb.text
        rec.annotations.setdefault(lb.annotation_id, []).append(lb)
        per_control[control].append(lb)
    for control, agreed in _consensus(per_control, weighted).items():
        for task_id, lb in agreed.items():
            records[task_id].consensus[control] = lb
    return [records[t] for t in sorted(records)]


def export(labels: list[Label], schemas: tuple[Schema, ...], fmt: str, out: IO | Path | str,
           *, control: str | None = None, weighted: dict[str, dict[int, Any]] | None = None) -> int:
    """Write `labels` in format `fmt` to a path or an open file (binary for parquet); returns the rows
    written (lines, tasks or tokens). `weighted`: see `task_records`. BadInput names a wrong format or control."""
    if fmt not in FORMATS:
        raise BadInput(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "jsonl":
        return _with_text(out, lambda f: write_jsonl(labels, schemas, f, weighted))
    if fmt == "conll":
        schema = spans_control(schemas, control)
        return _with_text(out, lambda f: write_conll(task_records(labels, schemas, weighted), schema, f))
    records = task_records(labels, schemas, weighted)
    if fmt == "csv":
        return _with_text(out, lambda f: write_csv(records, schemas, f), newline="")
    if fmt == "label-studio":
        return _with_text(out, lambda f: write_label_studio(records, schemas, f))
    return write_parquet(records, schemas, out)


def _with_text(out: IO | Path | str, write, newline: str | None = None) -> int:
    if isinstance(out, str | Path):
        with open(out, "w", encoding="utf-8", newline=newline) as f:
            return write(f)
    return write(out)


def _control(lb: Label, schemas: tuple[Schema, ...]) -> str:
    return lb.control or schemas[0].from_name


# jsonl -----------------------------------------------------------------------------------------


def _consensus(per_control: dict[str, list[Label]], weighted: dict[str, dict[int, Any]] | None
               ) -> dict[str, dict[int, Label]]:
    """control -> task -> the Label the consensus rule picks (suggest.project.resolve_weighted)."""
    from suggest.project import resolve_weighted

    return {c: resolve_weighted(mine, (weighted or {}).get(c)) for c, mine in per_control.items()}


def write_jsonl(labels: list[Label], schemas: tuple[Schema, ...], f: IO[str],
                weighted: dict[str, dict[int, Any]] | None = None) -> int:
    per_control: dict[str, list[Label]] = defaultdict(list)
    for lb in labels:
        per_control[_control(lb, schemas)].append(lb)
    consensus = _consensus(per_control, weighted)
    n = 0
    for lb in labels:
        control = _control(lb, schemas)
        agreed = consensus[control].get(lb.task_id)
        f.write(json.dumps({
            "task_id": lb.task_id, "annotation_id": lb.annotation_id, "control": lb.control,
            "label": answer_to_json(lb.label), "text": lb.text, "ground_truth": lb.ground_truth,
            "annotator": lb.annotator, "created_at": lb.created_at, "updated_at": lb.updated_at,
            "lead_time": lb.lead_time, "consensus": None if agreed is None else answer_to_json(agreed.label),
        }, ensure_ascii=False) + "\n")
        n += 1
    return n


# csv and parquet ---------------------------------------------------------------------------------


def columns(schemas: tuple[Schema, ...]) -> tuple[list[str], dict[str, str]]:
    """The data-field columns and control -> consensus column name (the control's name, or
    `<name>_label` where a data field or task_id has that name)."""
    data_keys = list(dict.fromkeys(s.value_key for s in schemas))
    taken = {"task_id", *data_keys}
    names = {s.from_name: (s.from_name if s.from_name not in taken else f"{s.from_name}_label") for s in schemas}
    return data_keys, names


def _annotation_entries(rec: TaskRecord, control: str, schemas: tuple[Schema, ...]) -> list[dict]:
    out = []
    for ann_id in sorted(rec.annotations):
        for lb in rec.annotations[ann_id]:
            if _control(lb, schemas) == control:
                out.append({"annotation_id": ann_id, "annotator": lb.annotator, "ground_truth": lb.ground_truth,
                            "answer": answer_to_json(lb.label)})
    return out


def write_csv(records: list[TaskRecord], schemas: tuple[Schema, ...], f: IO[str]) -> int:
    data_keys, names = columns(schemas)
    writer = csv.writer(f, lineterminator="\n")
    header = ["task_id", *data_keys]
    for s in schemas:
        header += [names[s.from_name], f"{names[s.from_name]}_annotations"]
    writer.writerow(header)
    for rec in records:
        row: list[Any] = [rec.task_id, *(rec.data.get(k, "") for k in data_keys)]
        for s in schemas:
            agreed = rec.consensus.get(s.from_name)
            value = "" if agreed is None else answer_to_json(agreed.label)
            row.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
            entries = _annotation_entries(rec, s.from_name, schemas)
            row.append(json.dumps(entries, ensure_ascii=False) if entries else "")
        writer.writerow(row)
    return len(records)


def read_csv(path: Path | str, schemas: tuple[Schema, ...]) -> list[dict]:
    """Read back what `write_csv` wrote: rows with JSON columns decoded (for tests and notebooks)."""
    _, names = columns(schemas)
    kinds = {names[s.from_name]: s.task_kind for s in schemas}
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            row["task_id"] = int(row["task_id"])
            for col, kind in kinds.items():
                if row[col] and kind != "classification":
                    row[col] = json.loads(row[col])
                row[col] = row[col] or None
                ann = row[f"{col}_annotations"]
                row[f"{col}_annotations"] = json.loads(ann) if ann else []
            out.append(row)
    return out


def _arrow_schema(schemas: tuple[Schema, ...]):
    import pyarrow as pa

    data_keys, names = columns(schemas)
    span = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("text", pa.string())])
    fields = [pa.field("task_id", pa.int64(), nullable=False), *(pa.field(k, pa.string()) for k in data_keys)]
    for s in schemas:
        answer = {"classification": pa.string(), "multilabel": pa.list_(pa.string()),
                  "spans": pa.list_(span)}[s.task_kind]
        entry = pa.struct([("annotation_id", pa.int64()), ("annotator", pa.int64()), ("ground_truth", pa.bool_()),
                           ("created_at", pa.string()), ("updated_at", pa.string()), ("lead_time", pa.float64()),
                           ("answer", answer)])
        fields += [pa.field(names[s.from_name], answer), pa.field(f"{names[s.from_name]}_annotations", pa.list_(entry))]
    return pa.schema(fields)


def _arrow_answer(answer: Answer) -> Any:
    if isinstance(answer, str):
        return answer
    return [{"start": a.start, "end": a.end, "label": a.label, "text": a.text} if isinstance(a, Span) else a
            for a in answer]


def write_parquet(records: list[TaskRecord], schemas: tuple[Schema, ...], out: IO | Path | str,
                  chunk: int = 20_000) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise BadInput("parquet needs pyarrow: pip install pyarrow") from None
    data_keys, names = columns(schemas)
    schema = _arrow_schema(schemas)
    with pq.ParquetWriter(out, schema) as writer:
        for start in range(0, max(len(records), 1), chunk):
            cols: dict[str, list] = {name: [] for name in schema.names}
            for rec in records[start:start + chunk]:
                cols["task_id"].append(rec.task_id)
                for k in data_keys:
                    cols[k].append(rec.data.get(k))
                for s in schemas:
                    col = names[s.from_name]
                    agreed = rec.consensus.get(s.from_name)
                    cols[col].append(None if agreed is None else _arrow_answer(agreed.label))
                    entries = []
                    for ann_id in sorted(rec.annotations):
                        for lb in rec.annotations[ann_id]:
                            if _control(lb, schemas) == s.from_name:
                                entries.append({"annotation_id": ann_id, "annotator": lb.annotator,
                                                "ground_truth": lb.ground_truth, "created_at": lb.created_at,
                                                "updated_at": lb.updated_at, "lead_time": lb.lead_time,
                                                "answer": _arrow_answer(lb.label)})
                    cols[f"{col}_annotations"].append(entries)
            writer.write_table(pa.table(cols, schema=schema))
    return len(records)


# CoNLL -----------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def spans_control(schemas: tuple[Schema, ...], control: str | None) -> Schema:
    """The `<Labels>` control a CoNLL export writes: the one named, else the first."""
    spans = [s for s in schemas if s.task_kind == "spans"]
    if control is not None:
        found = [s for s in schemas if s.from_name == control]
        if not found:
            raise BadInput(f"no control {control!r} in the project's config (controls: "
                           f"{', '.join(s.from_name for s in schemas)})")
        if found[0].task_kind != "spans":
            raise BadInput(f"conll writes entity spans; control {control!r} is {found[0].task_kind}")
        return found[0]
    if not spans:
        raise BadInput("conll writes entity spans, and this project's config has no <Labels> control "
                       f"(controls: {', '.join(f'{s.from_name} ({s.task_kind})' for s in schemas)})")
    return spans[0]


def tokens(text: str, cuts: Iterable[int] = ()) -> list[tuple[int, int]]:
    """Word and punctuation tokens as (start, end) offsets, also split at every offset in `cuts`
    (span boundaries inside a word), so every span covers whole tokens."""
    marks = sorted(set(cuts))
    out = []
    for m in _TOKEN.finditer(text):
        start, end = m.span()
        for c in marks:
            if start < c < end:
                out.append((start, c))
                start = c
        out.append((start, end))
    return out


def bio_tags(text: str, spans: Iterable[Span]) -> list[tuple[int, int, str]]:
    """(start, end, tag) per token; overlapping spans: the earlier (then longer) one wins."""
    spans = sorted(spans, key=lambda sp: (sp.start, -(sp.end - sp.start)))
    toks = tokens(text, [x for sp in spans for x in (sp.start, sp.end)])
    tags = ["O"] * len(toks)
    for sp in spans:
        inside = [i for i, (s, e) in enumerate(toks) if s >= sp.start and e <= sp.end]
        if not inside or any(tags[i] != "O" for i in inside):
            continue
        tags[inside[0]] = f"B-{sp.label}"
        for i in inside[1:]:
            tags[i] = f"I-{sp.label}"
    return [(s, e, t) for (s, e), t in zip(toks, tags, strict=True)]


def write_conll(records: list[TaskRecord], schema: Schema, f: IO[str]) -> int:
    n = 0
    for rec in records:
        agreed = rec.consensus.get(schema.from_name)
        if agreed is None:
            continue
        text = agreed.text
        f.write(f"# task_id = {rec.task_id}\n# text = {json.dumps(text, ensure_ascii=False)}\n")
        for start, end, tag in bio_tags(text, agreed.label):  # type: ignore[arg-type]
            f.write(f"{text[start:end]}\t{start}\t{end}\t{tag}\n")
            n += 1
        f.write("\n")
    return n


def read_conll(source: Path | str | IO[str]) -> list[dict]:
    """Read back what `write_conll` wrote: per task {task_id, text, tokens: [(token, start, end, tag)],
    spans: [(start, end, label)]} (spans rebuilt from the BIO tags)."""
    text_in = Path(source).read_text(encoding="utf-8") if isinstance(source, str | Path) else source.read()
    out: list[dict] = []
    for block in text_in.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln]
        if not lines:
            continue
        doc: dict[str, Any] = {"tokens": [], "spans": []}
        for ln in lines:
            if ln.startswith("# task_id = "):
                doc["task_id"] = int(ln.split("=", 1)[1])
            elif ln.startswith("# text = "):
                doc["text"] = json.loads(ln.split("= ", 1)[1])
            else:
                tok, s, e, tag = ln.split("\t")
                doc["tokens"].append((tok, int(s), int(e), tag))
        current: list | None = None
        for _, s, e, tag in doc["tokens"]:
            if tag.startswith("B-") or (tag.startswith("I-") and (current is None or current[2] != tag[2:])):
                current = [s, e, tag[2:]]
                doc["spans"].append(current)
            elif tag.startswith("I-"):
                current[1] = e  # type: ignore[index]
            else:
                current = None
        doc["spans"] = [tuple(sp) for sp in doc["spans"]]
        out.append(doc)
    return out


# Label Studio ------------------------------------------------------------------------------------


def write_label_studio(records: list[TaskRecord], schemas: tuple[Schema, ...], f: IO[str]) -> int:
    from suggest.labelstudio import export_task_json

    f.write("[")
    for i, rec in enumerate(records):
        groups = [rec.annotations[a] for a in sorted(rec.annotations)]
        f.write(("\n" if i == 0 else ",\n") + json.dumps(export_task_json(rec.task_id, rec.data, groups, schemas),
                                                          ensure_ascii=False))
    f.write("\n]\n")
    return len(records)


def to_bytes(labels: list[Label], schemas: tuple[Schema, ...], fmt: str, *, control: str | None = None,
             weighted: dict[str, dict[int, Any]] | None = None) -> bytes:
    """An export in memory (small projects, notebooks)."""
    if fmt in BINARY_FORMATS:
        buf = io.BytesIO()
        export(labels, schemas, fmt, buf, control=control, weighted=weighted)
        return buf.getvalue()
    sbuf = io.StringIO(newline="")
    export(labels, schemas, fmt, sbuf, control=control, weighted=weighted)
    return sbuf.getvalue().encode("utf-8")


__all__ = ["FORMATS", "TaskRecord", "bio_tags", "columns", "export", "read_conll", "read_csv", "read_labels",
           "spans_control", "task_records", "to_bytes", "tokens", "write_conll", "write_csv", "write_jsonl",
           "write_label_studio", "write_parquet"]
