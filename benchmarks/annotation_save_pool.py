"""Pool the timed saves of several `annotation_save.py` runs and bootstrap the suggest/stub ratios.

Why: a p99 from 200 saves rests on its two slowest; one run's ratio swings from 0.8x to 1.8x. Pooling
runs of the same code and size, and resampling both sides, says how far the figure can be trusted.

Run: .venv/bin/python benchmarks/annotation_save_pool.py benchmarks/results/annotation_save_A.json ... \
        [--labelled 10000] [--resamples 2000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

QUANTILES = (50, 90, 99)


def pooled(paths: list[Path], labelled: int | None) -> dict[str, dict[str, list[float]]]:
    """Every timed save per size and backend, from each run that kept them (`latencies_ms`)."""
    out: dict[str, dict[str, list[float]]] = {}
    for path in paths:
        for run in json.loads(path.read_text())["runs"]:
            if "latencies_ms" not in run or (labelled is not None and run["labelled"] != labelled):
                continue
            size = out.setdefault(str(run["labelled"]), {"suggest": [], "stub": []})
            for side in ("suggest", "stub"):
                size[side].extend(run["latencies_ms"][side])
    return out


def summary(suggest: list[float], stub: list[float], resamples: int, seed: int = 0) -> dict:
    """Percentiles of both sides, their ratios, and a 90% bootstrap interval for each ratio."""
    a, b = np.asarray(suggest), np.asarray(stub)
    rng = np.random.default_rng(seed)
    boot = np.array([
        np.percentile(rng.choice(a, a.size), QUANTILES) / np.percentile(rng.choice(b, b.size), QUANTILES)
        for _ in range(resamples)
    ])
    out: dict = {"saves": {"suggest": int(a.size), "stub": int(b.size)}}
    for i, q in enumerate(QUANTILES):
        sa, sb = float(np.percentile(a, q)), float(np.percentile(b, q))
        lo, hi = np.percentile(boot[:, i], [5, 95])
        out[f"p{q}"] = {"suggest_ms": round(sa, 1), "stub_ms": round(sb, 1), "ratio": round(sa / sb, 3),
                        "ratio_90pct": [round(float(lo), 3), round(float(hi), 3)]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="annotation_save.py result files")
    parser.add_argument("--labelled", type=int, default=None, help="only runs of this size")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    sizes = pooled(args.results, args.labelled)
    if not sizes:
        raise SystemExit("no run in those files kept its timed saves (`latencies_ms`)")
    report = {size: summary(s["suggest"], s["stub"], args.resamples) for size, s in sizes.items()}
    if args.json:
        print(json.dumps({"files": [str(p) for p in args.results], "by_labelled": report}))
        return
    for size, r in report.items():
        print(f"{size} labelled: {r['saves']['suggest']} suggest saves, {r['saves']['stub']} stub saves")
        for q in QUANTILES:
            x = r[f"p{q}"]
            lo, hi = x["ratio_90pct"]
            print(f"  p{q}: suggest {x['suggest_ms']:7.1f} ms  stub {x['stub_ms']:7.1f} ms  "
                  f"ratio {x['ratio']:.2f} (90%: {lo:.2f}-{hi:.2f})")


if __name__ == "__main__":
    main()
