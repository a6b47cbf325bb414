"""The analysis worker waits for annotators to pause (issue 20): analysing every version of a burst took
the CPU Label Studio needed for the saves. It still runs within `max_wait` during continuous work."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from suggest.standing.analyst import Analyst


def _analyst(quiet: float, max_wait: float) -> tuple[Analyst, list[tuple[str, float]]]:
    ran: list[tuple[str, float]] = []
    lock = threading.Lock()

    def analyze(project) -> None:
        with lock:
            ran.append((project.project_id, time.monotonic()))

    return Analyst(analyze, quiet=quiet, max_wait=max_wait), ran


def test_an_analysis_waits_until_annotators_pause() -> None:
    analyst, ran = _analyst(quiet=0.4, max_wait=30.0)
    try:
        project = SimpleNamespace(project_id="7")
        started = time.monotonic()
        while time.monotonic() - started < 1.2:  # a save every 0.1 s, a version after each
            analyst.note_event("7")
            analyst.request(project)
            time.sleep(0.1)
        last_event = time.monotonic()
        assert ran == [], "analysed during the burst"
        assert analyst.wait_idle(10)
        assert len(ran) == 1, "the burst's versions coalesce into one analysis"
        assert ran[0][1] >= last_event + 0.25, "ran before the pause"
    finally:
        analyst.stop()


def test_continuous_work_still_gets_an_analysis_within_max_wait() -> None:
    analyst, ran = _analyst(quiet=0.5, max_wait=0.6)
    try:
        project = SimpleNamespace(project_id="7")
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            analyst.note_event("7")
            analyst.request(project)
            time.sleep(0.05)
        assert ran, "never analysed while annotators never paused"
        assert ran[0][1] - started < 1.5
    finally:
        analyst.stop()


def test_a_project_without_events_is_analysed_at_once_and_others_are_not_held_up() -> None:
    analyst, ran = _analyst(quiet=30.0, max_wait=60.0)
    try:
        analyst.note_event("busy")
        analyst.request(SimpleNamespace(project_id="busy"))
        analyst.request(SimpleNamespace(project_id="idle"))
        deadline = time.monotonic() + 5
        while not ran and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [pid for pid, _ in ran] == ["idle"]
        assert analyst.is_busy("busy")
    finally:
        analyst.stop()
