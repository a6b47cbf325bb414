"""How long suggest takes to answer, per route: Label Studio waits for some answers inside an annotator's save.

Label Studio without Redis sends its webhooks inside the request that saves an annotation, so every
millisecond `/webhook` takes is a millisecond the annotator waits (issue 20). This ASGI middleware
times every answer, keeps the last few thousand in memory, logs the slow ones with the time they
started (to match them with slow saves), and summarises them for `GET /metrics/requests`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

KEEP = 5000  # answers remembered, all routes together
SPLIT_KEY = "suggest_split"  # scope["state"] entry: where a slow answer's time went (server._run_sync)


@dataclass(frozen=True)
class Answer:
    route: str  # "POST /webhook"
    started: float  # unix seconds
    ms: float
    status: int


class RequestTimes:
    """ASGI middleware and the record it keeps. `slow_ms`: answers at least this slow are logged (0: none)."""

    def __init__(self, app, slow_ms: float = 250.0, keep: int = KEEP):
        self.app, self.slow_ms = app, slow_ms
        self._answers: deque[Answer] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._known: frozenset[str] | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        wall, t0, status = time.time(), time.perf_counter(), 500

        async def noted_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noted_send)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            route = _route(scope.get("path", ""), self._paths(scope))
            answer = Answer(f"{_method(scope.get('method', ''))} {route}", wall, ms, status)
            with self._lock:
                self._answers.append(answer)
            if self.slow_ms and ms >= self.slow_ms:
                split = (scope.get("state") or {}).get(SPLIT_KEY)
                log.warning("slow answer: %s took %.0f ms (started %s, status %d%s)", answer.route, ms, _clock(wall),
                            status, f"; {split}" if split else "")

    def _paths(self, scope) -> frozenset[str]:
        """The app's own route paths, read once from the app (so a new route is never "(other)")."""
        if self._known is None:
            app = scope.get("app")
            self._known = frozenset(getattr(r, "path", "") for r in getattr(app, "routes", ()))
        return self._known

    def summary(self, slowest: int = 10) -> dict:
        """Per route: count and p50/p90/p99/max in ms over the remembered answers; the slowest few overall."""
        with self._lock:
            answers = list(self._answers)
        routes: dict[str, list[float]] = {}
        for a in answers:
            routes.setdefault(a.route, []).append(a.ms)
        out = {route: {"count": len(ms), **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99)},
                       "max_ms": round(max(ms), 1)} for route, ms in sorted(routes.items())}
        top = sorted(answers, key=lambda a: a.ms, reverse=True)[:slowest]
        return {"routes": out, "slowest": [
            {"route": a.route, "ms": round(a.ms, 1), "status": a.status, "started": _clock(a.started, day=True)}
            for a in top], "remembered": len(answers)}


def _clock(unix: float, day: bool = False) -> str:
    """UTC with milliseconds, as the log's timestamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%S" if day else "%H:%M:%S", time.gmtime(unix)) + f".{int(unix % 1 * 1000):03d}"


def _route(path: str, known: frozenset[str]) -> str:
    """The route, not the full path: a dashboard page per project is one route (and a stranger's paths stay bounded)."""
    if path.startswith("/ui/"):
        return "/ui/..."
    return path if path in known else "(other)"


def _method(method: str) -> str:
    """HTTP methods beyond the usual few are one (a stranger may send any token as a method)."""
    return method if method in METHODS else "OTHER"


METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
