"""Durable state: SQLite in WAL mode, plus model version folders published by atomic rename.

The only module that writes files (a backend writes inside the folder this module hands it).
Annotations are committed with `synchronous=FULL` before a webhook is acknowledged, so a
`kill -9` or a power cut never loses a label the server said it had. A version becomes visible
only when its folder has been renamed into place AND its row is committed; a folder without a
row (a crash in between) is ignored and cleaned up on the next start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from suggest import store_history, store_standing, store_tasks
from suggest.kinds import KINDS, kind_of_answer, legacy_kind
from suggest.schema import Label
from suggest.store_history import HistoryStore
from suggest.store_standing import StandingStore
from suggest.store_tasks import TaskListStore

log = logging.getLogger(__name__)

ANSWERS_TAGGED = 2  # PRAGMA user_version from which every stored answer carries its kind's tag
ANNOTATORS_KEPT = 3  # PRAGMA user_version from which annotations keep annotator, created_at and lead time
DEFAULT_MAX_EMBEDDINGS = 2_000_000  # ~3 GB of 384-d float32 vectors; oldest dropped beyond it
MAX_READERS = 16  # read connections, opened as needed and kept: a 17th read at once waits for one to come back
WAL_CHECKPOINT_BYTES = 4 << 20  # uncopied WAL (SQLite's own default: 1,000 pages) that wakes the checkpointer

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS projects (
    project_id   TEXT PRIMARY KEY,
    label_config TEXT NOT NULL,
    hostname     TEXT,
    access_token TEXT,
    updated_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS annotations (
    project_id    TEXT NOT NULL,
    annotation_id INTEGER NOT NULL,
    task_id       INTEGER NOT NULL,
    label         TEXT NOT NULL,
    text          TEXT NOT NULL,
    ground_truth  INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (project_id, annotation_id)
);
CREATE INDEX IF NOT EXISTS annotations_task ON annotations (project_id, task_id);
CREATE TABLE IF NOT EXISTS versions (
    project_id    TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    version       TEXT NOT NULL,
    trained_at    TEXT NOT NULL,
    n_labels      INTEGER NOT NULL,
    train_seconds REAL NOT NULL,
    info          TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (project_id, seq)
);
CREATE TABLE IF NOT EXISTS embeddings (
    encoder_id   TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    vector       BLOB NOT NULL,
    PRIMARY KEY (encoder_id, content_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS media_digests (
    ref    TEXT PRIMARY KEY,
    digest TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quality (
    project_id  TEXT PRIMARY KEY,
    version     TEXT NOT NULL,
    computed_at REAL NOT NULL,
    report      TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class VersionRecord:
    project_id: str
    seq: int
    version: str
    trained_at: str
    n_labels: int
    train_seconds: float
    info: dict

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "trained_at": self.trained_at,
            "n_labels": self.n_labels,
            "train_seconds": round(self.train_seconds, 4),
            **self.info,
        }


@dataclass(frozen=True)
class ProjectRecord:
    """A project's config and its Label Studio access. `hostname` and `access_token` are one pair: the
    token only ever goes to the host it came with. `confirmed_host` is the host whose export last
    replaced the stored labels (a new host must prove itself before it may); `ls_error` is the last
    failure reaching Label Studio (None: the last call worked), for `/metrics` and `suggest status`."""

    project_id: str
    label_config: str
    hostname: str | None
    access_token: str | None
    confirmed_host: str | None = None
    ls_error: str | None = None
    ls_checked_at: float | None = None
    webhook_key: str | None = field(default=None, repr=False)
    webhook_key_host: str | None = None


_store_times = threading.local()  # per thread: what this thread's store calls waited for (issue 20)


def store_times_reset() -> None:
    """Start counting the calling thread's store waits afresh (a request's handler calls this first)."""
    _store_times.lock = _store_times.commit = 0.0


def store_times() -> tuple[float, float]:
    """Seconds the calling thread spent, since `store_times_reset`, waiting for the store's lock (held by
    another thread: a background read or write) and committing (WAL append, fsync, automatic checkpoint)."""
    return getattr(_store_times, "lock", 0.0), getattr(_store_times, "commit", 0.0)


def _note_store_time(lock_wait: float, commit: float) -> None:
    _store_times.lock = getattr(_store_times, "lock", 0.0) + lock_wait
    _store_times.commit = getattr(_store_times, "commit", 0.0) + commit


class Store(StandingStore, HistoryStore, TaskListStore):
    """One SQLite database and the version folders under a model directory."""

    def __init__(self, model_dir: Path | str, *, max_embeddings: int = DEFAULT_MAX_EMBEDDINGS):
        self.root = Path(model_dir)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private(self.root, 0o700)  # the store holds a Label Studio token: nobody else reads it
        self.db_path = self.root / "suggest.sqlite3"
        if not self.db_path.exists():
            os.close(os.open(self.db_path, os.O_CREAT | os.O_WRONLY, 0o600))
        _private(self.db_path, 0o600)  # SQLite gives -wal and -shm the database file's mode
        self.max_embeddings = max_embeddings
        self.memo_key = uuid.uuid4().hex  # names this store's part of the process's vector memo (backends.memo)
        self._puts_since_prune = 0
        self._lock_file: int | None = None
        self._lock = threading.RLock()  # the one writer connection's; readers never take it
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._on_thread = threading.local()  # .conn: the connection this thread's reads go to while it writes or pins
        self._readers: list[sqlite3.Connection] = []  # idle read connections, reused by any thread
        self._reader_slots = threading.BoundedSemaphore(MAX_READERS)
        self._readers_lock = threading.Lock()
        self._closed = False
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Issue 20: SQLite's automatic checkpoint copies the WAL into the database inside whichever commit
        # crosses 1,000 pages, often a webhook's (one took 56 ms committing at 10,000 labels). Checkpoints run
        # on their own thread instead; with the WAL truncated at each restart, its size says what is uncopied.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.execute("PRAGMA journal_size_limit=0")
        self._wal_path = Path(f"{self.db_path}-wal")
        self._checkpointer: Checkpointer | None = None
        self._db.executescript(SCHEMA_SQL)
        self._migrate()
        for part in (store_standing, store_history, store_tasks):  # each part's tables (suggest/store_*.py)
            if part.SCHEMA_SQL:
                self._db.executescript(part.SCHEMA_SQL)
        self._migrate_standing()
        self._migrate_history()
        self._migrate_tasks()

    def _migrate(self) -> None:
        """Add what older stores lack, once: `answers` (multi-control projects; old rows read as control
        ""), the projects' Label Studio state, and the embeddings' insertion time (for the size cap)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(annotations)")}
        if "answers" not in columns:
            self._db.execute("ALTER TABLE annotations ADD COLUMN answers TEXT")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(projects)")}
        for name, kind in (("confirmed_host", "TEXT"), ("ls_error", "TEXT"), ("ls_checked_at", "REAL"),
                           ("webhook_key", "TEXT"), ("webhook_key_host", "TEXT")):
            if name not in columns:
                self._db.execute(f"ALTER TABLE projects ADD COLUMN {name} {kind}")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(embeddings)")}
        if "added_at" not in columns:
            self._db.execute("ALTER TABLE embeddings ADD COLUMN added_at REAL NOT NULL DEFAULT 0")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(annotations)")}
        for name, kind in (("annotator", "INTEGER"), ("created_at", "TEXT NOT NULL DEFAULT ''"),
                           ("lead_time", "REAL")):
            if name not in columns:  # older rows keep everything; who and when read as unknown
                self._db.execute(f"ALTER TABLE annotations ADD COLUMN {name} {kind}")
        ((version,),) = self._db.execute("PRAGMA user_version").fetchall()
        if version < ANSWERS_TAGGED:
            self._tag_answers()
        if version < ANNOTATORS_KEPT:
            self._db.execute(f"PRAGMA user_version = {ANNOTATORS_KEPT}")

    def _tag_answers(self) -> None:
        """Once per store: every stored answer gets its control kind's tag (see suggest.kinds), so reading
        never guesses a kind from a value's shape. Rows from before multi-control projects (one choice,
        control "") get an `answers` entry too."""
        with self._tx() as db:
            rows = db.execute("SELECT project_id, annotation_id, label, text, answers FROM annotations").fetchall()
            updates = []
            for pid, ann, label, text, answers in rows:
                if answers is None:
                    entries = {"": {"kind": "classification", "value": label, "text": text}}
                else:
                    entries = json.loads(answers)
                    for entry in entries.values():
                        entry.setdefault("kind", legacy_kind(entry["value"]).name)
                updates.append((json.dumps(entries, ensure_ascii=False), pid, ann))
            db.executemany("UPDATE annotations SET answers = ? WHERE project_id = ? AND annotation_id = ?", updates)
            db.execute(f"PRAGMA user_version = {ANSWERS_TAGGED}")
        if updates:
            log.info("store: tagged %d stored annotation(s) with their control kind", len(updates))

    def lock(self) -> None:
        """Take the model directory for this process alone (a server holds it for its lifetime).

        Two servers on one MODEL_DIR would sweep each other's half-written versions at start-up and
        interleave retrains; the second one is refused with a message that says why.
        """
        import fcntl

        fd = os.open(self.root / "suggest.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreLocked(
                f"model directory {self.root.resolve()} is in use by another suggest process; stop it or give "
                "this one its own MODEL_DIR (--model-dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_file = fd

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._readers_lock:
            self._closed = True
            idle, self._readers = self._readers, []
            checkpointer, self._checkpointer = self._checkpointer, None
        for conn in idle:
            conn.close()
        if checkpointer is not None:
            checkpointer.stop()
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the flock
            self._lock_file = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection; reads on this thread inside it see its writes."""
        asked = time.perf_counter()
        with self._lock:
            got = time.perf_counter()
            outer = getattr(self._on_thread, "conn", None)
            self._on_thread.conn = self._db
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._on_thread.conn = outer
            committing = time.perf_counter()
            self._db.execute("COMMIT")  # appends to the WAL and fsyncs it (synchronous=FULL); never checkpoints
            _note_store_time(got - asked, time.perf_counter() - committing)
        self._checkpoint_when_due()

    def _checkpoint_when_due(self) -> None:
        """Wake the checkpointer once the WAL holds WAL_CHECKPOINT_BYTES not yet copied (a stat: microseconds)."""
        try:
            if self._wal_path.stat().st_size < WAL_CHECKPOINT_BYTES:
                return
        except OSError:
            return
        with self._readers_lock:
            if self._closed:
                return
            if self._checkpointer is None:
                self._checkpointer = Checkpointer(self.db_path)
            checkpointer = self._checkpointer
        checkpointer.wake()

    def _query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        """Read without the writer's lock (issue 20): a niced retrain reading 10,000 labels must never make
        a webhook's write wait for it. WAL lets each read connection see the last commit while one writes."""
        pinned = getattr(self._on_thread, "conn", None)
        if pinned is not None:  # inside this thread's write or pinned read: the same connection
            return pinned.execute(sql, tuple(params)).fetchall()
        conn = self._reader()
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        finally:
            self._put_reader(conn)

    @contextmanager
    def _pinned_read(self) -> Iterator[sqlite3.Connection]:
        """Reads on this thread, until the block ends, see one committed state (what a retrain pins)."""
        if getattr(self._on_thread, "conn", None) is not None:  # already writing or pinned on this thread
            yield self._on_thread.conn
            return
        conn = self._reader()
        conn.execute("BEGIN")  # deferred: the snapshot is taken by the first read and held to COMMIT
        self._on_thread.conn = conn
        try:
            yield conn
        finally:
            self._on_thread.conn = None
            conn.execute("COMMIT")
            self._put_reader(conn)

    def _reader(self) -> sqlite3.Connection:
        """A read connection of the pool. The pool is bounded and never closes one before the store closes:
        SQLite keeps a closed connection's file open while others hold locks on the file, so opening and
        closing them under load grew the process's open files (measured: 37 to 51 in five rounds of 40 threads)."""
        asked = time.perf_counter()
        self._reader_slots.acquire()
        _note_store_time(time.perf_counter() - asked, 0.0)
        try:
            with self._readers_lock:
                if self._closed:
                    raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
                if self._readers:
                    return self._readers.pop()
            conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA query_only=1")  # reads only: every write goes through `_tx` and its lock
            return conn
        except BaseException:
            self._reader_slots.release()
            raise

    def _put_reader(self, conn: sqlite3.Connection) -> None:
        with self._readers_lock:
            closed = self._closed
            if not closed:
                self._readers.append(conn)
        if closed:  # the store closed while this read ran
            conn.close()
        self._reader_slots.release()

    # projects ---------------------------------------------------------------------------------

    def save_project(self, rec: ProjectRecord) -> None:
        """Insert or update a project's config and access. Hostname and token are replaced together,
        never merged: a later hostname must not inherit the token that came with another one."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO projects (project_id, label_config, hostname, access_token, updated_at, confirmed_host)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(project_id) DO UPDATE SET "
                "label_config=excluded.label_config, hostname=excluded.hostname, "
                "access_token=excluded.access_token, updated_at=excluded.updated_at",
                (rec.project_id, rec.label_config, rec.hostname, rec.access_token, time.time(), rec.confirmed_host),
            )

    def set_label_studio_state(self, project_id: str, *, error: str | None,
                               confirmed_host: str | None = None) -> None:
        """Record the outcome of the last call to a project's Label Studio (and the host it confirmed)."""
        with self._tx() as db:
            db.execute("UPDATE projects SET ls_error = ?, ls_checked_at = ? WHERE project_id = ?",
                       (error, time.time(), project_id))
            if confirmed_host is not None:
                db.execute("UPDATE projects SET confirmed_host = ? WHERE project_id = ?", (confirmed_host, project_id))

    def set_webhook_key(self, project_id: str, key: str | None, host: str | None) -> None:
        """The key suggest's webhook on `host` carries (None, None: no webhook carries one)."""
        with self._tx() as db:
            db.execute("UPDATE projects SET webhook_key = ?, webhook_key_host = ? WHERE project_id = ?",
                       (key, host, project_id))

    def project(self, project_id: str) -> ProjectRecord | None:
        found = [r for r in self.projects() if r.project_id == project_id]
        return found[0] if found else None

    def projects(self) -> list[ProjectRecord]:
        rows = self._query("SELECT project_id, label_config, hostname, access_token, confirmed_host, ls_error, "
                           "ls_checked_at, webhook_key, webhook_key_host FROM projects ORDER BY project_id")
        return [ProjectRecord(*row) for row in rows]

    # annotations ------------------------------------------------------------------------------

    def upsert_labels(self, project_id: str, labels: Iterable[Label]) -> None:
        """Store annotations; the Labels of one annotation (one per control) replace its whole row."""
        rows = _rows(project_id, labels)
        with self._tx() as db:
            self._history_before_upsert(db, project_id, rows)  # append-only history (suggest/store_history.py)
            db.executemany(_UPSERT, rows)

    def delete_annotations(self, project_id: str, annotation_ids: Iterable[int]) -> int:
        annotation_ids = list(annotation_ids)
        with self._tx() as db:
            self._history_before_delete(db, project_id, annotation_ids)
            cur = db.executemany(
                "DELETE FROM annotations WHERE project_id = ? AND annotation_id = ?",
                [(project_id, int(a)) for a in annotation_ids],
            )
            return cur.rowcount

    def delete_task_annotations(self, project_id: str, task_ids: Iterable[int]) -> None:
        task_ids = list(task_ids)
        with self._tx() as db:
            self._history_before_delete_tasks(db, project_id, task_ids)
            db.executemany(
                "DELETE FROM annotations WHERE project_id = ? AND task_id = ?",
                [(project_id, int(t)) for t in task_ids],
            )

    def replace_labels(self, project_id: str, labels: Iterable[Label]) -> None:
        """Make the stored annotations exactly `labels` (reconciliation with Label Studio)."""
        rows = _rows(project_id, labels)
        with self._tx() as db:
            self._history_before_replace(db, project_id, rows)
            db.execute("DELETE FROM annotations WHERE project_id = ?", (project_id,))
            db.executemany(_UPSERT, rows)

    def annotation_count(self, project_id: str) -> int:
        """How many annotations are stored for the project (one row each, whatever its controls)."""
        ((n,),) = self._query("SELECT COUNT(*) FROM annotations WHERE project_id = ?", (project_id,))
        return int(n)

    def labels(self, project_id: str) -> list[Label]:
        """One Label per (annotation, control), in annotation order."""
        rows = self._query(
            "SELECT task_id, annotation_id, label, text, ground_truth, updated_at, answers, annotator, created_at, "
            "lead_time FROM annotations WHERE project_id = ? ORDER BY annotation_id",
            (project_id,),
        )
        out: list[Label] = []
        for t, a, _, _, gt, up, answers, who, created, lead in rows:
            for control, entry in json.loads(answers).items():
                value = KINDS[entry["kind"]].decode(entry["value"])
                out.append(Label(t, a, value, entry["text"], bool(gt), up, control, who, created or "", lead))
        return out

    # dashboard reads --------------------------------------------------------------------------

    def label_timeline(self, project_id: str, max_points: int = 200) -> list[tuple[str, int]]:
        """Cumulative annotations over time, as (ISO time, count) at most `max_points` steps: when an
        annotation was created in Label Studio, else when suggest last saw it change. Bucketed in SQL (by
        minute within a day, by hour beyond), so 100,000 annotations return a few hundred rows."""
        at = "COALESCE(NULLIF(created_at, ''), updated_at)"
        ((first, last),) = self._query(f"SELECT MIN({at}), MAX({at}) FROM annotations WHERE project_id = ? "
                                       f"AND {at} != ''", (project_id,))
        if not first:
            return []
        width = 16 if first[:10] == last[:10] else 13  # 'YYYY-MM-DDTHH:MM' or 'YYYY-MM-DDTHH'
        rows = self._query(f"SELECT MAX({at}), COUNT(*) FROM annotations WHERE project_id = ? AND {at} != '' "
                           f"GROUP BY substr({at}, 1, {width}) ORDER BY 1", (project_id,))
        out, total = [], 0
        step = max(1, -(-len(rows) // max_points))
        for i, (stamp, n) in enumerate(rows):
            total += n
            if (i + 1) % step == 0 or i == len(rows) - 1:
                out.append((stamp, total))
        return out

    def annotator_counts(self, project_id: str) -> list[tuple[int | None, int]]:
        """Annotations per annotator (None: not recorded), most first."""
        return [(who, n) for who, n in self._query(
            "SELECT annotator, COUNT(*) AS n FROM annotations WHERE project_id = ? GROUP BY annotator "
            "ORDER BY n DESC", (project_id,))]

    def task_texts(self, project_id: str, task_ids: Iterable[int], limit: int = 300) -> dict[int, str]:
        """The stored text of some labelled tasks (for review lists); at most `limit` characters each."""
        ids = sorted({int(t) for t in task_ids})
        out: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for t, text in self._query(
                    "SELECT task_id, substr(text, 1, ?) FROM annotations WHERE project_id = ? "
                    f"AND task_id IN ({marks}) GROUP BY task_id", (limit, project_id, *chunk)):
                out[t] = text
        return out

    # quality ----------------------------------------------------------------------------------

    def put_quality(self, project_id: str, version: str, report: dict) -> None:
        """The quality report computed after a retrain (suggest.quality); readers never recompute it."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO quality VALUES (?, ?, ?, ?)",
                       (project_id, version, time.time(), json.dumps(report, ensure_ascii=False)))

    def quality(self, project_id: str) -> dict | None:
        """The last stored quality report of a project, with the version it was computed for; None before one."""
        rows = self._query("SELECT version, computed_at, report FROM quality WHERE project_id = ?", (project_id,))
        if not rows:
            return None
        version, at, report = rows[0]
        return {**json.loads(report), "version": version,
                "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))}

    # versions ---------------------------------------------------------------------------------

    def _versions_dir(self, project_id: str) -> Path:
        return self.root / "projects" / _safe(project_id) / "versions"

    def version_dir(self, project_id: str, version: str) -> Path:
        return self._versions_dir(project_id) / _safe(version)

    def publish_version(
        self,
        project_id: str,
        version: str,
        write: Callable[[Path], None],
        *,
        n_labels: int,
        train_seconds: float,
        info: dict | None = None,
        snapshot: int | None = None,
    ) -> VersionRecord:
        """Write a version into a temp folder, fsync, rename into place, then commit its row.

        `snapshot`: the annotation-history position the version's labels were read at (`labels_with_head`);
        the version is pinned to it, or to the position at commit when None (suggest/store_history.py)."""
        final = self.version_dir(project_id, version)
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            write(tmp)
            (tmp / "COMPLETE").write_text(version)
            _fsync_tree(tmp)
            os.rename(tmp, final)
            _fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        trained_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._tx() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM versions WHERE project_id = ?", (project_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (project_id, seq, version, trained_at, n_labels, train_seconds, json.dumps(info or {})),
            )
            self._pin_snapshot(db, project_id, version, snapshot)
        return VersionRecord(project_id, seq, version, trained_at, n_labels, train_seconds, info or {})

    def next_seq(self, project_id: str) -> int:
        ((seq,),) = self._query(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM versions WHERE project_id = ?", (project_id,)
        )
        return int(seq)

    def versions(self, project_id: str) -> list[VersionRecord]:
        rows = self._query(
            "SELECT project_id, seq, version, trained_at, n_labels, train_seconds, info FROM versions "
            "WHERE project_id = ? ORDER BY seq",
            (project_id,),
        )
        return [VersionRecord(p, s, v, t, n, sec, json.loads(i)) for p, s, v, t, n, sec, i in rows]

    def is_complete(self, project_id: str, version: str) -> bool:
        marker = self.version_dir(project_id, version) / "COMPLETE"
        try:
            return marker.read_text() == version
        except OSError:
            return False

    def sweep_temp_folders(self) -> int:
        """Remove half-written version folders left by a crash; returns how many."""
        removed = 0
        for tmp in (self.root / "projects").glob("*/versions/.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
        if removed:
            log.warning("removed %d half-written version folder(s) left by an earlier crash", removed)
        return removed

    # embedding cache --------------------------------------------------------------------------

    def get_embeddings(self, encoder_id: str, hashes: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for h, blob in self._query(
                f"SELECT content_hash, vector FROM embeddings WHERE encoder_id = ? AND content_hash IN ({marks})",
                [encoder_id, *chunk],
            ):
                found[h] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_embeddings(self, encoder_id: str, vectors: dict[str, np.ndarray]) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO embeddings (encoder_id, content_hash, vector, added_at) VALUES (?, ?, ?, ?)",
                [(encoder_id, h, np.asarray(v, dtype=np.float32).tobytes(), now) for h, v in vectors.items()],
            )
        self._puts_since_prune += len(vectors)
        if self._puts_since_prune >= min(10_000, max(1, self.max_embeddings // 20)):  # overshoot is bounded
            self.prune_embeddings()

    def prune_embeddings(self) -> int:
        """Keep the cache within `max_embeddings` rows, dropping the oldest first (a dropped vector is only
        recomputed when needed again); returns how many rows went."""
        self._puts_since_prune = 0
        ((count,),) = self._query("SELECT COUNT(*) FROM embeddings")
        excess = int(count) - self.max_embeddings
        if excess <= 0:
            return 0
        with self._tx() as db:
            db.execute(
                "DELETE FROM embeddings WHERE (encoder_id, content_hash) IN (SELECT encoder_id, content_hash "
                "FROM embeddings ORDER BY added_at LIMIT ?)", (excess,))
        log.info("embedding cache: dropped the %d oldest vectors (cap %d)", excess, self.max_embeddings)
        return excess

    # media digests: the sha256 of files whose bytes never change, so a re-rank need not read them again

    def get_digests(self, refs: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(refs), 500):
            chunk = refs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._query(f"SELECT ref, digest FROM media_digests WHERE ref IN ({marks})", chunk))
        return found

    def put_digests(self, digests: dict[str, str]) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO media_digests VALUES (?, ?)", list(digests.items()))


class Checkpointer:
    """Copies a store's WAL into its database on a thread of its own, so no request's commit does it.

    A PASSIVE checkpoint never blocks the writer or the readers; it copies what no reader still needs, and
    the next write restarts (and truncates) the WAL once all of it is copied. At most one a second.
    """

    def __init__(self, db_path: Path, min_interval: float = 1.0):
        self.db_path = db_path
        self.min_interval = min_interval
        self.runs = 0
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="suggest-wal-checkpoint", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._due.set()

    def stop(self) -> None:
        self._stopping.set()
        self._due.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        try:
            while True:
                self._due.wait()
                if self._stopping.is_set():
                    return
                self._due.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error as exc:  # a full disk, say: the WAL keeps the data; the next wake retries
                    log.warning("store: WAL checkpoint failed: %s", exc)
                if self._stopping.wait(self.min_interval):
                    return
        finally:
            conn.close()


class StoreLocked(RuntimeError):
    """Another process serves from the same model directory."""


def _private(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError as exc:  # a read-only or foreign-owned folder: serve anyway, say so
        log.warning("could not restrict permissions of %s to %o: %s", path, mode, exc)


_UPSERT = ("INSERT OR REPLACE INTO annotations (project_id, annotation_id, task_id, label, text, ground_truth, "
           "updated_at, answers, annotator, created_at, lead_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _rows(project_id: str, labels: Iterable[Label]) -> list[tuple]:
    """One row per annotation: its controls' answers as JSON, the first choice also in `label` for humans."""
    by_annotation: dict[int, list[Label]] = {}
    for lb in labels:
        by_annotation.setdefault(lb.annotation_id, []).append(lb)
    rows = []
    for ann_id, group in by_annotation.items():
        first = group[0]
        answers = {}
        for lb in group:
            kind = kind_of_answer(lb.label)
            answers[lb.control] = {"kind": kind.name, "value": kind.encode(lb.label), "text": lb.text}
        readable = first.label if isinstance(first.label, str) else json.dumps(answers[first.control]["value"])
        rows.append((project_id, ann_id, first.task_id, readable, first.text, int(first.ground_truth),
                     first.updated_at, json.dumps(answers, ensure_ascii=False), first.annotator, first.created_at,
                     first.lead_time))
    return rows


def _safe(name: str) -> str:
    """A file-system-safe folder name for a project id or version string."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
