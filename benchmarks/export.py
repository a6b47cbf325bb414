"""Export time and memory at 100,000 annotations, per format (issue 18).

Builds a store with N annotations (default 100,000: 50,000 tasks, two annotators each, a single-choice
control and an entity-spans control per annotation, texts of 80-250 characters), publishes a version,
edits 5% of the annotations and deletes 1% (so the history holds more than the current state), then
runs `suggest.export` for each format in a fresh process and records wall time, the process's peak RSS
(and its RSS before the export, after imports and reading the labels), and the file size. The same
for `--version` (the snapshot rebuilt from the history) in jsonl.

    nice -n 10 .venv/bin/python benchmarks/export.py [--annotations 100000] [--out benchmarks/results/export.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text"><Choice value="fresh"/><Choice value="rotten"/></Choices>'
    '<Labels name="ner" toName="text"><Label value="PER"/><Label value="ORG"/><Label value="LOC"/></Labels></View>'
)
FORMATS = ("jsonl", "csv", "conll", "parquet", "label-studio")
WORDS = ("the film was a quiet and moving portrait of grief with sharp dialogue but its pacing drags in the "
         "middle act and the score never lands while the lead gives a performance worth seeing").split()
NAMES = [("Ada Lovelace", "PER"), ("Acme Corp", "ORG"), ("Paris", "LOC"), ("Grace Hopper", "PER"),
         ("Initech", "ORG"), ("São Paulo", "LOC")]


def build(model_dir: Path, n_annotations: int, seed: int = 0) -> dict:
    from suggest.schema import Label, Span
    from suggest.store import ProjectRecord, Store

    rng = random.Random(seed)
    store = Store(model_dir)
    store.save_project(ProjectRecord("1", CONFIG, None, None))
    n_tasks = n_annotations // 2
    started = time.perf_counter()
    batch: list = []
    ann = 0
    for t in range(n_tasks):
        name, tag = NAMES[t % len(NAMES)]
        words = rng.choices(WORDS, k=rng.randint(12, 40))
        text = f"{name} says " + " ".join(words) + "."
        for who in (1, 2):
            ann += 1
            label = rng.choice(("fresh", "rotten"))
            spans = (Span(0, len(name), tag, name),) if rng.random() < 0.8 else ()
            stamp = f"2026-11-29T10:{ann // 60 % 60:02d}:{ann % 60:02d}Z"
            for control, answer in (("sentiment", label), ("ner", spans)):
                batch.append(Label(t + 1, ann, answer, text, False, stamp, control, who, stamp, 3.0))
        if len(batch) >= 20_000:
            store.upsert_labels("1", batch)
            batch = []
    if batch:
        store.upsert_labels("1", batch)
    build_s = time.perf_counter() - started
    store.publish_version("1", "v1-bench", lambda f: (f / "w").write_text("w"), n_labels=n_tasks, train_seconds=0)
    # later edits (5%) and deletions (1%): the snapshot of v1 must be rebuilt from the history
    labels = store.labels("1")
    by_ann: dict[int, list] = {}
    for lb in labels:
        by_ann.setdefault(lb.annotation_id, []).append(lb)
    ids = sorted(by_ann)
    edited = rng.sample(ids, len(ids) // 20)
    flip = {"fresh": "rotten", "rotten": "fresh"}
    changes = []
    for a in edited:
        for lb in by_ann[a]:
            value = flip[lb.label] if lb.control == "sentiment" else lb.label
            changes.append(Label(lb.task_id, a, value, lb.text, False, "2026-11-30T00:00:00Z", lb.control,
                                 lb.annotator, lb.created_at, lb.lead_time))
    store.upsert_labels("1", changes)
    store.delete_annotations("1", rng.sample(ids, len(ids) // 100))
    info = {"tasks": n_tasks, "annotations": n_annotations, "build_seconds": round(build_s, 1),
            "history_events": store.history_head("1"), "edited": len(edited), "deleted": len(ids) // 100,
            "store_mb": round(sum(p.stat().st_size for p in model_dir.glob("suggest.sqlite3*")) / 2**20, 1)}
    store.close()
    return info


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import suggest
from suggest.export import export, read_labels
from suggest.labelstudio import parse_controls
from suggest.store import Store
import suggest.project  # noqa: F401  (the consensus rule; imported here so the timings below hold no imports)
fmt, version, out = {fmt!r}, {version!r}, {out!r}
t0 = time.perf_counter()
store = Store({model_dir!r})
schemas = parse_controls(store.project("1").label_config)
labels = read_labels(store, "1", version)
read_s = time.perf_counter() - t0
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t1 = time.perf_counter()
rows = export(labels, schemas, fmt, out)
write_s = time.perf_counter() - t1
print(json.dumps({{"read_seconds": read_s, "write_seconds": write_s, "total_seconds": time.perf_counter() - t0,
                  "rows": rows, "labels": len(labels), "peak_rss_mb_before_export": rss_before / 1024,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(model_dir: Path, fmt: str, version: str | None, folder: Path) -> dict:
    ext = {"label-studio": "json", "conll": "conll"}.get(fmt, fmt)
    out = folder / f"export-{fmt}{'-' + version if version else ''}.{ext}"
    code = CHILD.format(root=str(ROOT), fmt=fmt, version=version, out=str(out), model_dir=str(model_dir))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    got = {k: round(v, 2) if isinstance(v, float) else v for k, v in got.items()}
    return {"format": fmt, "version": version, **got, "process_wall_seconds": round(wall, 2),
            "file_mb": round(out.stat().st_size / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "export.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="suggest-export-bench-") as tmp:
        model_dir = Path(tmp) / "models"
        info = build(model_dir, args.annotations)
        print(json.dumps(info), flush=True)
        runs = []
        for fmt in FORMATS:
            runs.append(measure(model_dir, fmt, None, Path(tmp)))
            print(json.dumps(runs[-1]), flush=True)
        runs.append(measure(model_dir, "jsonl", "v1-bench", Path(tmp)))
        print(json.dumps(runs[-1]), flush=True)
    result = {"what": "suggest export at scale (benchmarks/export.py)", "store": info, "runs": runs,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average": [round(x, 1) for x in os.getloadavg()],
                          "niceness": os.nice(0), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
              "note": "peak RSS is the export process's own (ru_maxrss), including Python, numpy and pyarrow imports; "
                      "'before export' is after reading the labels from the store"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
