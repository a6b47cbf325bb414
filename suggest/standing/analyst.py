"""The analysis worker: quality and standing after each published version, on their own low-priority thread.

Why a thread of its own: both reports refit heads on folds of the labeled set (seconds at 10,000 labels),
and on the trainer's thread they delayed the next retrain by that much. Here a project's requests
coalesce (a burst of versions makes one analysis, of the newest), the thread runs at a lower OS priority
than the trainer, and nothing waits on it: the server, the CLI and the dashboard read what it stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from suggest.worker import Background, ProjectWorker

log = logging.getLogger(__name__)


class Analyst(ProjectWorker):
    """One thread for every project; `analyze(project)` must not raise (it is guarded anyway)."""

    def __init__(self, analyze: Callable[[object], None], background: Background | None = None):
        self._analyze = analyze
        super().__init__("suggest-analyst", background)
        self._start()

    def request(self, project) -> None:
        """Ask for an analysis of the project's newest version; never blocks."""
        with self._cond:
            self._pending[project.project_id] = project
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._pending:
                    self._cond.wait()
                if self._stopped:
                    return
                pid, project = next(iter(self._pending.items()))
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
