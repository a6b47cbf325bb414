"""Basic auth on every route but /health and /webhook; restart (clean and kill -9) loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from fastapi.testclient import TestClient

from suggest.config import Settings
from suggest.server import basic_auth_header, create_app
from tests.api.test_protocol import predict, setup, wait_for_version
from tests.conftest import CONFIG, PROJECT, annotation_event, task


def test_basic_auth_guards_every_route_but_health_and_webhook(tmp_path, rt_sample):
    settings = Settings.from_env({"BASIC_AUTH_USER": "ann", "BASIC_AUTH_PASS": "s3cret"}, model_dir=tmp_path)
    good, bad = basic_auth_header("ann", "s3cret"), basic_auth_header("ann", "wrong")
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        text, label = rt_sample[0]
        assert client.post("/webhook", json=annotation_event(1, 1, text, label)).status_code == 200
        calls = [
            ("post", "/setup", {"json": {"project": PROJECT, "schema": CONFIG}}),
            ("post", "/predict", {"json": {"tasks": [task(1, text)], "project": PROJECT, "label_config": CONFIG}}),
            ("get", "/versions", {}),
            ("get", "/metrics", {}),
        ]
        for method, path, kwargs in calls:
            assert getattr(client, method)(path, **kwargs).status_code == 401, path
            assert getattr(client, method)(path, headers=bad, **kwargs).status_code == 401, path
            assert getattr(client, method)(path, headers=good, **kwargs).status_code == 200, path


def test_restart_serves_the_last_version_and_keeps_every_label(settings, rt_sample):
    with TestClient(create_app(settings)) as client:
        zero = setup(client).json()["model_version"]
        for i, (t, y) in enumerate(rt_sample[:20]):
            client.post("/webhook", json=annotation_event(i + 1, i, t, y))
        version = wait_for_version(client, zero)
        before = predict(client, [task(500, rt_sample[50][0])]).json()["results"][0]
    with TestClient(create_app(settings)) as client:
        assert setup(client).json()["model_version"] == version
        after = predict(client, [task(500, rt_sample[50][0])]).json()["results"][0]
        assert after == before
        assert client.get("/metrics").json()["projects"]["7"]["labels"] == 20


def test_a_corrupt_version_folder_is_skipped_for_the_previous_one(settings, rt_sample):
    with TestClient(create_app(settings)) as client:
        zero = setup(client).json()["model_version"]
        for i, (t, y) in enumerate(rt_sample[:10]):
            client.post("/webhook", json=annotation_event(i + 1, i, t, y))
        v1 = wait_for_version(client, zero)
        client.post("/webhook", json=annotation_event(99, 99, rt_sample[10][0], rt_sample[10][1]))
        v2 = wait_for_version(client, v1)
        folder = client.app.state.engine.store.version_dir("7", v2)
    (folder / "head.npz").write_bytes(b"garbage")
    with TestClient(create_app(settings)) as client:
        assert setup(client).json()["model_version"] == v1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model_dir, port: int) -> subprocess.Popen:
    env = {**os.environ, "MODEL_DIR": str(model_dir), "SUGGEST_DEBOUNCE_SECONDS": "0.05"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "suggest", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("suggest serve did not start within 60 s")


def test_kill_9_loses_no_acknowledged_label(tmp_path, rt_sample):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(tmp_path, port)
    try:
        acknowledged = 0
        for i, (t, y) in enumerate(rt_sample[:60]):
            resp = httpx.post(f"{url}/webhook", json=annotation_event(i + 1, i, t, y), timeout=10)
            assert resp.status_code == 200
            acknowledged += 1
            if i == 45:  # likely mid-retrain: labels arrive while the trainer works
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        proc = _start_server(tmp_path, port)
        metrics = httpx.get(f"{url}/metrics", timeout=10).json()["projects"]["7"]
        assert metrics["annotations"] == acknowledged
        for i, (t, y) in enumerate(rt_sample[46:60], start=46):
            httpx.post(f"{url}/webhook", json=annotation_event(i + 1, i, t, y), timeout=10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{url}/metrics", timeout=10).json()["projects"]["7"]
            if metrics["versions"] and metrics["versions"][-1]["n_labels"] == 60:
                break
            time.sleep(0.2)
        assert metrics["labels"] == 60
        assert metrics["versions"][-1]["n_labels"] == 60
        seqs = [int(v["version"].split("-")[0][1:]) for v in metrics["versions"]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # the history continues
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
