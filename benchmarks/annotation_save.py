"""Annotation-save latency through the real Label Studio: `suggest` against an instant stub.

Why: with "start training on annotation submission" on, Label Studio sends START_TRAINING and the
ANNOTATION_CREATED webhook inside every annotation POST, and on a small machine `suggest`'s
background work (confirming, embedding, fitting, re-ranking the pool) competes with Label Studio
for the same cores. What an annotator feels is the save's latency; the stub (tests/e2e/stub_backend.py,
answers at once) is Label Studio's own floor.

For each size N: two projects hold the same N labelled Rotten Tomatoes snippets (imported with
their annotations) plus the tasks the burst annotates; one is connected to `suggest` (the loop on:
Label Studio's /setup hands it the URL and token), one to the stub; both train on submit. After
`suggest` has trained on the N labels and pushed, `--burst` saves per project are posted
in alternating blocks (drift hits both alike; each stub block starts once `suggest` is
idle, so it shows Label Studio's own floor) and timed; then the time from the last save until `suggest`
serves a version trained on every label.

Run: .venv/bin/python benchmarks/annotation_save.py [--labelled 1000,10000] [--burst 200]
     [--code-root /tmp/before]   # serve `suggest` from another checkout (same venv), for before/after
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suggest.datasets import rotten_tomatoes  # noqa: E402
from tests.e2e.conftest import LABEL_CONFIG, suggest_env  # noqa: E402
from tests.e2e.labelstudio_server import (  # noqa: E402
    HttpServer,
    LabelStudioClient,
    LabelStudioServer,
    choice_result,
    free_port,
    ls_venv_path,
    poll,
)

WARMUP = 5  # first saves of each project pay one-off costs (first webhook connection, caches)


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"n": int(ms.size), **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99)},
            "mean_ms": round(float(ms.mean()), 1), "max_ms": round(float(ms.max()), 1)}


def _import(ls: LabelStudioClient, pid: int, texts: list[str], labels: list[str | None], chunk: int = 2000) -> float:
    """Tasks (with an annotation where a label is given) in chunks; returns the seconds it took."""
    started = time.perf_counter()
    rows: list[dict[str, Any]] = [
        {"data": {"text": t}, **({"annotations": [{"result": choice_result(lb)}]} if lb else {})}
        for t, lb in zip(texts, labels, strict=True)
    ]
    for i in range(0, len(rows), chunk):
        ls.import_tasks(pid, rows[i : i + chunk])
    return time.perf_counter() - started


_first_seen: dict[str, float] = {}  # version -> perf_counter time a poll first saw it served


def _metrics(suggest: HttpServer, pid: int) -> dict | None:
    m = suggest.get("/metrics").json()["projects"].get(str(pid))
    if m:
        _first_seen.setdefault(m["model_version"], time.perf_counter())
    return m


def _trained_on(suggest: HttpServer, pid: int, n: int, timeout: float) -> dict:
    """Until `suggest` serves a version trained on n labels, has pushed it and is idle."""

    def done(m: dict | None) -> bool:
        return bool(m and m["versions"] and m["versions"][-1]["n_labels"] == n and not m["training"]
                    and m["loop"].get("version") == m["model_version"] and not m["loop"].get("pushing"))

    return poll(f"suggest to train on {n} labels and push", lambda: _metrics(suggest, pid), done, timeout, 0.25)


def _idle(suggest: HttpServer, pid: int, timeout: float = 300) -> None:
    """Until suggest has nothing queued or running for the project (pushes deferred to a pause, and the
    analysis that waits for one, included): the stub's block must not carry suggest's background work."""
    poll("suggest to go idle", lambda: _metrics(suggest, pid),
         lambda m: bool(m) and not m["training"] and not m.get("analysing") and not m.get("maintaining"),
         timeout, 0.25)


def measure(ls: LabelStudioClient, suggest: HttpServer, stub: HttpServer, n: int, burst: int, pool: int,
            blocks: int, texts: list[str], labels: list[str]) -> dict:
    """One size: set up both projects, wait for suggest to settle, run the interleaved burst.

    `pool` more tasks stay unlabelled, so the loop has a queue to push after the burst."""
    extra = WARMUP + burst
    if n + extra + pool > len(texts):
        raise SystemExit(f"{n} labelled + {extra} to annotate + {pool} needs more than the {len(texts)} snippets")
    out: dict[str, Any] = {"labelled": n, "burst": burst, "blocks": blocks, "warmup_excluded": WARMUP,
                           "unlabelled_pool": pool}
    projects: dict[str, tuple[int, list[int]]] = {}
    for name, backend in (("suggest", suggest), ("stub", stub)):
        pid = ls.create_project(f"annotation save {name} {n}", LABEL_CONFIG)["id"]
        seconds = _import(ls, pid, texts[: n + extra + pool], [*labels[:n], *[None] * (extra + pool)])
        out[f"import_seconds_{name}"] = round(seconds, 1)
        by_text = {t["data"]["text"]: t["id"] for t in ls.tasks(pid) if not t.get("total_annotations")}
        todo = [by_text[t] for t in texts[n : n + extra]]
        started = time.perf_counter()
        ls.connect_ml(pid, backend.url, name)
        ls.patch_project(pid, start_training_on_annotation_update=True)
        if name == "suggest":
            _trained_on(suggest, pid, n, timeout=1800)
            out["suggest_initial_train_and_push_seconds"] = round(time.perf_counter() - started, 1)
            # Label Studio's SQLite refused the stub project's creation ("database is locked", a 500) while
            # suggest's first head refill and prune wrote: set-up waits for them (session 12)
            _idle(suggest, pid)
        projects[name] = (pid, todo)
    latencies: dict[str, list[float]] = {"suggest": [], "stub": []}
    started = time.monotonic()

    clock: dict[str, list[float]] = {"suggest": [], "stub": []}  # wall-clock start of each timed save

    def save(name: str, i: int) -> float:
        """Annotate the project's i-th burst task; the POST's seconds."""
        t0, wall = time.perf_counter(), time.time()
        ls.annotate(projects[name][1][i], choice_result(labels[n + i]))
        if i >= WARMUP:
            clock[name].append(wall)
        return time.perf_counter() - t0

    for i in range(WARMUP):
        save("suggest", i), save("stub", i)
    # Blocks, the stub's first in each round and only once suggest is idle: its saves then show Label
    # Studio's own floor, and each suggest block carries the background work its saves cause (one by
    # one interleaving would charge suggest's background work to the stub's saves as well).
    done, size = WARMUP, -(-burst // blocks)
    for _ in range(blocks):
        k = min(size, extra - done)
        _idle(suggest, projects["suggest"][0])
        for name in ("stub", "suggest"):
            latencies[name] += [save(name, done + j) for j in range(k)]
        done += k
    last_save = time.perf_counter()
    out["burst_seconds"] = round(time.monotonic() - started, 1)
    out["suggest"], out["stub"] = _stats(latencies["suggest"]), _stats(latencies["stub"])
    out["ratio_suggest_over_stub"] = {q: round(out["suggest"][f"{q}_ms"] / out["stub"][f"{q}_ms"], 3)
                                      for q in ("p50", "p90", "p99")}
    # the slowest saves and when they started (UTC, as the server's log), to find what suggest was doing then
    out["suggest_slowest"] = [
        {"at": time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}", "ms": round(sec * 1000, 1)}
        for sec, at in sorted(zip(latencies["suggest"], clock["suggest"], strict=True), reverse=True)[:10]
    ]
    # how long suggest took to answer (Label Studio waits for /webhook inside each save), server-side
    answers = suggest.get("/metrics/requests").json()
    out["suggest_answers"] = {"webhook": answers["routes"].get("POST /webhook"), "slowest": answers["slowest"]}
    print(json.dumps(out), flush=True)
    # every timed save in order (ms), so a later reader can bootstrap the percentiles or see where the slow ones fell
    out["latencies_ms"] = {k: [round(x * 1000, 1) for x in v] for k, v in latencies.items()}
    try:
        m = _trained_on(suggest, projects["suggest"][0], n + extra, timeout=900)
    except AssertionError as exc:
        out["new_version_error"] = str(exc)[:500]
        return out
    at = _first_seen.get(m["model_version"])
    out["last_save_to_new_version_seconds"] = None if at is None else round(at - last_save, 2)
    out["last_save_to_pushed_seconds"] = round(time.perf_counter() - last_save, 2)
    out["versions_after_burst_start"] = sum(1 for v in m["versions"] if v["n_labels"] > n)
    out["last_train_seconds"] = m["versions"][-1].get("train_seconds")
    out["webhooks"] = (m.get("webhooks") or "").split(":")[0]  # signed: Label Studio's events need no re-read
    out["signed_events"] = m.get("signed_events")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelled", default="1000,10000", help="comma-separated sizes")
    parser.add_argument("--burst", type=int, default=200, help="saves timed per project and size")
    parser.add_argument("--blocks", type=int, default=4, help="rounds of stub saves, then suggest saves")
    parser.add_argument("--pool", type=int, default=100, help="tasks left unlabelled (the loop's queue)")
    parser.add_argument("--code-root", type=Path, default=ROOT, help="checkout whose `suggest` is served")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "annotation_save.json")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for suggest's environment")
    args = parser.parse_args()
    sizes = [int(s) for s in args.labelled.split(",") if s.strip()]
    texts, labels = rotten_tomatoes()
    order = np.random.default_rng(20261129).permutation(len(texts))
    texts, labels = [texts[i] for i in order], [labels[i] for i in order]

    work = Path(tempfile.mkdtemp(prefix="annotation-save-"))
    code_root = args.code_root.resolve()
    env = {**suggest_env(), "PYTHONPATH": str(code_root), "LOG_LEVEL": "INFO"}
    env.update(kv.split("=", 1) for kv in args.env)
    sp, stp = free_port(), free_port()
    label_studio = LabelStudioServer(ls_venv_path(), work / "label-studio")
    suggest = HttpServer("suggest", [sys.executable, "-m", "suggest", "serve", "--host", "127.0.0.1", "--port",
                                     str(sp), "--model-dir", str(work / "models")], sp, work / "suggest.log", env=env)
    suggest.process.cwd = code_root
    stub = HttpServer("stub", [sys.executable, str(ROOT / "tests" / "e2e" / "stub_backend.py"), "--port", str(stp)],
                      stp, work / "stub.log", env=dict(os.environ))
    results: dict[str, Any] = {"code_root": str(code_root), "env": args.env, "runs": [],
                               "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "load_before": os.getloadavg()}
    try:
        label_studio.launch()
        suggest.launch()
        stub.launch()
        stub.wait_ready(30)
        suggest.wait_ready(180)
        label_studio.wait_ready()
        ls = label_studio.client()
        for n in sizes:
            run = measure(ls, suggest, stub, n, args.burst, args.pool, args.blocks, texts, labels)
            run["load_after"] = os.getloadavg()
            results["runs"].append(run)
            print(json.dumps(run, indent=1), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        results["suggest_code"] = _git_head(code_root)
    finally:
        for server in (suggest, stub, label_studio):
            server.stop()
        results["logs"] = str(work)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}; logs in {work}")


def _git_head(root: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


if __name__ == "__main__":
    main()
