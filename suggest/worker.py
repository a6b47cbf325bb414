"""A background worker thread that serves projects one at a time, off the request path.

The trainer and the webhook confirmer share this lifecycle: a condition variable guarding a map
of pending work per project, the project being served, and a clean stop.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from backends.encoders import set_thread_budget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Background:
    """How much of the machine background work may take (SUGGEST_BACKGROUND_NICE / _THREADS).

    Why: Label Studio often shares the host, and an annotation save waits on its CPU; work nobody is
    waiting for runs at a lower OS priority and with fewer torch threads than a request gets.
    """

    nice: int = 0  # added to the process's niceness for the worker thread (and threads it starts)
    threads: int | None = None  # torch threads for its forward passes (None: the process default)

    def enter(self) -> None:
        """Apply to the calling thread: on Linux a thread is a task with its own niceness."""
        set_thread_budget(self.threads)
        if self.nice > 0:
            lower_thread_priority(self.nice)


def lower_thread_priority(nice: int) -> bool:
    """Raise the calling OS thread's niceness by `nice` (at most 19); False where the OS refuses."""
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
        return True
    except (OSError, AttributeError) as exc:  # not Linux, or not allowed
        log.info("could not lower the priority of %s: %s", threading.current_thread().name, exc)
        return False


def blas_on_the_caller():
    """One thread for each BLAS library (numpy's and scipy's OpenBLAS), for `suggest serve`. Returns the
    threadpoolctl limiter (`restore_original_limits()` undoes it).

    Why (issue 20): OpenBLAS starts its worker threads when it loads, from the main thread, so they run at
    the requests' priority, not the background's. A niced retrain's matrix products (scoring the pool,
    the solver's steps) ran more on those workers than on the niced thread itself (measured: 29 of 45 CPU
    ticks of a niced thread's products), and the workers spin for a while after each job. With one
    thread a product runs on the thread that asked for it, at its priority. A request's products are
    small and gain nothing from BLAS threads; torch keeps its own thread budget (`set_thread_budget`).
    """
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, which scikit-learn's solvers use)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def favour_requests(switch_ms: float) -> None:
    """Shorten the interpreter's GIL switch interval (Python's default: 5 ms) for `suggest serve`.

    Why (issue 20): a request thread that wants the GIL waits for the holder to drop it, and a background
    thread busy in Python (a retrain reading 10,000 labels, an analysis) drops it only when the interval runs
    out. A webhook's answer takes the GIL a dozen times or more (the event loop, the thread pool, parsing), and
    Label Studio waits for two answers inside every save: measured at 1,000 labels, saves during retrains
    went from p99 1.47x to 1.13x the stub's with 0.5 ms. The holder is also niced, so the OS may not even run
    it until it drops the GIL. Threads switch only when one is waiting, so background work loses little."""
    sys.setswitchinterval(switch_ms / 1000.0)


class ProjectWorker:
    """Subclasses fill `_pending` (project id -> work) under `_cond` and implement `_loop`."""

    def __init__(self, name: str, background: Background | None = None):
        self._pending: dict[str, Any] = {}
        self._running: str | None = None
        self._cond = threading.Condition()
        self._stopped = False
        self._background = background or Background()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        self._background.enter()
        self._loop()

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

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called: long work on the thread ends early."""
        return self._stopped

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
