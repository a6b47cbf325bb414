"""`suggest rank`: the next batch to label from a file, with the engine's own model and strategies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from backends.embedding import EmbeddingClassifier
from suggest.schema import BadInput, Item
from suggest.store import Store
from suggest.strategies import make_strategy, rank_pool


def _read_jsonl(path: Path, text_field: str) -> list[dict]:
    if not Path(path).exists():
        raise BadInput(f"{path} does not exist")
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise BadInput(f"{path}:{n} is not JSON ({exc})") from None
        if not isinstance(row, dict) or not isinstance(row.get(text_field), str) or not row[text_field].strip():
            raise BadInput(f"{path}:{n} has no text in {text_field!r}")
        rows.append(row)
    return rows


def rank_texts(
    pool: list[str],
    labeled: list[tuple[str, str]],
    *,
    batch: int = 50,
    strategy: str = "dense",
    cache: Store | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Chosen pool positions with scores (lower = label sooner) and the model's suggestion if trained."""
    classes = sorted({y for _, y in labeled})
    model = EmbeddingClassifier(classes if len(classes) >= 2 else ["_a", "_b"], cache=cache)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, len(pool))

    X = model.embed([Item(t) for t in pool], progress=step)
    proba = None
    if len(classes) >= 2:
        model.fit([Item(t) for t, _ in labeled], [y for _, y in labeled])
        proba = model.predict_proba_embedded(X)
    chosen = make_strategy("coldstart" if proba is None else strategy, **(
        {} if strategy.startswith("modal:") and proba is not None else {"random_state": 0}))
    scores, picked = rank_pool(proba, X, batch_size=min(batch, len(pool)), strategy=chosen)
    out = []
    for rank, i in enumerate(picked.tolist(), start=1):
        row = {"index": i, "rank": rank, "score": round(float(scores[i]), 6)}
        if proba is not None:
            best = int(proba[i].argmax())
            row |= {"suggestion": classes[best], "probability": round(float(proba[i, best]), 6)}
        out.append(row)
    return out


def rank_file(
    pool_path: Path,
    labeled_path: Path | None,
    *,
    batch: int,
    strategy: str,
    text_field: str,
    label_field: str,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Read the files, rank, and return the chosen pool rows with their scores merged in."""
    if batch < 1:
        raise BadInput(f"--batch must be at least 1, got {batch}")
    pool_rows = _read_jsonl(pool_path, text_field)
    if not pool_rows:
        raise BadInput(f"{pool_path} has no items")
    labeled: list[tuple[str, str]] = []
    if labeled_path is not None:
        for row in _read_jsonl(labeled_path, text_field):
            if row.get(label_field) in (None, ""):
                raise BadInput(f"{labeled_path}: an item has no {label_field!r}")
            labeled.append((row[text_field], str(row[label_field])))
    ranked = rank_texts([r[text_field] for r in pool_rows], labeled, batch=batch, strategy=strategy,
                        cache=Store(cache_dir), progress=progress)
    return [pool_rows[r["index"]] | {k: v for k, v in r.items() if k != "index"} for r in ranked]


__all__ = ["rank_file", "rank_texts"]
