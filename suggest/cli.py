"""The `suggest` command: serve the backend, inspect and export what it holds."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from suggest.config import UNCERTAINTY_METHODS, Settings

app = typer.Typer(
    help="Active-learning label suggestions for Label Studio.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

ModelDir = Annotated[
    Path | None,
    typer.Option("--model-dir", help="Where the store and model versions live [env: MODEL_DIR; default: models]"),
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on [env: HOST; default: 0.0.0.0]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env: PORT; default: 9090]")] = None,
    model_dir: ModelDir = None,
    uncertainty: Annotated[
        str | None, typer.Option(help=f"How `score` measures certainty: {', '.join(UNCERTAINTY_METHODS)}")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING [env: LOG_LEVEL]")] = None,
) -> None:
    """Run the Label Studio ML backend (connect it in Label Studio under Settings > Model)."""
    import uvicorn

    _limit_malloc_arenas()

    from suggest.server import create_app

    settings = Settings.from_env(
        host=host, port=port, model_dir=model_dir, uncertainty=uncertainty, log_level=log_level
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    console.print(
        f"suggest: serving on http://{settings.host}:{settings.port}, model dir {settings.model_dir.resolve()}"
        + (", basic auth on" if settings.auth_enabled else "")
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each server thread its own heap arena; capping them keeps resident memory flat."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


@app.command()
def status(model_dir: ModelDir = None) -> None:
    """Show each project: labels held, current version and the version history."""
    from suggest.store import Store

    store = Store(Settings.from_env(model_dir=model_dir).model_dir)
    projects = store.projects()
    if not projects:
        console.print("no projects yet: connect suggest in Label Studio first")
        return
    for record in projects:
        versions = store.versions(record.project_id)
        table = Table(title=f"project {record.project_id}: {len(store.labels(record.project_id))} annotations")
        for col in ("version", "trained at", "labels", "train s"):
            table.add_column(col)
        for v in versions:
            table.add_row(v.version, v.trained_at, str(v.n_labels), f"{v.train_seconds:.2f}")
        Console().print(table)


@app.command()
def export(
    project: Annotated[str, typer.Argument(help="Label Studio project id")],
    model_dir: ModelDir = None,
) -> None:
    """Print a project's stored annotations as JSON lines (task_id, annotation_id, label, text)."""
    from suggest.store import Store

    store = Store(Settings.from_env(model_dir=model_dir).model_dir)
    for label in store.labels(project):
        print(json.dumps({"task_id": label.task_id, "annotation_id": label.annotation_id,
                          "label": label.label, "text": label.text, "ground_truth": label.ground_truth}))


CacheDir = Annotated[
    Path,
    typer.Option("--cache-dir", help="Embedding cache (SQLite), reused across runs"),
]
DEFAULT_CACHE = Path.home() / ".cache" / "suggest"


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def _load_data(data: str, text_field: str, label_field: str) -> tuple[list[str], list[str]]:
    from suggest.datasets import rotten_tomatoes
    from suggest.simulate import read_labelled

    if data == "rotten-tomatoes":
        return rotten_tomatoes()
    return read_labelled(Path(data), text_field, label_field)


@app.command()
def simulate(
    data: Annotated[str, typer.Option(help="Labelled CSV or JSONL file, or 'rotten-tomatoes' (built in)")],
    out: Annotated[Path, typer.Option(help="Folder for results.json and learning_curve.png")],
    text_field: Annotated[str, typer.Option(help="Column/key holding the text")] = "text",
    label_field: Annotated[str, typer.Option(help="Column/key holding the label")] = "label",
    strategies: Annotated[str, typer.Option(help="Comma-separated: random, margin, least_confidence, entropy, "
                                            "diverse, coldstart, modal:<module>:<function>")] = "random,diverse",
    seeds: Annotated[int, typer.Option(help="Repetitions with different splits and seed labels")] = 5,
    batch: Annotated[int, typer.Option(help="Labels added per round")] = 10,
    budget: Annotated[int, typer.Option(help="Stop at this many labels")] = 400,
    initial: Annotated[int, typer.Option(help="Random seed labels before the first query")] = 10,
    cache_dir: CacheDir = DEFAULT_CACHE,
) -> None:
    """Run the active-learning loop offline on a labelled file; write learning curves per strategy."""
    from suggest.schema import BadInput
    from suggest.simulate import SimulationConfig, accuracy_at, default_model_factory, plot_curves, run_simulation
    from suggest.store import Store

    try:
        texts, labels = _load_data(data, text_field, label_field)
    except BadInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from None
    config = SimulationConfig(tuple(s.strip() for s in strategies.split(",") if s.strip()), seeds, batch, budget,
                              initial)
    console.print(f"{len(texts)} examples, {len(set(labels))} labels; strategies {', '.join(config.strategies)}")
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = run_simulation(texts, labels, config, make_model=default_model_factory(Store(cache_dir)),
                                progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_curves(result, out / "learning_curve.png")
    table = Table(title=f"test accuracy (mean of {seeds}); full pool {result['full_pool_accuracy']['mean']:.3f}")
    marks = [n for n in (50, 100, 200, 400) if n <= budget]
    for col in ("strategy", *[f"@{n}" for n in marks], "labels to 95%", "vs random"):
        table.add_column(col)
    at = {n: accuracy_at(result, n) for n in marks}
    for name, entry in result["strategies"].items():
        saving = entry.get("fewer_labels_than_random")
        table.add_row(name, *[f"{at[n][name]:.3f}" for n in marks], str(entry["labels_to_95"] or f">{budget}"),
                      f"{saving:+.0%} fewer" if saving is not None else "-")
    Console().print(table)
    console.print(f"wrote {out / 'results.json'} and {out / 'learning_curve.png'}")


@app.command()
def rank(
    pool: Annotated[Path, typer.Option(help="JSONL of items to choose from (one object per line)")],
    labeled: Annotated[Path | None, typer.Option(help="JSONL of labelled items; none: cold start")] = None,
    batch: Annotated[int, typer.Option(help="How many items to choose")] = 50,
    strategy: Annotated[str, typer.Option(help="diverse, margin, least_confidence, entropy, random, coldstart, "
                                          "or modal:<module>:<function>")] = "diverse",
    text_field: Annotated[str, typer.Option(help="Key holding the text")] = "text",
    label_field: Annotated[str, typer.Option(help="Key holding the label (in --labeled)")] = "label",
    cache_dir: CacheDir = DEFAULT_CACHE,
) -> None:
    """Choose the next batch to label from a pool; prints the chosen items as JSON lines with scores."""
    from suggest.rank import rank_file
    from suggest.schema import BadInput

    with _progress() as bar:
        task = None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task("embed", total=total)
            bar.update(task, completed=done)

        try:
            rows = rank_file(pool, labeled, batch=batch, strategy=strategy, text_field=text_field,
                             label_field=label_field, cache_dir=cache_dir, progress=progress)
        except BadInput as exc:
            raise typer.BadParameter(str(exc)) from None
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
