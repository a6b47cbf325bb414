"""The analysis worker: quality and standing after each published version, on their own low-priority thread.

Why a thread of its own: both reports refit heads on folds of the labeled set (seconds at 10,000 labels),
and on the trainer's thread they delayed the next retrain by that much. Here a project's requests
coalesce (a burst of versions makes one analysis, of the newest), the thread runs at a lower OS priority
than the trainer, and nothing waits on it: the server, the CLI and the dashboard read what it stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from suggest.worker import Background, ProjectWorker

log = logging.getLogger(__name__)


class Analyst(ProjectWorker):
    """One thread for every project; `analyze(project)` must not raise (it is guarded anyway).

    It waits for annotators to pause (`quiet` s without an annotation event for the project), at most
    `max_wait` s from the first request: during a burst every retrain publishes a version, and analysing
    each one took the CPU that Label Studio needed for the annotators' saves (issue 20)."""

    def __init__(self, analyze: Callable[[object], None], background: Background | None = None, *,
                 quiet: float = 2.0, max_wait: float = 60.0):
        self._analyze = analyze
        self.quiet, self.max_wait = quiet, max_wait
        self._events: dict[str, float] = {}
        super().__init__("suggest-analyst", background)
        self._start()

    def request(self, project) -> None:
        """Ask for an analysis of the project's newest version; never blocks."""
        with self._cond:
            held = self._pending.get(project.project_id)
            self._pending[project.project_id] = (project, held[1] if held else time.monotonic())
            self._cond.notify_all()

    def note_event(self, project_id: str) -> None:
        """An annotator saved: the project's analysis waits for a pause."""
        self._events[project_id] = time.monotonic()

    def _due(self) -> tuple[str, object] | float:
        """The first project whose analysis may run now, or how long until one may."""
        now, wait = time.monotonic(), 3600.0
        for pid, (project, first) in self._pending.items():
            due = min(self._events.get(pid, 0.0) + self.quiet, first + self.max_wait)
            if due <= now:
                return pid, project
            wait = min(wait, due - now)
        return wait

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    picked = self._due()
                    if not isinstance(picked, float):
                        break
                    self._cond.wait(picked)
                if self._stopped:
                    return
                pid, project = picked
                del self._pending[pid]
                self._running = pid
            try:
                self._analyze(project)
            except Exception:
                log.exception("project %s: analysis failed", pid)
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()


def analysis_background(background: Background) -> Background:
    """Lower than the trainer's priority (5 more niceness, at most 19) and one torch thread."""
    return Background(min(19, background.nice + 5), 1)


__all__ = ["Analyst", "analysis_background"]
