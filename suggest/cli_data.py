"""CLI commands for `suggest export`, `stats` and `config` (issue 18); `suggest.cli` registers them on its app."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

EXPORT_FORMATS = ("jsonl", "csv", "conll", "parquet", "label-studio")
STATS_FORMATS = ("table", "json")
ModelDir = Annotated[Path | None, typer.Option(
    "--model-dir", help="Where the store lives \\[env: MODEL_DIR; default: models]")]


def _open_project(project: str, model_dir: Path | None):
    """(store, project key, schemas) of a stored project; a clear error for an unknown one."""
    from suggest.cli import _fail, _settings
    from suggest.labelstudio import parse_controls, project_key
    from suggest.schema import BadInput, SchemaError
    from suggest.store import Store

    try:
        key = project_key(project)
    except BadInput as exc:
        _fail(str(exc))
    settings = _settings(model_dir=model_dir)
    if not Path(settings.model_dir).exists():
        _fail(f"no store at {settings.model_dir}: give --model-dir (or MODEL_DIR) where suggest keeps its store")
    store = Store(settings.model_dir)
    record = store.project(key)
    if record is None:
        store.close()
        _fail(f"no project {key} in {store.root}: `suggest status` lists the projects")
    try:
        schemas = parse_controls(record.label_config)
    except SchemaError as exc:
        store.close()
        _fail(f"project {key}'s stored label config cannot be read: {exc}")
    return store, key, schemas


def export(
    project: Annotated[str, typer.Argument(help="Label Studio project id")],
    model_dir: ModelDir = None,
    version: Annotated[str | None, typer.Option(
        "--version", help="Export exactly the annotations this version trained on (its pinned snapshot), "
        "later edits and deletions notwithstanding; default: the annotations now")] = None,
    format: Annotated[str, typer.Option("--format", help=", ".join(EXPORT_FORMATS))] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of standard output")] = None,
    control: Annotated[str | None, typer.Option(
        "--control", help="conll: the <Labels> control to write (default: the first)")] = None,
    consensus: Annotated[str | None, typer.Option(
        "--consensus", help="majority (ground truth, majority, latest) or weighted (the last quality report's "
        "model-weighted consensus on single-choice controls) \\[env: SUGGEST_CONSENSUS; default: majority]")] = None,
) -> None:
    """Export a project's annotations: per task the consensus answer and each annotator's answer.

    jsonl (default): one line per annotation and control, as before (task_id, annotation_id, control, label,
    text, ground_truth) plus annotator, created_at, updated_at, lead_time and the task's consensus.
    csv / parquet: one row per task, the consensus per control and `<control>_annotations`.
    conll: BIO tags of the consensus entity spans, `token<TAB>start<TAB>end<TAB>tag`.
    label-studio: JSON tasks with annotations that Label Studio imports as they are.
    """
    from suggest.cli import _fail, _settings
    from suggest.export import export as write
    from suggest.schema import BadInput
    from suggest.store_history import SnapshotUnavailable

    if format not in EXPORT_FORMATS:
        _fail(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    if consensus not in (None, "majority", "weighted"):
        _fail(f"--consensus must be majority or weighted, got {consensus!r}")
    if format == "parquet" and out is None and sys.stdout.isatty():
        _fail("parquet is binary: give --out FILE (or redirect standard output)")
    if out is not None and out.parent and not out.parent.exists():
        _fail(f"--out: folder {out.parent} does not exist")
    store, key, schemas = _open_project(project, model_dir)
    rule = consensus or _settings(model_dir=model_dir).consensus
    try:
        weighted = _weighted(store, key) if rule == "weighted" else None
        try:
            labels = store.labels(key) if version is None else store.labels_of_version(key, version)
        except SnapshotUnavailable as exc:
            _fail(str(exc))
        if not labels and version is None:
            typer.echo(f"suggest: project {key} holds no annotations yet", err=True)
        try:
            if out is None:
                target = sys.stdout.buffer if format == "parquet" else sys.stdout
                n = write(labels, schemas, format, target, control=control, weighted=weighted)
                sys.stdout.flush()
            else:
                n = write(labels, schemas, format, out, control=control, weighted=weighted)
        except BadInput as exc:
            _fail(str(exc))
        except BrokenPipeError:  # `suggest export P | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except OSError as exc:
            _fail(f"cannot write {out or 'standard output'}: {exc.strerror or exc}")
    finally:
        store.close()
    if out is not None:
        what = {"jsonl": "line(s)", "conll": "token(s)"}.get(format, "task(s)")
        typer.echo(f"wrote {n} {what} to {out}" + (f" (version {version})" if version else ""), err=True)


def _weighted(store, key: str) -> dict:
    """control -> task -> label from the project's last quality report (empty before one; said on stderr)."""
    from suggest.quality.report import weighted_labels

    report = store.quality(key)
    if report is None:
        typer.echo(f"suggest: project {key} has no quality report yet: the consensus is the majority rule",
                   err=True)
    return weighted_labels(report)


def stats(
    project: Annotated[str, typer.Argument(help="Label Studio project id")],
    model_dir: ModelDir = None,
    format: Annotated[str, typer.Option("--format", help=", ".join(STATS_FORMATS))] = "table",
) -> None:
    """Labelled tasks ready for training, per class or label, per annotator, tasks in disagreement,
    unlabelled left (where known) and per version."""
    from rich.console import Console
    from rich.table import Table

    from suggest.cli import _fail
    from suggest.stats import project_stats, table_lines

    if format not in STATS_FORMATS:
        _fail(f"--format must be one of {', '.join(STATS_FORMATS)}, got {format!r}")
    store, key, schemas = _open_project(project, model_dir)
    try:
        result = project_stats(store, key, schemas)
    finally:
        store.close()
    if format == "json":
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    for line in table_lines(result):
        print(line)
    con = Console(soft_wrap=True)
    for name, c in result["controls"].items():
        table = Table(title=f"{name} ({c['kind']}): {c['ready']} ready, {c['disagreements']} of {c['shared_tasks']} "
                      "shared task(s) in disagreement")
        table.add_column("label")
        table.add_column("tasks", justify="right")
        for label, n in c["per_label"].items():
            table.add_row(label, str(n))
        con.print(table)
    table = Table(title="annotators")
    for col in ("annotator", "annotations", "tasks"):
        table.add_column(col)
    for who, a in result["annotators"].items():
        table.add_row(who, str(a["annotations"]), str(a["tasks"]))
    con.print(table)
    table = Table(title="versions")
    for col in ("version", "trained at", "labels", "snapshot annotations"):
        table.add_column(col)
    for v in result["versions"]:
        snap = v["snapshot_annotations"]
        table.add_row(v["version"], v["trained_at"], str(v["n_labels"]), "not kept" if snap is None else str(snap))
    con.print(table)


def config(
    choices: Annotated[str | None, typer.Option("--choices", help="Comma-separated choices, e.g. pos,neg")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Comma-separated entity labels, e.g. PER,ORG")] = None,
    multiple: Annotated[bool, typer.Option("--multiple", help="--choices: several per task")] = False,
    object: Annotated[str | None, typer.Option("--object", help="text or image (default: text, or guessed "
                                                "from --from-data)")] = None,
    from_data: Annotated[Path | None, typer.Option("--from-data", help="A CSV or JSONL file of tasks: the object "
                                                    "type and field are guessed from it")] = None,
    field: Annotated[str | None, typer.Option("--field", help="The task field the object reads (default: text or "
                                               "image, or guessed from --from-data)")] = None,
    name: Annotated[str, typer.Option("--name", help="The control's name")] = "label",
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of standard output")] = None,
) -> None:
    """Write a label config (Label Studio XML) that label-studio-sdk validates and suggest serves."""
    from suggest.cli import _fail
    from suggest.configgen import choices_config, guess_from_data, labels_config
    from suggest.schema import BadInput

    if (choices is None) == (labels is None):
        _fail("give either --choices a,b,c or --labels PER,ORG")
    if multiple and labels is not None:
        _fail("--multiple goes with --choices (spans may always be several)")
    try:
        if from_data is not None:
            guessed_object, guessed_field = guess_from_data(from_data, field)
            if object is not None and object != guessed_object:
                typer.echo(f"suggest: --object {object} overrides the guess from {from_data} ({guessed_object})",
                           err=True)
            object = object or guessed_object
            field = field or guessed_field
        object = object or "text"
        if choices is not None:
            xml = choices_config(choices.split(","), multiple=multiple, object_type=object, field=field, name=name)
        else:
            xml = labels_config((labels or "").split(","), object_type=object, field=field, name=name)
    except BadInput as exc:
        _fail(str(exc))
    if out is None:
        sys.stdout.write(xml)
        return
    try:
        out.write_text(xml, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {out}", err=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `suggest` app."""
    app.command()(export)
    app.command()(stats)
    app.command()(config)
