"""How well does `suggest` find wrong labels, and what does it add to a retrain?

Protocol: on offline text sets (the sets benchmarks/encoder_layers.py uses: Rotten Tomatoes
fresh/rotten, fresh/rotten/plot, the 2016 debates by party and by speaker) and an image set
(Fashion-MNIST, a stratified sample, EfficientNet-Lite0 vectors as the image family uses), flip 5% and 10% of the
labels at random to another class, compute out-of-fold probabilities exactly as the quality report
does (suggest.quality.label_errors.out_of_fold_proba on the cached MiniLM vectors, the engine's C=3
class-balanced head, the report's number of folds), and compare the flips with
- suggest's suspects (confident learning, prune by noise rate: suggest.quality.label_errors.find_suspects);
- cleanlab's `find_label_issues` on the SAME probabilities (its default filter, and its list ranked by
  self-confidence), when a Python with cleanlab is given (--cleanlab-python; cleanlab is AGPL and is
  only ever run here, in its own environment, as a separate process: never imported by suggest).
Reported per set and rate (mean over seeds): precision, recall and F1 of the flagged set, and precision
of the top k of each method's ranked list (k = number of flips; so precision = recall there). Then the
time the quality step adds to a retrain at 10,000 labels (out-of-fold fits + confident learning).

Run: .venv/bin/python benchmarks/label_errors.py [--cleanlab-python /tmp/cl-venv/bin/python]
     (about 2 minutes on 2 cores once the vectors are cached; embeds uncached texts first)
Writes benchmarks/results/label_errors.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from encoder_layers import datasets  # noqa: E402

from backends.encoders import cached_encode, shared_text_encoder  # noqa: E402
from suggest.quality.label_errors import find_suspects, out_of_fold_proba  # noqa: E402
from suggest.store import Store  # noqa: E402

CLEANLAB_SCRIPT = """
import json, sys
import numpy as np
from cleanlab.filter import find_label_issues
runs = np.load(sys.argv[1])
out = {}
for key in sorted({k.rsplit("/", 1)[0] for k in runs.files}):
    labels, proba = runs[key + "/labels"], runs[key + "/proba"]
    mask = find_label_issues(labels, proba)
    ranked = find_label_issues(labels, proba, return_indices_ranked_by="self_confidence")
    out[key] = {"flagged": np.flatnonzero(mask).tolist(), "ranked": [int(i) for i in ranked]}
import cleanlab
out["_version"] = cleanlab.__version__
json.dump(out, sys.stdout)
"""


def folds_for(n: int) -> int:
    """The number of folds the quality report uses (suggest/quality/report.py)."""
    return 10 if n < 1000 else 5 if n < 3000 else 3


def flip(y: np.ndarray, k: int, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.choice(len(y), int(round(rate * len(y))), replace=False)
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, k, len(idx))) % k  # always another class
    return noisy, idx


def scores(found: list[int], ranked: list[int], flipped: set[int]) -> dict[str, float]:
    hits = len(set(found) & flipped)
    p = hits / len(found) if found else 0.0
    r = hits / len(flipped)
    top = ranked[: len(flipped)]
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "p@k": len(set(top) & flipped) / len(flipped), "flagged": len(found)}


def _vector_sets(encoder, cache: Store, images: int, wanted: set[str] | None) -> list[tuple[str, tuple]]:
    """(name, (vectors, labels)) for each set asked for, from the embedding cache (embedding what is missing)."""
    out = []
    for name, (texts, labels) in datasets().items():
        if wanted is None or name in wanted:
            hashes = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
            out.append((name, (cached_encode(encoder, texts, hashes, cache, {}, None), np.asarray(labels))))
    name = "fashion-mnist"
    if images and (wanted is None or name in wanted):
        from backends.images import cached_image_encode, shared_image_encoder
        from suggest.datasets import fashion_mnist

        pngs, labels = fashion_mnist(limit=images, seed=0)
        X, failed = cached_image_encode(shared_image_encoder(), pngs, [hashlib.sha256(p).hexdigest() for p in pngs],
                                        cache)
        if failed:
            raise RuntimeError(f"{len(failed)} Fashion-MNIST images did not embed")
        out.append((name, (X, np.asarray(labels))))
    return out


def _timing(encoder, cache: Store) -> dict:
    """Seconds for the label-error step at 10,000 labels, as after a retrain: the folds start from the served
    head (fitted on all labels, not timed)."""
    from backends.embedding import fit_logistic

    X, y = _vector_sets(encoder, cache, 0, {"rt fresh/rotten"})[0][1]
    y = np.unique(y, return_inverse=True)[1]
    sub = np.random.default_rng(0).choice(len(y), 10_000, replace=False)
    noisy, _ = flip(y[sub], 2, 0.05, np.random.default_rng(0))
    served = fit_logistic(X[sub], noisy, C=3.0, max_iter=2000)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        proba = out_of_fold_proba(X[sub], noisy, 2, folds=folds_for(10_000), C=3.0, init=served)
        find_suspects(proba, noisy)
        runs.append(time.perf_counter() - started)
    return {"runs": [round(t, 3) for t in runs], "median": round(float(np.median(runs)), 3), "folds": folds_for(10_000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rates", default="0.05,0.10")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "suggest")
    parser.add_argument("--cleanlab-python", default=None, help="a Python whose environment has cleanlab")
    parser.add_argument("--images", type=int, default=2000, help="Fashion-MNIST images (0: none)")
    parser.add_argument("--sets", default=None, help="comma-separated set names to run (default: all); rows of "
                        "other sets already in --out are kept")
    parser.add_argument("--timing-only", action="store_true", help="only re-measure the time at 10,000 labels")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "label_errors.json")
    args = parser.parse_args()
    if args.timing_only:
        timing = _timing(shared_text_encoder(), Store(args.cache_dir))
        result = json.loads(args.out.read_text())
        result["seconds_at_10000_labels"] = timing
        args.out.write_text(json.dumps(result, indent=1))
        print(timing)
        return
    wanted = set(args.sets.split(",")) if args.sets else None
    rates = [float(r) for r in args.rates.split(",")]
    encoder = shared_text_encoder()
    cache = Store(args.cache_dir)
    ours: dict[str, list[dict]] = {}
    runs: dict[str, np.ndarray] = {}
    truth: dict[str, set[int]] = {}
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (X, labels) in _vector_sets(encoder, cache, args.images, wanted):
        classes, y = np.unique(labels, return_inverse=True)
        vectors[name] = (X, y)
        for rate in rates:
            for seed in range(args.seeds):
                noisy, idx = flip(y, len(classes), rate, np.random.default_rng(seed))
                proba = out_of_fold_proba(X, noisy, len(classes), folds=folds_for(len(y)), C=3.0, seed=seed)
                found = find_suspects(proba, noisy)
                key = f"{name}|{rate}|{seed}"
                flipped = set(idx.tolist())
                truth[key] = flipped
                ours.setdefault(f"{name}|{rate}", []).append(scores(found.index.tolist(), found.index.tolist(),
                                                                     flipped))
                runs[key + "/labels"], runs[key + "/proba"] = noisy, proba
                print(f"{key}: ours {ours[f'{name}|{rate}'][-1]}", flush=True)

    theirs: dict[str, list[dict]] = {}
    cleanlab_version = None
    if args.cleanlab_python:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "runs.npz"
            np.savez(path, **runs)
            done = subprocess.run([args.cleanlab_python, "-c", CLEANLAB_SCRIPT, str(path)], capture_output=True,
                                  text=True, check=True)
        found_by = json.loads(done.stdout)
        cleanlab_version = found_by.pop("_version")
        for key, got in found_by.items():
            name, rate, _ = key.split("|")
            theirs.setdefault(f"{name}|{rate}", []).append(scores(got["flagged"], got["ranked"], truth[key]))

    timing = _timing(encoder, cache)

    def mean(rows: list[dict]) -> dict[str, float]:
        return {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}

    table = []
    for key in ours:
        name, rate = key.split("|")
        row = {"set": name, "n": len(vectors[name][1]), "classes": int(vectors[name][1].max() + 1),
               "flipped": f"{float(rate):.0%}", "suggest": mean(ours[key])}
        if key in theirs:
            row["cleanlab"] = mean(theirs[key])
        table.append(row)
    if wanted and args.out.exists():  # keep the rows of the sets not run this time
        table = [r for r in json.loads(args.out.read_text())["table"] if r["set"] not in wanted] + table
    result = {"protocol": __doc__.split("Run:")[0].strip(), "seeds": args.seeds, "cleanlab": cleanlab_version,
              "table": table, "seconds_at_10000_labels": timing}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    header = "| set | n | flipped | suggest P / R / F1 | suggest P@k | cleanlab P / R / F1 | cleanlab P@k |"
    print(header + "\n|" + " --- |" * 7)
    for row in table:
        s, c = row["suggest"], row.get("cleanlab")
        theirs_text = f"{c['precision']:.3f} / {c['recall']:.3f} / {c['f1']:.3f} | {c['p@k']:.3f}" if c else "n/a | n/a"
        print(f"| {row['set']} | {row['n']} | {row['flipped']} | {s['precision']:.3f} / {s['recall']:.3f} / "
              f"{s['f1']:.3f} | {s['p@k']:.3f} | {theirs_text} |")
    print(f"quality step at 10,000 labels: {timing}; wrote {args.out}")


if __name__ == "__main__":
    main()
