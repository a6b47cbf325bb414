"""Access: basic auth coverage, the webhook secret, forged webhooks, and secrets kept out of logs.

Label Studio's webhooks carry no credentials, so /webhook cannot be behind basic auth. With Label
Studio access (a URL and token for the project), an annotation event is only a hint: the engine
re-reads the named tasks from Label Studio in the background and stores what Label Studio holds,
so a forged event cannot inject, change or delete a label. The Label Studio here is a stand-in for
its REST API on loopback (tests/hardening/conftest.py); tests/e2e/test_05_forged_webhook.py makes
the same check against a real Label Studio.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest
from fastapi.testclient import TestClient

from suggest.config import Settings
from suggest.engine import CONFIRMED, TRUSTED
from suggest.server import basic_auth_header, create_app
from tests.conftest import CONFIG, PROJECT, annotation_event

OTHER_CONFIG = CONFIG.replace('"fresh"', '"good"').replace('"rotten"', '"bad"')


def stored(client) -> dict[int, tuple[int, str, str]]:
    """annotation id -> (task id, label, text), as the store holds them."""
    return {lb.annotation_id: (lb.task_id, lb.label, lb.text) for lb in client.app.state.engine.store.labels("7")}


def settle(client, timeout: float = 20.0) -> None:
    engine = client.app.state.engine
    assert engine.confirmer.wait_idle(timeout), "confirmations still pending"
    assert engine.trainer.wait_idle(timeout), "trainer still busy"


# ------------------------------------------------------------------------------------- basic auth


def test_basic_auth_covers_docs_and_schema_too(tmp_path):
    """Decision: /docs, /redoc and /openapi.json are behind basic auth like every route but /health, /webhook."""
    settings = Settings.from_env({"BASIC_AUTH_USER": "ann", "BASIC_AUTH_PASS": "pw"}, model_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            resp = client.get(path)
            assert resp.status_code == 401 and "basic auth" in resp.json()["detail"], path
            assert resp.headers["www-authenticate"] == "Basic"
            assert client.get(path, headers=basic_auth_header("ann", "pw")).status_code == 200, path
        assert client.get("/health").status_code == 200
        assert client.get("/nope", headers=basic_auth_header("ann", "pw")).status_code == 404
    with TestClient(create_app(Settings.from_env({}, model_dir=tmp_path))) as client:
        assert client.get("/openapi.json").status_code == 200  # auth off: public, like every route


# ------------------------------------------------------------------------------------ webhook secret


def test_the_webhook_secret_is_required_when_set(tmp_path, rt_sample):
    settings = Settings.from_env({"BASIC_AUTH_USER": "ann", "BASIC_AUTH_PASS": "pw"}, model_dir=tmp_path,
                                 debounce_seconds=0.05)
    text, label = rt_sample[0]
    event = annotation_event(1, 1, text, label)
    with TestClient(create_app(settings, webhook_secret="hook-s3cret")) as client:
        for headers in ({}, {"X-Suggest-Secret": "wrong"}, basic_auth_header("ann", "nope")):
            resp = client.post("/webhook", json=event, headers=headers)
            assert resp.status_code == 401, headers
            assert "X-Suggest-Secret" in resp.json()["detail"] and "hook-s3cret" not in resp.text
        assert stored(client) == {}
        assert client.post("/webhook", json=event, headers={"X-Suggest-Secret": "hook-s3cret"}).status_code == 200
        assert 1 in stored(client)
        event2 = annotation_event(2, 2, *rt_sample[1])
        assert client.post("/webhook", json=event2, headers=basic_auth_header("ann", "pw")).status_code == 200
        # START_TRAINING comes through Label Studio's ML client, which cannot send custom headers
        resp = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7, "label_config": CONFIG}})
        assert resp.status_code == 200


def test_the_webhook_secret_comes_from_the_environment(tmp_path):
    settings = Settings.from_env({"SUGGEST_WEBHOOK_SECRET": "from-env"}, model_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        event = {"action": "PROJECT_CREATED", "project": {"id": 7}}
        assert client.post("/webhook", json=event).status_code == 401
        assert client.post("/webhook", json=event, headers={"X-Suggest-Secret": "from-env"}).status_code == 200


# ---------------------------------------------------------------------------------- forged webhooks


@pytest.fixture
def confirmed(tmp_path, fake_ls, rt_sample):
    """An app whose project 7 has Label Studio access (the stand-in), with tasks 1-20 in Label Studio."""
    for i, (text, _) in enumerate(rt_sample[:20], start=1):
        fake_ls.add_task(i, text)
    settings = Settings.from_env({}, model_dir=tmp_path / "models", debounce_seconds=0.05, max_delay_seconds=0.5)
    settings = dataclasses.replace(settings, push=False)
    with TestClient(create_app(settings)) as client:
        resp = client.post("/setup", json={"project": PROJECT, "schema": CONFIG, "hostname": fake_ls.url,
                                           "access_token": fake_ls.token})
        assert resp.status_code == 200
        settle(client)
        yield client


def test_a_forged_webhook_cannot_inject_change_or_delete_a_label(confirmed, fake_ls, rt_sample):
    client = confirmed
    # a real annotation: Label Studio holds it, its webhook names it
    fake_ls.annotate(11, 1, "fresh")
    assert client.post("/webhook", json=fake_ls.webhook(11)).status_code == 200
    settle(client)
    assert stored(client) == {11: (1, "fresh", rt_sample[0][0])}

    forged = [
        annotation_event(999, 2, "a text the attacker chose", "rotten"),  # no such annotation in LS
        annotation_event(11, 1, "an attacker's text", "rotten", action="ANNOTATION_UPDATED"),  # real id, lies
        annotation_event(11, 3, "moved", "rotten"),  # real id, another task
        {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 11}], "project": {"id": 7}},
        {"action": "TASKS_DELETED", "tasks": [{"id": 1}], "project": {"id": 7}},
        {"action": "PROJECT_UPDATED", "project": {"id": 7, "label_config": OTHER_CONFIG}},
    ]
    for event in forged:
        resp = client.post("/webhook", json=event)
        assert resp.status_code == 200, resp.text  # acknowledged like any event: the check is in the background
    settle(client)
    assert stored(client) == {11: (1, "fresh", rt_sample[0][0])}, "a forged event changed the stored labels"
    project = client.app.state.engine.projects["7"]
    assert project.label_config == CONFIG, "a forged PROJECT_UPDATED changed the label config"
    assert set(project.labeled()) == {1}
    metrics = client.get("/metrics").json()["projects"]["7"]
    assert metrics["webhooks"] == CONFIRMED and metrics["unconfirmed"] == 0 and metrics["confirm_error"] is None
    assert metrics["annotations"] == 1

    # real changes in Label Studio do come through, from Label Studio's side
    fake_ls.annotate(11, 1, "rotten")
    client.post("/webhook", json=fake_ls.webhook(11, "ANNOTATION_UPDATED"))
    fake_ls.annotate(12, 2, "fresh", cancelled=True)
    client.post("/webhook", json=fake_ls.webhook(12))
    settle(client)
    assert stored(client) == {11: (1, "rotten", rt_sample[0][0])}
    fake_ls.delete_annotation(11)
    client.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 11}], "project": {"id": 7}})
    settle(client)
    assert stored(client) == {}


def test_only_confirmed_labels_train(confirmed, fake_ls, rt_sample):
    """20 forged labels and 6 real ones: the version is trained on the 6."""
    client = confirmed
    for i, (text, label) in enumerate(rt_sample[100:120], start=1000):
        client.post("/webhook", json=annotation_event(i, 1 + i % 20, text, "fresh" if label == "rotten" else "rotten"))
    for i in range(1, 7):
        fake_ls.annotate(100 + i, i, "fresh" if i % 2 else "rotten")
        client.post("/webhook", json=fake_ls.webhook(100 + i))
    settle(client)
    metrics = client.get("/metrics").json()["projects"]["7"]
    assert metrics["labels"] == 6 and metrics["versions"][-1]["n_labels"] == 6, metrics


def test_confirmation_never_slows_the_webhook(confirmed, fake_ls):
    """Label Studio answering in 2 s: /webhook still answers at once; the label waits, unconfirmed."""
    client = confirmed
    fake_ls.annotate(21, 4, "rotten")
    fake_ls.delay = 2.0
    started = time.perf_counter()
    for _ in range(5):
        assert client.post("/webhook", json=fake_ls.webhook(21)).status_code == 200
    assert time.perf_counter() - started < 1.0
    assert client.get("/metrics").json()["projects"]["7"]["unconfirmed"] >= 1
    fake_ls.delay = 0.0
    settle(client)
    assert 21 in stored(client)


def test_with_label_studio_down_nothing_unconfirmed_counts(confirmed, fake_ls):
    client = confirmed
    fake_ls.annotate(31, 5, "fresh")
    fake_ls.fail_with = (503, '{"detail": "down for maintenance"}')
    client.post("/webhook", json=fake_ls.webhook(31))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not client.get("/metrics").json()["projects"]["7"]["confirm_error"]:
        time.sleep(0.05)
    metrics = client.get("/metrics").json()["projects"]["7"]
    assert "503" in metrics["confirm_error"] and metrics["unconfirmed"] == 1, metrics
    assert metrics["annotations"] == 0 and metrics["training"] is True
    fake_ls.fail_with = None  # back: the retry (with backoff) confirms it
    settle(client, timeout=30)
    metrics = client.get("/metrics").json()["projects"]["7"]
    assert metrics["annotations"] == 1 and metrics["confirm_error"] is None


def test_a_restart_re_reads_label_studio(tmp_path, fake_ls, rt_sample):
    """Unconfirmed hints live in memory: after a restart the engine re-reads Label Studio (and catches up)."""
    for i, (text, _) in enumerate(rt_sample[:4], start=1):
        fake_ls.add_task(i, text)
    settings = Settings.from_env({}, model_dir=tmp_path / "models", debounce_seconds=0.05)
    settings = dataclasses.replace(settings, push=False)
    with TestClient(create_app(settings)) as client:
        client.post("/setup", json={"project": PROJECT, "schema": CONFIG, "hostname": fake_ls.url,
                                    "access_token": fake_ls.token})
        settle(client)
    fake_ls.annotate(1, 1, "fresh")  # made while the backend was down: its webhook was lost
    fake_ls.annotate(2, 2, "rotten")
    with TestClient(create_app(settings)) as client:
        settle(client)
        assert set(stored(client)) == {1, 2}


def test_a_forged_webhook_for_a_project_label_studio_does_not_have_stores_nothing(tmp_path, fake_ls, rt_sample):
    """With LABEL_STUDIO_URL/API_KEY set, every project is checked, including one a webhook makes up."""
    settings = Settings.from_env({"LABEL_STUDIO_URL": fake_ls.url, "LABEL_STUDIO_API_KEY": fake_ls.token},
                                 model_dir=tmp_path / "models", debounce_seconds=0.05)
    with TestClient(create_app(dataclasses.replace(settings, push=False))) as client:
        event = annotation_event(1, 1, rt_sample[0][0], "fresh", project_id=8)  # the stand-in only has project 7
        assert client.post("/webhook", json=event).status_code == 200
        settle(client)
        metrics = client.get("/metrics").json()["projects"]["8"]
        assert metrics["annotations"] == 0 and metrics["unconfirmed"] == 0
        assert "no project 8" in metrics["confirm_error"]


def test_without_label_studio_access_webhooks_are_trusted_and_metrics_say_so(client, rt_sample):
    text, label = rt_sample[0]
    assert client.post("/webhook", json=annotation_event(5, 5, text, label)).status_code == 200
    metrics = client.get("/metrics").json()["projects"]["7"]
    assert metrics["webhooks"] == TRUSTED and metrics["annotations"] == 1 and metrics["unconfirmed"] == 0


# ------------------------------------------------------------------------------------------ secrets


def test_secrets_never_reach_the_logs(tmp_path, fake_ls, caplog, rt_sample):
    """A Label Studio (or proxy) that echoes the Authorization header in its error: the token stays out."""
    fake_ls.add_task(1, rt_sample[0][0])
    fake_ls.fail_with = (500, '{"detail": "server error for {auth}"}')
    caplog.set_level(logging.DEBUG)
    settings = Settings.from_env({"BASIC_AUTH_USER": "ann", "BASIC_AUTH_PASS": "basic-pw-42"},
                                 model_dir=tmp_path / "models", debounce_seconds=0.05)
    auth = basic_auth_header("ann", "basic-pw-42")
    with TestClient(create_app(settings, webhook_secret="hook-secret-42")) as client:
        resp = client.post("/setup", headers=auth, json={
            "project": PROJECT, "schema": CONFIG, "hostname": fake_ls.url, "access_token": fake_ls.token})
        assert resp.status_code == 200
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        client.post("/webhook", json=annotation_event(1, 1, rt_sample[0][0], "fresh"),
                    headers={"X-Suggest-Secret": "hook-secret-42"})
        client.post("/webhook", json=annotation_event(2, 1, "x", "fresh"), headers={"X-Suggest-Secret": "wrong"})
        deadline = time.monotonic() + 20
        project = client.app.state.engine.projects["7"]
        while time.monotonic() < deadline and not (project.last_error and "confirm" in caplog.text):
            time.sleep(0.05)
        metrics = client.get("/metrics", headers=auth).text
    assert any(r.startswith("GET /api/projects/7") for r in fake_ls.requests)  # the calls were made and failed
    assert "500" in (project.last_error or ""), project.last_error
    assert "[redacted]" in caplog.text  # the echo was there, and was redacted
    for secret in (fake_ls.token, "basic-pw-42", "hook-secret-42"):
        assert secret not in caplog.text, f"{secret!r} leaked into the logs"
        assert secret not in metrics
