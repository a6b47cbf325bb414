"""Issue 17 at scale in the real Label Studio: the queue head per version, refills, pruning, annotator saves.

Starts Label Studio (its own venv, see tests/e2e) and `suggest serve` (queue head on, the defaults:
1,000 tasks per version, pruning in chunks of 50), imports N tasks into project A, connects suggest,
then drives A through `--versions` retrains (an annotator labels `--per-version` tasks from /next, then
pauses until the new version is served). Meanwhile a second annotator saves continuously into project
B of the same Label Studio (same database, same write lock; B has no backend), and each save's latency
is classed by what suggest was doing in A at that moment: a head push, pruning, or nothing (idle).

Reports:
- per version: from the version's publish (seen in /metrics) to Label Studio pointing at it, and to
  `/next` serving the engine's first choice; the loop's own timings (task-list sync, rank, first slice);
- prediction rows written per version (Label Studio's model-versions counts);
- the predictions table after each version (all versions together);
- save latency p50 / p99 during pushes, during pruning, and idle; and "push only": saves during a push
  while A's annotator, its retrain and the first slice were not running (a push follows them, so "during
  pushes" also holds their cost), with every save's time and the windows in `timeline`; all against
  `suggest_stopped`, a last stretch of `--idle-seconds` with suggest stopped (Label Studio alone: at a low
  push duty a paced head is still written through the idle stretches, so they hold few saves, and odd ones);
- the review tab's lag: per version, seconds from its publish to the tab listing its suspects and to all
  their rows being in (`review_tab_lag_s`), and how many versions got there (`review_tab_versions`).

Embeddings are pre-seeded so the figures measure the loop, not the encoder: Rotten Tomatoes vectors
from the simulate cache, and above 10,662 tasks numbered variants of those snippets whose vectors are
the base vector plus small noise (their content hashes are new, so the cache treats them as new texts).

Run: nice -n 10 .venv/bin/python benchmarks/scale_push.py --tasks 10000 [--versions 20] [--postgres]
(`--postgres`: Label Studio on a throw-away PostgreSQL instead of its default SQLite, see ls_postgres.py)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.encoders import TextEncoder  # noqa: E402
from benchmarks.annotation_save_pool import summary as bootstrap_ratios  # noqa: E402
from benchmarks.ls_postgres import postgres_env, server_version  # noqa: E402
from suggest.datasets import rotten_tomatoes  # noqa: E402
from suggest.schema import Item  # noqa: E402
from suggest.store import Store  # noqa: E402
from tests.conftest import CONFIG  # noqa: E402
from tests.e2e.labelstudio_server import (  # noqa: E402
    HttpServer,
    LabelStudioError,
    LabelStudioServer,
    choice_result,
    ensure_ls_venv,
    free_port,
    ls_venv_path,
    suggest_argv,
)

ENCODER = TextEncoder().encoder_id


def pool(n: int, cache_dir: Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """n texts with labels, and a vector for every one (seeded from the cache; variants get noise)."""
    texts, labels = rotten_tomatoes()
    cache = Store(cache_dir)
    base = cache.get_embeddings(ENCODER, [Item(t).content_hash for t in texts])
    missing = [t for t in dict.fromkeys(texts) if Item(t).content_hash not in base]
    if missing:  # a fresh machine: the simulate cache is empty, and the loop below would never fill the pool
        print(f"embedding the {len(missing):,} snippets the cache at {cache_dir} lacks (once)", flush=True)
        vectors = TextEncoder().encode(missing)
        cache.put_embeddings(ENCODER, {Item(t).content_hash: v for t, v in zip(missing, vectors, strict=True)})
        base = cache.get_embeddings(ENCODER, [Item(t).content_hash for t in texts])
    cache.close()
    if not base:
        raise SystemExit(f"no vectors for the Rotten Tomatoes snippets in {cache_dir}")
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    rng = np.random.default_rng(0)
    out_t, out_l, vectors = [], [], {}
    k = 0
    while len(out_t) < n:
        for i in order:
            if len(out_t) >= n:
                break
            h = Item(texts[i]).content_hash
            if h not in base:
                continue
            text = texts[i] if k == 0 else f"{texts[i]} ({k})"
            v = base[h] if k == 0 else base[h] + rng.normal(0, 0.02, base[h].shape).astype(np.float32)
            vectors[Item(text).content_hash] = (v / np.linalg.norm(v)).astype(np.float32)
            out_t.append(text)
            out_l.append(labels[i])
        k += 1
    return out_t, out_l, vectors


class Saver(threading.Thread):
    """An annotator saving into project B as fast as Label Studio answers (one save at a time)."""

    def __init__(self, client, task_ids: list[int], pause: float = 0.2):
        super().__init__(daemon=True)
        self.client, self.task_ids, self.pause = client, task_ids, pause
        self.saves: list[tuple[float, float, float]] = []  # (start, end, seconds)
        self.stop_flag = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop_flag.is_set() and i < len(self.task_ids):
            t0 = time.time()
            self.client.annotate(self.task_ids[i], choice_result("fresh" if i % 2 else "rotten"))
            t1 = time.time()
            self.saves.append((t0, t1, t1 - t0))
            i += 1
            time.sleep(self.pause)


class Watcher(threading.Thread):
    """Polls suggest's /metrics: push windows (from the loop's timings) and pruning windows (the counter)."""

    def __init__(self, server: HttpServer, pid: int):
        super().__init__(daemon=True)
        self.server, self.pid = server, str(pid)
        self.pushes: dict[str, list] = {}  # version -> [start, end or None while its head is written]
        self.prune_marks: list[tuple[float, int]] = []
        self.published: dict[str, float] = {}
        self.tab: dict[str, dict[str, float]] = {}  # version -> when its review tab was first seen listed / written
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                m = self.server.get("/metrics").json()["projects"].get(self.pid)
            except Exception:
                m = None
            now = time.time()
            if m:
                self.published.setdefault(m["model_version"], now)
                loop = m.get("loop") or {}
                version, seconds = loop.get("version"), loop.get("seconds") or {}
                if version and seconds:
                    if version not in self.pushes:
                        # first seen while its paced head is still written ("pushing"), or once it ended
                        began = seconds.get("first_choice") if loop.get("pushing") else seconds.get("total")
                        self.pushes[version] = [now - (began or 0.0) - 0.1, None]
                    if not loop.get("pushing") and self.pushes[version][1] is None:
                        self.pushes[version][1] = now
                    for other, window in self.pushes.items():  # a newer version's push stopped the older one
                        if other != version and window[1] is None:
                            window[1] = now
                self.prune_marks.append((now, (m.get("task_list") or {}).get("pruned", 0)))
                tab = (m.get("quality") or {}).get("review_tab") or {}
                for state in ("listed", "written"):
                    if tab.get("version") and tab.get(state):
                        self.tab.setdefault(tab["version"], {}).setdefault(state, now)
            time.sleep(0.1)

    def pruning_windows(self) -> list[tuple[float, float]]:
        out = []
        for (t0, n0), (t1, n1) in zip(self.prune_marks, self.prune_marks[1:], strict=False):
            if n1 > n0:
                out.append((t0, t1))
        return out


def shown_versions(task: dict) -> set:
    """The versions of the rows a `/next` answer shows: those of the version Label Studio serves."""
    return {p.get("model_version") for p in task.get("predictions") or []}


def first_served(burst: list[tuple[int, set, float]], nxt: dict, served_at: float, version: str, first: int,
                 published: float) -> dict:
    """Whether the first task Label Studio served under `version` (to A's annotator mid-burst, or to the /next
    taken once it pointed) was the engine's first choice, and when it was served. Why the time: a version Label
    Studio points at mid-burst is first served to the annotator, and `publish_to_next_first_choice_s` (the
    benchmark's own /next after the burst) then counts the rest of the burst as well."""
    served = [*burst, (nxt["id"], shown_versions(nxt), served_at)]
    under = [(t, at) for t, versions, at in served if version in versions]
    task, at = under[0] if under else (nxt["id"], served_at)
    return {"first_served": task, "first_served_is_first_choice": task == first,
            "first_served_in_a_burst": bool(under) and task != nxt["id"],
            "publish_to_first_served_s": round(at - published, 2)}


LS_REFUSALS: list[dict] = []  # Label Studio's own 500s on /next, retried (see next_task)


def next_task(client, pid: int) -> dict:
    """An annotator's /next, pressed again after a Label Studio 500. Why: seen once in a 10,000-task warm-up,
    Label Studio 1.23's /next on SQLite failed in its own stream-history write (`add_stream_history`: SQLite's
    "database is locked") while the zero-shot head's rows and the annotator's saves were being written. An
    annotator would reload; each refusal is kept in the result (`ls_refusals`)."""
    for attempt in range(5):
        try:
            return client.request("GET", f"/api/projects/{pid}/next")
        except LabelStudioError as exc:
            if "-> 500" not in str(exc) or attempt == 4:
                raise
            LS_REFUSALS.append({"at": round(time.time(), 3), "error": str(exc)[:120]})
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--per-version", type=int, default=5)
    parser.add_argument("--head", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=8.0,
                        help="idle stretch before the first and after the last version: the saves' baseline")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "suggest")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="suggest's environment, e.g. SUGGEST_PUSH_DUTY=0.1 (repeatable)")
    parser.add_argument("--ls-env", action="append", default=[], metavar="KEY=VALUE",
                        help="Label Studio's environment, e.g. one of its feature flags (repeatable)")
    parser.add_argument("--postgres", action="store_true",
                        help="run Label Studio on a throw-away PostgreSQL (benchmarks/ls_postgres.py), not SQLite")
    args = parser.parse_args()
    with ExitStack() as stack:
        database = stack.enter_context(postgres_env()) if args.postgres else {}
        measure(args, database)


def measure(args: argparse.Namespace, database: dict[str, str]) -> None:
    """One run: Label Studio (on SQLite, or on the Postgres that `database` points at), suggest, the versions."""
    out = args.out or ROOT / "benchmarks" / "results" / f"scale_push_{args.tasks}.json"
    texts, labels, vectors = pool(args.tasks, args.cache_dir)
    work = Path(tempfile.mkdtemp(prefix="suggest-scale-"))
    venv = ls_venv_path()
    ensure_ls_venv(venv)
    ls = LabelStudioServer(venv, work / "ls")
    ls.extra_env = {**database, **dict(entry.split("=", 1) for entry in args.ls_env)}
    ls.launch()
    model_dir = work / "models"
    store = Store(model_dir)
    items = list(vectors.items())
    for start in range(0, len(items), 20_000):
        store.put_embeddings(ENCODER, dict(items[start : start + 20_000]))
    store.close()
    port = free_port()
    env = {**os.environ, "LOG_LEVEL": "INFO", "SUGGEST_QUEUE_HEAD": str(args.head),
           "SUGGEST_PUSH_INTERVAL_SECONDS": "1", "SUGGEST_MEMORY_MB": "2048",
           **dict(entry.split("=", 1) for entry in args.env)}
    sg = HttpServer("suggest", suggest_argv("127.0.0.1", port, model_dir), port, work / "suggest.log", env)
    sg.launch()
    result: dict = {"tasks": args.tasks, "head": args.head, "versions": [], "workdir": str(work), "env": args.env,
                    "ls_env": args.ls_env,
                    "database": f"postgresql {server_version(database)}" if database else "sqlite"}
    try:
        ls.wait_ready()
        sg.wait_ready(300)
        client = ls.client()
        pid = client.create_project("scale A", CONFIG)["id"]
        side = client.create_project("scale B (saves)", CONFIG)["id"]
        t0 = time.perf_counter()
        for start in range(0, len(texts), 5000):
            client.import_tasks(pid, [{"text": t, "truth": lb} for t, lb in
                                      zip(texts[start : start + 5000], labels[start : start + 5000], strict=True)])
        client.import_tasks(side, [{"text": f"side task {i}"} for i in range(3000)])
        result["import_s"] = round(time.perf_counter() - t0, 1)
        side_ids = [t["id"] for t in client.tasks(side)]
        truth: dict[int, str] = {}

        def metrics() -> dict:
            return sg.get("/metrics").json()["projects"].get(str(pid)) or {}

        def wait(pred, timeout=900.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                m = metrics()
                if m and pred(m):
                    return m
                time.sleep(0.1)
            raise RuntimeError(f"timed out: {json.dumps(metrics().get('loop'))[:500]}")

        t0 = time.perf_counter()
        client.connect_ml(pid, f"http://127.0.0.1:{port}", "suggest")
        cold = wait(lambda m: m["loop"].get("enabled") and m["loop"].get("version") == m["model_version"])
        result["cold_start"] = {"wall_s": round(time.perf_counter() - t0, 2), "loop": cold["loop"]}
        print(json.dumps(result["cold_start"])[:600], flush=True)

        # Warm-up, untimed: label from /next until both classes are in (the zero-shot head of a big pool can be
        # all one class for many tasks, and a classifier trains only on two), then wait for that version's push.
        seen: set[str] = set()
        while len(seen) < 2:
            task = next_task(client, pid)
            truth[task["id"]] = task["data"]["truth"]
            seen.add(task["data"]["truth"])
            client.annotate(task["id"], choice_result(truth[task["id"]]))
        warm = wait(lambda m: m["mode"] == "trained" and m["loop"].get("version") == m["model_version"])
        result["warm_up_labels"] = len(truth)
        print(json.dumps({"warm_up_labels": len(truth), "trained": warm["model_version"]}), flush=True)
        watcher = Watcher(sg, pid)
        watcher.start()
        time.sleep(8)  # an idle stretch for the save baseline (no push; pruning of nothing)
        saver = Saver(ls.client(), side_ids)
        saver.start()
        a_windows: list[tuple[float, float]] = []
        time.sleep(args.idle_seconds)
        for _ in range(args.versions):
            # read without Label Studio's counts: with them each poll cost 0.35 s+ of its CPU at 100,000 tasks
            ls_before = client.request("GET", f"/api/projects/{pid}", params={"include": "id,model_version"},
                                       timeout=60).get("model_version")
            working = time.time()  # A's annotator, its retrain and the first slice: until Label Studio points
            burst: list[tuple[int, set, float]] = []  # each task /next served, its rows' versions, and when
            for _ in range(args.per_version):
                task = next_task(client, pid)
                burst.append((task["id"], shown_versions(task), time.time()))
                if task["id"] not in truth:
                    truth[task["id"]] = task["data"]["truth"]
                client.annotate(task["id"], choice_result(truth[task["id"]]))
            # the moment Label Studio points at a new version, the queue is the engine's: take /next at once
            deadline = time.monotonic() + 900
            while (held := client.request("GET", f"/api/projects/{pid}", params={"include": "id,model_version"},
                                          timeout=60).get("model_version")) == ls_before:
                if time.monotonic() > deadline:
                    raise RuntimeError("Label Studio never pointed at a new version")
                time.sleep(0.1)
            pointed = time.time()
            a_windows.append((working, pointed))
            nxt = next_task(client, pid)
            served = time.time()
            # its push done: the engine's first choice. A version Label Studio pointed at may be superseded before
            # its push ends (a newer one published meanwhile stops it); then the loop never reports it and the
            # entry is the newer version's whose push did end (a run hung here for 15 minutes otherwise)
            m = wait(lambda m, v=held, b=ls_before: m["loop"].get("version") in (v, m.get("model_version"))
                     and m["loop"].get("version") != b)
            if m["loop"].get("version") != held:
                print(json.dumps({"superseded_before_its_push_ended": held, "by": m["loop"]["version"]}), flush=True)
            version = held
            published = watcher.published.get(version, pointed)
            written = client.request("GET", f"/api/projects/{pid}/model-versions/")
            entry = {
                "version": version,
                "publish_to_pointed_s": round(pointed - published, 2),
                "publish_to_next_first_choice_s": round(served - published, 2),
                "next_is_first_choice": nxt["id"] == m["loop"]["next_tasks"][0],
                # with more than one annotator Label Studio picks at random among the first (annotators + 1)
                "next_in_first_three": nxt["id"] in m["loop"]["next_tasks"][:3],
                # Label Studio may point at the version while A's annotator still works (a version published
                # during the last burst): then the annotator, not the /next above, gets the first task it serves
                # under it. /next shows the rows of the version Label Studio serves, which says which that was.
                **first_served(burst, nxt, served, version, m["loop"]["next_tasks"][0], published),
                "rows_written": written.get(version, 0),
                "predictions_table": sum(written.values()),
                "loop_seconds": m["loop"]["seconds"],
                "task_list": m["loop"].get("task_list"),
                "head": m["loop"].get("head"),
            }
            entry["load_average_1m"] = round(os.getloadavg()[0], 1)
            if not entry["next_is_first_choice"]:  # what Label Studio held for both tasks, read just after
                entry["served"] = {"task": nxt["id"], "engine_first_three": m["loop"]["next_tasks"][:3], "rows": {
                    str(t): [{k: p.get(k) for k in ("id", "model_version", "score")} for p in
                             client.request("GET", "/api/predictions/", params={"task": t})]
                    for t in (nxt["id"], m["loop"]["next_tasks"][0])}}
            result["versions"].append(entry)
            print(json.dumps(entry), flush=True)
            time.sleep(4)  # annotators pause: pruning runs
        time.sleep(max(10.0, args.idle_seconds))
        watcher.stop_flag.set()
        watcher.join(5)
        final = client.request("GET", f"/api/projects/{pid}/model-versions/")
        result["predictions_table_final"] = {"total": sum(final.values()), "by_version": final}
        # the review tab, written by the analysis once Label Studio points at its version: which version it
        # holds, and whether its rows are all in (/metrics quality.review_tab)
        result["ls_refusals"] = LS_REFUSALS
        result["review_tab_final"] = (metrics().get("quality") or {}).get("review_tab")
        # how far the tab lagged: per version, seconds from its publish to the tab listing its suspects / holding
        # all their rows (a version replaced first never gets there)
        measured = [v["version"] for v in result["versions"]]
        result["review_tab_lag_s"] = {
            v: {k: round(t - watcher.published[v], 2) for k, t in watcher.tab.get(v, {}).items()}
            for v in measured if v in watcher.published}
        result["review_tab_versions"] = {
            "measured": len(measured),
            "listed": sum("listed" in watcher.tab.get(v, {}) for v in measured),
            "written": sum("written" in watcher.tab.get(v, {}) for v in measured)}
        # the clean baseline: Label Studio alone, suggest stopped (at a low duty a paced head is still being
        # written through the idle stretches above, so they hold few saves, and odd ones)
        sg.stop()
        stopped = time.time()
        time.sleep(args.idle_seconds)
        saver.stop_flag.set()
        saver.join(30)
        pushes = [(a, b if b is not None else stopped) for a, b in watcher.pushes.values()]
        prunes = watcher.pruning_windows()

        def overlaps(s, windows):
            return any(s[0] < b and s[1] > a for a, b in windows)

        running = [s for s in saver.saves if s[1] <= stopped]  # saves while suggest ran
        # A push follows A's annotator, its retrain and the first slice; only the paced rest of a head runs alone.
        # "push only": saves during a push while nothing else ran in A (what the pace is for); "suggest_stopped":
        # Label Studio alone. Seconds per save, by class
        classes = {
            "idle": [s[2] for s in running if not overlaps(s, pushes) and not overlaps(s, prunes)],
            "during_push": [s[2] for s in running if overlaps(s, pushes)],
            "during_prune": [s[2] for s in running if overlaps(s, prunes) and not overlaps(s, pushes)],
            "push_only": [s[2] for s in running if overlaps(s, pushes) and not overlaps(s, a_windows)],
            "suggest_stopped": [s[2] for s in saver.saves if s[0] >= stopped],
        }
        result["saves_ms"] = {k: {"n": len(v), "p50": _pct(v, 50), "p99": _pct(v, 99)} for k, v in classes.items()}
        for key in ("during_push", "during_prune"):
            e, i = result["saves_ms"][key], result["saves_ms"]["idle"]
            if e["p50"] and i["p50"]:
                e["p50_vs_idle"] = round(e["p50"] / i["p50"], 2)
                e["p99_vs_idle"] = round(e["p99"] / i["p99"], 2)
        result["saves_raw_ms"] = {k: [round(x * 1000, 1) for x in v] for k, v in classes.items()}
        raw = result["saves_raw_ms"]
        # how far the ratios can be trusted (bootstrap, 90%): against Label Studio alone, and against idle
        for base, name, quantiles in (("suggest_stopped", "stopped", ("p50", "p90", "p99")),
                                      ("idle", "idle", ("p50", "p99"))):
            for key in ("during_push", "push_only"):
                if len(raw[base]) >= 20 and len(raw[key]) >= 20:
                    boot = bootstrap_ratios(raw[key], raw[base], 2000)
                    for q in quantiles:
                        result["saves_ms"][key][f"{q}_vs_{name}"] = boot[q]["ratio"]
                        result["saves_ms"][key][f"{q}_vs_{name}_90pct"] = boot[q]["ratio_90pct"]
        begun = saver.saves[0][0] if saver.saves else 0.0
        result["timeline"] = {  # seconds from the first save: to re-class saves offline
            "saves": [[round(a - begun, 3), round(c * 1000, 1)] for a, _, c in saver.saves],
            "pushes": [[round(a - begun, 3), round(b - begun, 3)] for a, b in pushes],
            "prunes": [[round(a - begun, 3), round(b - begun, 3)] for a, b in prunes],
            "annotating_in_a": [[round(a - begun, 3), round(b - begun, 3)] for a, b in a_windows],
            "suggest_stopped_at": round(stopped - begun, 3),
            "begun_unix": round(begun, 3)}  # to match saves with suggest's log (LOG_LEVEL=DEBUG: its LS calls)
        vs = result["versions"]
        result["summary"] = {
            "publish_to_next_first_choice_s": {
                "median": float(np.median([v["publish_to_next_first_choice_s"] for v in vs])),
                "max": max(v["publish_to_next_first_choice_s"] for v in vs)},
            # when /next first served a task under the version, to A's annotator mid-burst or to the benchmark
            "publish_to_first_served_s": {
                "median": float(np.median([v["publish_to_first_served_s"] for v in vs])),
                "max": max(v["publish_to_first_served_s"] for v in vs)},
            "loop_first_choice_s_median": float(np.median([v["loop_seconds"]["first_choice"] for v in vs])),
            "rows_written_per_version_max": max(v["rows_written"] for v in vs),
            "predictions_table_after_versions": vs[-1]["predictions_table"],
            "next_is_first_choice_all": all(v["next_is_first_choice"] for v in vs),
            "next_in_first_three": sum(v.get("next_in_first_three", False) for v in vs),
            "first_served_is_first_choice": sum(v.get("first_served_is_first_choice", False) for v in vs),
            "first_served_in_a_burst": sum(v.get("first_served_in_a_burst", False) for v in vs),
            "review_tab_versions": result["review_tab_versions"],
        }
        print(json.dumps({"summary": result["summary"], "saves_ms": result["saves_ms"]}, indent=1), flush=True)
    finally:
        sg.stop()
        ls.stop()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
