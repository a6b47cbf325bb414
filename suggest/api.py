"""The Python API (issue 18): the engine for notebooks and pipeline steps, without a server.

    import suggest

    batch = suggest.rank(pool_texts, labeled_pairs, batch=20)        # what to label next, and a suggestion
    curves = suggest.simulate(texts, labels, budget=100)             # is active learning worth it on my data?
    rows = suggest.export("5", model_dir="models", format="csv")     # a project's labels, now or as a version
    counts = suggest.stats("5", model_dir="models")                  # how many labelled tasks are ready
    report = suggest.quality("5", model_dir="models")                # agreement and suspected label errors

`export`, `stats`, `quality` and `labels` read a store that `suggest serve` writes (its MODEL_DIR); they
open it read-mostly, so a running server can keep serving. `rank` and `simulate` need no store.
Every function raises `suggest.BadInput` (a ValueError) with a message that names the problem.
A worked example: docs/python-api.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from suggest.schema import BadInput, Label


def rank(pool: Sequence[str], labeled: Sequence[tuple[str, str]] = (), *, batch: int = 50,
         strategy: str = "dense", cache_dir: str | Path | None = None) -> list[dict]:
    """The next `batch` texts of `pool` to label, best first.

    `labeled`: (text, label) pairs known so far; with two labels or more a model is trained on them and
    each row carries its `suggestion` and `probability`; before that the batch is chosen for coverage.
    Returns [{"index": position in pool, "rank": 1.., "score": lower = label sooner, ...}].
    `strategy`: dense (default for text), margin, least_confidence, entropy, random, diverse, or a
    modAL query function as "modal:module:function". `cache_dir`: an embedding cache reused across calls.
    """
    from suggest.rank import rank_texts
    from suggest.store import Store

    pool = list(pool)
    if not pool:
        raise BadInput("rank: the pool is empty")
    if batch < 1:
        raise BadInput(f"rank: batch must be at least 1, got {batch}")
    bad = [i for i, t in enumerate(pool) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise BadInput(f"rank: pool item {bad[0]} is not a non-empty text")
    pairs = [(str(t), str(y)) for t, y in labeled]
    return rank_texts(pool, pairs, batch=batch, strategy=strategy,
                      cache=Store(cache_dir) if cache_dir is not None else None)


def simulate(texts: Sequence[str], labels: Sequence[str], *, strategies: Sequence[str] = ("random", "auto"),
             seeds: int = 5, batch: int = 10, budget: int = 400, initial: int = 10, test_fraction: float = 0.2,
             cache_dir: str | Path | None = None, plot: str | Path | None = None) -> dict:
    """Active learning replayed on labelled data: learning curves per strategy (mean and spread over
    `seeds`), full-pool accuracy, and the labels each strategy needed to reach 95% of it.

    The same engine as `suggest simulate`: a stratified held-out test split, `initial` random labels,
    then `batch` more per step up to `budget`. `plot`: also write the learning curves as a PNG there.
    """
    from suggest.simulate import SimulationConfig, default_model_factory, plot_curves, run_simulation
    from suggest.store import Store

    texts, labels = list(texts), [str(y) for y in labels]
    if len(texts) != len(labels):
        raise BadInput(f"simulate: {len(texts)} texts but {len(labels)} labels")
    if len(set(labels)) < 2:
        raise BadInput("simulate: the labels need at least 2 distinct values")
    if not 0 < initial <= budget:
        raise BadInput(f"simulate: need 0 < initial ({initial}) <= budget ({budget})")
    if budget > len(texts) * (1 - test_fraction):
        raise BadInput(f"simulate: budget {budget} is more than the {int(len(texts) * (1 - test_fraction))} "
                       "texts left for training")
    config = SimulationConfig(strategies=tuple(strategies), seeds=seeds, batch=batch, budget=budget,
                              initial=initial, test_fraction=test_fraction)
    cache = Store(cache_dir) if cache_dir is not None else None
    result = run_simulation(texts, labels, config, make_model=default_model_factory(cache))
    if plot is not None:
        plot_curves(result, Path(plot))
    return result


@contextmanager
def _project(project: str | int, model_dir: str | Path):
    from suggest.labelstudio import parse_controls, project_key
    from suggest.store import Store

    key = project_key(project)
    if not Path(model_dir).exists():
        raise BadInput(f"no store at {model_dir}: give the model_dir suggest serves from (MODEL_DIR)")
    store = Store(model_dir)
    try:
        record = store.project(key)
        if record is None:
            raise BadInput(f"no project {key} in {store.root}")
        yield store, key, parse_controls(record.label_config)
    finally:
        store.close()


def labels(project: str | int, *, model_dir: str | Path = "models", version: str | None = None) -> list[Label]:
    """A project's annotations (one `Label` per annotation and control), now or exactly as `version`
    trained on them (its pinned snapshot of the annotation history)."""
    from suggest.export import read_labels
    from suggest.store_history import SnapshotUnavailable

    with _project(project, model_dir) as (store, key, _):
        try:
            return read_labels(store, key, version)
        except SnapshotUnavailable as exc:
            raise BadInput(str(exc)) from None


def export(project: str | int, *, model_dir: str | Path = "models", format: str = "jsonl",
           out: str | Path | None = None, version: str | None = None, control: str | None = None,
           consensus: str = "majority") -> Any:
    """A project's annotations in `format` (jsonl, csv, conll, parquet, label-studio): per task the
    consensus answer and each annotator's answer (see suggest/export.py for the columns).

    With `out`, writes the file and returns its path; without, returns the export: a str, or bytes for
    parquet. `version`: exactly what that version trained on, later edits and deletions notwithstanding.
    `consensus`: "majority" (ground truth, majority, latest) or "weighted" (the last quality report's
    model-weighted consensus on single-choice controls, as SUGGEST_CONSENSUS=weighted trains on it).
    """
    from suggest.export import export as write
    from suggest.export import read_labels, to_bytes
    from suggest.quality.report import weighted_labels
    from suggest.store_history import SnapshotUnavailable

    if consensus not in ("majority", "weighted"):
        raise BadInput(f"consensus must be majority or weighted, got {consensus!r}")
    with _project(project, model_dir) as (store, key, schemas):
        try:
            found = read_labels(store, key, version)
        except SnapshotUnavailable as exc:
            raise BadInput(str(exc)) from None
        weighted = weighted_labels(store.quality(key)) if consensus == "weighted" else None
    if out is None:
        data = to_bytes(found, schemas, format, control=control, weighted=weighted)
        return data if format == "parquet" else data.decode("utf-8")
    write(found, schemas, format, Path(out), control=control, weighted=weighted)
    return Path(out)


def stats(project: str | int, *, model_dir: str | Path = "models") -> dict:
    """Labelled tasks ready for training, per label, per annotator, disagreements, unlabelled left (when the
    store knows the task count) and per version; the same object as `suggest stats --format json`."""
    from suggest.stats import project_stats

    with _project(project, model_dir) as (store, key, schemas):
        return project_stats(store, key, schemas)


def quality(project: str | int, *, model_dir: str | Path = "models") -> dict | None:
    """The label-quality report the server computed after its last retrain (agreement per control,
    suspected label errors most suspicious first, consensus), or None before the first one; the same
    object as `suggest quality --format json`."""
    with _project(project, model_dir) as (store, key, _):
        return store.quality(key)


def notebook_labeler(*args: Any, **kwargs: Any):
    """`suggest.notebook.Labeler` (needs the notebook extra: pip install "suggest[notebook]")."""
    from suggest.notebook import Labeler

    return Labeler(*args, **kwargs)


__all__ = ["export", "labels", "notebook_labeler", "quality", "rank", "simulate", "stats"]
