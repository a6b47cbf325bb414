"""START_TRAINING's sync re-reads every annotation only when the store may be behind (issue 20).

With "start training on annotation submission", Label Studio sends START_TRAINING inside every save.
A full re-read is one export of every labelled task: at 10,000 of them seconds of Label Studio's CPU,
taken from the annotators' saves. The sync compares Label Studio's annotation counter with the store
instead, confirms webhooks that are still waiting first, and re-reads everything only when the counts
differ or the last full re-read is older than `reconcile_seconds` (edits that came with no webhook).
The Label Studio here is the loopback stand-in of tests/hardening/conftest.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

import suggest.engine
from suggest.config import Settings
from suggest.server import create_app
from tests.conftest import CONFIG, PROJECT


def full_exports(fake_ls) -> int:
    """Export calls that read every labelled task (a confirmation names its tasks with ids[])."""
    return sum("ids[]" not in q for q in fake_ls.exports)


def stored(engine) -> dict[int, str]:
    return {lb.annotation_id: lb.label for lb in engine.store.labels("7")}


@pytest.fixture
def connected(tmp_path, fake_ls, rt_sample, monkeypatch):
    """An engine whose project 7 is connected to the stand-in (tasks 1-20), annotations 1-3 confirmed. No
    grace after webhooks here (test_a_count_difference_while_webhooks_arrive... sets one)."""
    monkeypatch.setattr(suggest.engine, "WEBHOOK_GRACE", 0.0)
    for i, (text, _) in enumerate(rt_sample[:20], start=1):
        fake_ls.add_task(i, text)
    settings = Settings.from_env({}, model_dir=tmp_path / "models", debounce_seconds=0.05, max_delay_seconds=0.5)
    with TestClient(create_app(dataclasses.replace(settings, push=False))) as client:
        assert client.post("/setup", json={"project": PROJECT, "schema": CONFIG, "hostname": fake_ls.url,
                                           "access_token": fake_ls.token}).status_code == 200
        engine = client.app.state.engine
        for i in (1, 2, 3):
            fake_ls.annotate(i, i, "fresh" if i % 2 else "rotten")
            assert client.post("/webhook", json=fake_ls.webhook(i)).status_code == 200
        assert engine.confirmer.wait_idle(20) and engine.trainer.wait_idle(60)
        assert stored(engine) == {1: "fresh", 2: "rotten", 3: "fresh"}
        yield client, engine, engine.projects["7"]


def test_a_sync_with_every_annotation_confirmed_reads_no_export(connected, fake_ls):
    _, engine, project = connected
    before = full_exports(fake_ls)
    assert before >= 1  # the connect-time re-read
    assert engine.sync(project)
    assert full_exports(fake_ls) == before, "a store that matches Label Studio's count was re-read in full"
    assert stored(engine) == {1: "fresh", 2: "rotten", 3: "fresh"}


def test_an_annotation_that_came_with_no_webhook_makes_a_full_re_read(connected, fake_ls):
    _, engine, project = connected
    before = full_exports(fake_ls)
    fake_ls.annotate(4, 4, "rotten")  # Label Studio holds it; no webhook reached us
    assert engine.sync(project)
    assert full_exports(fake_ls) == before + 1
    assert stored(engine)[4] == "rotten"


def test_waiting_webhooks_are_confirmed_by_the_sync_itself(connected, fake_ls):
    client, engine, project = connected
    engine.confirmer.debounce = engine.confirmer.max_delay = 3600.0  # the confirmer thread would wait an hour
    fake_ls.annotate(5, 5, "fresh")
    assert client.post("/webhook", json=fake_ls.webhook(5)).status_code == 200
    assert engine.confirmer.count("7") == 1
    before = full_exports(fake_ls)
    assert engine.sync(project)
    assert engine.confirmer.count("7") == 0, "the sync left the waiting hint to the confirmer"
    assert stored(engine)[5] == "fresh"
    assert full_exports(fake_ls) == before, "a hint that explains the count difference made a full re-read"


def test_an_annotation_the_store_cannot_keep_makes_one_full_re_read_not_one_per_sync(connected, fake_ls):
    """Label Studio counts an annotation whose choice the config does not have; the store skips it. The
    difference is remembered at the full re-read, so the next syncs stay cheap."""
    _, engine, project = connected
    before = full_exports(fake_ls)
    fake_ls.annotate(6, 6, "neutral")
    assert engine.sync(project)
    assert full_exports(fake_ls) == before + 1
    assert 6 not in stored(engine)
    assert engine.sync(project) and engine.sync(project)
    assert full_exports(fake_ls) == before + 1


def test_an_edit_with_no_webhook_is_read_once_the_reconcile_interval_has_passed(connected, fake_ls):
    _, engine, project = connected
    fake_ls.annotate(1, 1, "rotten")  # edited in Label Studio; the count does not move and no webhook came
    assert engine.sync(project)
    assert stored(engine)[1] == "fresh"  # not yet: the count matched
    engine.settings = dataclasses.replace(engine.settings, reconcile_seconds=1e-6)
    before = full_exports(fake_ls)
    assert engine.sync(project)
    assert full_exports(fake_ls) == before + 1
    assert stored(engine)[1] == "rotten"


def test_a_skipped_annotation_does_not_force_a_full_re_read(connected, fake_ls):
    """Label Studio's counter leaves skipped annotations out, as the store does."""
    client, engine, project = connected
    fake_ls.annotate(7, 7, "fresh", cancelled=True)
    assert client.post("/webhook", json=fake_ls.webhook(7)).status_code == 200
    assert engine.confirmer.wait_idle(20)
    before = full_exports(fake_ls)
    assert engine.sync(project)
    assert full_exports(fake_ls) == before


def test_a_count_difference_while_webhooks_arrive_waits_for_the_pause(connected, fake_ls, monkeypatch):
    """During a burst a save's annotation is counted before its webhook arrives: the difference is left to
    the webhooks, and the counts are compared again once annotators pause."""
    client, engine, project = connected
    monkeypatch.setattr(suggest.engine, "WEBHOOK_GRACE", 1.0)
    fake_ls.annotate(8, 8, "fresh")
    assert client.post("/webhook", json=fake_ls.webhook(8)).status_code == 200
    assert engine.confirmer.wait_idle(20)
    fake_ls.annotate(9, 9, "rotten")  # counted by Label Studio; its webhook never comes
    before = full_exports(fake_ls)
    assert engine.sync(project)
    assert full_exports(fake_ls) == before, "re-read everything while webhooks were still arriving"
    assert engine.trainer.wait_idle(30)  # the sync it queued for after the pause
    assert full_exports(fake_ls) == before + 1
    assert stored(engine)[9] == "rotten"


def test_the_periodic_full_re_read_waits_for_annotators_to_pause(connected, fake_ls, monkeypatch):
    """At 10,000 labels the re-read due by age alone (an export of every labelled task) ran in the middle of
    a burst and stalled the saves for ~30 s; it now waits for the pause, at most one more period."""
    client, engine, project = connected
    monkeypatch.setattr(suggest.engine, "WEBHOOK_GRACE", 5.0)
    fake_ls.annotate(1, 1, "rotten")  # an edit with no webhook: only the periodic re-read finds it
    engine.settings = dataclasses.replace(engine.settings, reconcile_seconds=30.0)
    engine._full_sync["7"] = (engine._full_sync["7"][0] - 31.0, engine._full_sync["7"][1])  # due by age
    fake_ls.annotate(8, 8, "fresh")
    assert client.post("/webhook", json=fake_ls.webhook(8)).status_code == 200  # annotators at work
    assert engine.confirmer.wait_idle(20)
    before = full_exports(fake_ls)
    assert engine.sync(project)
    assert full_exports(fake_ls) == before, "re-read everything while annotators were saving"
    assert stored(engine)[1] == "fresh"
    assert engine.trainer.wait_idle(30)  # the sync it queued for after the pause
    assert full_exports(fake_ls) == before + 1
    assert stored(engine)[1] == "rotten"
    # long overdue (two periods): read at once, even while webhooks arrive
    fake_ls.annotate(2, 2, "fresh")
    engine._full_sync["7"] = (engine._full_sync["7"][0] - 61.0, engine._full_sync["7"][1])
    fake_ls.annotate(9, 9, "fresh")
    assert client.post("/webhook", json=fake_ls.webhook(9)).status_code == 200
    assert engine.confirmer.wait_idle(20)
    assert engine.sync(project)
    assert stored(engine)[2] == "fresh"


def test_a_re_read_due_only_by_age_follows_the_retrain_and_push(connected, fake_ls):
    """At 10,000 labels the periodic full re-read is an export of every labelled task; run before the
    retrain at the end of a burst it held the new version back 17.5 s. The trainer's sync now puts it off
    until the retrain and push are done; it still happens, and still finds the edit."""
    _, engine, project = connected
    fake_ls.annotate(1, 1, "rotten")  # edited in Label Studio; the count does not move and no webhook came
    engine.settings = dataclasses.replace(engine.settings, reconcile_seconds=1e-6)
    before = full_exports(fake_ls)
    assert engine.sync(project, defer_reread=True)
    assert full_exports(fake_ls) == before and stored(engine)[1] == "fresh", "the re-read ran before the retrain"
    engine.reread_waiting(project)
    assert full_exports(fake_ls) == before + 1 and stored(engine)[1] == "rotten"
    engine.reread_waiting(project)
    assert full_exports(fake_ls) == before + 1, "a re-read that is no longer waiting ran again"

    # the trainer's order: sync, retrain, push, then the re-read
    fake_ls.annotate(2, 2, "fresh")
    seen: list[tuple[str, int]] = []
    retrain = project.retrain
    project.retrain = lambda **kw: (seen.append(("retrain", full_exports(fake_ls))), retrain(**kw))[1]
    engine.trainer._on_published = lambda p: seen.append(("push", full_exports(fake_ls)))
    engine.trainer.push_quiet = 0.2
    project.last_push_at = 0.0
    before = full_exports(fake_ls)
    engine.trainer.request(project, force=True, sync=True)
    assert engine.trainer.wait_idle(60)
    assert ("push", before) in seen and ("retrain", before) == seen[0], seen
    assert full_exports(fake_ls) == before + 1 and stored(engine)[2] == "fresh"
