"""The confirmer (issue 20): webhook hints are checked against Label Studio off the request path, a run of
webhooks with no pause in reads of a few tasks each, about one per `max_delay` (batched longer, each of Label
Studio's exports held it longer and the saves that met one were slower: issue 20 notes, session 10)."""

from __future__ import annotations

import threading
import time

from suggest.engine import Confirmer


def _run(events: int, gap: float = 0.05) -> list[tuple[float, int]]:
    """`events` hints `gap` s apart (never the 0.2 s pause); returns (seconds after the first, events) per read."""
    reads: list[tuple[float, int]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def confirm(pid, hints):
        reads.append((time.monotonic() - t0, hints.events))
        done.set()

    confirmer = Confirmer(confirm, debounce=0.2, max_delay=0.3)
    try:
        for i in range(events):
            confirmer.add("p", [i])
            time.sleep(gap)
        time.sleep(0.5)  # the pause: whatever waits is read now
    finally:
        confirmer.stop()
    return reads


def test_a_run_of_webhooks_is_read_every_max_delay_and_nothing_is_lost():
    reads = _run(20)  # 1 s of webhooks, never the 0.2 s pause
    assert len(reads) >= 3 and sum(n for _, n in reads) == 20
    assert all(n <= 12 for _, n in reads), f"a few tasks per read: {reads}"
