"""Background work yields to requests: a lower OS priority and a torch thread budget, per worker thread."""

from __future__ import annotations

import os
import threading

import pytest

from backends.encoders import apply_thread_budget, set_thread_budget, shared_text_encoder
from suggest.config import Settings, SettingsError
from suggest.trainer import Trainer
from suggest.worker import Background


def _nice_of(thread: threading.Thread) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread.native_id)


def test_worker_threads_run_at_a_lower_priority_and_the_rest_of_the_process_does_not():
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    trainer = Trainer(background=Background(nice=7, threads=1))
    try:
        assert trainer.wait_idle(5)
        assert _nice_of(trainer._thread) == min(19, base + 7)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # requests keep theirs
    finally:
        trainer.stop()


def test_a_thread_started_by_a_background_thread_inherits_its_priority():
    """torch's and OpenMP's pools are threads the worker starts: Linux gives them the worker's niceness."""
    seen: list[int] = []

    def worker() -> None:
        Background(nice=3).enter()
        child = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        child.start()
        child.join()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [min(19, base + 3)] * 2


def test_the_thread_budget_applies_to_forward_passes_of_that_thread_only():
    import torch

    encoder = shared_text_encoder()
    got: dict[str, int] = {}

    def background() -> None:
        set_thread_budget(1)
        encoder.encode(["a quiet film"])
        got["background"] = torch.get_num_threads()

    t = threading.Thread(target=background)
    t.start()
    t.join()
    encoder.encode(["a loud film"])  # this (request-like) thread has no budget: the process default
    got["request"] = torch.get_num_threads()
    assert got["background"] == 1
    assert got["request"] == max(1, min(os.cpu_count() or 1, 4))
    set_thread_budget(2)
    apply_thread_budget(torch)
    assert torch.get_num_threads() == 2
    set_thread_budget(None)


def test_background_settings_are_checked():
    s = Settings.from_env({"SUGGEST_BACKGROUND_NICE": "19", "SUGGEST_BACKGROUND_THREADS": "2"})
    assert (s.background_nice, s.background_thread_budget) == (19, 2)
    assert Settings.from_env({}).background_thread_budget == max(1, (os.cpu_count() or 1) - 1)
    with pytest.raises(SettingsError, match="SUGGEST_BACKGROUND_NICE"):
        Settings.from_env({"SUGGEST_BACKGROUND_NICE": "20"})
    with pytest.raises(SettingsError, match="SUGGEST_BACKGROUND_THREADS"):
        Settings.from_env({"SUGGEST_BACKGROUND_THREADS": "-1"})


def test_syncs_are_rate_limited_during_a_burst(tmp_path):
    """START_TRAINING on every save asks for a full re-read of Label Studio each time; during a burst it runs
    at most every `label_studio_interval` s."""
    import time

    from suggest.engine import Engine
    from tests.conftest import CONFIG

    engine = Engine(Settings.from_env({}, model_dir=tmp_path, debounce_seconds=0.05, max_delay_seconds=0.2),
                    load_encoder=False)
    syncs: list[float] = []
    engine.trainer._sync = lambda project, **_: syncs.append(time.monotonic())
    engine.trainer.label_studio_interval = 0.5
    try:
        project = engine.project("7", CONFIG)
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # a save every 0.1 s, each with START_TRAINING
            engine.start_training(project)
            time.sleep(0.1)
        assert engine.trainer.wait_idle(10)
        gaps = [b - a for a, b in zip(syncs, syncs[1:], strict=False)]
        assert 2 <= len(syncs) <= 5 and all(g >= 0.45 for g in gaps), [round(t - started, 2) for t in syncs]
    finally:
        engine.close()
