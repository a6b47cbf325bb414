"""The confirmer (issue 20): webhook hints are checked against Label Studio off the request path; during a
run of webhooks with no pause, a read waits until they amount to enough to matter (its `patience`)."""

from __future__ import annotations

import threading
import time

from suggest.engine import Confirmer


def _run(patience, events: int, gap: float = 0.05) -> list[tuple[float, int]]:
    """`events` hints `gap` s apart (never the 0.2 s pause); returns (seconds after the first, events) per read."""
    reads: list[tuple[float, int]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def confirm(pid, hints):
        reads.append((time.monotonic() - t0, hints.events))
        done.set()

    confirmer = Confirmer(confirm, debounce=0.2, max_delay=0.3, patience=patience)
    try:
        for i in range(events):
            confirmer.add("p", [i])
            time.sleep(gap)
        time.sleep(0.5)  # the pause: whatever waits is read now
    finally:
        confirmer.stop()
    return reads


def test_without_patience_a_run_of_webhooks_is_read_every_max_delay():
    reads = _run(None, 20)  # 1 s of webhooks
    assert len(reads) >= 3 and sum(n for _, n in reads) == 20


def test_a_run_worth_too_little_waits_for_the_pause_and_is_read_once():
    reads = _run(lambda pid, events: 0.3 if events >= 100 else 60.0, 20)
    assert [n for _, n in reads] == [20], "one read, at the pause"
    assert reads[0][0] >= 20 * 0.05, "not before the webhooks stopped"


def test_a_run_that_grows_enough_is_read_without_waiting_for_the_pause():
    reads = _run(lambda pid, events: 0.3 if events >= 5 else 60.0, 20)
    assert len(reads) >= 3 and sum(n for _, n in reads) == 20
    assert reads[0][0] < 0.6, "read once the events amounted to enough, during the run"
