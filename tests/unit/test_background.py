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


def _cpu_ticks() -> dict[int, int]:
    """User CPU ticks per thread of this process (Linux /proc)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                out[int(tid)] = int(f.read().rsplit(") ", 1)[1].split()[11])
        except OSError:  # a thread that ended meanwhile
            pass
    return out


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="per-thread CPU time is read from Linux's /proc")
def test_a_niced_threads_matrix_products_run_on_that_thread_not_on_blas_workers_at_request_priority():
    """OpenBLAS's workers start with numpy, from the main thread, at the requests' priority (issue 20)."""
    import numpy as np
    from threadpoolctl import threadpool_info

    from suggest.worker import blas_on_the_caller

    if not any(i["user_api"] == "blas" and i["num_threads"] > 1 for i in threadpool_info()):
        pytest.skip("BLAS runs one thread here already: nothing to move")
    a = np.random.default_rng(0).random((500, 500))
    own: list[int] = []

    def niced_products() -> None:
        Background(nice=5).enter()
        start = _cpu_ticks()[threading.get_native_id()]
        for _ in range(60):
            a @ a
        own.append(_cpu_ticks()[threading.get_native_id()] - start)

    limiter = blas_on_the_caller()
    try:
        before = _cpu_ticks()
        worker = threading.Thread(target=niced_products)
        worker.start()
        worker.join()
        after = _cpu_ticks()
    finally:
        limiter.restore_original_limits()
    others = sum(after[t] - before.get(t, 0) for t in after if t not in (worker.native_id,))
    assert own[0] >= 5, "the products ran on the niced thread"
    assert others <= max(1, own[0] // 10), f"BLAS workers at the requests' priority did {others} ticks of its work"
