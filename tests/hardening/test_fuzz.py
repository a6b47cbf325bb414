"""Bad input: a schemathesis run over the OpenAPI schema plus hand-written cases; zero 5xx, every 4xx named.

Each operation gets up to FUZZ_EXAMPLES generated requests (positive and negative: wrong types,
missing fields, odd strings), against a real engine with one project set up, so /predict and
/webhook reach the code behind validation. Every answer must be < 500, and every 4xx must be
JSON {"detail": "<non-empty message>"}.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager

import pytest
import schemathesis
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from suggest.config import Settings
from suggest.engine import Engine
from suggest.server import create_app
from tests.conftest import CONFIG, PROJECT, annotation_event, task
from tests.hardening.conftest import free_port

FUZZ_EXAMPLES = int(os.environ.get("SUGGEST_FUZZ_EXAMPLES", "50"))
TALLY: dict[str, int] = {"cases": 0, "5xx": 0}


# The schema comes from an app that is never started (building it touches nothing); requests go to a
# real server on loopback, started by the fixture below with one project set up.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=FUZZ_EXAMPLES,
    database="none",  # no .hypothesis/ folder in the repository
)


@pytest.fixture(scope="module")
def fuzz_url(tmp_path_factory):
    settings_ = Settings.from_env({}, model_dir=tmp_path_factory.mktemp("fuzz") / "models",
                                  debounce_seconds=0.05, max_delay_seconds=0.5)
    engine = Engine(settings_, load_encoder=False)
    engine.encoder.load()  # here, not in a thread racing hypothesis' imports
    engine.setup("7", CONFIG, None, None)
    with running(create_app(settings_, engine=engine, max_body_mb=1)) as url:
        yield url
    engine.close()
    print(f"\n[hardening] fuzz: {TALLY['cases']} generated requests, {TALLY['5xx']} answered 5xx")


@contextmanager
def running(app):
    """The app behind a real uvicorn on a free loopback port, in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def assert_named_4xx(response) -> None:
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("detail"), str) and len(body["detail"]) > 5, (
            f"{response.status_code} without a meaningful detail: {response.text[:300]}"
        )


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_never_get_a_5xx(case, fuzz_url):
    response = case.call(base_url=fuzz_url)
    TALLY["cases"] += 1
    TALLY["5xx"] += response.status_code >= 500
    assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
    assert_named_4xx(response)


# ------------------------------------------------------------------------------------- hand-written


@pytest.fixture(scope="module")
def small_client(tmp_path_factory):
    settings_ = Settings.from_env({}, model_dir=tmp_path_factory.mktemp("bad") / "models",
                                  debounce_seconds=0.05, max_delay_seconds=0.5)
    with TestClient(create_app(settings_, max_body_mb=1), raise_server_exceptions=False) as client:
        assert client.post("/setup", json={"project": PROJECT, "schema": CONFIG}).status_code == 200
        yield client


def _project(extra: dict | None = None) -> dict:
    return {"id": 7, "label_config": CONFIG, **(extra or {})}


BIG = 2**70
BAD_REQUESTS = [
    # (name, path, raw body, expected status, words the detail must contain)
    ("not JSON", "/predict", b"{not json", 422, "JSON"),
    ("not JSON webhook", "/webhook", b"{not json", 422, "JSON"),
    ("invalid UTF-8", "/predict", b'{"project": "7.1", "tasks": ["\xff\xfe"]}', 400, "JSON"),
    ("deep predict", "/predict", b"[" * 100_000, 400, "nested too deeply"),
    ("deep setup", "/setup", b'{"project": "7.1", "schema": ' + b"[" * 100_000, 400, "nested too deeply"),
    ("deep webhook", "/webhook", b"[" * 100_000, 422, "nested too deeply"),
    ("5000-digit number", "/predict", b'{"project": ' + b"9" * 5000 + b', "tasks": []}', 400, "digits"),
    ("array webhook", "/webhook", b"[1, 2]", 422, "JSON object"),
    ("tasks not a list", "/predict", json.dumps({"project": PROJECT, "tasks": "x"}), 422, "tasks"),
    ("project missing", "/predict", json.dumps({"tasks": []}), 422, "project"),
    ("project nonsense", "/predict", json.dumps({"project": "abc", "tasks": []}), 422, "'abc'"),
    ("unknown project", "/predict", json.dumps({"project": "999.1", "tasks": [task(1, "x")]}), 404, "999"),
    ("task missing data", "/predict", json.dumps({"project": PROJECT, "tasks": [{"id": 1}]}), 422, "no 'data'"),
    ("task text not text", "/predict", json.dumps({"project": PROJECT, "tasks": [{"id": 1, "data": {"text": [1]}}]}),
     422, "must be text"),
    ("lone surrogate text", "/predict",
     b'{"project": "7.1", "tasks": [{"id": 1, "data": {"text": "bad \\udc00 text"}}]}', 422, "surrogate"),
    ("lone surrogate config", "/setup", b'{"project": "7.1", "schema": "<View>\\ud800</View>"}', 422, "surrogate"),
    ("lone surrogate token", "/setup",
     json.dumps({"project": PROJECT, "schema": CONFIG, "access_token": "\ud800"}).encode("utf-8", "surrogatepass")
     .replace(b"\xed\xa0\x80", b"\\ud800"), 422, "surrogate"),
    ("no supported control", "/setup", json.dumps({"project": PROJECT, "schema":
     '<View><Audio name="a" value="$a"/><Choices name="c" toName="a"><Choice value="a"/><Choice value="b"/>'
     "</Choices></View>"}), 422, "suggest serves"),
    ("config not XML", "/setup", json.dumps({"project": PROJECT, "schema": "<View"}), 422, "not valid"),
    ("config with NUL", "/setup", json.dumps({"project": PROJECT, "schema": "<View>\x00</View>"}), 422,
     "suggest serves"),
    ("no action", "/webhook", json.dumps({"project": {"id": 7}}), 422, "action"),
    ("webhook unknown project", "/webhook", json.dumps({"action": "ANNOTATION_CREATED", "project": {"id": 998},
     "annotation": {"id": 1, "result": []}, "task": {"id": 1, "data": {"text": "x"}}}), 404, "998"),
    ("webhook without annotation", "/webhook", json.dumps({"action": "ANNOTATION_CREATED", "project": {"id": 7}}),
     422, "annotation"),
    ("webhook config not text", "/webhook", json.dumps({"action": "TASKS_CREATED", "project": {"id": 7,
     "label_config": [1]}}), 422, "label_config"),
    ("webhook annotation missing", "/webhook", json.dumps({"action": "ANNOTATION_CREATED", "project": _project()}),
     422, "annotation"),
    ("webhook task missing", "/webhook", json.dumps({**annotation_event(1, 1, "t", "fresh"), "task": None}),
     422, "task"),
    ("webhook task without text", "/webhook",
     json.dumps({**annotation_event(1, 1, "t", "fresh"), "task": {"id": 1, "data": {}}}), 422, "no field 'text'"),
    ("webhook label not in config", "/webhook", json.dumps(annotation_event(1, 1, "t", "meh")), 422, "'meh'"),
    ("webhook surrogate text", "/webhook",
     json.dumps(annotation_event(1, 1, "t \ud83d", "fresh")).encode("utf-8", "surrogatepass")
     .replace(b"\xed\xa0\xbd", b"\\ud83d"), 422, "surrogate"),
    ("webhook huge annotation id", "/webhook", json.dumps(annotation_event(BIG, 1, "t", "fresh")), 422, "out of range"),
    ("webhook huge task id", "/webhook", json.dumps(annotation_event(1, BIG, "t", "fresh")), 422, "out of range"),
    ("delete huge id", "/webhook", json.dumps({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": BIG}],
     "project": {"id": 7}}), 422, "out of range"),
    ("delete tasks huge id", "/webhook", json.dumps({"action": "TASKS_DELETED", "tasks": [{"id": BIG}],
     "project": {"id": 7}}), 422, "out of range"),
    ("delete without ids", "/webhook", json.dumps({"action": "ANNOTATIONS_DELETED", "annotations": "x",
     "project": {"id": 7}}), 422, "ANNOTATIONS_DELETED"),
    ("too large", "/predict", b" " * (1024 * 1024 + 1), 413, "SUGGEST_MAX_BODY_MB"),
    ("too large webhook", "/webhook", b" " * (1024 * 1024 + 1), 413, "1 MB"),
]


@pytest.mark.parametrize("name, path, body, status, named", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_that_names_the_problem(small_client, name, path, body, status, named):
    resp = small_client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == status, f"{name}: {resp.status_code} {resp.text[:300]}"
    assert named in resp.json()["detail"], f"{name}: {resp.json()['detail']!r} does not name {named!r}"


def test_odd_but_valid_unicode_is_served(small_client):
    """NUL, right-to-left marks, emoji, combining marks: ordinary text, ordinary predictions."""
    texts = ["nul\x00inside", "\u202eevil rtl\u202c film", "great film \U0001F600\U0001F44D", "e\u0301\u0301\u0301",
             "\u05e1\u05e8\u05d8 \u05de\u05e2\u05d5\u05dc\u05d4", "\ufeffbom", "x" * 100_000]
    resp = small_client.post("/predict", json={"project": PROJECT, "tasks": [task(i, t) for i, t in enumerate(texts)]})
    assert resp.status_code == 200, resp.text[:300]
    assert all(r["result"] for r in resp.json()["results"])
    event = annotation_event(5, 5, "\u202e\U0001F600 great \x00 film", "fresh")
    assert small_client.post("/webhook", json=event).status_code == 200


def test_a_bad_task_in_a_batch_gets_an_empty_result_not_a_failed_batch(small_client):
    tasks = [task(1, "fine"), {"id": 2, "data": {"text": "bad \ud800"}}, {"id": 3}, "nope", task(4, "fine too")]
    raw = json.dumps({"project": PROJECT, "tasks": tasks}).encode("utf-8", "surrogatepass")
    resp = small_client.post("/predict", content=raw.replace(b"\xed\xa0\x80", b"\\ud800"),
                             headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text[:300]
    results = resp.json()["results"]
    assert [bool(r["result"]) for r in results] == [True, False, False, False, True]


def test_the_limit_is_the_env_var(tmp_path):
    settings_ = Settings.from_env({"SUGGEST_MAX_BODY_MB": "0.5"}, model_dir=tmp_path / "models")
    with TestClient(create_app(settings_)) as client:
        resp = client.post("/predict", content=b" " * 600_000, headers={"Content-Type": "application/json"})
        assert resp.status_code == 413 and "0.5 MB" in resp.json()["detail"]
        resp = client.post("/predict", content=b" " * 400_000, headers={"Content-Type": "application/json"})
        assert resp.status_code == 422  # under the limit: parsed (and refused for what it is)
    with pytest.raises(ValueError, match="SUGGEST_MAX_BODY_MB"):  # checked where settings are read, at start
        Settings.from_env({"SUGGEST_MAX_BODY_MB": "lots"}, model_dir=tmp_path / "models")


def test_an_endless_chunked_body_is_cut_off_at_the_limit(tmp_path):
    """A real server, a chunked body that never ends: the 413 must come back (nothing buffers it all)."""
    settings_ = Settings.from_env({}, model_dir=tmp_path / "models")
    with running(create_app(settings_, max_body_mb=1)) as url:
        port = int(url.rsplit(":", 1)[1])
        for path in ("/predict", "/webhook"):
            status, sent = _send_endless_chunked(port, path)
            assert status.startswith(b"HTTP/1.1 413"), status
            assert sent < 8 * 1024 * 1024, f"the server read {sent} bytes before answering"


def _send_endless_chunked(port: int, path: str) -> tuple[bytes, int]:
    chunk = b" " * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        sock.setblocking(False)
        deadline = time.monotonic() + 20
        reply = b""
        while time.monotonic() < deadline:
            try:
                reply += sock.recv(65536)
                if b"\r\n\r\n" in reply:
                    return reply.split(b"\r\n", 1)[0], sent
            except BlockingIOError:
                pass
            except OSError:
                break
            try:
                sent += sock.send(frame)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:  # the server closed the connection after answering
                sock.setblocking(True)
                reply += sock.recv(65536)
                return reply.split(b"\r\n", 1)[0], sent
    return reply.split(b"\r\n", 1)[0], sent
