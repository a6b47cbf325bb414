"""Which certainty should rank multi-label texts? A small pool-based active-learning simulation.

Corpus: `multilabel_corpus` from tests/unit/test_multilabel.py (real Rotten Tomatoes snippets, plot
summaries and 2016 debate statements; one or two families per text, labels = the families). A
pool of --pool texts and a held-out test set of --test texts; start from 10 random labels, then
batches of 10 chosen by the lowest certainty (top-k, no diversity, so only the measure differs),
against random batches. Reported: micro-F1 of `guess` on the test set at each size, mean of seeds.

Run: .venv/bin/python benchmarks/multilabel_study.py [--seeds 2 --rounds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backends.multilabel import MultiLabelClassifier  # noqa: E402
from suggest.schema import Item  # noqa: E402
from tests.unit.test_multilabel import HINTS, LABELS, micro_f1, multilabel_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=400)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "multilabel_study.json")
    args = parser.parse_args()

    texts, sets = multilabel_corpus(args.pool + args.test, seed=5)
    items = [Item(t) for t in texts]
    base = MultiLabelClassifier(LABELS, hints=HINTS)
    base._memory = memory = {}  # the run's own memo, shared by every model below (not the process's budgeted one)
    started = time.perf_counter()
    X = base.embed(items)
    print(f"embedded {len(items)} texts in {time.perf_counter() - started:.0f} s")
    pool, test = np.arange(args.pool), np.arange(args.pool, args.pool + args.test)
    test_sets = [sets[i] for i in test]

    def model() -> MultiLabelClassifier:
        m = MultiLabelClassifier(LABELS, hints=HINTS, encoder=base.encoder)
        m._memory = memory
        m.prototypes_ = base.prototypes_
        return m

    zero_shot = micro_f1(model(), X[test], test_sets)
    curves: dict[str, list[list[float]]] = {"random": [], "threshold": [], "entropy": []}
    for seed in range(args.seeds):
        for method in curves:
            rng = np.random.default_rng(seed)
            labelled = list(rng.choice(pool, size=10, replace=False))
            curve = []
            for _ in range(args.rounds + 1):
                m = model().fit([items[i] for i in labelled], [sets[i] for i in labelled])
                curve.append(micro_f1(m, X[test], test_sets))
                rest = np.setdiff1d(pool, labelled)
                if method == "random":
                    picked = rng.choice(rest, size=10, replace=False)
                else:
                    cert = m.certainty_of(m.proba_embedded(X[rest]), method)
                    picked = rest[np.argsort(cert, kind="stable")[:10]]
                labelled.extend(int(i) for i in picked)
            curves[method].append(curve)
            print(f"seed {seed} {method:9s} " + " ".join(f"{f:.3f}" for f in curve), flush=True)

    sizes = [10 + 10 * r for r in range(args.rounds + 1)]
    mean = {k: [round(float(v), 4) for v in np.mean(c, axis=0)] for k, c in curves.items()}
    result = {
        "corpus": f"multilabel_corpus(seed=5): pool {args.pool}, test {args.test}; labels {LABELS}",
        "protocol": "10 random seed labels, batches of 10 by lowest certainty (top-k), micro-F1 of guess",
        "seeds": args.seeds,
        "zero_shot_micro_f1": round(zero_shot, 4),
        "labels": sizes,
        "micro_f1_mean": mean,
        "area_under_curve": {k: round(float(np.mean(v)), 4) for k, v in mean.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["area_under_curve"]), f"zero-shot {zero_shot:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
