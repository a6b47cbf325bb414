"""Start-up: /health and /setup answer in milliseconds while the encoder loads, and /health says when it can predict.

Label Studio gives /health 1 s and /setup 3 s (contract doc section 10) and calls both before almost
every batch, so they must not wait on the encoder: torch, transformers and the weights take
several seconds to load on a small machine, and a load that holds the GIL (a big extension module's
import) stalls every request meanwhile. /health keeps "status": "UP" (all Label Studio checks is a
200 with JSON) and says "model": "loading" until the encoder is ready.
"""

from __future__ import annotations

import time

import httpx
import numpy as np

from tests.conftest import CONFIG


def probe_startup(url: str, timeout: float = 90.0) -> dict:
    """Poll /health every 20 ms (and /setup every 10th round) from the first answer until the model is ready."""
    health: list[tuple[float, str]] = []  # (seconds, model state)
    setup: list[float] = []
    deadline = time.monotonic() + timeout
    body = {"project": "3.1795257467", "schema": CONFIG, "hostname": None, "access_token": None}
    with httpx.Client(base_url=url, timeout=5.0) as http:
        i = 0
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            state = http.get("/health").json()
            health.append((time.perf_counter() - t0, state.get("model", "")))
            if i % 10 == 0:
                t0 = time.perf_counter()
                assert http.post("/setup", json=body).status_code == 200
                setup.append(time.perf_counter() - t0)
            if state.get("model") == "ready":
                break
            i += 1
            time.sleep(0.02)
    ms = np.asarray([s for s, _ in health]) * 1000
    return {"states": [m for _, m in health], "health_ms": ms, "setup_ms": np.asarray(setup) * 1000}


def test_health_and_setup_answer_in_milliseconds_while_the_encoder_loads(server):
    server.start(timeout=60)
    got = probe_startup(server.url)
    states = got["states"]
    assert states[-1] == "ready", states[-5:]
    assert set(states) <= {"loading", "ready"}, set(states)
    health, setup = got["health_ms"], got["setup_ms"]
    # A load that holds the GIL shows as answers of 100-250 ms; on the event loop /health takes a few ms.
    assert np.percentile(health, 99) < 50, f"/health p99 {np.percentile(health, 99):.0f} ms while loading"
    assert setup.max() < 500, f"/setup took up to {setup.max():.0f} ms while the encoder loaded"
    first = httpx.post(f"{server.url}/predict", timeout=30, json={
        "project": "3.1795257467", "label_config": CONFIG, "tasks": [{"id": 1, "data": {"text": "a fine film"}}]})
    assert first.status_code == 200 and first.json()["results"][0]["result"]


def test_health_says_loading_until_the_encoder_can_answer(settings):
    """Label Studio only needs "status": "UP" with a 200; "model" tells an operator (and a script) when
    /predict will answer without waiting for the encoder."""
    from fastapi.testclient import TestClient

    from backends.encoders import TextEncoder
    from suggest.engine import Engine
    from suggest.server import create_app

    engine = Engine(settings, load_encoder=False)
    engine.encoder = TextEncoder()  # a fresh encoder of its own: not loaded until asked
    try:
        with TestClient(create_app(settings, engine=engine)) as client:
            body = client.get("/health").json()
            assert body["status"] == "UP" and body["model"] == "loading" and body["encoder_loaded"] is False
            engine.encoder.load()
            body = client.get("/health").json()
            assert body["status"] == "UP" and body["model"] == "ready" and body["encoder_loaded"] is True
    finally:
        engine.close()
