"""Saves between versions against saves with suggest stopped, from scale_push results (issue 17's save target).

Why: scale_push's own classes ("during a push") include A's annotator and its retrains, and the push of a
paced head lasts until the next version, so almost every save is "during a push". The comparison the notes
quote since session 15 reads the run's `timeline` instead: a save is "between versions" when it starts from the
first version to the last (A's first annotating burst to the end of its last), outside every burst; "stopped"
once suggest was stopped (Label Studio alone).

Run: .venv/bin/python benchmarks/scale_push_between.py benchmarks/results/scale_push_10000_s19_sqlite.json [...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def classes(result: dict) -> dict[str, list[float]]:
    t = result["timeline"]
    bursts = t["annotating_in_a"]
    stopped_at = t["suggest_stopped_at"]
    out: dict[str, list[float]] = {"between_versions": [], "suggest_stopped": []}
    for began, ms in t["saves"]:
        if began >= stopped_at:
            out["suggest_stopped"].append(ms)
        elif bursts and bursts[0][0] <= began <= bursts[-1][1] and not any(a <= began <= b for a, b in bursts):
            out["between_versions"].append(ms)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+")
    args = parser.parse_args()
    for path in args.results:
        result = json.loads(path.read_text())
        got = classes(result)
        line = {"file": path.name, "database": result.get("database", "sqlite")}
        for name, ms in got.items():
            line[name] = {"n": len(ms), **{f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99)}}
        b, s = line["between_versions"], line["suggest_stopped"]
        line["ratio"] = {q: round(b[q] / s[q], 2) for q in ("p50", "p90", "p99")}
        print(json.dumps(line))


if __name__ == "__main__":
    main()
