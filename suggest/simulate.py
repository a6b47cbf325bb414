"""Offline active-learning runs: how many labels each strategy needs on a labelled data set.

The loop is the server's own code, not a copy: the same `EmbeddingClassifier` (text: encoder,
cache, head, zero-shot start) or `ImageClassifier` (images) learns, and the same
`suggest.strategies` objects choose each batch. A held-out test split measures accuracy after
every batch; the labels come from the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backends.embedding import EmbeddingClassifier
from suggest.schema import BadInput, Item
from suggest.standing.simulation import StopTracker, stop_set_rows, stopping_report
from suggest.strategies import make_strategy, strategy_for

if TYPE_CHECKING:
    from backends.images import ImageClassifier

    Model = EmbeddingClassifier | ImageClassifier


@dataclass(frozen=True)
class SimulationConfig:
    strategies: tuple[str, ...] = ("random", "auto")
    seeds: int = 5
    batch: int = 10
    budget: int = 400
    initial: int = 10
    test_fraction: float = 0.2
    first_seed: int = 0  # seeds run are first_seed .. first_seed + seeds - 1 (a Ray task runs one: issue 17)


def read_labelled(path: Path, text_field: str, label_field: str) -> tuple[list[str], list[str]]:
    """Texts and labels from a CSV or JSON-lines file; rows without both are skipped."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    else:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    if rows and (text_field not in rows[0] or label_field not in rows[0]):
        raise BadInput(f"{path} has fields {sorted(rows[0])}; asked for text {text_field!r} and label {label_field!r}")
    pairs = [(str(r[text_field]), str(r[label_field])) for r in rows
             if r.get(text_field) not in (None, "") and r.get(label_field) not in (None, "")]
    if len({y for _, y in pairs}) < 2:
        raise BadInput(f"{path} needs at least 2 distinct labels in {label_field!r}")
    return [t for t, _ in pairs], [y for _, y in pairs]


def _split(labels: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test split (every class in both parts)."""
    train, test = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        k = max(1, int(round(len(idx) * test_fraction)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.concatenate(train), np.concatenate(test)


def _accuracy(model: Model, X: np.ndarray, y: np.ndarray) -> float:
    pred = np.asarray(model.labels)[model.predict_proba_embedded(X).argmax(axis=1)]
    return float((pred == y).mean())


def run_simulation(
    examples: list[str] | list[Item],
    labels: list[str],
    config: SimulationConfig,
    *,
    make_model: Callable[[list[str]], Model],
    progress: Callable[[str, int, int], None] | None = None,
    on_step: Callable[..., None] | None = None,
) -> dict:
    """Learning curves per strategy (mean and spread over seeds) and labels needed to reach 95% of full-pool.

    `on_step(seed=, strategy=, labels=, rows=, test=)` is called after each measured step with the
    labelled rows and the test rows (indices into `examples`): suggest/simulate_finetune.py measures
    a fine-tuned encoder on the same labels through it.

    `examples` are texts, or Items (images: `data` holds the file's bytes). Examples the model
    cannot embed (a broken image) are left out and counted in the result's "skipped".
    """
    classes = sorted(set(labels))
    probe = make_model(classes)
    items = [x if isinstance(x, Item) else Item(x) for x in examples]
    embed_progress = (lambda n: progress("embed", n, len(items))) if progress else None
    skipped: dict[int, str] = {}
    if hasattr(probe, "embed_partial"):
        X, skipped = probe.embed_partial(items, progress=_counting(embed_progress))
    else:
        X = probe.embed(items, progress=_counting(embed_progress))
    if progress:
        progress("embed", len(items), len(items))
    if skipped:
        keep = np.asarray([i for i in range(len(items)) if i not in skipped], dtype=int)
        items, labels, X = [items[i] for i in keep], [labels[i] for i in keep], X[keep]
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise BadInput(f"{len(skipped)} of {len(skipped) + len(items)} examples could not be used; "
                           "fewer than 2 labels are left")
    y = np.asarray(labels)
    kind = "image" if items and items[0].data is not None else "text"  # "auto" -> the measured best per kind
    config = replace(config, strategies=tuple(dict.fromkeys(strategy_for(s, kind) for s in config.strategies)))
    steps = list(range(config.initial, config.budget + 1, config.batch))
    curves: dict[str, list[list[float]]] = {s: [] for s in config.strategies}
    stops: dict[str, list[int | None]] = {s: [] for s in config.strategies}  # issue 14: where the signal fires
    kappas: dict[str, list[list[float | None]]] = {}
    full: list[float] = []
    total = config.seeds * len(config.strategies) * len(steps)
    done = 0
    for seed in range(config.first_seed, config.first_seed + config.seeds):
        rng = np.random.default_rng(seed)
        train, test = _split(y, config.test_fraction, rng)
        full_model = make_model(classes).fit([items[i] for i in train], list(y[train]))
        full.append(_accuracy(full_model, X[test], y[test]))
        pool = np.sort(train)  # pool position -> row of the data set
        pool_X = X[pool]
        start = np.searchsorted(pool, rng.choice(train, size=config.initial, replace=False))
        stop_rows = stop_set_rows(len(pool), seed)  # a fixed stop set from the pool (its own generator)
        for name in config.strategies:
            strategy = make_strategy(name, random_state=seed) if not name.startswith("modal:") else make_strategy(name)
            mask = np.zeros(len(pool), dtype=bool)
            mask[start] = True
            curve = []
            tracker = StopTracker(pool_X[stop_rows])
            for step in steps:
                rows = pool[mask]
                model = make_model(classes).fit([items[i] for i in rows], list(y[rows]))
                curve.append(_accuracy(model, X[test], y[test]))
                tracker.observe(model, step)
                if on_step is not None:
                    on_step(seed=seed, strategy=name, labels=step, rows=rows, test=test)
                done += 1
                if progress:
                    progress("simulate", done, total)
                if step == steps[-1]:
                    break
                proba = model.predict_proba_embedded(pool_X)
                mask[strategy.query(proba=proba, X=pool_X, batch_size=config.batch, labeled_mask=mask)] = True
            curves[name].append(curve)
            stops[name].append(tracker.fired_at)
            kappas.setdefault(name, []).append(tracker.kappas)
    out = summarize(curves, steps, full, config)
    out["stopping"] = stopping_report(curves, stops, steps, full, kappas)
    out["examples"] = len(items)
    out["classes"] = len(classes)
    if getattr(probe, "encoder", None) is not None:
        out["encoder_id"] = probe.encoder.encoder_id
    if skipped:
        out["skipped"] = {"count": len(skipped), "first": [str(v) for v in list(skipped.values())[:5]]}
    return out


def _counting(progress: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """Encoders report increments; the CLI's bar wants a running total."""
    if progress is None:
        return None
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        progress(done)

    return step


def summarize(curves: dict[str, list[list[float]]], steps: list[int], full: list[float], config) -> dict:
    full_mean = float(np.mean(full))
    target = 0.95 * full_mean
    out: dict = {
        "config": config.__dict__ | {"strategies": list(config.strategies)},
        "labels": steps,
        "full_pool_accuracy": {"mean": round(full_mean, 4), "std": round(float(np.std(full)), 4),
                               "per_seed": [round(float(v), 4) for v in full]},
        "target_95": round(target, 4),
        "strategies": {},
    }
    for name, runs in curves.items():
        arr = np.asarray(runs)
        mean = arr.mean(axis=0)
        reached = [s for s, m in zip(steps, mean, strict=True) if m >= target]
        out["strategies"][name] = {
            "mean": [round(float(v), 4) for v in mean],
            "std": [round(float(v), 4) for v in arr.std(axis=0)],
            "labels_to_95": reached[0] if reached else None,
            "per_seed": [[round(float(v), 4) for v in run] for run in runs],  # for paired comparisons across seeds
        }
    if "random" in out["strategies"]:
        base = out["strategies"]["random"]["labels_to_95"]
        for entry in out["strategies"].values():
            need = entry["labels_to_95"]
            entry["fewer_labels_than_random"] = (
                round(1 - need / base, 3) if base and need is not None else None
            )
    return out


def accuracy_at(result: dict, n: int) -> dict[str, float]:
    """Mean accuracy of each strategy at n labels (the nearest step at or below n)."""
    steps = result["labels"]
    i = max(k for k, s in enumerate(steps) if s <= n) if steps[0] <= n else 0
    return {name: entry["mean"][i] for name, entry in result["strategies"].items()}


def plot_curves(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    steps = np.asarray(result["labels"])
    for name, entry in result["strategies"].items():
        mean, std = np.asarray(entry["mean"]), np.asarray(entry["std"])
        ax.plot(steps, mean, label=f"{name} (95%: {entry['labels_to_95'] or '>' + str(steps[-1])} labels)")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
    full = result["full_pool_accuracy"]["mean"]
    ax.axhline(full, color="gray", linestyle="--", linewidth=1, label=f"full pool ({full:.3f})")
    ax.axhline(result["target_95"], color="gray", linestyle=":", linewidth=1, label="95% of full pool")
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy")
    seeds = result["config"]["seeds"]
    ax.set_title(f"Learning curves, mean ± std over {seeds} seed{'s' if seeds != 1 else ''}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def default_model_factory(cache) -> Callable[[list[str]], EmbeddingClassifier]:
    """Fresh heads that share one warm encoder, one embedding memory and the label prompts' vectors across
    the whole run (the prompts are the same each step: encoding them per fit was most of a small set's time)."""
    memory: dict[str, np.ndarray] = {}
    prototypes: dict[tuple[str, ...], np.ndarray] = {}

    def make(classes: list[str]) -> EmbeddingClassifier:
        model = EmbeddingClassifier(classes, cache=cache)
        model._memory = memory
        key = tuple(classes)
        if key not in prototypes:
            model._ensure_prototypes()
            prototypes[key] = model.prototypes_
        model.prototypes_ = prototypes[key]
        return model

    return make


def image_model_factory(cache, *, size: int | None = None) -> Callable[[list[str]], ImageClassifier]:
    """Fresh image heads that share one warm EfficientNet-Lite0 and one embedding memory across the run."""
    from backends.images import DEFAULT_IMAGE_SIZE, ImageClassifier, shared_image_encoder

    encoder = shared_image_encoder(size or DEFAULT_IMAGE_SIZE)
    memory: dict[str, np.ndarray] = {}

    def make(classes: list[str]) -> ImageClassifier:
        model = ImageClassifier(classes, encoder=encoder, cache=cache)
        model._memory = memory
        return model

    return make


def read_labelled_images(
    path: Path, image_field: str, label_field: str, *, progress: Callable[[int, int], None] | None = None
) -> tuple[list[Item], list[str], list[str]]:
    """Image items (bytes loaded) and labels from a CSV or JSON-lines file, plus one line per skipped row.

    The image field holds a file path (relative to the data file's folder), an http(s) URL, a
    `data:` URI or a `/data/local-files/?d=` reference (under LOCAL_FILES_DOCUMENT_ROOT). Rows whose
    image cannot be loaded are skipped and reported, not fatal.
    """
    from suggest.config import Settings
    from suggest.media import ImageLoader

    refs, labels = read_labelled(path, image_field, label_field)
    base = Path(path).resolve().parent
    settings = Settings.from_env()  # the same media rules as the server: local root, allowed hosts, deadline
    loader = ImageLoader(local_root=settings.local_files_root, allow_hosts=settings.media_allow_hosts,
                         deadline=settings.media_deadline_seconds)
    items: list[Item] = []
    kept: list[str] = []
    problems: list[str] = []
    for n, (ref, label) in enumerate(zip(refs, labels, strict=True)):
        try:
            if _is_file_path(ref):
                file = Path(ref).expanduser()
                file = file if file.is_absolute() else base / file
                if not file.is_file():
                    raise BadInput(f"image {ref!r} is missing: no file {file}")
                data = file.read_bytes()
            else:
                data = loader.load(ref)
        except BadInput as exc:
            problems.append(str(exc))
        else:
            items.append(Item(ref, None, data))
            kept.append(label)
        if progress:
            progress(n + 1, len(refs))
    loader.close()
    if len(set(kept)) < 2:
        detail = f" ({len(problems)} images could not be loaded, e.g. {problems[0]})" if problems else ""
        raise BadInput(f"{path} needs at least 2 distinct labels among loadable images{detail}")
    return items, kept, problems


def _is_file_path(ref: str) -> bool:
    return not (ref.startswith(("data:", "http://", "https://", "/data/local-files", "/data/upload")))


__all__ = [
    "SimulationConfig",
    "accuracy_at",
    "default_model_factory",
    "image_model_factory",
    "plot_curves",
    "read_labelled",
    "read_labelled_images",
    "run_simulation",
]
