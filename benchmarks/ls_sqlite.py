"""Switch a benchmark's Label Studio SQLite database to another journal mode (`--sqlite-journal wal`).

Why (issue 17): Label Studio 1.23 opens its SQLite database with SQLite's defaults, a rollback journal: a
writer takes the whole file for its commit (journal written and synced, pages written and synced), every
other connection waits meanwhile, and a connection that finds the file locked sleeps in SQLite's busy
handler by growing steps (1, 2, 5, 10, 15, 20, 25 ... 100 ms) rather than waking when the lock goes. In
write-ahead-log mode readers never wait for a writer and a commit appends to one log. The mode is stored in
the database file, so one `PRAGMA journal_mode=WAL` (here, or `sqlite3 label_studio.sqlite3 'PRAGMA
journal_mode=WAL;'` by a user) holds for every later connection of Label Studio's, with no setting of its own.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from tests.e2e.labelstudio_server import LabelStudioServer

MODES = ("delete", "wal")


def database_file(server: LabelStudioServer) -> Path:
    """Label Studio's SQLite file under its data dir (`label-studio start --data-dir`)."""
    return server.data_dir / "label_studio.sqlite3"


def set_journal_mode(server: LabelStudioServer, mode: str, timeout: float = 60.0) -> str:
    """Set the journal mode of a running Label Studio's database; returns the mode SQLite reports after.

    The switch needs a moment with no transaction open: Label Studio's own connections are idle between
    requests, so this retries until SQLite grants it (or `timeout`)."""
    if mode not in MODES:
        raise ValueError(f"journal mode {mode!r}: one of {', '.join(MODES)}")
    path = database_file(server)
    if not path.exists():
        raise FileNotFoundError(f"no Label Studio database at {path}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with closing(sqlite3.connect(path, timeout=10)) as con:
                held = con.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]
            if held.lower() == mode or time.monotonic() > deadline:
                return held.lower()
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)
