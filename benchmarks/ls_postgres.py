"""A throw-away PostgreSQL cluster for a benchmark's Label Studio (`--postgres` in scale_push and push_save_cost).

Why (issue 17): on SQLite, Label Studio's default, every write in any project takes one database-wide write
lock, so suggest's prediction writes and deletes in one project delay annotators' saves in every other one.
Label Studio's docs advise PostgreSQL for large or busy deployments; there writers take row locks. These
benchmarks measure both. Needs Debian's `postgresql` package (initdb, pg_ctl); run as root, the cluster
runs as the `postgres` user (PostgreSQL refuses root). Loopback only, trust auth, deleted afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.labelstudio_server import free_port


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return Path(initdb).parent


@contextmanager
def postgres_env(database: str = "labelstudio") -> Iterator[dict[str, str]]:
    """Start a fresh cluster on a loopback port; yields the environment that points Label Studio at it."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="suggest-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def run(*argv: str) -> None:
        done = subprocess.run([*as_user, *argv], capture_output=True, text=True, cwd=root)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout[-1000:]}{done.stderr[-1000:]}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
        yield {"DJANGO_DB": "default", "POSTGRE_HOST": "127.0.0.1", "POSTGRE_PORT": str(port),
               "POSTGRE_USER": "postgres", "POSTGRE_PASSWORD": "postgres", "POSTGRE_NAME": database}
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def server_version(env: dict[str, str]) -> str:
    """`SHOW server_version` of the cluster, for the benchmark's record."""
    done = subprocess.run([str(_bin_dir() / "psql"), "-h", env["POSTGRE_HOST"], "-p", env["POSTGRE_PORT"], "-U",
                           env["POSTGRE_USER"], "-At", "-c", "SHOW server_version", env["POSTGRE_NAME"]],
                          capture_output=True, text=True)
    return done.stdout.strip() or "unknown"
