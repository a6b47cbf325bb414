"""/predict latency per task type, against a real `suggest serve` process on loopback.

For each type (text classification, multi-label, entity spans, images) one project is set up,
trained from webhook annotations, and then measured:
- 1 task whose features are already cached (the task was predicted before), p50 / p95 over 50 calls;
- 100 tasks never seen before, one call (3 calls, each on new tasks; median and max).
Entity spans are also measured before training (the spaCy bootstrap path).

Data: Rotten Tomatoes snippets (classification; multi-label with label sets drawn at random,
since latency does not depend on what the labels mean), the project's own NER sentences
(tests/data/ner) and generated PNG images sent as data URIs (64x64, warm or cool colours).

Run: .venv/bin/python benchmarks/predict_latency_types.py [--out benchmarks/results/predict_latency_types.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.backend_latency import free_port, start_server  # noqa: E402
from suggest.datasets import rotten_tomatoes  # noqa: E402
from tests.samples import image_uri  # noqa: E402

PROJECT = "3.1795257467"
CLASSIFY = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
            '<Choice value="fresh"/><Choice value="rotten"/></Choices></View>')
TAGS = ('<View><Text name="text" value="$text"/><Choices name="tags" toName="text" choice="multiple">'
        '<Choice value="acting"/><Choice value="music"/><Choice value="story"/></Choices></View>')
NER = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
       '<Label value="Person"/><Label value="Organization"/><Label value="Location"/></Labels></View>')
IMAGES = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="warm"/><Choice value="cool"/></Choices></View>')




def event(ann_id: int, task: dict, result: list[dict], config: str) -> dict:
    return {"action": "ANNOTATION_CREATED",
            "annotation": {"id": ann_id, "result": result, "was_cancelled": False, "task": task["id"]},
            "task": task, "project": {"id": 3, "label_config": config}}


def choices(name: str, to: str, values: list[str]) -> list[dict]:
    return [{"from_name": name, "to_name": to, "type": "choices", "value": {"choices": values}}]


def spans(text: str, found: list[list]) -> list[dict]:
    return [{"from_name": "ner", "to_name": "text", "type": "labels",
             "value": {"start": s, "end": e, "text": text[s:e], "labels": [lb]}} for s, e, lb in found]


class Case:
    """One task type: its config, tasks (train / cached / new) and how an annotation reads."""

    def __init__(self, name: str, config: str, data: list[tuple[dict, list[dict]]]):
        self.name, self.config = name, config
        self.train = data[:200]
        self.new_sets = [[t for t, _ in data[200 + 100 * k : 300 + 100 * k]] for k in range(3)]


def cases() -> list[Case]:
    texts, labels = rotten_tomatoes()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))[:500]
    tags = ["acting", "music", "story"]
    classify = [({"id": int(i), "data": {"text": texts[i]}}, choices("sentiment", "text", [labels[i]]))
                for i in order]
    multi = [({"id": int(i), "data": {"text": texts[i]}},
              choices("tags", "text", sorted({tags[j] for j in rng.choice(3, size=rng.integers(1, 3))})))
             for i in order]
    ner_rows = [json.loads(line) for f in ("train.jsonl", "heldout.jsonl")
                for line in (ROOT / "tests" / "data" / "ner" / f).read_text().splitlines() if line.strip()]
    ner = [({"id": k + 1, "data": {"text": r["text"]}}, spans(r["text"], r["spans"])) for k, r in enumerate(ner_rows)]
    images = [({"id": k + 1, "data": {"image": image_uri(k % 2 == 0, k)}},
               choices("kind", "image", ["warm" if k % 2 == 0 else "cool"])) for k in range(500)]
    return [Case("classification (text)", CLASSIFY, classify), Case("multi-label (text)", TAGS, multi),
            Case("entity spans (text)", NER, ner), Case("image classification", IMAGES, images)]


def timed(fn: Callable[[], httpx.Response]) -> float:
    t0 = time.perf_counter()
    resp = fn()
    elapsed = time.perf_counter() - t0
    assert resp.status_code == 200, resp.text[:300]
    return elapsed


def measure(http: httpx.Client, case: Case, cached_task: dict, new_sets: list[list[dict]]) -> dict:
    def predict(tasks: list[dict]) -> httpx.Response:
        return http.post("/predict", json={"tasks": tasks, "project": PROJECT, "label_config": case.config})

    predict([cached_task])  # now its features are cached
    one = [timed(lambda: predict([cached_task])) for _ in range(50)]
    hundred = [timed(lambda s=s: predict(s)) for s in new_sets]
    return {"one_cached_p50_ms": round(statistics.median(one) * 1000, 2),
            "one_cached_p95_ms": round(float(np.percentile(one, 95)) * 1000, 2),
            "hundred_new_median_s": round(statistics.median(hundred), 3),
            "hundred_new_max_s": round(max(hundred), 3)}


def train(http: httpx.Client, case: Case) -> str:
    before = http.post("/setup", json={"project": PROJECT, "schema": case.config}).json()["model_version"]
    for k, (task, result) in enumerate(case.train):
        http.post("/webhook", json=event(k + 1, task, result, case.config))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        version = http.post("/setup", json={"project": PROJECT, "schema": case.config}).json()["model_version"]
        m = http.get("/metrics").json()["projects"]["3"]
        if version != before and not m["training"] and m["versions"] and \
                m["versions"][-1]["n_labels"] == len(case.train):
            return version
        time.sleep(0.2)
    raise RuntimeError(f"{case.name}: no version trained on all labels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "predict_latency_types.json")
    args = parser.parse_args()
    console = Console()
    rows: dict[str, dict] = {}
    for case in cases():
        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            proc = start_server(Path(tmp), port)
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
            try:
                http.post("/setup", json={"project": PROJECT, "schema": case.config})
                if case.config == NER:
                    rows["entity spans, spaCy bootstrap"] = measure(http, case, case.train[0][0], case.new_sets[:1])
                version = train(http, case)
                console.print(f"{case.name}: trained {version}")
                rows[case.name] = measure(http, case, case.train[0][0], case.new_sets)
            finally:
                http.close()
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
    table = Table(title="/predict latency per task type (real server, loopback)")
    for col in ("type", "1 cached task p50", "p95", "100 new tasks (median)", "max"):
        table.add_column(col)
    for name, r in rows.items():
        table.add_row(name, f"{r['one_cached_p50_ms']} ms", f"{r['one_cached_p95_ms']} ms",
                      f"{r['hundred_new_median_s']} s", f"{r['hundred_new_max_s']} s")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": f"{os.cpu_count()} cores", "results": rows}, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
