"""A do-nothing ML backend: Label Studio's own latency floor for the annotation-latency comparison.

It answers the four calls Label Studio makes (/health, /setup, /predict, /webhook) at once and with
the smallest valid bodies, so any time an annotation POST takes against it is Label Studio's own
cost. It also counts what it received (GET /stats) so the test can check that the toggles it
compares really fired (START_TRAINING plus ANNOTATION_CREATED per annotation).

Run: python tests/e2e/stub_backend.py --port 9099 [--host 127.0.0.1]
Standard library only, so it starts in well under a second and shares nothing with `suggest`.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_VERSION = "stub-0"


class Stats:
    """Request counts by path and by webhook action, shared by the handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paths: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.predicted_tasks = 0

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "paths": dict(self.paths),
                "actions": dict(self.actions),
                "predicted_tasks": self.predicted_tasks,
            }


STATS = Stats()


class Handler(BaseHTTPRequestHandler):
    """The backend's HTTP surface; keep-alive (HTTP/1.1) like uvicorn, no logging per request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the per-request access log: it would cost time inside the measured window."""

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        with STATS.lock:
            STATS.paths[f"GET {path}"] += 1
        if path == "/health":
            self._reply(200, {"status": "UP", "model_class": "Stub"})
        elif path == "/versions":
            self._reply(200, {"versions": [MODEL_VERSION]})
        elif path == "/stats":
            self._reply(200, STATS.snapshot())
        else:
            self._reply(404, {"detail": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        body = self._body()
        with STATS.lock:
            STATS.paths[f"POST {path}"] += 1
            if path == "/webhook" and isinstance(body, dict):
                STATS.actions[str(body.get("action"))] += 1
        if path == "/setup":
            self._reply(200, {"model_version": MODEL_VERSION})
        elif path == "/predict":
            tasks = body.get("tasks", []) if isinstance(body, dict) else []
            with STATS.lock:
                STATS.predicted_tasks += len(tasks)
            # one (empty) prediction per task, same order: LS drops a batch of the wrong length
            self._reply(200, {"results": [{"result": [], "score": 0.0, "model_version": MODEL_VERSION}] * len(tasks)})
        elif path == "/webhook":
            self._reply(200, {})
        else:
            self._reply(404, {"detail": "not found"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"stub backend listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
