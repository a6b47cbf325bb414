"""Measure the backend's latency targets against a real `suggest serve` process on loopback.

What it measures (issue targets in brackets), with real Rotten Tomatoes snippets:
- /webhook acknowledgement at 1,000 labels held, p50/p99 over a burst of 200 [p99 < 50 ms]
- time from the last annotation of that burst to the new version being served [< 2 s]
- /predict for 1 task whose embedding is cached, p50 [< 5 ms]
- /predict for 100 new tasks [< 1.5 s]
- the server's resident memory with the encoder loaded [< 600 MiB]

Run: .venv/bin/python benchmarks/backend_latency.py [--labels 1000 --burst 200]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
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
from tests.conftest import CONFIG, annotation_event, task  # noqa: E402

PROJECT = "1.1795257467"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MODEL_DIR": str(model_dir), "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "suggest", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()["encoder_loaded"]:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, default=1000, help="labels held before the burst")
    parser.add_argument("--burst", type=int, default=200, help="annotations in the measured burst")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backend_latency.json")
    args = parser.parse_args()
    console = Console()

    texts, labels = rotten_tomatoes()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    n_held, n_burst = args.labels, args.burst
    held = order[:n_held]
    burst = order[n_held : n_held + n_burst]
    fresh_sets = [order[5000 + 100 * k : 5100 + 100 * k] for k in range(3)]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        proc = start_server(Path(tmp), port)
        startup = time.perf_counter() - started
        http = httpx.Client(base_url=url, timeout=120)
        try:
            http.post("/setup", json={"project": PROJECT, "schema": CONFIG})
            rss_idle = rss_mib(proc.pid)
            console.print(f"server up in {startup:.1f} s; loading {n_held} labels ...")
            for k, i in enumerate(held):
                http.post("/webhook", json=annotation_event(k + 1, int(i), texts[i], labels[i], project_id=1))
            wait_for_labels(http, n_held)
            rss_labels = rss_mib(proc.pid)

            ack: list[float] = []
            for k, i in enumerate(burst):
                t0 = time.perf_counter()
                r = http.post("/webhook", json=annotation_event(n_held + k + 1, int(i), texts[i], labels[i],
                                                                  project_id=1))
                ack.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
            last_event = time.perf_counter()
            to_version = wait_for_labels(http, n_held + n_burst) - last_event

            one: list[float] = []
            cached = [task(int(i), texts[i]) for i in held[:200]]
            for t in cached:
                t0 = time.perf_counter()
                http.post("/predict", json={"tasks": [t], "project": PROJECT, "label_config": CONFIG})
                one.append(time.perf_counter() - t0)
            hundred: list[float] = []
            for ids in fresh_sets:
                body = {"tasks": [task(int(i), texts[i]) for i in ids], "project": PROJECT, "label_config": CONFIG}
                t0 = time.perf_counter()
                r = http.post("/predict", json=body)
                hundred.append(time.perf_counter() - t0)
                assert len(r.json()["results"]) == 100
            rss = rss_mib(proc.pid)
            breakdown = memory_breakdown(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)

    result = {
        "machine": f"{os.cpu_count()} cores",
        "labels_held": n_held,
        "burst": n_burst,
        "server_startup_s": round(startup, 2),
        "webhook_ack_ms": {q: round(pct(ack, v), 2) for q, v in (("p50", 50), ("p99", 99), ("max", 100))},
        "burst_to_new_version_s": round(to_version, 3),
        "predict_1_cached_ms": {"p50": round(pct(one, 50), 2), "p99": round(pct(one, 99), 2)},
        "predict_100_new_s": [round(x, 3) for x in hundred],
        "rss_idle_mib": round(rss_idle, 1),
        "rss_after_labels_mib": round(rss_labels, 1),
        "rss_mib": round(rss, 1),
        "rss_peak_mib": breakdown.pop("peak"),
        "rss_by_mapping_mib": breakdown,
    }
    table = Table(title="suggest backend latency (real server, loopback)")
    table.add_column("measure")
    table.add_column("value")
    table.add_column("target")
    table.add_row("/webhook ack p50 / p99", f"{result['webhook_ack_ms']['p50']} / {result['webhook_ack_ms']['p99']} ms",
                  "p99 < 50 ms")
    table.add_row(f"last of {n_burst} -> new version served", f"{to_version:.2f} s", "< 2 s")
    table.add_row("/predict 1 cached task p50", f"{result['predict_1_cached_ms']['p50']} ms", "< 5 ms")
    table.add_row("/predict 100 new tasks", " / ".join(f"{x:.2f}" for x in hundred) + " s", "< 1.5 s")
    table.add_row("server RSS idle, encoder loaded", f"{rss_idle:.0f} MiB", "< 600 MiB")
    table.add_row("server RSS after the workload", f"{rss:.0f} MiB (peak {result['rss_peak_mib']:.0f})", "< 600 MiB")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def memory_breakdown(pid: int, top: int = 8) -> dict[str, float]:
    """Resident MiB by mapping (anonymous/heap vs each shared library's package), plus the peak."""
    totals: dict[str, float] = {}
    name = "[anon]"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                path = parts[5] if len(parts) > 5 else "[anon]"
                if "site-packages/" in path:
                    path = path.split("site-packages/")[1].split("/")[0]
                name = path
            elif parts and parts[0] == "Rss:":
                totals[name] = totals.get(name, 0.0) + int(parts[1]) / 1024
    out = {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:top]}
    with open(f"/proc/{pid}/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    out["peak"] = round(peak / 1024, 1)
    return out


def wait_for_labels(http: httpx.Client, n: int, timeout: float = 600) -> float:
    """Poll until a published version was trained on n labels; returns when it was seen."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        versions = http.get("/metrics").json()["projects"]["1"]["versions"]
        if versions and versions[-1]["n_labels"] >= n:
            return time.perf_counter()
        time.sleep(0.01)
    raise RuntimeError(f"no version with {n} labels after {timeout} s")


if __name__ == "__main__":
    main()
