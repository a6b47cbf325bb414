"""What a prediction write costs in the real Label Studio at N tasks: bulk import against one row per call.

Why (issue 17): stock Label Studio 1.23 recounts the counters of every task of the project on each bulk
import (`ImportPredictionsAPI._create_legacy`), while `POST /api/predictions/` recounts only its own
task. `suggest` picks between them by timing its bulk calls (suggest.queuehead._Pace); this measures both,
and what an annotator saving into another project of the same Label Studio sees meanwhile.

Per round: five 100-row bulk imports, then 100 single-row creates, then 5 s idle; a second client saves
an annotation every 0.2 s throughout, and each save is classed by what ran during it.
`--flag` starts Label Studio with its memory-efficient import (bulk calls recount only their tasks).

Run: .venv/bin/python benchmarks/ls_import_cost.py --tasks 100000 [--flag]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suggest.labelstudio import LabelStudioClient  # noqa: E402
from tests.conftest import CONFIG  # noqa: E402
from tests.e2e.labelstudio_server import LabelStudioServer, choice_result, ensure_ls_venv, ls_venv_path  # noqa: E402

FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flag", action="store_true", help=f"start Label Studio with {FLAG}=true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    name = f"ls_import_cost_{args.tasks}{'_flag' if args.flag else ''}.json"
    out = args.out or ROOT / "benchmarks" / "results" / name
    work = Path(tempfile.mkdtemp(prefix="suggest-import-cost-"))
    ensure_ls_venv(ls_venv_path())
    server = LabelStudioServer(ls_venv_path(), work / "ls")
    server.extra_env = {FLAG: "true"} if args.flag else {}
    server.start()
    admin = server.client()
    try:
        pid = admin.create_project("import cost", CONFIG)["id"]
        side = admin.create_project("saves alongside", CONFIG)["id"]
        for start in range(0, args.tasks, 5000):
            admin.import_tasks(pid, [{"text": f"task {i}"} for i in range(start, min(args.tasks, start + 5000))])
        admin.import_tasks(side, [{"text": f"side {i}"} for i in range(500)])
        writer, saver = LabelStudioClient(server.url, server.token), LabelStudioClient(server.url, server.token)
        ids = [t["id"] for t in writer.list_tasks(str(pid), include="id")]
        side_ids = [t["id"] for t in writer.list_tasks(str(side), include="id")]
        phase, saves, stop = ["idle"], [], threading.Event()

        def save_continuously() -> None:
            i = 0
            while not stop.is_set():
                began = time.perf_counter()
                saver.request("POST", f"/api/tasks/{side_ids[i % len(side_ids)]}/annotations",
                              json={"result": choice_result("fresh")})
                saves.append((phase[0], (time.perf_counter() - began) * 1000))
                i += 1
                time.sleep(0.2)

        thread = threading.Thread(target=save_continuously, daemon=True)
        thread.start()
        time.sleep(5)

        def row(task: int, version: str) -> dict:
            return {"task": task, "model_version": version, "score": 0.5, "result": choice_result("fresh")}

        bulk_s, rows_s, cursor = [], [], 0
        for r in range(args.rounds):
            phase[0] = "bulk"
            for _ in range(5):
                began = time.perf_counter()
                writer.import_predictions(str(pid), [row(t, f"v{r}") for t in ids[cursor : cursor + 100]])
                bulk_s.append(time.perf_counter() - began)
                cursor += 100
            phase[0] = "rows"
            began = time.perf_counter()
            for t in ids[cursor : cursor + 100]:
                writer.create_prediction(str(pid), row(t, f"v{r}"))
            rows_s.append((time.perf_counter() - began) / 100)
            cursor += 100
            phase[0] = "idle"
            time.sleep(5)
        stop.set()
        thread.join()

        def pct(values: list[float], q: float) -> float:
            values = sorted(values)
            return round(values[min(len(values) - 1, int(q * len(values)))], 1)

        by_phase = {}
        for name in ("idle", "bulk", "rows"):
            ms = [v for p, v in saves if p == name]
            by_phase[name] = {"n": len(ms), "p50": pct(ms, 0.5), "p90": pct(ms, 0.9), "max": round(max(ms), 1)}
        result = {
            "tasks": args.tasks, "flag": args.flag,
            "bulk_100_rows_s": {"median": round(statistics.median(bulk_s), 3), "all": [round(s, 3) for s in bulk_s]},
            "one_row_s": {"median": round(statistics.median(rows_s), 4), "per_round": [round(s, 4) for s in rows_s]},
            "saves_ms": by_phase,
            "saves_p50_vs_idle": {k: round(by_phase[k]["p50"] / by_phase["idle"]["p50"], 2) for k in ("bulk", "rows")},
        }
        print(json.dumps(result, indent=2))
        out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
