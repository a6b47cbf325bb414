"""Issue 17, the engine's share of a version at 10,000 and 100,000 tasks (no Label Studio): how long the
head push spends reading the pool from the store's task list, choosing the candidates and ranking them.

A project trained on 30 Rotten Tomatoes labels; the pool is Rotten Tomatoes snippets and numbered
variants whose vectors are the base vector plus small noise, pre-seeded into the embedding cache (the
figures measure the loop, not the encoder). Compares the head's ranking (the least certain
max(5 x head, 5,000) tasks) with ranking the whole pool (the pre-issue-17 loop), where that is feasible.

Run: nice -n 10 .venv/bin/python benchmarks/scale_rank.py --tasks 10000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale_push import ENCODER, pool  # noqa: E402
from suggest.labelstudio import parse_controls  # noqa: E402
from suggest.loop import LoopSettings, rank_rows  # noqa: E402
from suggest.project import open_project  # noqa: E402
from suggest.queuehead import HeadPusher, HeadSettings, pool_rows  # noqa: E402
from suggest.schema import Label  # noqa: E402
from suggest.store import ProjectRecord, Store  # noqa: E402
from suggest.tasksync import TaskSync  # noqa: E402
from tests.conftest import CONFIG  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="10000,100000")
    parser.add_argument("--full-up-to", type=int, default=10000, help="also rank the whole pool up to this size")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "suggest")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale_rank.json")
    args = parser.parse_args()
    result: dict = {"load_average_start": round(os.getloadavg()[0], 1), "runs": []}
    for n in [int(x) for x in args.tasks.split(",")]:
        texts, labels, vectors = pool(n, args.cache_dir)
        store = Store(Path(tempfile.mkdtemp(prefix="suggest-rank-")))
        items = list(vectors.items())
        for start in range(0, len(items), 20_000):
            store.put_embeddings(ENCODER, dict(items[start : start + 20_000]))
        record = ProjectRecord("1", CONFIG, None, None)
        store.save_project(record)
        project = open_project(store, record, parse_controls(CONFIG))
        store.put_tasks("1", [(i + 1, {"text": t}, False) for i, t in enumerate(texts)])
        store.upsert_labels("1", [Label(i + 1, 100 + i, labels[i], texts[i], control="sentiment") for i in range(30)])
        project.retrain(force=True)
        loop = LoopSettings(batch_size=50)
        head = HeadPusher(HeadSettings(1000, 50), TaskSync(store), lambda p, rows, loop=loop: rank_rows(p, rows, loop))
        t0 = time.perf_counter()
        tasks = store.unlabeled_tasks("1")
        rows = pool_rows(project, tasks)
        t1 = time.perf_counter()
        cands = head.candidates(project, rows)
        t2 = time.perf_counter()
        rank_rows(project, cands, loop)
        t3 = time.perf_counter()
        run = {"tasks": n, "read_pool_s": round(t1 - t0, 2), "candidates": len(cands),
               "choose_candidates_s": round(t2 - t1, 2), "rank_candidates_s": round(t3 - t2, 2),
               "engine_total_s": round(t3 - t0, 2), "load_average": round(os.getloadavg()[0], 1)}
        if n <= args.full_up_to:
            t4 = time.perf_counter()
            rank_rows(project, rows, loop)
            run["rank_whole_pool_s"] = round(time.perf_counter() - t4, 2)
        print(json.dumps(run), flush=True)
        result["runs"].append(run)
        store.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
