"""Measure the live loop against a real Label Studio: pushing a ranked pool and a full re-rank.

Starts Label Studio (its own venv, see tests/e2e) and `suggest serve`, imports N Rotten Tomatoes
snippets as tasks, connects the backend, and reports:
- the cold-start push: ranked zero-shot predictions for every task (tasks per second pushed);
- after 30 annotations, the full re-rank: from the new version to Label Studio serving the new
  order (fetch + rank + bulk import + project update), and whether `/next` serves the engine's
  first choice.
Embeddings are pre-seeded from the simulate cache when present, so the figures measure the loop,
not the encoder (first embedding of 10,000 snippets takes about a minute on 2 cores).

Run: .venv/bin/python benchmarks/push_pool.py [--tasks 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.encoders import TextEncoder  # noqa: E402
from suggest.datasets import rotten_tomatoes  # noqa: E402
from suggest.schema import Item  # noqa: E402
from suggest.store import Store  # noqa: E402
from tests.conftest import CONFIG  # noqa: E402
from tests.e2e.labelstudio_server import (  # noqa: E402
    HttpServer,
    LabelStudioServer,
    choice_result,
    ensure_ls_venv,
    free_port,
    ls_venv_path,
    suggest_argv,
)

ENCODER = TextEncoder().encoder_id  # the server's default pooling (no weights are loaded for the id)


def seed_embeddings(texts: list[str], model_dir: Path, cache_dir: Path) -> int:
    """Copy cached vectors into the server's fresh store (same encoder id, same content hashes)."""
    if not (cache_dir / "suggest.sqlite3").exists():
        return 0
    hashes = [Item(t).content_hash for t in texts]
    found = Store(cache_dir).get_embeddings(ENCODER, hashes)
    Store(model_dir).put_embeddings(ENCODER, found)
    return len(found)


def wait_loop(get_metrics, predicate, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = get_metrics()
        if predicate(m):
            return m
        time.sleep(0.2)
    raise RuntimeError(f"loop did not finish in {timeout} s: {json.dumps(get_metrics()['loop'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "suggest")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "push_pool.json")
    args = parser.parse_args()
    console = Console()
    texts, labels = rotten_tomatoes()
    idx = random.Random(0).sample(range(len(texts)), min(args.tasks, len(texts)))
    work = Path(tempfile.mkdtemp(prefix="suggest-push-"))
    venv = ls_venv_path()
    ensure_ls_venv(venv)
    ls = LabelStudioServer(venv, work / "ls")
    ls.launch()
    model_dir = work / "models"
    seeded = seed_embeddings([texts[i] for i in idx], model_dir, args.cache_dir)
    port = free_port()
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    sg = HttpServer("suggest", suggest_argv("127.0.0.1", port, model_dir), port, work / "suggest.log", env)
    sg.launch()
    try:
        ls.wait_ready()
        sg.wait_ready()
        client = ls.client()
        pid = client.create_project("push benchmark", CONFIG)["id"]
        t0 = time.perf_counter()
        for start in range(0, len(idx), 2000):
            client.import_tasks(pid, [{"text": texts[i], "truth": labels[i]} for i in idx[start : start + 2000]])
        import_s = time.perf_counter() - t0
        console.print(f"imported {len(idx)} tasks in {import_s:.1f} s ({seeded} embeddings pre-seeded)")

        def metrics() -> dict:
            return sg.get("/metrics").json()["projects"][str(pid)]

        client.connect_ml(pid, f"http://127.0.0.1:{port}", "suggest")
        cold = wait_loop(metrics, lambda m: m["loop"].get("enabled"))["loop"]
        tasks = client.tasks(pid)
        for task in tasks[:30]:
            client.annotate(task["id"], choice_result(task["data"]["truth"]))
        warm = wait_loop(metrics, lambda m: m["model_version"].startswith("v")
                         and m["loop"].get("version") == m["model_version"] and not m["loop"].get("pushing"))
        loop = warm["loop"]
        nxt = client.request("GET", f"/api/projects/{pid}/next")
        project = client.project(pid)
    finally:
        sg.stop()
        ls.stop()
    result = {
        "tasks": len(idx),
        "embeddings_preseeded": seeded,
        "import_tasks_s": round(import_s, 2),
        "cold_start_push": cold,
        "rerank_after_retrain": loop,
        "push_tasks_per_s": round(loop["tasks_scored"] / max(loop["seconds"]["push"], 1e-9), 1),
        "rerank_total_s": loop["seconds"]["total"],
        "next_is_engine_first": nxt.get("id") == loop["next_tasks"][0],
        "project_model_version": project["model_version"],
        "project_sampling": project["sampling"],
    }
    console.print_json(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
