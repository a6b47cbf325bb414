"""Does `suggest autolabel` keep its promise? Achieved accuracy of auto-labeled items against the target.

Protocol, per data set and seed: a random labeled set of L items (the rest is the pool, its true labels
hidden), the engine's head (class-balanced logistic regression, C=3) fitted on the labeled set's cached
vectors, out-of-fold probabilities on the labeled set exactly as the standing report computes them
(suggest.quality.label_errors.out_of_fold_proba, the report's number of folds), then three ways to pick
the pool items to auto-label:
- suggest: per-class thresholds with a Clopper-Pearson lower bound >= target at the stated confidence,
  Bonferroni over classes, each class's budget halved between a fixed-sequence search and a Bonferroni
  search over candidate thresholds, the lower passing threshold kept (suggest.standing.autolabel);
- suggest_sequence, suggest_bonferroni: each search alone, with the class's whole budget;
- naive: per class, the lowest threshold whose OUT-OF-FOLD POINT accuracy above it is >= target (no bound);
- fixed 0.95: every pool item whose top probability is >= 0.95.
Each picked set is scored against the pool's true labels: accuracy, whether it reached the target, and
coverage (the share of the pool auto-labeled). A run that picks nothing counts as meeting the target
(nothing was mislabeled) and is counted separately.

Run: nice -n 10 .venv/bin/python benchmarks/autolabel.py [--seeds 20] [--targets 0.95,0.9]
Writes benchmarks/results/autolabel.json (vectors from the embedding cache in ~/.cache/suggest).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from label_errors import _vector_sets, folds_for  # noqa: E402

from backends.embedding import fit_logistic  # noqa: E402
from backends.encoders import shared_text_encoder  # noqa: E402
from suggest.quality.label_errors import out_of_fold_proba  # noqa: E402
from suggest.standing.autolabel import select, thresholds  # noqa: E402
from suggest.store import Store  # noqa: E402

SIZES = {"rt fresh/rotten": (1000, 4000), "rt fresh/rotten/plot": (1000,), "debates party": (500,),
         "fashion-mnist": (500,)}


def naive_thresholds(pred: np.ndarray, conf: np.ndarray, correct: np.ndarray, classes, target: float) -> dict:
    out = {}
    for c in classes:
        mine = pred == c
        cf, ok = conf[mine], correct[mine]
        order = np.argsort(-cf)
        cf, ok = cf[order], ok[order]
        acc = np.cumsum(ok) / np.arange(1, len(ok) + 1)
        passing = np.flatnonzero(acc >= target)
        out[str(c)] = {"threshold": float(cf[passing.max()]) if len(passing) else None}
    return out


def score(picked: np.ndarray, pool_pred: np.ndarray, pool_true: np.ndarray, target: float) -> dict:
    if len(picked) == 0:
        return {"accuracy": None, "met": True, "coverage": 0.0, "empty": True}
    acc = float((pool_pred[picked] == pool_true[picked]).mean())
    return {"accuracy": acc, "met": acc >= target, "coverage": len(picked) / len(pool_true), "empty": False}


def run(X: np.ndarray, labels: np.ndarray, size: int, seed: int, targets: list[float], confidence: float) -> dict:
    classes, y = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    lab, pool = order[:size], order[size:]
    head = fit_logistic(X[lab], y[lab], C=3.0, max_iter=2000)
    oof = out_of_fold_proba(X[lab], y[lab], len(classes), folds=folds_for(size), C=3.0, seed=seed, init=head)
    v_pred, v_conf = oof.argmax(1), oof.max(1)
    v_ok = v_pred == y[lab]
    proba = np.zeros((len(pool), len(classes)))
    proba[:, head.classes_.astype(int)] = head.predict_proba(X[pool])
    p_pred, p_conf = proba.argmax(1), proba.max(1)
    names = [str(c) for c in classes]
    out = {"oof_accuracy": float(v_ok.mean()), "pool_accuracy": float((p_pred == y[pool]).mean())}
    for target in targets:
        ours = thresholds(classes[v_pred], v_conf, v_ok, names, target=target, confidence=confidence)
        naive = naive_thresholds(classes[v_pred], v_conf, v_ok, names, target)
        out[str(target)] = {
            "suggest": score(select(classes[p_pred], p_conf, ours), p_pred, y[pool], target),
            **{f"suggest_{m}": score(select(classes[p_pred], p_conf, thresholds(
                classes[v_pred], v_conf, v_ok, names, target=target, confidence=confidence, method=m)),
                p_pred, y[pool], target) for m in ("sequence", "bonferroni")},
            "naive": score(select(classes[p_pred], p_conf, naive), p_pred, y[pool], target),
            "fixed_0.95": score(np.flatnonzero(p_conf >= 0.95), p_pred, y[pool], target),
            "thresholds": {c: ours[c].get("threshold") for c in names},
        }
    return out


def summarize(runs: list[dict], target: float) -> dict:
    out = {}
    for method in ("suggest", "suggest_sequence", "suggest_bonferroni", "naive", "fixed_0.95"):
        rows = [r[str(target)][method] for r in runs]
        accs = [r["accuracy"] for r in rows if r["accuracy"] is not None]
        out[method] = {"met_rate": round(float(np.mean([r["met"] for r in rows])), 3),
                       "met_rate_nonempty": round(float(np.mean([r["met"] for r in rows if not r["empty"]])), 3)
                       if any(not r["empty"] for r in rows) else None,
                       "empty_runs": int(sum(r["empty"] for r in rows)),
                       "accuracy_mean": round(float(np.mean(accs)), 4) if accs else None,
                       "accuracy_min": round(float(np.min(accs)), 4) if accs else None,
                       "coverage_mean": round(float(np.mean([r["coverage"] for r in rows])), 4)}
    return out


def markdown(result: dict) -> str:
    """The README table: per set and target, met rate / mean accuracy / mean coverage of each method."""
    rows = ["| set (labeled) | target | suggest: met / acc / coverage | naive OOF threshold | fixed p >= 0.95 |",
            "| --- | --- | --- | --- | --- |"]
    for key, entry in result["sets"].items():
        for target, by in entry["by_target"].items():
            def cell(m: dict) -> str:
                acc = "-" if m["accuracy_mean"] is None else f"{m['accuracy_mean']:.3f}"
                empty = f" ({m['empty_runs']} empty)" if m["empty_runs"] else ""
                return f"{m['met_rate']:.0%} / {acc} / {m['coverage_mean']:.1%}{empty}"
            rows.append(f"| {key} | {target} | {cell(by['suggest'])} | {cell(by['naive'])} | "
                        f"{cell(by['fixed_0.95'])} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--targets", default="0.95,0.9")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--sets", default="rt fresh/rotten,rt fresh/rotten/plot,debates party,fashion-mnist")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "suggest")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "autolabel.json")
    parser.add_argument("--table", action="store_true", help="only print the README table from --out")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(args.out.read_text())))
        return
    targets = [float(t) for t in args.targets.split(",")]
    wanted = set(args.sets.split(","))
    images = args.images if "fashion-mnist" in wanted else 0
    result = {"protocol": __doc__.split("Run:")[0].strip(), "seeds": args.seeds, "confidence": args.confidence,
              "sets": {}}
    for name, (X, labels) in _vector_sets(shared_text_encoder(), Store(args.cache_dir), images, wanted):
        for size in SIZES.get(name, (1000,)):
            started = time.perf_counter()
            runs = [run(X, labels, size, seed, targets, args.confidence) for seed in range(args.seeds)]
            key = f"{name} @{size}"
            result["sets"][key] = {
                "n": len(labels), "classes": len(set(labels.tolist())), "labeled": size,
                "oof_accuracy_mean": round(float(np.mean([r["oof_accuracy"] for r in runs])), 4),
                "pool_accuracy_mean": round(float(np.mean([r["pool_accuracy"] for r in runs])), 4),
                "by_target": {str(t): summarize(runs, t) for t in targets},
                "seconds": round(time.perf_counter() - started, 1), "runs": runs}
            print(key, json.dumps(result["sets"][key]["by_target"]), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1))  # after each set: a killed run keeps what it did
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(markdown(result))


if __name__ == "__main__":
    main()
