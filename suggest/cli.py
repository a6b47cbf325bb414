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
