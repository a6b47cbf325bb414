"""A background worker thread that serves projects one at a time, off the request path.

The trainer and the webhook confirmer share this lifecycle: a condition variable guarding a map
of pending work per project, the project being served, and a clean stop.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class ProjectWorker:
    """Subclasses fill `_pending` (project id -> work) under `_cond` and implement `_loop`."""

    def __init__(self, name: str):
        self._pending: dict[str, Any] = {}
        self._running: str | None = None
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        raise NotImplementedError

    def is_busy(self, project_id: str) -> bool:
        with self._cond:
            return self._running == project_id or project_id in self._pending

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until nothing is pending or running (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
