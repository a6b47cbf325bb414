"""Load: 32 concurrent /predict clients while retrains run; no errors, bounded latency, one forward pass at a time.

The server runs in-process (uvicorn in a thread) so the test can watch the encoder: every
forward pass is wrapped to count how many run at once. The encoder serializes them with a lock
(backends/encoders.py) and torch uses at most min(cores, 4) threads, so inference never asks
for more cores than the machine has. Figures at full scale: benchmarks/hardening.py.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import httpx
import numpy as np

from suggest.config import Settings
from suggest.datasets import rotten_tomatoes
from suggest.engine import Engine
from suggest.server import create_app
from tests.conftest import CONFIG, PROJECT, annotation_event, task
from tests.hardening.test_fuzz import running

CLIENTS = 32
PER_CLIENT = 6


class ForwardCounter:
    """Wraps the encoder's forward pass; records the most that ever ran at once."""

    def __init__(self, model):
        self.inner, self.active, self.most, self.calls = model.forward, 0, 0, 0
        self.lock = threading.Lock()
        model.forward = self

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
        try:
            return self.inner(*args, **kwargs)
        finally:
            with self.lock:
                self.active -= 1


def test_32_clients_during_retrains_get_answers_and_inference_stays_serialized(tmp_path):
    import torch

    texts, labels = rotten_tomatoes()
    settings = dataclasses.replace(Settings.from_env({}, model_dir=tmp_path / "models", debounce_seconds=0.05,
                                                     max_delay_seconds=0.5), push=False)
    engine = Engine(settings, load_encoder=False)
    engine.encoder.load()
    counter = ForwardCounter(engine.encoder._model)
    engine.setup("7", CONFIG, None, None)
    with running(create_app(settings, engine=engine)) as url, httpx.Client(timeout=60) as http:
        for i in range(60):
            http.post(f"{url}/webhook", json=annotation_event(i + 1, i + 1, texts[i], labels[i])).raise_for_status()
        assert engine.trainer.wait_idle(60)
        before = len(engine.store.versions("7"))

        stop = threading.Event()

        def feed() -> None:  # new labeled texts (embedding work) and forced retrains, all along
            with httpx.Client(timeout=60) as feeder:
                i = 60
                while not stop.is_set():
                    feeder.post(f"{url}/webhook", json=annotation_event(i + 1, i + 1, texts[i], labels[i]))
                    if i % 4 == 0:
                        feeder.post(f"{url}/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
                    i += 1
                    time.sleep(0.05)

        latencies: list[float] = []
        errors: list[str] = []

        def client(k: int) -> None:
            with httpx.Client(timeout=60) as c:
                for j in range(PER_CLIENT):
                    n = 5000 + k * PER_CLIENT + j  # a text never seen: a forward pass each
                    started = time.perf_counter()
                    try:
                        resp = c.post(f"{url}/predict", json={"project": PROJECT, "tasks": [task(n, texts[n])]})
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))
                        continue
                    latencies.append(time.perf_counter() - started)
                    if resp.status_code != 200 or not resp.json()["results"][0]["result"]:
                        errors.append(f"{resp.status_code} {resp.text[:200]}")

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        time.sleep(0.5)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stop.set()
        feeder.join(30)
        assert engine.trainer.wait_idle(60)
        during = len(engine.store.versions("7")) - before
    engine.close()

    p50, p99 = (float(np.percentile(latencies, q)) for q in (50, 99))
    print(f"\n[hardening] load (in-process): {len(latencies)} predicts from {CLIENTS} clients during {during} "
          f"retrains: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; most forward passes at once: "
          f"{counter.most} of {counter.calls}; torch threads {torch.get_num_threads()} on {os.cpu_count()} cores")
    assert not errors, errors[:3]
    assert len(latencies) == CLIENTS * PER_CLIENT
    assert during >= 1, "no retrain ran while the clients were predicting"
    assert counter.most == 1, f"{counter.most} forward passes ran at once"
    assert torch.get_num_threads() <= max(1, os.cpu_count() or 1)
    assert p99 < 15.0, f"p99 {p99:.1f} s"
