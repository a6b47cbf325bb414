"""The security review's findings (issue 11), each as the probe that found it.

Port 9090 is usually reachable by anyone with auth off, so every unauthenticated request here is a
stranger's: it must not get the Label Studio token sent to its host, replace stored labels, change a
config, or make the backend fetch what it chooses. Label Studio is the stand-in from conftest (the
real-server check of the confirmation flow is tests/e2e/test_05_forged_webhook.py); an attacker's host
is a second stand-in that records every Authorization header it receives.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import threading

import pytest
from fastapi.testclient import TestClient

from suggest.config import Settings
from suggest.engine import Engine
from suggest.server import basic_auth_header, create_app
from suggest.store import Store, StoreLocked
from tests.conftest import CONFIG, PROJECT, task
from tests.hardening.conftest import FakeLabelStudio, free_port
from tests.hardening.test_access import OTHER_CONFIG, settle, stored


@pytest.fixture
def attacker():
    host = FakeLabelStudio(token="attacker-token")
    yield host
    host.close()


def make_settings(tmp_path, env: dict | None = None, **overrides) -> Settings:
    settings = Settings.from_env(env or {}, model_dir=tmp_path / "models", debounce_seconds=0.05,
                                 max_delay_seconds=0.5)
    return dataclasses.replace(settings, push=False, **overrides)


def connect(client: TestClient, hostname: str | None, token: str | None, *, config: str = CONFIG, headers=None):
    return client.post("/setup", headers=headers or {}, json={
        "project": PROJECT, "schema": config, "hostname": hostname, "access_token": token})


def labelled(fake_ls: FakeLabelStudio, rt_sample, n: int = 6) -> None:
    for i, (text, _) in enumerate(rt_sample[:n], start=1):
        fake_ls.add_task(i, text)
        fake_ls.annotate(100 + i, i, "fresh" if i % 2 else "rotten")


def label_studio_state(client: TestClient, timeout: float = 10.0) -> dict:
    """Project 7's `label_studio` entry in /metrics once it says unreachable (or as it is after `timeout`)."""
    for _ in range(int(timeout / 0.1)):
        ls = client.get("/metrics").json()["projects"]["7"]["label_studio"]
        if ls["reachable"] is False:
            break
        threading.Event().wait(0.1)
    return ls


def never_got(host: FakeLabelStudio, secret: str) -> bool:
    return not any(secret in header for header in host.auth_seen)


# ------------------------------------------------------------------------------ token theft via /setup


def test_a_setup_with_only_a_new_hostname_never_gets_the_stored_token(tmp_path, fake_ls, attacker, rt_sample):
    """Today's store merged hostname and token separately: after a restart the real token went to the new host."""
    labelled(fake_ls, rt_sample)
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        assert connect(client, fake_ls.url, fake_ls.token).status_code == 200
        settle(client)
        assert connect(client, attacker.url, None).status_code in (200, 403)
        client.app.state.engine.confirmer.wait_idle(5)  # not asserted: a leak would fail here, then retry forever
        assert never_got(attacker, fake_ls.token), attacker.auth_seen
    with TestClient(create_app(settings)) as client:  # after a restart too
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        client.app.state.engine.confirmer.wait_idle(5)
        client.app.state.engine.trainer.wait_idle(5)
    assert never_got(attacker, fake_ls.token), attacker.auth_seen


def test_the_env_token_goes_only_to_the_env_url(tmp_path, fake_ls, attacker, rt_sample):
    labelled(fake_ls, rt_sample)
    env = {"LABEL_STUDIO_URL": fake_ls.url, "LABEL_STUDIO_API_KEY": fake_ls.token}
    with TestClient(create_app(make_settings(tmp_path, env))) as client:
        assert connect(client, attacker.url, "whatever").status_code == 200
        settle(client)
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        settle(client)
        metrics = client.get("/metrics").json()["projects"]["7"]
    assert never_got(attacker, fake_ls.token) and not attacker.requests
    assert metrics["label_studio"]["url"] == fake_ls.url and metrics["annotations"] == 6
    assert "whatever" not in (tmp_path / "models" / "suggest.sqlite3").read_bytes().decode("latin-1"), \
        "a /setup token suggest never uses was stored"


# ------------------------------------------------------------------------------------- project hijack


def test_an_unauthenticated_setup_cannot_move_a_confirmed_project(tmp_path, fake_ls, attacker, rt_sample):
    labelled(fake_ls, rt_sample)
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        connect(client, fake_ls.url, fake_ls.token)
        settle(client)
        assert len(stored(client)) == 6
        resp = connect(client, attacker.url, attacker.token)
        assert resp.status_code == 403 and "cannot move it" in resp.json()["detail"]
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        settle(client)
        assert len(stored(client)) == 6
        changes = client.get("/metrics").json()["projects"]["7"]["label_studio"]["host_changes"]
        assert changes and changes[-1]["to"] == attacker.url and "refused" in changes[-1]
    with TestClient(create_app(settings)) as client:  # and it survives a restart
        settle(client)
        assert len(stored(client)) == 6
    assert not attacker.requests


def test_an_authenticated_host_change_keeps_labels_until_the_new_host_proves_itself(tmp_path, fake_ls, rt_sample):
    """With basic auth the operator may move a project, but an empty export from the new host wipes nothing."""
    labelled(fake_ls, rt_sample)
    empty = FakeLabelStudio(token="other")  # same project id and config, but no annotations
    auth = basic_auth_header("lead", "s3cret")
    env = {"BASIC_AUTH_USER": "lead", "BASIC_AUTH_PASS": "s3cret"}
    try:
        with TestClient(create_app(make_settings(tmp_path, env))) as client:
            connect(client, fake_ls.url, fake_ls.token, headers=auth)
            settle(client)
            assert connect(client, empty.url, empty.token, headers=auth).status_code == 200
            settle(client)
            assert len(stored(client)) == 6, "an empty export from a new host replaced the stored labels"
            ls = client.get("/metrics", headers=auth).json()["projects"]["7"]["label_studio"]
            assert ls["reachable"] is False and "exports no annotations" in ls["error"]
            assert ls["host_changes"][-1]["to"] == empty.url
            # the new host gets the project's annotations: now it is the same project, and it wins
            for i, (text, _) in enumerate(rt_sample[:3], start=1):
                empty.add_task(i, text)
                empty.annotate(200 + i, i, "fresh")
            client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}}, headers=auth)
            settle(client)
            assert sorted(stored(client)) == [201, 202, 203]
    finally:
        empty.close()


# ------------------------------------------------------------------------------------------ START_TRAINING


def test_start_training_never_creates_a_project_or_changes_a_config(tmp_path, rt_sample):
    env = {"SUGGEST_WEBHOOK_SECRET": "hook-secret"}
    with TestClient(create_app(make_settings(tmp_path, env))) as client:
        for pid in range(100, 130):
            resp = client.post("/webhook", json={"action": "START_TRAINING",
                                                 "project": {"id": pid, "label_config": CONFIG}})
            assert resp.status_code == 404, resp.text
        assert client.app.state.engine.store.projects() == []
        assert connect(client, None, None).status_code == 200
        resp = client.post("/webhook", json={"action": "START_TRAINING",
                                             "project": {"id": 7, "label_config": OTHER_CONFIG}})
        assert resp.status_code == 200
        settle(client)
        assert client.app.state.engine.projects["7"].label_config == CONFIG
        assert [r.label_config for r in client.app.state.engine.store.projects()] == [CONFIG]


# ---------------------------------------------------------------------------- /predict's label_config


def test_predict_with_another_config_does_not_reconfigure_a_connected_project(tmp_path, fake_ls, rt_sample):
    labelled(fake_ls, rt_sample)
    with TestClient(create_app(make_settings(tmp_path))) as client:
        connect(client, fake_ls.url, fake_ls.token)
        settle(client)
        resp = client.post("/predict", json={"tasks": [task(1, rt_sample[0][0])], "project": PROJECT,
                                             "label_config": OTHER_CONFIG})
        assert resp.status_code == 200
        labels = [r["value"]["choices"][0] for r in resp.json()["results"][0]["result"]]
        assert set(labels) <= {"fresh", "rotten"}, labels
        settle(client)  # the confirmer re-read the config from Label Studio: still CONFIG there
        assert client.app.state.engine.projects["7"].label_config == CONFIG
        assert [r.label_config for r in client.app.state.engine.store.projects()] == [CONFIG]


# ------------------------------------------------------------------------------------------ lower ones


def test_too_many_tasks_in_one_request_is_a_413_that_says_so(tmp_path, rt_sample):
    with TestClient(create_app(make_settings(tmp_path, max_tasks_per_request=5))) as client:
        connect(client, None, None)
        resp = client.post("/predict", json={"tasks": [task(i, "x") for i in range(6)], "project": PROJECT})
        assert resp.status_code == 413 and "SUGGEST_MAX_TASKS_PER_REQUEST" in resp.json()["detail"]
        assert client.post("/predict", json={"tasks": [task(1, "fine")], "project": PROJECT}).status_code == 200


SPAN_CONFIG = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
               '<Label value="Person"/><Label value="Location"/></Labels></View>')


def test_a_text_over_the_limit_costs_only_its_own_task(tmp_path):
    """A 1M+ character text in a span project made the whole batch answer 500 (spaCy's max_length)."""
    with TestClient(create_app(make_settings(tmp_path))) as client:
        assert connect(client, None, None, config=SPAN_CONFIG).status_code == 200
        tasks = [task(1, "Ada Lovelace was born in London."), task(2, "word " * 200_001)]
        resp = client.post("/predict", json={"tasks": tasks, "project": PROJECT})
        assert resp.status_code == 200, resp.text[:300]
        results = resp.json()["results"]
        assert results[1]["result"] == [] and results[0]["result"], results[0]
        alone = client.post("/predict", json={"tasks": tasks[1:], "project": PROJECT})
        assert alone.status_code == 422 and "SUGGEST_MAX_TEXT_CHARS" in alone.json()["detail"]


def test_versions_never_mix_projects(tmp_path):
    with TestClient(create_app(make_settings(tmp_path))) as client:
        connect(client, None, None)
        one = client.get("/versions").json()
        assert one["project"] == "7" and len(one["versions"]) == 1
        client.post("/setup", json={"project": "8.1795257467", "schema": OTHER_CONFIG})
        resp = client.get("/versions")
        assert resp.status_code == 422 and "?project=" in resp.json()["detail"]
        assert client.get("/versions", params={"project": "8"}).json()["versions"] != one["versions"]


def test_two_processes_cannot_share_a_model_dir(tmp_path):
    settings = make_settings(tmp_path)
    first = Engine(settings, load_encoder=False)
    try:
        half_written = first.store.root / "projects" / "7" / "versions" / ".tmp-v1-abc"
        half_written.mkdir(parents=True)
        with pytest.raises(StoreLocked, match="in use by another suggest process"):
            Engine(settings, load_encoder=False)
        assert half_written.exists(), "the second process swept the first one's half-written version"
    finally:
        first.close()
    Engine(settings, load_encoder=False).close()  # free again once the first one is gone


def test_the_store_is_private(tmp_path):
    store = Store(tmp_path / "models")
    try:
        assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(store.db_path).st_mode) == 0o600
    finally:
        store.close()


def test_the_embedding_cache_is_capped(tmp_path):
    import numpy as np

    store = Store(tmp_path / "models", max_embeddings=1000)
    try:
        for batch in range(3):
            store.put_embeddings("enc", {f"h{batch}-{i}": np.ones(4, np.float32) for i in range(800)})
        ((count,),) = store._query("SELECT COUNT(*) FROM embeddings")
        assert count <= 1000
        assert store.get_embeddings("enc", ["h2-799"]), "the newest vectors were dropped"
        assert not store.get_embeddings("enc", ["h0-0"]), "the oldest vectors were kept"
    finally:
        store.close()


def test_credentials_in_a_label_studio_url_never_show(tmp_path):
    port = free_port()  # nothing listens: the error quotes the URL
    env = {"LABEL_STUDIO_URL": f"http://lead:hunter2@127.0.0.1:{port}", "LABEL_STUDIO_API_KEY": "k" * 40}
    with TestClient(create_app(make_settings(tmp_path, env))) as client:
        connect(client, None, None)
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        client.app.state.engine.trainer.wait_idle(20)
        text = client.get("/metrics").text
    assert "hunter2" not in text and "lead:" not in text
    assert f"127.0.0.1:{port}" in text


def test_an_unreachable_label_studio_is_plain_in_metrics(tmp_path):
    """The Docker case: the hostname Label Studio sends is not reachable from the backend."""
    with TestClient(create_app(make_settings(tmp_path))) as client:
        connect(client, f"http://127.0.0.1:{free_port()}", "tok")
        client.app.state.engine.confirmer.wait_idle(1.0)
        ls = label_studio_state(client)
        assert ls["reachable"] is False and "cannot reach Label Studio" in ls["error"]
        assert "LABEL_STUDIO_URL" in ls["fix"]
    record = Store(tmp_path / "models").projects()[0]
    assert record.ls_error and "cannot reach" in record.ls_error  # what `suggest status` shows


# --------------------------------------------------------------------- internal hosts via /setup


@pytest.mark.parametrize("hostname,reason", [
    ("http://169.254.169.254", "link-local"),             # the cloud metadata service
    ("http://2852039166:80/", "link-local"),               # the same, as a decimal name getaddrinfo reads
    ("http://[::ffff:169.254.169.254]", "link-local"),     # and IPv4-mapped
    ("http://[fd00:ec2::254]", "metadata"),                # AWS's IPv6 metadata service
    ("http://224.0.0.251:5353", "multicast"),
    ("http://240.0.0.1", "reserved"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "http(s) URL"),
    ("http://127.0.0.1:8080/?next=http://169.254.169.254", "query"),
])
def test_a_strangers_setup_cannot_point_suggest_at_an_internal_service(tmp_path, rt_sample, hostname, reason):
    """Session 10's probe: /setup for a new project with the metadata service as its hostname answered 200
    and suggest then called it in the background. Now: a 422 naming the problem, and nothing is stored."""
    with TestClient(create_app(make_settings(tmp_path))) as client:
        resp = connect(client, hostname, "stranger-token")
        assert resp.status_code == 422 and reason in resp.json()["detail"], resp.text
        assert "7" not in client.get("/metrics").json()["projects"]
        assert client.post("/predict", json={"project": PROJECT, "tasks": [task(1, "a film")]}).status_code == 404
        assert client.get("/health").json()["status"] == "UP"
    assert Store(tmp_path / "models").projects() == []
    assert "stranger-token" not in (tmp_path / "models" / "suggest.sqlite3").read_bytes().decode("latin-1")


def test_with_label_studio_url_set_a_setup_hostname_is_not_even_looked_at(tmp_path, fake_ls, rt_sample):
    labelled(fake_ls, rt_sample)
    with TestClient(create_app(make_settings(tmp_path, {"LABEL_STUDIO_URL": fake_ls.url}))) as client:
        assert connect(client, "http://169.254.169.254", fake_ls.token).status_code == 200
        settle(client)
        assert len(stored(client)) == 6  # the token went to LABEL_STUDIO_URL


def test_a_stored_link_local_host_is_refused_on_connection_too(tmp_path, rt_sample):
    """A hostname stored before this check (or a name whose DNS answer changes after /setup) meets the guard
    on the connection itself: no request leaves, and /metrics says why."""
    from suggest.store import ProjectRecord

    settings = make_settings(tmp_path)
    store = Store(settings.model_dir)
    store.save_project(ProjectRecord("7", CONFIG, "http://169.254.169.254", "stranger-token"))
    store.close()
    with TestClient(create_app(settings)) as client:
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        client.app.state.engine.confirmer.wait_idle(5)
        ls = label_studio_state(client)
    assert ls["reachable"] is False and "link-local" in ls["error"] and "does not call" in ls["error"], ls


def test_what_another_host_answers_never_comes_back_through_metrics(tmp_path, fake_ls):
    """A stranger may still point a new project at a loopback or private host (Label Studio lives there);
    its answers are not quoted in /metrics, only Label Studio's own JSON error `detail`."""
    fake_ls.fail_with = (403, "<html><body>internal admin console: SECRET-ROW-42</body></html>")
    with TestClient(create_app(make_settings(tmp_path))) as client:
        assert connect(client, fake_ls.url, "stranger-token").status_code == 200
        client.app.state.engine.confirmer.wait_idle(5)
        ls = label_studio_state(client)
        text = client.get("/metrics").text
    assert ls["reachable"] is False and "answered 403" in ls["error"] and "not shown" in ls["error"], ls
    assert "SECRET-ROW-42" not in text


IMAGE_CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
                '<Choice value="warm"/><Choice value="cool"/></Choices></View>')


@pytest.fixture
def image_host():
    """A loopback web server with one PNG, counting the requests that reach it (an 'internal' host)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.samples import png

    body, hits = png(True, 1), []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cat.png", hits
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("allowed", [False, True])
def test_task_image_urls_cannot_reach_internal_hosts_unless_allowed(tmp_path, image_host, allowed):
    url, hits = image_host
    env = {"SUGGEST_MEDIA_ALLOW_HOSTS": "127.0.0.1"} if allowed else {}
    with TestClient(create_app(make_settings(tmp_path, env))) as client:
        assert connect(client, None, None, config=IMAGE_CONFIG).status_code == 200
        resp = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": url}}], "project": PROJECT})
        assert resp.status_code == 200, resp.text[:300]
    assert bool(hits) is allowed, hits
