"""/predict under load: 32 concurrent clients against a real `suggest serve`, with and without retrains.

What it measures, with real Rotten Tomatoes snippets (one task per request, as Label Studio sends
when an annotator opens a task; every text is new to the server, so every request needs a forward
pass of the encoder, the expensive case):
- phase "idle": 32 clients for --seconds, nothing else happening;
- phase "retraining": the same, while a feeder posts new annotations (new texts to embed) and
  START_TRAINING, so the trainer embeds and publishes versions throughout.
For each: p50/p99/max latency, throughput, errors (non-200 or empty result), versions published,
the share of samples in which the trainer was busy, and the server's CPU use and thread count.

Run: .venv/bin/python benchmarks/hardening.py [--clients 32 --seconds 20]
Writes benchmarks/results/hardening.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suggest.datasets import rotten_tomatoes  # noqa: E402
from tests.conftest import CONFIG, PROJECT, annotation_event, task  # noqa: E402
from tests.hardening.conftest import Server, free_port  # noqa: E402

SEED_LABELS = 300


def run_phase(url: str, texts: list[str], labels: list[str], pool: list[int], *, clients: int, seconds: float,
              retrain: bool, server_pid: int, next_label: list[int]) -> dict:
    """32 clients posting /predict for `seconds`; with `retrain`, a feeder keeps the trainer busy."""
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[str] = []
    busy: list[bool] = []
    lock = threading.Lock()
    cursor = iter(pool)

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                with lock:
                    n = next(cursor, None)
                if n is None:
                    return
                started = time.perf_counter()
                try:
                    resp = http.post(f"{url}/predict", json={"project": PROJECT, "tasks": [task(n, texts[n])]})
                    ok = resp.status_code == 200 and bool(resp.json()["results"][0]["result"])
                    err = None if ok else f"{resp.status_code} {resp.text[:200]}"
                except httpx.HTTPError as exc:
                    err = repr(exc)
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if err:
                        errors.append(err)

    def feeder() -> None:
        with httpx.Client(timeout=120) as http:
            k = 0
            while not stop.is_set():
                i = next_label[0]
                next_label[0] += 1
                http.post(f"{url}/webhook", json=annotation_event(i + 1, i + 1, texts[i], labels[i], project_id=7))
                if k % 10 == 0:
                    http.post(f"{url}/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
                k += 1
                time.sleep(0.05)

    def watcher() -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.wait(0.1):
                busy.append(bool(http.get(f"{url}/metrics").json()["projects"]["7"]["training"]))

    versions_before = len(httpx.get(f"{url}/metrics").json()["projects"]["7"]["versions"])
    proc = psutil.Process(server_pid)
    proc.cpu_percent(None)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    threads.append(threading.Thread(target=watcher, daemon=True))
    if retrain:
        threads.append(threading.Thread(target=feeder, daemon=True))
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - started
    cpu = proc.cpu_percent(None)
    n_threads = proc.num_threads()
    versions = len(httpx.get(f"{url}/metrics").json()["projects"]["7"]["versions"]) - versions_before
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:3],
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "throughput_per_s": round(len(latencies) / elapsed, 1),
        "versions_published": versions,
        "trainer_busy_share": round(sum(busy) / max(1, len(busy)), 2),
        "server_cpu_percent": round(cpu, 0),
        "server_threads": n_threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hardening.json")
    args = parser.parse_args()
    console = Console(width=120)
    texts, labels = rotten_tomatoes()
    order = np.random.default_rng(0).permutation(len(texts)).tolist()
    seed, feed, pool = order[:SEED_LABELS], order[SEED_LABELS:2000], order[2000:]
    half = len(pool) // 2

    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp) / "models", free_port(), Path(tmp) / "suggest.log",
                     env={"SUGGEST_PUSH": "0", "LOG_LEVEL": "WARNING"})
        startup = srv.start(encoder=True)
        try:
            with httpx.Client(base_url=srv.url, timeout=300) as http:
                http.post("/setup", json={"project": PROJECT, "schema": CONFIG}).raise_for_status()
                for k, i in enumerate(seed):
                    http.post("/webhook", json=annotation_event(k + 1, k + 1, texts[i], labels[i])).raise_for_status()
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    m = http.get("/metrics").json()["projects"]["7"]
                    if m["versions"] and m["versions"][-1]["n_labels"] == SEED_LABELS and not m["training"]:
                        break
                    time.sleep(0.2)
            # feeder texts: new to the server; annotation ids continue after the seed
            ftexts = [texts[i] for i in seed + feed]
            flabels = [labels[i] for i in seed + feed]
            next_label = [SEED_LABELS]
            console.print(f"server up in {startup:.1f} s, {SEED_LABELS} labels trained; measuring ...")
            common = dict(clients=args.clients, seconds=args.seconds, server_pid=srv.proc.pid)
            idle = run_phase(srv.url, texts, labels, pool[:half], retrain=False, next_label=next_label, **common)
            busy = run_phase(srv.url, ftexts + texts, flabels + labels,
                             [len(ftexts) + i for i in pool[half:]], retrain=True, next_label=next_label, **common)
        finally:
            srv.stop()

    result = {
        "machine": f"{os.cpu_count()} cores",
        "clients": args.clients,
        "seconds_per_phase": args.seconds,
        "request": "POST /predict, 1 task, a text the server has never seen (one encoder forward pass)",
        "idle": idle,
        "during_retrains": busy,
    }
    table = Table(title=f"/predict, {args.clients} concurrent clients (real server, loopback)")
    for col in ("phase", "requests", "errors", "p50 ms", "p99 ms", "max ms", "req/s", "versions", "trainer busy"):
        table.add_column(col)
    for name, r in (("idle", idle), ("during retrains", busy)):
        table.add_row(name, str(r["requests"]), str(r["errors"]), str(r["p50_ms"]), str(r["p99_ms"]),
                      str(r["max_ms"]), str(r["throughput_per_s"]), str(r["versions_published"]),
                      f"{r['trainer_busy_share']:.0%}")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
