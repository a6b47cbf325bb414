"""Signed webhooks (issue 20): Label Studio's own events skip the re-read; anyone else's still get one.

Webhooks carry no credentials, so every annotation event was re-read from Label Studio before it
counted: at 10,000 labels one small export every ~0.5 s of continuous saves, and the slowest saves
met those exports. On connecting, suggest now puts a per-project key in the headers of the webhook
Label Studio made for it; an event that carries the key came from that Label Studio and is stored as
sent. The Label Studio here is the loopback stand-in of tests/hardening/conftest.py; the real one is
checked in tests/e2e/test_05_forged_webhook.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from suggest.config import Settings
from suggest.labelstudio import KEY_HEADER
from suggest.server import create_app
from tests.conftest import CONFIG, PROJECT


def stored(engine) -> dict[int, str]:
    return {lb.annotation_id: lb.label for lb in engine.store.labels("7")}


def connect(tmp_path, fake_ls, rt_sample, **overrides):
    for i, (text, _) in enumerate(rt_sample[:12], start=1):
        fake_ls.add_task(i, text)
    settings = Settings.from_env({}, model_dir=tmp_path / "models", debounce_seconds=0.05, max_delay_seconds=0.5)
    client = TestClient(create_app(dataclasses.replace(settings, push=False, **overrides)))
    client.__enter__()
    resp = client.post("/setup", json={"project": PROJECT, "schema": CONFIG, "hostname": fake_ls.url,
                                       "access_token": fake_ls.token})
    assert resp.status_code == 200, resp.text
    engine = client.app.state.engine
    assert engine.confirmer.wait_idle(20) and engine.trainer.wait_idle(60)
    return client, engine


@pytest.fixture
def signed(tmp_path, fake_ls, rt_sample):
    """Project 7 connected to the stand-in, which holds one webhook for this backend: suggest signs it."""
    fake_ls.add_hook("http://suggest.internal:9090/webhook", {"X-Other": "kept"})
    client, engine = connect(tmp_path, fake_ls, rt_sample)
    yield client, engine
    client.__exit__(None, None, None)


def test_connecting_puts_a_key_in_the_backend_webhook_and_keeps_its_other_headers(signed, fake_ls):
    client, _ = signed
    headers = fake_ls.hooks[0]["headers"]
    assert headers.get("X-Other") == "kept"
    assert len(headers.get(KEY_HEADER, "")) >= 40, headers
    entry = client.get("/metrics").json()["projects"]["7"]
    assert entry["webhooks"].startswith("signed"), entry["webhooks"]
    assert headers[KEY_HEADER] not in client.get("/metrics").text, "the key must never be shown"


def test_a_signed_event_is_stored_without_a_re_read(signed, fake_ls):
    client, engine = signed
    key = fake_ls.hooks[0]["headers"][KEY_HEADER]
    exports = len(fake_ls.exports)
    for i in (1, 2, 3):
        fake_ls.annotate(i, i, "fresh" if i % 2 else "rotten")
        resp = client.post("/webhook", json=fake_ls.webhook(i), headers={KEY_HEADER: key})
        assert resp.status_code == 200, resp.text
    assert engine.confirmer.wait_idle(20) and engine.trainer.wait_idle(60)
    assert stored(engine) == {1: "fresh", 2: "rotten", 3: "fresh"}
    assert len(fake_ls.exports) == exports, "a signed event was re-read from Label Studio"
    assert client.get("/metrics").json()["projects"]["7"]["signed_events"] == 3


def test_an_event_with_a_wrong_key_is_re_read_and_a_forged_label_is_not_stored(signed, fake_ls):
    client, engine = signed
    key = fake_ls.hooks[0]["headers"][KEY_HEADER]
    fake_ls.annotate(1, 1, "fresh")
    forged = fake_ls.webhook(1)
    forged["annotation"]["result"][0]["value"]["choices"] = ["rotten"]  # Label Studio holds "fresh"
    exports = len(fake_ls.exports)
    for wrong in (key[:-1] + ("x" if key[-1] != "x" else "y"), "", key.upper() if key.upper() != key else "A"):
        assert client.post("/webhook", json=forged, headers={KEY_HEADER: wrong}).status_code == 200
    assert engine.confirmer.wait_idle(20) and engine.trainer.wait_idle(60)
    assert stored(engine) == {1: "fresh"}, "a webhook without the right key was stored as sent"
    assert len(fake_ls.exports) > exports
    assert client.get("/metrics").json()["projects"]["7"]["signed_events"] == 0


def test_the_key_survives_a_restart_and_stops_counting_when_the_project_moves(signed, fake_ls, tmp_path):
    client, engine = signed
    key = fake_ls.hooks[0]["headers"][KEY_HEADER]
    client.__exit__(None, None, None)
    settings = Settings.from_env({}, model_dir=tmp_path / "models", debounce_seconds=0.05, max_delay_seconds=0.5)
    with TestClient(create_app(dataclasses.replace(settings, push=False))) as again:
        engine = again.app.state.engine
        assert engine.signed("7", key), "the stored key no longer counts after a restart"
        assert engine.confirmer.wait_idle(20)
        assert fake_ls.hooks[0]["headers"][KEY_HEADER] == key, "a restart replaced a key the webhook still holds"
        # basic auth is off: an authenticated move is not possible here, so move the stored access directly
        engine._credentials["7"] = ("http://127.0.0.2:1", fake_ls.token)
        assert not engine.signed("7", key), "a key set on one host counted for another"
    client.__enter__()  # the fixture closes it again


def test_no_key_when_the_project_has_two_backend_webhooks_on_other_ports(tmp_path, fake_ls, rt_sample):
    fake_ls.add_hook("http://a.internal:9191/webhook")
    fake_ls.add_hook("http://b.internal:9292/webhook")
    client, engine = connect(tmp_path, fake_ls, rt_sample)
    try:
        assert all(KEY_HEADER not in h["headers"] for h in fake_ls.hooks), "the key went to another backend"
        assert client.get("/metrics").json()["projects"]["7"]["webhooks"].startswith("confirmed")
    finally:
        client.__exit__(None, None, None)


def test_signing_can_be_turned_off(tmp_path, fake_ls, rt_sample):
    fake_ls.add_hook("http://suggest.internal:9090/webhook")
    client, _ = connect(tmp_path, fake_ls, rt_sample, sign_webhooks=False)
    try:
        assert KEY_HEADER not in fake_ls.hooks[0]["headers"]
        assert client.get("/metrics").json()["projects"]["7"]["webhooks"].startswith("confirmed")
    finally:
        client.__exit__(None, None, None)


def test_a_signed_event_passes_the_operator_secret_check(tmp_path, fake_ls, rt_sample):
    """With SUGGEST_WEBHOOK_SECRET set, an event with neither secret nor key is refused; the key is enough."""
    fake_ls.add_hook("http://suggest.internal:9090/webhook")
    client, engine = connect(tmp_path, fake_ls, rt_sample, webhook_secret="operator-secret")
    try:
        key = fake_ls.hooks[0]["headers"][KEY_HEADER]
        fake_ls.annotate(1, 1, "rotten")
        assert client.post("/webhook", json=fake_ls.webhook(1)).status_code == 401
        assert client.post("/webhook", json=fake_ls.webhook(1), headers={KEY_HEADER: key}).status_code == 200
        assert engine.trainer.wait_idle(60)
        assert stored(engine) == {1: "rotten"}
    finally:
        client.__exit__(None, None, None)


def test_during_signed_saves_the_count_check_waits_for_the_pause(signed, fake_ls, monkeypatch):
    """START_TRAINING's sync reads the project to compare counts; while signed events arrive it reads nothing and
    compares once annotators pause (an annotation that came with no webhook is still found then)."""
    import suggest.engine

    client, engine = signed
    monkeypatch.setattr(suggest.engine, "WEBHOOK_GRACE", 1.0)
    key = fake_ls.hooks[0]["headers"][KEY_HEADER]
    project = engine.projects["7"]
    fake_ls.annotate(1, 1, "fresh")
    assert client.post("/webhook", json=fake_ls.webhook(1), headers={KEY_HEADER: key}).status_code == 200
    fake_ls.annotate(2, 2, "rotten")  # its webhook never comes
    reads = fake_ls.requests.count("GET /api/projects/7")
    assert engine.sync(project, defer_reread=True)
    assert fake_ls.requests.count("GET /api/projects/7") == reads, "the project was read while signed saves came"
    assert engine.trainer.wait_idle(30)  # the sync it queued for the pause
    assert fake_ls.requests.count("GET /api/projects/7") > reads
    assert stored(engine) == {1: "fresh", 2: "rotten"}, "the annotation with no webhook was not found at the pause"
