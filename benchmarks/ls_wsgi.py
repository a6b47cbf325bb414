"""Serve a benchmark's Label Studio with gunicorn worker processes instead of `label-studio start` (`--wsgi-workers`).

Why (issue 17): `label-studio start` serves with Django's `runserver`, one process whose threads share one GIL,
so a prediction write in one project and an annotator's save in another queue for the same interpreter
whatever the database does. Production deployments (Label Studio's Docker image) serve through a WSGI server
with several worker processes. This swaps the server after `label-studio start` has migrated the database and
created the user and token: same database, same port, same environment. gunicorn is installed into Label
Studio's own venv on first use (it is not one of its dependencies).
"""

from __future__ import annotations

import socket
import subprocess
import time

from tests.e2e.labelstudio_server import LabelStudioServer, ManagedProcess, _isolated_env


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def ensure_gunicorn(server: LabelStudioServer) -> str:
    exe = server.venv_dir / "bin" / "gunicorn"
    if not exe.exists():
        subprocess.run([str(server.venv_dir / "bin" / "python"), "-m", "pip", "install", "-q", "gunicorn"],
                       check=True)
    return str(exe)


def serve_with_workers(server: LabelStudioServer, workers: int, threads: int = 4) -> None:
    """Stop `label-studio start` and serve the same Label Studio with `workers` gunicorn processes."""
    exe = ensure_gunicorn(server)
    server.stop()
    deadline = time.monotonic() + 30
    while _listening(server.port):  # (a bind test would fail on the closed connections' TIME_WAIT for a minute;
        if time.monotonic() > deadline:  # gunicorn binds with SO_REUSEADDR)
            raise RuntimeError(f"port {server.port} still answers after stopping label-studio start")
        time.sleep(0.2)
    env = {**_isolated_env(server.home, server.venv_dir), **server.extra_env,
           "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",
           "LABEL_STUDIO_BASE_DATA_DIR": str(server.data_dir.absolute()), "HOST": server.url, "LOG_LEVEL": "INFO"}
    package = next(server.venv_dir.glob("lib/python3*/site-packages/label_studio"))  # its modules import `core.`
    argv = [exe, "core.wsgi:application", "--pythonpath", str(package), "--workers", str(workers), "--threads",
            str(threads),
            "--bind", f"127.0.0.1:{server.port}", "--timeout", "300"]
    server.process = ManagedProcess("label-studio-gunicorn", argv, server.workdir / "gunicorn.log", env=env,
                                    cwd=server.workdir)
    server.process.start()
    server._launched_at = time.monotonic()
    server.wait_ready()
