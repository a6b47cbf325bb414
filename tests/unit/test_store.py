"""The store: WAL durability settings, atomic version publishing, crash leftovers, embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from suggest.schema import Label
from suggest.store import ProjectRecord, Store


def test_wal_and_full_sync(tmp_path):
    store = Store(tmp_path)
    assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchall()[0][0] == 2  # FULL, on the connection that writes


def _label(task: int) -> Label:
    return Label(task, task, "pos", f"t{task}")


def test_reads_never_wait_for_a_write_in_progress_on_another_thread(tmp_path):
    """Issue 20: a webhook's read must not queue behind a niced retrain holding the store."""
    import threading
    import time

    store = Store(tmp_path)
    store.upsert_labels("1", [_label(1)])
    writing, done = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with store._tx() as db:
            db.execute("DELETE FROM annotations WHERE project_id = '1'")
            writing.set()
            done.wait(5)

    worker = threading.Thread(target=slow_writer)
    worker.start()
    writing.wait(5)
    started = time.perf_counter()
    assert store.annotation_count("1") == 1  # the last commit, not the write still in progress
    assert [lab.task_id for lab in store.labels("1")] == [1]
    took = time.perf_counter() - started
    done.set()
    worker.join()
    assert took < 1.0
    assert store.annotation_count("1") == 0  # and the write, once committed, is what the next read sees
    store.close()


def test_a_read_inside_a_write_sees_that_write(tmp_path):
    store = Store(tmp_path)
    with store._tx() as db:
        db.execute("INSERT INTO annotations (project_id, annotation_id, task_id, label, text, answers) VALUES "
                   "('1', 7, 7, 'pos', 't', '{}')")
        assert store.annotation_count("1") == 1
    assert store.annotation_count("1") == 1


def test_a_pinned_read_sees_one_state_while_another_thread_writes(tmp_path):
    """What a retrain pins (its labels and their history position) is read at one commit."""
    import threading

    store = Store(tmp_path)
    store.upsert_labels("1", [_label(1)])
    with store._pinned_read():
        before = store.history_head("1")
        assert store.annotation_count("1") == 1
        writer = threading.Thread(target=store.upsert_labels, args=("1", [_label(2)]))
        writer.start()
        writer.join(5)
        assert not writer.is_alive()  # the writer did not wait for the pinned read
        assert store.annotation_count("1") == 1 and store.history_head("1") == before
    assert store.annotation_count("1") == 2 and store.history_head("1") > before
    labels, head = store.labels_with_head("1")
    assert len(labels) == 2 and head == store.history_head("1")
    store.close()


def test_many_threads_reading_at_once_share_a_bounded_set_of_connections(tmp_path):
    """Connections are kept, never opened and closed per read: SQLite holds a closed connection's file open
    while others lock it, so churn grew the open files with each burst of readers."""
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from suggest.store import MAX_READERS

    store = Store(tmp_path)
    store.upsert_labels("1", [_label(1)])

    def open_files() -> int:
        names = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                names.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:  # the listing's own descriptor, gone already
                continue
        # this store's files only: another test's store closing meanwhile (its engine's threads, or the garbage
        # collector) changed a process-wide count once in a full run
        return sum(1 for name in names if name.startswith(str(tmp_path)) and "suggest.sqlite3" in name)

    def read(start: threading.Barrier) -> int:
        start.wait()
        return sum(store.annotation_count("1") for _ in range(10))

    counts = []
    for _ in range(4):
        start = threading.Barrier(40)
        with ThreadPoolExecutor(40) as pool:
            assert set(pool.map(read, [start] * 40)) == {10}
        counts.append(open_files())
    assert len(store._readers) <= MAX_READERS
    assert counts[-1] == counts[0]  # a burst of readers leaves no more files open than the first did
    store.close()


def test_closing_closes_the_read_connections_too(tmp_path):
    import sqlite3

    store = Store(tmp_path)
    store.annotation_count("1")
    idle = list(store._readers)
    assert idle
    store.close()
    for conn in idle:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError):
        store.annotation_count("1")


def test_a_failed_write_publishes_nothing(tmp_path):
    store = Store(tmp_path)

    def broken(folder):
        (folder / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.publish_version("1", "v1-a", broken, n_labels=3, train_seconds=0.1)
    assert store.versions("1") == []
    assert not list((tmp_path / "projects").glob("*/versions/*"))


def test_published_versions_are_complete_and_ordered(tmp_path):
    store = Store(tmp_path)
    for name in ("v1-a", "v2-b"):
        store.publish_version("1", name, lambda f: (f / "w").write_text("w"), n_labels=2, train_seconds=0.5,
                              info={"k": 1})
    assert [v.version for v in store.versions("1")] == ["v1-a", "v2-b"]
    assert store.next_seq("1") == 3
    assert store.is_complete("1", "v2-b") and not store.is_complete("1", "v9-z")
    assert store.versions("1")[0].as_dict()["k"] == 1


def test_crash_leftovers_are_swept(tmp_path):
    store = Store(tmp_path)
    leftover = tmp_path / "projects" / "1" / "versions" / ".tmp-v3-x-1234"
    leftover.mkdir(parents=True)
    assert store.sweep_temp_folders() == 1 and not leftover.exists()


def test_labels_survive_reopening_and_replace_is_exact(tmp_path):
    store = Store(tmp_path)
    store.save_project(ProjectRecord("1", "<View/>", "http://ls", "tok"))
    store.upsert_labels("1", [Label(1, 10, "a", "t1"), Label(2, 11, "b", "t2")])
    store.upsert_labels("1", [Label(1, 10, "b", "t1")])  # same annotation again: replaced, not added
    store.close()
    again = Store(tmp_path)
    assert [(lb.annotation_id, lb.label) for lb in again.labels("1")] == [(10, "b"), (11, "b")]
    assert again.projects()[0].access_token == "tok"
    again.replace_labels("1", [Label(3, 12, "a", "t3")])
    assert [lb.annotation_id for lb in again.labels("1")] == [12]


def test_embedding_cache_round_trip(tmp_path):
    store = Store(tmp_path)
    v = np.arange(4, dtype=np.float32)
    store.put_embeddings("enc", {"h1": v})
    got = store.get_embeddings("enc", ["h1", "h2"])
    assert list(got) == ["h1"] and np.array_equal(got["h1"], v)
    assert store.get_embeddings("other", ["h1"]) == {}


def test_every_answer_kind_round_trips_one_row_per_annotation(tmp_path):
    from suggest.schema import Span, answer_to_json

    store = Store(tmp_path)
    text = "Zoë met 🎉 Apple\nin Paris"
    spans = (Span(0, 3, "Person", "Zoë"), Span(10, 15, "Organization", "Apple"))
    labels = [
        Label(1, 10, "positive", text, control="sentiment"),
        Label(1, 10, spans, text, control="ner"),
        Label(2, 11, ("acting", "music"), "Songs and actors", control="tags"),
        Label(3, 12, (), "No entities here", control="ner"),
    ]
    store.upsert_labels("p", labels)
    assert store.labels("p") == labels
    assert store._query("SELECT COUNT(*) FROM annotations")[0][0] == 3  # one row per annotation
    store.upsert_labels("p", [Label(1, 10, "negative", text, control="sentiment")])  # the annotation changed
    assert [lb.label for lb in store.labels("p") if lb.annotation_id == 10] == ["negative"]
    store.replace_labels("p", labels[2:])
    assert store.labels("p") == labels[2:]
    assert answer_to_json(spans)[1] == {"start": 10, "end": 15, "label": "Organization", "text": "Apple"}


def test_a_store_written_before_multi_control_projects_still_reads(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "suggest.sqlite3")
    db.executescript("""
        CREATE TABLE annotations (project_id TEXT NOT NULL, annotation_id INTEGER NOT NULL, task_id INTEGER NOT NULL,
            label TEXT NOT NULL, text TEXT NOT NULL, ground_truth INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL DEFAULT '', PRIMARY KEY (project_id, annotation_id));
        INSERT INTO annotations VALUES ('7', 1, 5, 'fresh', 'a fine film', 1, '2026-01-01');
    """)
    db.commit()
    db.close()
    store = Store(tmp_path)
    assert store.labels("7") == [Label(5, 1, "fresh", "a fine film", True, "2026-01-01", "")]
    store.upsert_labels("7", [Label(6, 2, "rotten", "dull", control="sentiment")])
    assert [lb.control for lb in store.labels("7")] == ["", "sentiment"]


def test_the_wal_is_checkpointed_off_the_committing_thread_and_then_truncated(tmp_path):
    """Issue 20: no commit copies the WAL into the database (a webhook's commit once took 56 ms doing it);
    the checkpointer thread does, and the next write starts the WAL afresh."""
    import time

    from suggest.store import WAL_CHECKPOINT_BYTES

    store = Store(tmp_path)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchall()[0][0] == 0
    rng = np.random.default_rng(0)
    store.put_embeddings("enc", {f"h{i}": rng.random(384, dtype=np.float32) for i in range(5_000)})  # ~8 MB
    wal = tmp_path / "suggest.sqlite3-wal"
    assert wal.stat().st_size >= WAL_CHECKPOINT_BYTES  # the commit itself copied nothing
    deadline = time.monotonic() + 10
    while (store._checkpointer is None or store._checkpointer.runs == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store._checkpointer is not None and store._checkpointer.runs >= 1
    store.upsert_labels("1", [_label(1)])  # the first write after a full checkpoint restarts the WAL
    assert wal.stat().st_size < 1 << 20
    assert len(store.get_embeddings("enc", ["h0", "h4999"])) == 2  # nothing lost on the way
    checkpointer = store._checkpointer
    store.close()
    assert not checkpointer._thread.is_alive()  # closing the store stops its checkpointer
