"""Shared pieces of the hardening suite: a `suggest serve` launcher and a stand-in for Label Studio's REST API.

The stand-in answers the few calls `suggest` makes (project, export, single annotation, prediction
import, project PATCH) the way Label Studio 1.23 does, from an in-memory set of tasks the test
controls, with token auth and 404 for unknown ids. The real-Label-Studio check of the same
behaviour is tests/e2e/test_05_forged_webhook.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import CONFIG

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A real `python -m suggest serve` process in its own process group, logging to a file."""

    model_dir: Path
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, *, encoder: bool = False) -> float:
        """Spawn and wait for /health (and, with `encoder`, for the encoder to be loaded); returns seconds."""
        env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "LABEL_STUDIO_URL",
               "LABEL_STUDIO_API_KEY", "BASIC_AUTH_USER", "BASIC_AUTH_PASS") and not k.startswith("SUGGEST_")}
        env.update({"MODEL_DIR": str(self.model_dir), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                    "PYTHONFAULTHANDLER": "1",  # dump_threads() can show where a hung server is
                    "SUGGEST_DEBOUNCE_SECONDS": "0.05", **self.env})
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "suggest", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
            )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"suggest serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                health = httpx.get(f"{self.url}/health", timeout=1).json()
                if not encoder or health["encoder_loaded"]:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill9()
        raise AssertionError(f"suggest serve did not start within {timeout} s:\n{self.tail()}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def dump_threads(self) -> str:
        """SIGABRT makes the faulthandler write every thread's stack to the log; returns the log tail."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGABRT)
            self.proc.wait(10)
        return self.tail(120)

    def wait_port_free(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is fine
                try:
                    s.bind(("127.0.0.1", self.port))
                    return
                except OSError:
                    time.sleep(0.05)
        raise AssertionError(f"port {self.port} still busy")

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "models", free_port(), tmp_path / "suggest.log")
    yield srv
    srv.kill9()


# -------------------------------------------------------------------------------- Label Studio stand-in


class FakeLabelStudio:
    """In-memory tasks and annotations behind Label Studio's REST shapes, on a loopback port."""

    def __init__(self, token: str, project_id: int = 7, config: str = CONFIG):
        self.token, self.project_id, self.config = token, project_id, config
        self.tasks: dict[int, dict] = {}  # task id -> {"id", "data", "annotations": [...]}
        self.requests: list[str] = []
        self.exports: list[dict] = []  # the query of every export call (ids[] for a confirmation, none for all)
        self.auth_seen: list[str] = []  # every Authorization header that reached this host
        self.hooks: list[dict] = []  # the project's webhooks (GET /api/webhooks/, PATCH /api/webhooks/{id}/)
        self.delay = 0.0  # seconds before each answer (a slow Label Studio)
        self.fail_with: tuple[int, str] | None = None  # (status, body) for every call; "{auth}" echoes the header
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    # state the test drives ----------------------------------------------------------------------

    def add_task(self, task_id: int, text: str) -> None:
        with self._lock:
            self.tasks[task_id] = {"id": task_id, "data": {"text": text}, "annotations": [], "predictions": [],
                                   "meta": {}, "project": self.project_id}

    def annotate(self, annotation_id: int, task_id: int, label: str, *, cancelled: bool = False) -> dict:
        ann = {
            "id": annotation_id, "task": task_id, "project": self.project_id, "was_cancelled": cancelled,
            "ground_truth": False, "created_at": "2026-11-21T10:00:00Z", "updated_at": "2026-11-21T10:00:00Z",
            "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                        "value": {"choices": [label]}}],
        }
        with self._lock:
            anns = self.tasks[task_id]["annotations"]
            anns[:] = [a for a in anns if a["id"] != annotation_id] + [ann]
        return ann

    def add_hook(self, url: str, headers: dict | None = None) -> dict:
        """A project webhook, as Label Studio makes one when a backend at `url` minus /webhook connects."""
        hook = {"id": len(self.hooks) + 1, "project": self.project_id, "url": url, "send_payload": True,
                "send_for_all_actions": True, "headers": dict(headers or {}), "is_active": True, "actions": []}
        with self._lock:
            self.hooks.append(hook)
        return hook

    def delete_annotation(self, annotation_id: int) -> None:
        with self._lock:
            for task in self.tasks.values():
                task["annotations"] = [a for a in task["annotations"] if a["id"] != annotation_id]

    def webhook(self, annotation_id: int, action: str = "ANNOTATION_CREATED") -> dict:
        """The event Label Studio would send for one of its annotations."""
        with self._lock:
            task = next(t for t in self.tasks.values() if any(a["id"] == annotation_id for a in t["annotations"]))
            ann = next(a for a in task["annotations"] if a["id"] == annotation_id)
            return {"action": action, "annotation": json.loads(json.dumps(ann)),
                    "task": {k: v for k, v in task.items() if k != "annotations"},
                    "project": {"id": self.project_id, "label_config": self.config}}

    # HTTP ---------------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, object]:
        pid = self.project_id
        if m := re.fullmatch(r"/api/projects/(\d+)", path):
            if int(m[1]) != pid:
                return 404, {"detail": "Not found."}
            with self._lock:  # Label Studio's counter leaves skipped annotations out
                total = sum(not a["was_cancelled"] for t in self.tasks.values() for a in t["annotations"])
            return 200, {"id": pid, "label_config": self.config, "title": "stand-in",
                         "total_annotations_number": total}
        if m := re.fullmatch(r"/api/projects/(\d+)/export", path):
            if int(m[1]) != pid:
                return 404, {"detail": "Not found."}
            self.exports.append(query)
            ids = {int(i) for i in query.get("ids[]", [])}
            everything = query.get("download_all_tasks", ["false"])[0] == "true"
            with self._lock:
                out = [json.loads(json.dumps(t)) for t in self.tasks.values()
                       if (not ids or t["id"] in ids) and (everything or t["annotations"])]
            return 200, out
        if m := re.fullmatch(r"/api/annotations/(\d+)", path):
            with self._lock:
                for task in self.tasks.values():
                    for ann in task["annotations"]:
                        if ann["id"] == int(m[1]):
                            return 200, ann
            return 404, {"detail": "Not found."}
        if path == "/api/webhooks/" and method == "GET":
            with self._lock:
                return 200, [json.loads(json.dumps(h)) for h in self.hooks
                             if str(h["project"]) == query.get("project", [""])[0]]
        if (m := re.fullmatch(r"/api/webhooks/(\d+)/", path)) and method == "PATCH":
            with self._lock:
                for hook in self.hooks:
                    if hook["id"] == int(m[1]):
                        hook.update({k: v for k, v in json.loads(body).items() if k in ("headers", "actions")})
                        return 200, hook
            return 404, {"detail": "Not found."}
        if re.fullmatch(r"/api/projects/\d+/import/predictions", path):
            return 201, {"created": len(json.loads(body or b"[]"))}
        return 404, {"detail": f"stand-in has no {method} {path}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append(f"{method} {url.path}")
                fake.auth_seen.append(self.headers.get("Authorization", ""))
                if fake.delay:
                    time.sleep(fake.delay)
                if fake.fail_with is not None:
                    status = fake.fail_with[0]
                    payload = fake.fail_with[1].replace("{auth}", self.headers.get("Authorization", ""))
                elif self.headers.get("Authorization") != f"Token {fake.token}":
                    status, payload = 401, {"detail": "Authentication credentials were not provided."}
                else:
                    status, payload = fake._answer(method, url.path, parse_qs(url.query), body)
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def do_PATCH(self):  # noqa: N802
                self._serve("PATCH")

            def log_message(self, *args) -> None:
                pass

        return Handler


@pytest.fixture
def fake_ls():
    ls = FakeLabelStudio(token="tok-" + os.urandom(8).hex())
    yield ls
    ls.close()
