"""The background trainer: bursts coalesce, pushes to Label Studio are rate-limited, the last one runs."""

from __future__ import annotations

import time

from suggest import labelstudio as ls
from suggest.config import Settings
from suggest.engine import Engine
from tests.conftest import CONFIG, annotation_event


def _engine(tmp_path, pushes: list[str]) -> Engine:
    settings = Settings.from_env({}, model_dir=tmp_path, debounce_seconds=0.05, max_delay_seconds=0.5)
    engine = Engine(settings, load_encoder=False)
    engine.trainer.label_studio_interval = 1.0
    engine.trainer._on_published = lambda project: pushes.append(project.model_version)
    return engine


def _annotate(engine: Engine, sample, start: int, n: int) -> None:
    project = engine.project("7", CONFIG)
    for i, (text, label) in enumerate(sample[start : start + n], start=start):
        ev = annotation_event(i + 1, i, text, label)
        engine.record_annotation(project, i + 1, ls.annotation_label(ev["annotation"], ev["task"], project.schema))


def test_a_burst_makes_few_versions_and_pushes_are_rate_limited_but_the_last_runs(tmp_path, rt_sample):
    pushes: list[str] = []
    engine = _engine(tmp_path, pushes)
    try:
        for burst in range(3):  # three bursts, 0.3 s apart: inside one push interval
            _annotate(engine, rt_sample, burst * 10, 10)
            time.sleep(0.3)
        assert engine.trainer.wait_idle(60)
        versions = engine.store.versions("7")
        assert 1 <= len(versions) <= 4  # 30 events
        assert versions[-1].n_labels == 30
        assert pushes[-1] == versions[-1].version  # the newest version was pushed, after all
        assert len(pushes) <= 2  # not one push per version: at most one per interval, plus the trailing one
    finally:
        engine.close()


def test_same_labels_again_publish_nothing_new(tmp_path, rt_sample):
    engine = _engine(tmp_path, [])
    try:
        _annotate(engine, rt_sample, 0, 12)
        engine.trainer.wait_idle(60)
        before = [v.version for v in engine.store.versions("7")]
        _annotate(engine, rt_sample, 0, 12)
        engine.trainer.wait_idle(60)
        assert [v.version for v in engine.store.versions("7")] == before
    finally:
        engine.close()


def test_a_failed_push_is_retried_until_the_version_reaches_label_studio(tmp_path, rt_sample, monkeypatch):
    """Label Studio answered 500 ("database is locked") to a push under load; the version never reached the
    queue until the next annotation. Now the push is retried with backoff."""
    import suggest.trainer

    monkeypatch.setattr(suggest.trainer, "PUSH_RETRY_FIRST", 0.3)
    attempts: list[str] = []

    def flaky(project) -> None:
        attempts.append(project.model_version)
        if len(attempts) <= 2:
            raise ls.LabelStudioError("Label Studio answered 500 to POST /api/dm/actions: database is locked")

    engine = _engine(tmp_path, [])
    engine.trainer._on_published = flaky
    engine.trainer.label_studio_interval = 0.1
    try:
        _annotate(engine, rt_sample, 0, 12)
        assert engine.trainer.wait_idle(60)
        version = engine.store.versions("7")[-1].version
        assert len(attempts) == 3 and attempts[-1] == version, attempts
        assert engine.trainer._push_failures == {}
    finally:
        engine.close()


def test_during_continuous_saves_fitting_takes_at_most_a_third_of_the_time(tmp_path, rt_sample):
    """At 10,000 labels a fit took 1-2 s and the next began as soon as it ended, in the process that answers
    Label Studio's webhooks inside every save. A retrain now rests twice its own duration after it."""
    from suggest.trainer import TRAIN_REST

    engine = _engine(tmp_path, [])
    project = engine.project("7", CONFIG)
    fits: list[tuple[float, float]] = []
    real = project.retrain

    def slow_retrain(**kw):
        started = time.monotonic()
        try:
            return real(**kw)
        finally:
            time.sleep(0.3)  # a slow fit
            fits.append((started, time.monotonic()))

    project.retrain = slow_retrain
    try:
        _annotate(engine, rt_sample, 0, 10)  # the encoder loads, a first version
        assert engine.trainer.wait_idle(60)
        fits.clear()
        for i in range(10, 50):  # a save every 0.05 s for 2 s and more: without the rest, fit after fit
            _annotate(engine, rt_sample, i, 1)
            time.sleep(0.05)
        assert engine.trainer.wait_idle(60)
        assert len(fits) >= 2, fits
        for (_, ended), (started, _) in zip(fits, fits[1:], strict=False):
            took = [e - s for s, e in fits if e == ended][0]
            assert started - ended >= TRAIN_REST * took - 0.01, (fits, "a fit followed the last without a rest")
        assert engine.store.versions("7")[-1].n_labels == 50, "the last events are still trained on"
    finally:
        engine.close()


def test_at_large_label_counts_a_burst_retrains_once_its_labels_matter_or_annotators_pause():
    """Issue 20: at 10,000 labels a retrain was forced every `max_delay` s of continuous saves (START_TRAINING on
    each), ~0.5 s of Python each in the process that answers the webhooks inside every save. It now waits for
    events worth GROWTH of the labelled set, or for the pause the push waits for; small projects are unchanged."""
    from types import SimpleNamespace

    from suggest.trainer import GROWTH, Trainer

    trainer = Trainer(debounce=0.3, max_delay=3.0, push_quiet=2.0, max_push_wait=60.0)
    trainer.stop()  # the schedule alone: nothing may pop the entries below

    def project(pid: str, labelled: int):
        return SimpleNamespace(project_id=pid, published=SimpleNamespace(record=SimpleNamespace(n_labels=labelled)))

    big, small = project("big", 10_000), project("small", 500)
    t0 = time.monotonic()
    for p in (big, small):
        trainer.request(p, force=True, sync=True)  # START_TRAINING, as Label Studio sends with each save
    for entry in trainer._pending.values():
        entry[1].first = entry[1].last = t0
    # continuous saves: an event every 0.2 s for 4 s, never a 0.3 s pause
    for p in (big, small):
        trainer._pending[p.project_id][1].events = 40
        trainer._pending[p.project_id][1].last = t0 + 4.0
    with trainer._cond:
        pid, _ = trainer._due(t0 + 4.1)
    assert pid == "small", "a small project retrains after max_delay of continuous saves, as before"
    del trainer._pending["small"]
    with trainer._cond:
        assert trainer._due(t0 + 4.1)[0] is None, "40 events are not 1% of 10,000 labels: wait for a pause"
        assert trainer._due(t0 + 6.1)[0] == "big", "annotators paused for push_quiet: the retrain runs"
    trainer._pending["big"][1].events = int(GROWTH * 10_000)
    with trainer._cond:
        assert trainer._due(t0 + 4.1)[0] == "big", "events worth 1% of the labelled set: forced as before"
    trainer._pending["big"][1].events, trainer._pending["big"][1].last = 40, t0 + 100.0
    with trainer._cond:
        assert trainer._due(t0 + 60.1)[0] == "big", "never more than max_push_wait without a retrain"
