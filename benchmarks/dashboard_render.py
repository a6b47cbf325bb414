"""Dashboard render time at 100 versions and 100,000 labelled tasks (issue 19).

A real server (FastAPI TestClient around the real engine, encoder and store) first trains one real
version on 40 Rotten Tomatoes labels and computes its quality and standing reports. The store is then
grown to 100,000 annotations (5 annotators, 30 days) and 100 versions (copies of the trained version's
folder with their own standing reports, so the learning curve has 100 points), the server restarts on
it, and the dashboard pages are timed. The last version's fingerprint matches the grown labelled set,
so the restarted server is idle (nothing retrains) and the figures are the page's own cost.

    python benchmarks/dashboard_render.py [--tasks 100000] [--versions 100] [--repeat 20]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402

from suggest.config import Settings  # noqa: E402
from suggest.datasets import rotten_tomatoes  # noqa: E402
from suggest.labelstudio import parse_controls  # noqa: E402
from suggest.project import labels_fingerprint, open_project  # noqa: E402
from suggest.schema import Label  # noqa: E402
from suggest.server import create_app  # noqa: E402
from suggest.store import Store  # noqa: E402
from tests.conftest import CONFIG, PROJECT, annotation_event  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "dashboard_render.json"


def _wait(client: TestClient, done, what: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = client.get("/metrics").json()["projects"].get("7") or {}
        if done(m):
            return m
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {what}: versions {len(m.get('versions', []))}, training "
                     f"{m.get('training')}, labels {m.get('labels')}, model {m.get('model_version')}")


def _seed(model_dir: Path, texts: list[str], labels: list[str]) -> None:
    settings = Settings.from_env({}, model_dir=model_dir, debounce_seconds=0.05, max_delay_seconds=0.5)
    with TestClient(create_app(settings)) as client:
        client.post("/setup", json={"project": PROJECT, "schema": CONFIG})
        for i in range(40):
            event = annotation_event(i + 1, 1000 + i, texts[i], labels[i])
            event["annotation"]["completed_by"] = 1 + i % 2
            client.post("/webhook", json=event)
        _wait(client, lambda m: m.get("labels") == 40 and (m.get("quality") or {}).get("model_version")
              == m.get("model_version") and (m.get("standing") or {}).get("model_version") == m.get("model_version"),
              "the first version's reports")


def _grow(model_dir: Path, n_tasks: int, n_versions: int, texts: list[str], classes: list[str]) -> None:
    store = Store(model_dir)
    pid = "7"
    rng = random.Random(0)
    start = datetime(2026, 10, 30, tzinfo=UTC)
    rows = []
    for i in range(n_tasks):
        at = (start + timedelta(seconds=i * 30 * 86400 / n_tasks)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rows.append(Label(200_000 + i, 500_000 + i, rng.choice(classes), f"{texts[i % len(texts)]} #{i}",
                          control="sentiment", annotator=1 + i % 5, created_at=at, updated_at=at, lead_time=3.0))
    store.upsert_labels(pid, rows)
    record = store.project(pid)
    project = open_project(store, record, parse_controls(record.label_config))
    fingerprint = labels_fingerprint(project.labeled("sentiment"))
    first = store.versions(pid)[-1]
    folder = store.version_dir(pid, first.version)
    standing = store.standing(pid) or {}
    quality = store.quality(pid) or {}
    seq0 = store.next_seq(pid)
    total = 40 + n_tasks
    last = None
    for k in range(n_versions - 1):
        n_labels = 40 + round((total - 40) * (k + 1) / (n_versions - 1))
        info = dict(first.info, fingerprint=fingerprint if k == n_versions - 2 else f"bench{k}")
        version = f"v{seq0 + k}-bench{k:02d}"
        last = store.publish_version(pid, version, lambda d: shutil.copytree(folder, d, dirs_exist_ok=True),
                                     n_labels=n_labels, train_seconds=1.0, info=info)
        report = copy.deepcopy(standing)
        acc = 0.9 - 0.3 * (40 / n_labels) ** 0.5
        for key in ("out_of_fold", "audit", "agreement"):
            est = (report.get("estimates") or {}).get(key)
            if isinstance(est, dict):
                est.update(estimate=round(acc, 4), low=round(acc - 0.02, 4), high=round(acc + 0.02, 4), n=n_labels)
        report.update(version=version, labels=n_labels)
        if isinstance(report.get("stopping"), dict):
            report["stopping"]["kappa"] = round(min(0.999, 0.8 + k / n_versions / 4), 4)
        store.put_standing(pid, version, last.seq, n_labels, [], report)
    quality = dict(quality, model_version=last.version)
    store.put_quality(pid, last.version, quality)
    store.close()


def _time(client: TestClient, path: str, repeat: int) -> dict:
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        size = len(response.content)
    times.sort()
    return {"n": repeat, "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1),
            "max_ms": round(times[-1], 1), "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="build the store here, or reuse the one a run left there")
    args = parser.parse_args()
    texts, labels = rotten_tomatoes()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.keep or Path(tmp) / "models"
        t0 = time.perf_counter()
        if not (model_dir / "suggest.sqlite3").exists():
            _seed(model_dir, texts, labels)
            _grow(model_dir, args.tasks, args.versions, texts, sorted(set(labels)))
        setup = time.perf_counter() - t0
        settings = Settings.from_env({}, model_dir=model_dir)
        with TestClient(create_app(settings)) as client:
            m = _wait(client, lambda m: len(m.get("versions", [])) == args.versions and not m.get("training"),
                      "the restarted server to be idle")
            client.get("/ui/projects/7")  # first render: templates compile
            result = {
                "what": __doc__.splitlines()[0],
                "tasks_labelled": m["labels"], "annotations": m["annotations"], "versions": len(m["versions"]),
                "project_page": _time(client, "/ui/projects/7", args.repeat),
                "project_list": _time(client, "/ui", args.repeat),
                "metrics_json": _time(client, "/metrics?project=7", args.repeat),
                "curve_points": client.get("/ui/projects/7").text.count('data-series="out-of-fold"'),
                "setup_seconds": round(setup, 1),
                "machine": "2 cores (this task's CPU machine), TestClient in-process",
                "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
