"""CLI commands for live accuracy, stopping, drift and `suggest autolabel` (issue 14), registered by suggest.cli.

`suggest autolabel` reads what the server stored (validation items, the suggestion each task showed) and
never loads a model; only `--apply` and `--undo` talk to Label Studio.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

FORMATS = ("table", "json")


def _fail(message: str) -> NoReturn:
    typer.echo(f"suggest: error: {message}", err=True)
    raise typer.Exit(2)


def _client(record, settings):
    from suggest.labelstudio import LabelStudioClient

    if settings.label_studio_api_key:
        url, token = settings.label_studio_url, settings.label_studio_api_key
    else:
        url, token = settings.label_studio_url or record.hostname, record.access_token
    if not url or not token:
        _fail(f"project {record.project_id} has no Label Studio URL and token: connect suggest in Label Studio, or "
              "set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
    return LabelStudioClient(url, token)


def plan(store, key: str, target: float, confidence: float) -> dict:
    """Thresholds and qualifying tasks from the stored validation items and suggestions (a dry run)."""
    from suggest.labelstudio import parse_controls
    from suggest.standing.report import preview

    record = store.project(key)
    held = store.validation(key)
    standing = store.standing(key)
    if held is None or standing is None or not standing.get("control"):
        _fail(f"project {key} has no standing yet: it is computed after each retrain (a trained version and "
              "20 labels give the first validation items)")
    version, validation = held
    control = standing["control"]
    schema = next((s for s in parse_controls(record.label_config) if s.from_name == control), None)
    if schema is None:
        _fail(f"project {key} no longer has the control {control!r}; wait for the next retrain")
    annotated = {lb.task_id for lb in store.labels(key)}
    annotated |= {t for t, *_ in store.autolabel_annotations(key)}
    shown = store.suggestions(key, control)
    got = preview(validation, shown, dict.fromkeys(annotated), list(schema.labels), target, confidence)
    return {"project": key, "control": control, "validated_version": version, **got}


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `suggest` app."""

    @app.command()
    def autolabel(
        project: Annotated[str, typer.Argument(help="Label Studio project id")],
        target: Annotated[float, typer.Option("--target", help="accuracy the auto-labeled tasks must reach")] = 0.95,
        confidence: Annotated[float, typer.Option("--confidence", help="probability the guarantee holds")] = 0.95,
        format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
        apply: Annotated[bool, typer.Option("--apply", help="write the annotations into Label Studio")] = False,
        undo: Annotated[str | None, typer.Option("--undo", help="remove the annotations of this run")] = None,
        model_dir: Annotated[Path | None, typer.Option("--model-dir", help="where the store lives")] = None,
    ) -> None:
        """Auto-accept suggestions at a stated accuracy: per-class confidence thresholds whose Clopper-Pearson
        lower bound on human-labeled validation items (out-of-fold predictions, the audit slice) reaches
        --target with probability --confidence. A dry run by default; --apply writes them into Label Studio as
        annotations marked as machine work (run id, model version, threshold), only on tasks nobody annotated,
        never as ground truth; --undo RUN removes exactly that run's annotations.

        json: project, thresholds per class (threshold, bound, validation items), qualifying, per_class and
        `tasks` (task_id, label, probability); with --apply also `run_id` and `created`.
        """
        from suggest.cli import _settings
        from suggest.labelstudio import project_key
        from suggest.schema import BadInput
        from suggest.store import Store

        if format not in FORMATS:
            _fail(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
        if not 0.5 <= target < 1:
            _fail(f"--target must be at least 0.5 and below 1, got {target}")
        if not 0.5 <= confidence < 1:
            _fail(f"--confidence must be at least 0.5 and below 1, got {confidence}")
        if apply and undo:
            _fail("--apply and --undo cannot be used together")
        try:
            key = project_key(project)
        except BadInput as exc:
            _fail(str(exc))
        settings = _settings(model_dir=model_dir)
        store = Store(settings.model_dir)
        try:
            record = store.project(key)
            if record is None:
                _fail(f"no project {key} in {store.root}: `suggest status` lists the projects")
            if undo is not None:
                out = _undo(store, record, settings, undo)
            else:
                out = plan(store, key, target, confidence)
                if apply:
                    out.update(_apply(store, record, settings, out, target, confidence))
        finally:
            store.close()
        _show(out, format)


def _apply(store, record, settings, got: dict, target: float, confidence: float) -> dict:
    """Create the marked annotations, each on a task Label Studio says nobody annotated, recording each at once."""
    from suggest import labelstudio as ls
    from suggest.schema import Prediction

    key = record.project_id
    schema = next(s for s in ls.parse_controls(record.label_config) if s.from_name == got["control"])
    run_id = str(int(time.time() * 1000))
    tasks = got.get("tasks", [])
    store.put_autolabel_run(key, run_id, got["validated_version"], {
        "target": target, "confidence": confidence, "control": got["control"],
        "thresholds": {c: v.get("threshold") for c, v in got.get("thresholds", {}).items()}})
    client = _client(record, settings)
    created, skipped = 0, []
    try:
        current = {t["id"]: t for t in client.tasks_by_id(key, [t["task_id"] for t in tasks])} if tasks else {}
        for task in tasks:
            held = current.get(task["task_id"])
            if held is None or held.get("annotations"):  # any annotation, a skipped (cancelled) one too
                skipped.append(task["task_id"])  # gone, or a person has been at it since: never touched
                continue
            threshold = got["thresholds"][task["label"]]["threshold"]
            pred = Prediction(task["label"], task["probability"], 0.0, task["version"], schema.from_name)
            made = client.create_annotation(task["task_id"], ls.autolabel_annotation_json(
                pred, schema, run_id=run_id, threshold=threshold))
            store.add_autolabel_annotations(key, run_id, [(task["task_id"], int(made["id"]), task["label"])])
            created += 1
    except ls.LabelStudioError as exc:
        _fail(f"{exc} ({created} annotation(s) of run {run_id} were created; `suggest autolabel {key} --undo "
              f"{run_id}` removes them)")
    finally:
        client.close()
    return {"run_id": run_id, "created": created, "skipped_annotated": skipped}


def _undo(store, record, settings, run_id: str) -> dict:
    """Delete exactly the annotations a run created and still carry its mark; an edited one is kept."""
    from suggest import labelstudio as ls

    key = record.project_id
    if run_id not in {r["run_id"] for r in store.autolabel_runs(key)}:
        _fail(f"project {key} has no autolabel run {run_id!r}: `suggest status {key}` lists the runs")
    held = store.autolabel_annotations(key, run_id)
    client = _client(record, settings)
    removed, kept, gone = [], [], []
    try:
        for task_id, annotation_id, _, _ in held:
            ann = client.annotation(annotation_id)
            marks = [r.get(ls.AUTOLABEL_KEY, {}) for r in (ann or {}).get("result") or [] if isinstance(r, dict)]
            if ann is None:
                gone.append(annotation_id)
            elif ann.get("task") not in (None, task_id) or not any(m.get("run_id") == run_id for m in marks):
                kept.append(annotation_id)  # no longer this run's machine work (a person changed it)
                continue
            elif client.delete_annotation(annotation_id):
                removed.append(annotation_id)
            else:
                gone.append(annotation_id)
            store.remove_autolabel_annotations(key, [annotation_id])
    except ls.LabelStudioError as exc:
        _fail(f"{exc} ({len(removed)} removed so far; run the same --undo again to finish)")
    finally:
        client.close()
    if not kept:
        store.mark_autolabel_undone(key, run_id)
    return {"project": key, "run_id": run_id, "removed": len(removed), "removed_ids": removed,
            "already_gone": len(gone), "kept_changed_by_a_person": kept}


def _show(out: dict, format: str) -> None:
    if format == "json":
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    if "removed" in out:
        print(f"project {out['project']}: run {out['run_id']}: removed {out['removed']} annotation(s), "
              f"{out['already_gone']} already gone, {len(out['kept_changed_by_a_person'])} kept (changed by a person)")
        return
    print(f"project {out['project']}, control {out['control']}, validated on {out['validated_version']}: "
          f"target {out['target']} at confidence {out['confidence']}; {out['qualifying']} of {out.get('pool', 0)} "
          f"unlabeled task(s) qualify")
    if out.get("na"):
        print(out["na"])
    table = Table(title="per-class thresholds (Clopper-Pearson lower bound on validation items above)")
    for col in ("class", "threshold", "validation", "above", "accuracy", "bound", "qualifying", "note"):
        table.add_column(col)
    for c, v in (out.get("thresholds") or {}).items():
        table.add_row(c, "-" if v.get("threshold") is None else f"{v['threshold']:.4f}", str(v.get("validation", 0)),
                      str(v.get("above", "-")), str(v.get("accuracy", "-")), str(v.get("bound", "-")),
                      str((out.get("per_class") or {}).get(c, 0)), v.get("reason", ""))
    Console().print(table)
    if "run_id" in out:
        print(f"applied: run {out['run_id']}, {out['created']} annotation(s) created, "
              f"{len(out['skipped_annotated'])} skipped (annotated meanwhile); undo with --undo {out['run_id']}")


def status_entry(store, key: str, plot: Path | None = None) -> dict:
    """`suggest status --format json`'s standing part of a project (the same as /metrics), plus runs and the PNG."""
    from suggest.standing.plot import png_curve
    from suggest.standing.report import metrics_entry

    entry = {"standing": metrics_entry(store.standing(key), store.standing_history(key)),
             "autolabel_runs": store.autolabel_runs(key)}
    if plot is not None and entry["standing"].get("learning_curve"):
        plot.mkdir(parents=True, exist_ok=True)
        entry["plot"] = str(png_curve(entry["standing"]["learning_curve"], plot / f"curve-{key}.png",
                                      f"project {key}"))
    return entry


def _fmt(e: dict | None) -> str:
    if not e or e.get("estimate") is None:
        return "n/a"
    return f"{e['estimate']:.3f} [{e['low']:.3f}, {e['high']:.3f}] n={e['n']}"


def status_lines(store, key: str, plot: Path | None = None) -> str:
    """The standing part of `suggest status` (table format): estimates, curve, stopping, drift, runs."""
    from suggest.standing.plot import ascii_curve

    entry = status_entry(store, key, plot)
    st = entry["standing"]
    if "estimates" not in st:
        return f"standing: {st.get('na') or st.get('error') or st.get('status')}"
    est = st["estimates"]
    lines = [f"standing of {st.get('model_version')} ({st.get('labels')} labels, control {st.get('control')}):",
             f"  out-of-fold accuracy  {_fmt(est.get('out_of_fold'))}",
             f"  audit slice (unbiased) {_fmt(est.get('audit'))}",
             f"  suggestion agreement  {_fmt(est.get('agreement'))} (biased low: hardest tasks first)",
             ascii_curve(st.get("learning_curve") or [])]
    stop = st.get("stopping") or {}
    gain = (stop.get("expected_gain_next_100") or {}).get("gain")
    lines.append(f"  stopping: {'STABLE' if stop.get('stable') else 'not yet stable'} (kappa {stop.get('kappa')}, "
                 f"{stop.get('consecutive', 0)} consecutive >= 0.99 of 3); expected gain from the next 100 labels: "
                 f"{'n/a' if gain is None else f'{gain:+.4f}'}")
    drift = st.get("drift") or {}
    flagged = [k for k, v in drift.items() if isinstance(v, dict) and v.get("flagged")]
    lines.append(f"  drift: {'FLAGGED: ' + ', '.join(flagged) if flagged else 'nothing flagged'}")
    auto = st.get("autolabel") or {}
    if auto:
        lines.append(f"  autolabel at {auto.get('target')}: {auto.get('qualifying', 0)} task(s) qualify "
                     f"(`suggest autolabel {key}`)")
    for run in entry["autolabel_runs"]:
        lines.append(f"  autolabel run {run['run_id']}: {run['annotations']} annotation(s) held"
                     f"{', undone' if run['undone_at'] else ''}")
    if entry.get("plot"):
        lines.append(f"  learning curve written to {entry['plot']}")
    return "\n".join(lines)
