"""Annotation history (issue 18): append-only events, versions pinned to the snapshot they trained on,
old stores seeded without loss, and `suggest export --version` rebuilding a version exactly."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from suggest.cli import app
from suggest.labelstudio import parse_controls
from suggest.project import Project, default_backend_factory, labels_fingerprint, resolve_labels
from suggest.schema import Label
from suggest.store import ProjectRecord, Store
from suggest.store_history import SnapshotUnavailable
from tests.conftest import CONFIG


def lb(task, ann, label, who=1, up="2026-11-29T10:00:00Z", gt=False):
    return Label(task, ann, label, f"text {task}", gt, up, "sentiment", who, "2026-11-29T09:00:00Z", 2.5)


def state(labels):
    return sorted((x.annotation_id, x.task_id, x.label, x.annotator, x.updated_at, x.ground_truth) for x in labels)


def test_edits_and_deletions_append_and_never_erase(tmp_path):
    store = Store(tmp_path)
    store.upsert_labels("1", [lb(1, 10, "fresh"), lb(2, 20, "rotten")])
    head1 = store.history_head("1")
    store.upsert_labels("1", [lb(1, 10, "fresh")])  # the same event received twice: nothing new
    assert store.history_head("1") == head1
    store.upsert_labels("1", [lb(1, 10, "rotten", up="2026-11-29T11:00:00Z")])  # an edit
    store.delete_annotations("1", [20])
    store.delete_annotations("1", [999])  # never stored: no event
    ops = [(e["annotation_id"], e["op"]) for e in store.history("1")]
    assert ops == [(10, "put"), (20, "put"), (10, "put"), (20, "delete")]
    assert state(store.labels_at("1", head1)) == state([lb(1, 10, "fresh"), lb(2, 20, "rotten")])
    assert state(store.labels_at("1", store.history_head("1"))) == state(store.labels("1"))
    # reconciliation: a missing annotation is a deletion, a changed one a put, an unchanged one nothing
    store.upsert_labels("1", [lb(3, 30, "fresh"), lb(4, 40, "fresh")])
    before = store.history_head("1")
    store.replace_labels("1", [lb(1, 10, "rotten", up="2026-11-29T11:00:00Z"), lb(3, 30, "rotten", who=2)])
    tail = [(e["annotation_id"], e["op"]) for e in store.history("1") if e["seq"] > before]
    assert sorted(tail) == [(30, "put"), (40, "delete")]
    store.delete_task_annotations("1", [3])
    assert store.history("1")[-1]["op"] == "delete" and store.labels("1") == store.labels_at("1", 10**9)
    # the history of one project is not another's
    assert store.history("2") == [] and store.labels_at("2", 10**9) == []
    store.close()


def test_a_version_rebuilds_exactly_what_it_trained_on(tmp_path, rt_sample):
    store = Store(tmp_path)
    store.save_project(ProjectRecord("7", CONFIG, None, None))
    make, load = default_backend_factory(store)
    project = Project("7", CONFIG, parse_controls(CONFIG), store, make_backend=make, load_backend=load)
    first = [Label(i, 100 + i, y, t, False, "2026-11-29T10:00:00Z", "sentiment", 1 + i % 2)
             for i, (t, y) in enumerate(rt_sample[:12])]
    store.upsert_labels("7", first)
    v1 = project.retrain()
    assert v1 is not None
    trained_on = state(store.labels("7"))
    # later: an edit, a deletion, a new annotation by another annotator, and a reconciliation
    flip = {"fresh": "rotten", "rotten": "fresh"}
    store.upsert_labels("7", [Label(0, 100, flip[first[0].label], first[0].text, False, "2026-11-29T12:00:00Z",
                                    "sentiment", 3)])
    store.delete_annotations("7", [101])
    store.upsert_labels("7", [Label(50, 150, "fresh", "a new one", False, "2026-11-29T12:00:01Z", "sentiment", 2)])
    store.replace_labels("7", [x for x in store.labels("7") if x.annotation_id != 102])
    v2 = project.retrain()
    assert v2 is not None and v2.version != v1.version

    rebuilt = store.labels_of_version("7", v1.version)
    assert state(rebuilt) == trained_on
    assert labels_fingerprint(resolve_labels(rebuilt)) == v1.info["fingerprint"]
    assert labels_fingerprint(resolve_labels(store.labels_of_version("7", v2.version))) == v2.info["fingerprint"]
    assert state(store.labels_of_version("7", v2.version)) == state(store.labels("7"))

    runner = CliRunner()
    out = runner.invoke(app, ["export", "7", "--version", v1.version, "--model-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    lines = [json.loads(x) for x in out.stdout.split("\n") if x.strip()]
    assert sorted((x["annotation_id"], x["label"], x["annotator"]) for x in lines) == \
        sorted((a, lab, who) for a, _, lab, who, _, _ in trained_on)
    now = runner.invoke(app, ["export", "7", "--model-dir", str(tmp_path)])
    assert {json.loads(x)["annotation_id"] for x in now.stdout.split("\n") if x.strip()} == \
        {x.annotation_id for x in store.labels("7")}
    bad = runner.invoke(app, ["export", "7", "--version", "v99-nope", "--model-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "no version 'v99-nope'" in bad.output and "Traceback" not in bad.output
    store.close()


def test_an_old_store_is_seeded_without_loss(tmp_path):
    store = Store(tmp_path)
    store.upsert_labels("1", [lb(1, 10, "fresh"), lb(2, 20, "rotten", who=2)])
    store.publish_version("1", "v1-old", lambda f: (f / "w").write_text("w"), n_labels=2, train_seconds=0.1)
    before = state(store.labels("1"))
    store.close()
    # make it a store from before issue 18: no history tables, a version without a snapshot
    db = sqlite3.connect(tmp_path / "suggest.sqlite3")
    db.executescript("DROP TABLE annotation_history; DROP TABLE version_snapshots;")
    db.close()
    store = Store(tmp_path)
    assert [e["op"] for e in store.history("1")] == ["seed", "seed"]
    assert state(store.labels_at("1", store.history_head("1"))) == before
    with pytest.raises(SnapshotUnavailable, match="before annotation history was kept"):
        store.labels_of_version("1", "v1-old")
    store.close()
    assert [e["op"] for e in Store(tmp_path).history("1")] == ["seed", "seed"]  # idempotent


def test_a_version_published_without_a_position_pins_the_head(tmp_path):
    store = Store(tmp_path)
    store.upsert_labels("1", [lb(1, 10, "fresh")])
    store.publish_version("1", "v1-a", lambda f: (f / "w").write_text("w"), n_labels=1, train_seconds=0.1)
    store.upsert_labels("1", [lb(1, 10, "rotten", up="later")])
    assert [x.label for x in store.labels_of_version("1", "v1-a")] == ["fresh"]
    assert [x.label for x in store.labels("1")] == ["rotten"]
    store.close()
