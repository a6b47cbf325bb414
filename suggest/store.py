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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suggest.schema import Answer, Label, Span

log = logging.getLogger(__name__)

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
    project_id: str
    label_config: str
    hostname: str | None
    access_token: str | None


class Store:
    """One SQLite database and the version folders under a model directory."""

    def __init__(self, model_dir: Path | str):
        self.root = Path(model_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "suggest.sqlite3"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA_SQL)
        self._migrate()

    def _migrate(self) -> None:
        """Stores written before multi-control projects lack `answers`: add it (old rows read as control "")."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(annotations)")}
        if "answers" not in columns:
            self._db.execute("ALTER TABLE annotations ADD COLUMN answers TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # projects ---------------------------------------------------------------------------------

    def save_project(self, rec: ProjectRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO projects VALUES (?, ?, ?, ?, ?) ON CONFLICT(project_id) DO UPDATE SET "
                "label_config=excluded.label_config, hostname=COALESCE(excluded.hostname, hostname), "
                "access_token=COALESCE(excluded.access_token, access_token), updated_at=excluded.updated_at",
                (rec.project_id, rec.label_config, rec.hostname, rec.access_token, time.time()),
            )

    def projects(self) -> list[ProjectRecord]:
        rows = self._query("SELECT project_id, label_config, hostname, access_token FROM projects")
        return [ProjectRecord(*row) for row in rows]

    # annotations ------------------------------------------------------------------------------

    def upsert_labels(self, project_id: str, labels: Iterable[Label]) -> None:
        """Store annotations; the Labels of one annotation (one per control) replace its whole row."""
        with self._tx() as db:
            db.executemany(_UPSERT, _rows(project_id, labels))

    def delete_annotations(self, project_id: str, annotation_ids: Iterable[int]) -> int:
        with self._tx() as db:
            cur = db.executemany(
                "DELETE FROM annotations WHERE project_id = ? AND annotation_id = ?",
                [(project_id, int(a)) for a in annotation_ids],
            )
            return cur.rowcount

    def delete_task_annotations(self, project_id: str, task_ids: Iterable[int]) -> None:
        with self._tx() as db:
            db.executemany(
                "DELETE FROM annotations WHERE project_id = ? AND task_id = ?",
                [(project_id, int(t)) for t in task_ids],
            )

    def replace_labels(self, project_id: str, labels: Iterable[Label]) -> None:
        """Make the stored annotations exactly `labels` (reconciliation with Label Studio)."""
        rows = _rows(project_id, labels)
        with self._tx() as db:
            db.execute("DELETE FROM annotations WHERE project_id = ?", (project_id,))
            db.executemany(_UPSERT, rows)

    def labels(self, project_id: str) -> list[Label]:
        """One Label per (annotation, control), in annotation order."""
        rows = self._query(
            "SELECT task_id, annotation_id, label, text, ground_truth, updated_at, answers FROM annotations "
            "WHERE project_id = ? ORDER BY annotation_id",
            (project_id,),
        )
        out: list[Label] = []
        for t, a, lb, tx, gt, up, answers in rows:
            if answers is None:  # written before multi-control projects: one choice, control ""
                out.append(Label(t, a, lb, tx, bool(gt), up))
                continue
            for control, entry in json.loads(answers).items():
                out.append(Label(t, a, _decode_answer(entry["value"]), entry["text"], bool(gt), up, control))
        return out

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
    ) -> VersionRecord:
        """Write a version into a temp folder, fsync, rename into place, then commit its row."""
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
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?)",
                [(encoder_id, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()],
            )

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


_UPSERT = "INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def _rows(project_id: str, labels: Iterable[Label]) -> list[tuple]:
    """One row per annotation: its controls' answers as JSON, the first choice also in `label` for humans."""
    by_annotation: dict[int, list[Label]] = {}
    for lb in labels:
        by_annotation.setdefault(lb.annotation_id, []).append(lb)
    rows = []
    for ann_id, group in by_annotation.items():
        first = group[0]
        answers = {lb.control: {"value": _encode_answer(lb.label), "text": lb.text} for lb in group}
        readable = first.label if isinstance(first.label, str) else json.dumps(_encode_answer(first.label))
        rows.append((project_id, ann_id, first.task_id, readable, first.text, int(first.ground_truth),
                     first.updated_at, json.dumps(answers, ensure_ascii=False)))
    return rows


def _encode_answer(value: Answer) -> object:
    if isinstance(value, str):
        return value
    return [[v.start, v.end, v.label, v.text] if isinstance(v, Span) else v for v in value]


def _decode_answer(value: object) -> Answer:
    if isinstance(value, str):
        return value
    assert isinstance(value, list)
    if value and isinstance(value[0], list):
        return tuple(Span(int(s), int(e), str(lb), str(tx)) for s, e, lb, tx in value)
    return tuple(str(v) for v in value)


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
