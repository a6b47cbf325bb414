"""What a paced head push costs an annotator saving into another project of the same Label Studio, by pace.

Why (issue 17): `scale_push.py` classes each save by whether suggest was pushing, but its pushes follow
the annotator of the pushed project, its retrains and its `/next` polls, so "during a push" also means
"while another annotator works and a model trains" on a 2-core machine, and its idle stretch is the only
time none of that runs. This isolates the push: nothing but the writes a head's paced rest makes once Label
Studio's bulk imports are slow (row mode): each task's older row overwritten in place by one
`PATCH /api/predictions/ID` (the code since session 17), each call followed by
`labelstudio.rest_after(took, duty)`. Other paths for comparison, by a suffix on the duty: "0.1dm" (the
code until session 16: per group of tasks one Data Manager delete of their older rows, `_replace_old`, then
one `POST /api/predictions/` per row), "0.1rows" (per task one `DELETE /api/predictions/ID` of its older
row, then its row) and "0.1bulk" (the code where bulk imports stay short, e.g. with Label Studio's
`--ls-env fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short=true`: per 100 tasks the
Data Manager deletes of their older rows, `prune_chunk` tasks a call, then one 100-row import).
Against idle stretches of the same length, in rotating order so drift falls on every phase alike.

Per round, one phase each: idle, and a push at every `--duties` value, `--phase-seconds` long. A second
client saves an annotation into project B every `--think` s throughout; a save is classed by the phase it
started and ended in (saves across a phase change are dropped).

Reports per phase: saves n, p50 / p90 / p99, their ratio to idle with a 90% bootstrap interval, rows
written per second, and the share of the phase Label Studio spent on the writes (the duty achieved).

Run: nice -n 10 .venv/bin/python benchmarks/push_save_cost.py --tasks 10000 [--duties 1,0.25,0.1,0.1dm,0.1rows]
[--postgres] (Label Studio on a throw-away PostgreSQL instead of its default SQLite, see ls_postgres.py)
[--wsgi-workers N] (Label Studio served by N gunicorn processes instead of one runserver, see ls_wsgi.py)
[--pin] (Label Studio on CPU 0, the writer and the saver on the other cores)
[--ls-env KEY=VALUE] (an environment variable for Label Studio, e.g. its batch-only import flag)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.annotation_save_pool import summary as bootstrap_ratios  # noqa: E402
from benchmarks.ls_postgres import postgres_env, server_version  # noqa: E402
from benchmarks.ls_sqlite import MODES, set_journal_mode  # noqa: E402
from benchmarks.ls_wsgi import serve_with_workers  # noqa: E402
from suggest import labelstudio as ls  # noqa: E402
from suggest.config import Settings  # noqa: E402
from suggest.queuehead import IMPORT_CHUNK, ROW_GROUP  # noqa: E402
from tests.conftest import CONFIG  # noqa: E402
from tests.e2e.labelstudio_server import LabelStudioServer, choice_result, ensure_ls_venv, ls_venv_path  # noqa: E402

HEAD = 1000  # tasks whose rows the pushes replace, version after version (a head's worth)
PRUNE_CHUNK = Settings().prune_chunk  # tasks per Data Manager delete, the code's default


class Saver(threading.Thread):
    """Saves an annotation into project B every `think` s; keeps (start, end, ms) per save."""

    def __init__(self, client: ls.LabelStudioClient, task_ids: list[int], think: float):
        super().__init__(daemon=True)
        self.client, self.task_ids, self.think = client, task_ids, think
        self.saves: list[tuple[float, float, float]] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop_flag.is_set():
            began = time.monotonic()
            self.client.request("POST", f"/api/tasks/{self.task_ids[i % len(self.task_ids)]}/annotations",
                                json={"result": choice_result("fresh")})
            ended = time.monotonic()
            self.saves.append((began, ended, (ended - began) * 1000))
            i += 1
            self.stop_flag.wait(self.think)


PATHS = ("patch", "dm", "rows", "bulk")  # how a task's older row is replaced; see the module docstring


def push_for(client: ls.LabelStudioClient, pid: str, tasks: list[int], version: str, duty: float,
             seconds: float, cursor: int, held: dict[int, int], path: str) -> tuple[int, float, int]:
    """Write `version`'s rows over `tasks` from `cursor` as a paced head does, for `seconds`; returns
    (rows written, seconds Label Studio spent on the calls, the next cursor). The older row of each task is
    overwritten in place (`patch`, the code in row mode), or deleted first: one Data Manager delete per group
    of tasks (`dm`, `_replace_old` until session 16) or one `DELETE /api/predictions/ID` per row (`rows`),
    paced like the writes. `held`: task -> the id of its row."""
    group = IMPORT_CHUNK if path == "bulk" else max(1, round(ROW_GROUP * min(duty, 1.0)))
    until = time.monotonic() + seconds
    over = lambda: time.monotonic() >= until  # noqa: E731  (a rest ends with the phase)
    rows, busy = 0, 0.0

    def timed(call, *args):
        nonlocal busy
        began = time.perf_counter()
        out = call(*args)
        took = time.perf_counter() - began
        busy += took
        ls.rest_after(took, duty, over)
        return out

    while time.monotonic() < until:
        part = [tasks[(cursor + k) % len(tasks)] for k in range(group)]
        cursor += group
        if path == "dm":
            timed(client.delete_task_predictions, pid, part)
            for task in part:
                held.pop(task, None)
        if path == "bulk":  # the queue head's bulk path: `_replace_old`, then `send_predictions`' one import
            for start in range(0, len(part), PRUNE_CHUNK):
                if not over():
                    timed(client.delete_task_predictions, pid, part[start : start + PRUNE_CHUNK])
            if over():
                break
            timed(client.import_predictions, pid, [{"task": t, "model_version": version, "score": 0.5,
                                                    "result": choice_result("fresh")} for t in part])
            rows += len(part)
            continue
        for task in part:
            if over():
                break
            row = {"task": task, "model_version": version, "score": 0.5, "result": choice_result("fresh")}
            if path == "patch" and task in held and timed(client.update_prediction, pid, held[task], row):
                rows += 1
                continue
            if task in held:
                timed(client.delete_prediction, held.pop(task))
                if over():
                    break
            held[task] = timed(client.create_prediction, pid, row)
            rows += 1
    return rows, busy, cursor


def pin_tree(root: int | None, cpus: set[int]) -> int:
    """Put every thread of `root` and its descendants on `cpus` (Linux affinity is per thread; threads made
    later inherit their creator's). Returns the threads moved."""
    if root is None:
        return 0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    moved, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
                moved += 1
            except OSError:
                continue
    return moved


def phase_name(duty: str) -> str:
    """"0.1" -> "duty 0.1" (the code's path), "0.1dm" -> "duty 0.1 dm", "0.1rows" -> "duty 0.1 rows"."""
    path = next((p for p in PATHS[1:] if duty.endswith(p)), "")
    return f"duty {float(duty.removesuffix(path)):g}" + (f" {path}" if path else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in the pushed project")
    parser.add_argument("--duties", default="1,0.25,0.1",
                        help="paces to measure (share of the time writing); a suffix names an older path: "
                             "0.1dm (Data Manager deletes per group), 0.1rows (one-row deletes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phase-seconds", type=float, default=40.0)
    parser.add_argument("--think", type=float, default=0.2, help="seconds between one save and the next")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--postgres", action="store_true",
                        help="run Label Studio on a throw-away PostgreSQL (benchmarks/ls_postgres.py), not SQLite")
    parser.add_argument("--wsgi-workers", type=int, default=0,
                        help="serve Label Studio with this many gunicorn processes (benchmarks/ls_wsgi.py), "
                             "not `label-studio start`'s one")
    parser.add_argument("--pin", action="store_true",
                        help="Label Studio's processes on CPU 0, this benchmark (writer and saver) on the others: "
                             "whether the save tail is the two sharing cores")
    parser.add_argument("--sqlite-journal", choices=MODES, default=None,
                        help="switch Label Studio's SQLite database to this journal mode once it has started "
                             "(benchmarks/ls_sqlite.py; its own default: delete, a rollback journal)")
    parser.add_argument("--ls-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for Label Studio (repeatable), e.g. "
                             "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short=true")
    args = parser.parse_args()
    if args.pin:  # before any thread or child exists: every later one inherits it; Label Studio is moved after
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
    with ExitStack() as stack:
        database = stack.enter_context(postgres_env()) if args.postgres else {}
        measure(args, database)


def measure(args: argparse.Namespace, database: dict[str, str]) -> None:
    """One Label Studio (on SQLite, or on the Postgres that `database` points at), the phases, the report."""
    duties = [d.strip() for d in args.duties.split(",")]  # "0.1dm", "0.1rows": older paths (module docstring)
    out = args.out or ROOT / "benchmarks" / "results" / f"push_save_cost_{args.tasks}.json"
    work = Path(tempfile.mkdtemp(prefix="suggest-push-cost-"))
    ensure_ls_venv(ls_venv_path())
    server = LabelStudioServer(ls_venv_path(), work / "ls")
    server.extra_env = {**database, **dict(entry.split("=", 1) for entry in args.ls_env)}
    server.start()
    journal = set_journal_mode(server, args.sqlite_journal) if args.sqlite_journal and not database else None
    if args.wsgi_workers:
        serve_with_workers(server, args.wsgi_workers)
    pinned = pin_tree(server.process.pid if server.process else None, {0}) if args.pin else 0
    admin = server.client()
    try:
        pid = str(admin.create_project("pushed", CONFIG)["id"])
        side = str(admin.create_project("saves alongside", CONFIG)["id"])
        for start in range(0, args.tasks, 5000):
            admin.import_tasks(pid, [{"text": f"task {i}"} for i in range(start, min(args.tasks, start + 5000))])
        admin.import_tasks(side, [{"text": f"side {i}"} for i in range(500)])
        writer = ls.LabelStudioClient(server.url, server.token)
        head = [t["id"] for t in writer.list_tasks(pid, include="id")][:HEAD]
        for start in range(0, len(head), 100):  # the last version's head, which the first push replaces
            writer.import_predictions(pid, [{"task": t, "model_version": "v0", "score": 0.5,
                                             "result": choice_result("fresh")} for t in head[start : start + 100]])
        held = {p["task"]: p["id"] for p in writer.predictions(pid)}
        side_ids = [t["id"] for t in writer.list_tasks(side, include="id")]
        saver = Saver(ls.LabelStudioClient(server.url, server.token), side_ids, args.think)
        saver.start()
        time.sleep(5)
        names = ["idle", *(phase_name(d) for d in duties)]
        phases: list[tuple[str, float, float]] = []
        written: dict[str, list[tuple[int, float, float]]] = {n: [] for n in names}
        cursor, version = 0, 0
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                began = time.monotonic()
                if name == "idle":
                    time.sleep(args.phase_seconds)
                    rows, busy = 0, 0.0
                else:
                    version += 1
                    words = name.split()
                    rows, busy, cursor = push_for(writer, pid, head, f"v{version}", float(words[1]),
                                                  args.phase_seconds, cursor, held, (words[2:] or ["patch"])[0])
                ended = time.monotonic()
                phases.append((name, began, ended))
                written[name].append((rows, busy, ended - began))
                print(json.dumps({"round": r, "phase": name, "rows": rows, "busy_s": round(busy, 2),
                                  "seconds": round(ended - began, 1), "saves_so_far": len(saver.saves)}), flush=True)
        saver.stop_flag.set()
        saver.join(30)
        by_phase: dict[str, list[float]] = {n: [] for n in names}
        for began, ended, ms in saver.saves:
            for name, p0, p1 in phases:
                if p0 <= began and ended <= p1:
                    by_phase[name].append(ms)
                    break
        result: dict = {"tasks": args.tasks, "rounds": args.rounds, "phase_seconds": args.phase_seconds,
                        "think_s": args.think, "row_group": ROW_GROUP, "phases": {},
                        "database": f"postgresql {server_version(database)}" if database else "sqlite",
                        "ls_env": args.ls_env, "sqlite_journal": journal,
                        "server": f"gunicorn, {args.wsgi_workers} workers" if args.wsgi_workers else "runserver",
                        "pinned": {"label_studio_cpus": [0], "threads": pinned,
                                   "benchmark_cpus": sorted(os.sched_getaffinity(0))} if args.pin else None}
        idle = by_phase["idle"]
        for name in names:
            ms = by_phase[name]
            rows = sum(w[0] for w in written[name])
            busy = sum(w[1] for w in written[name])
            span = sum(w[2] for w in written[name])
            entry = {"saves": len(ms), **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99)},
                     "max_ms": round(max(ms), 1), "rows_per_s": round(rows / span, 2) if span else 0.0,
                     "busy_share": round(busy / span, 3) if span else 0.0,
                     "s_per_row": round(busy / rows, 4) if rows else None}
            if name != "idle":
                boot = bootstrap_ratios(ms, idle, 2000)
                for q in (50, 90, 99):
                    entry[f"p{q}_vs_idle"] = boot[f"p{q}"]["ratio"]
                    entry[f"p{q}_vs_idle_90pct"] = boot[f"p{q}"]["ratio_90pct"]
            result["phases"][name] = entry
        result["saves_raw_ms"] = {n: [round(v, 1) for v in by_phase[n]] for n in names}
        print(json.dumps(result["phases"], indent=2))
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
