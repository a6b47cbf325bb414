"""Launch real servers for the end-to-end tests: Label Studio (in its own venv), `suggest`, the stub.

Label Studio 1.23.2 pins its own Django stack, so it lives in a separate virtual environment that
this module creates on first use (about 72 s) and reuses afterwards. Every server runs in its own
process group so that it, and anything it forks, can be stopped by process id at the end of the
session; nothing here kills by process name.

Also holds `LabelStudioClient`, a thin httpx wrapper over the REST calls the tests make, so that a
test reads as the sequence of things a user does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

LS_VERSION = "1.23.2"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LS_VENV = REPO_ROOT / ".cache" / "ls-venv"

# What Label Studio needs to talk to a backend on 127.0.0.1 and to accept `Authorization: Token`
# (contract doc sections 2-4), plus everything that would try to reach the internet turned off.
LS_ENV = {
    "LANG": "C.UTF-8",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "COLLECT_ANALYTICS": "false",
    "LATEST_VERSION_CHECK": "false",
    "ML_BLOCK_LOCAL_IP": "false",
    "SSRF_PROTECTION_ENABLED": "false",
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PortBusy(RuntimeError):
    """The requested port is taken; Label Studio would silently move to another one."""


class ServerFailed(RuntimeError):
    """A server exited or never became healthy; the message carries its log tail."""


# --------------------------------------------------------------------------------------------- ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (binding is the only race-free-ish check we have)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out, so it is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------------ processes


class ManagedProcess:
    """A server child in its own session (process group), logging to a file, stopped by its pgid."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn the server; its stdout and stderr append to the log file (restarts keep history)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # own process group: stop() reaches its children too
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_http(
        self,
        url: str,
        timeout: float,
        ok: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
    ) -> float:
        """Poll url until `ok`; returns the seconds waited. Fails fast if the process exits."""
        start = time.monotonic()
        deadline = start + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ServerFailed(f"{self.name} exited with code {code} before {url} answered\n{self.tail()}")
            try:
                response = httpx.get(url, timeout=2.0)
                if ok(response):
                    return time.monotonic() - start
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise ServerFailed(f"{self.name}: {url} not healthy after {timeout:.0f} s (last: {last})\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        # children that outlived the leader (same group) get the same treatment
        self._signal_group(signal.SIGKILL)

    def kill9(self) -> None:
        """Simulate a crash: SIGKILL the whole group with no chance to flush or clean up."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=15)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)  # pgid == pid thanks to start_new_session

    def tail(self, lines: int = 60) -> str:
        """The last lines of the log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"({self.name}: no log at {self.log_path})"
        body = "\n".join(text.splitlines()[-lines:])
        return f"----- {self.name} log tail ({self.log_path}) -----\n{body}"


# --------------------------------------------------------------------------------------- LS venv


def ls_venv_path() -> Path:
    """Where Label Studio's own venv lives: $SUGGEST_LS_VENV or <repo>/.cache/ls-venv."""
    return Path(os.environ.get("SUGGEST_LS_VENV") or DEFAULT_LS_VENV).resolve()


def _isolated_env(home: Path, venv_dir: Path) -> dict[str, str]:
    """The whole environment LS sees (`env -i` style): stray USERNAME/PORT/... must not leak in."""
    return {
        "HOME": str(home),
        "PATH": f"{venv_dir / 'bin'}:{SYSTEM_PATH}",
        **LS_ENV,
    }


def ls_venv_works(venv_dir: Path) -> bool:
    """`label-studio version` runs and reports the pinned version.

    It needs a HOME it may write to, and on a fresh HOME it migrates a throw-away SQLite database
    (about 45 s), so the check keeps one HOME inside the venv: later checks take about 5 s.
    """
    exe = venv_dir / "bin" / "label-studio"
    if not exe.exists():
        return False
    home = venv_dir / ".e2e-version-home"
    home.mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(
            [str(exe), "version"],
            env=_isolated_env(home, venv_dir),
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and f'"{LS_VERSION}"' in out.stdout


def ensure_ls_venv(venv_dir: Path, log: Callable[[str], None] = print) -> float:
    """Create the venv and install label-studio==1.23.2 unless a working one is there.

    Returns the seconds spent installing (0.0 when reused). A lock file keeps two pytest sessions
    from installing into the same folder at once.
    """
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv_dir.parent / f".{venv_dir.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ls_venv_works(venv_dir):
            return 0.0
        log(f"[e2e] installing label-studio=={LS_VERSION} into {venv_dir} (about 75 s)")
        start = time.monotonic()
        if venv_dir.exists():
            shutil.rmtree(venv_dir)  # half-installed or broken: start clean
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        pip = [str(venv_dir / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
        # The caller's environment on purpose: pip's index configuration lives in the real HOME.
        subprocess.run([*pip, "install", "--upgrade", "pip"], check=True, timeout=600)
        subprocess.run([*pip, "install", f"label-studio=={LS_VERSION}"], check=True, timeout=1200)
        seconds = time.monotonic() - start
        if not ls_venv_works(venv_dir):
            raise ServerFailed(f"label-studio installed into {venv_dir} but `label-studio version` fails")
        log(f"[e2e] label-studio installed in {seconds:.0f} s")
        return seconds


# ------------------------------------------------------------------------------------ Label Studio


class LabelStudioServer:
    """One Label Studio instance on 127.0.0.1:port with a fresh data dir and a known user token."""

    username = "admin@example.com"

    def __init__(self, venv_dir: Path, workdir: Path, port: int | None = None) -> None:
        self.venv_dir = venv_dir
        self.workdir = workdir
        self.port = port or free_port()
        self.password = "e2e-" + secrets.token_hex(8)
        self.token = "e2e" + secrets.token_hex(16)  # > 5 characters or LS ignores it
        self.home = workdir / "home"
        self.data_dir = workdir / "data"
        self.process: ManagedProcess | None = None
        self.start_seconds: float | None = None
        self._launched_at = 0.0
        self.extra_env: dict[str, str] = {}  # e.g. a Label Studio feature flag a benchmark compares

    @property
    def url(self) -> str:
        # `localhost`, as LS itself tells backends in /setup's `hostname`
        return f"http://localhost:{self.port}"

    def start(self, timeout: float = 240.0) -> float:
        """Start LS and wait for GET /health; returns the seconds it took."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Spawn LS without waiting (so other servers can start meanwhile); refuses a busy port."""
        if not port_is_free(self.port):
            raise PortBusy(f"port {self.port} is busy; Label Studio would silently pick another one")
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.venv_dir / "bin" / "label-studio"),
            "start",
            "--no-browser",
            "--internal-host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--log-level", "INFO",
            "--username", self.username,
            "--password", self.password,
            "--user-token", self.token,
            "--enable-legacy-api-token",
        ]  # fmt: skip
        self.process = ManagedProcess(
            "label-studio",
            argv,
            self.workdir / "label-studio.log",
            env={**_isolated_env(self.home, self.venv_dir), **self.extra_env},
            cwd=self.workdir,
        )
        self.process.start()
        self._launched_at = time.monotonic()

    def wait_ready(self, timeout: float = 240.0) -> float:
        """Wait for GET /health to say UP; returns the seconds since launch."""
        assert self.process is not None, "launch() first"
        self.process.wait_http(
            f"http://127.0.0.1:{self.port}/health",
            timeout,
            ok=lambda r: r.status_code == 200 and r.json().get("status") == "UP",
        )
        self.start_seconds = time.monotonic() - self._launched_at
        return self.start_seconds

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def tail(self, lines: int = 60) -> str:
        return self.process.tail(lines) if self.process else "(label-studio never started)"

    def client(self) -> LabelStudioClient:
        return LabelStudioClient(self.url, self.token)


# ------------------------------------------------------------------------------------------ suggest


def suggest_command() -> list[str]:
    """The `suggest` CLI: the installed console script when present, else `python -m suggest`."""
    script = Path(sys.executable).parent / "suggest"
    return [str(script)] if script.exists() else [sys.executable, "-m", "suggest"]


def suggest_argv(host: str, port: int, model_dir: Path) -> list[str]:
    """`suggest serve ...` on host:port with its state in model_dir."""
    return [*suggest_command(), "serve", "--host", host, "--port", str(port), "--model-dir", str(model_dir)]


class HttpServer:
    """A backend process on 127.0.0.1:port (suggest or the stub) that can be killed and restarted."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = port
        self.process = ManagedProcess(name, argv, log_path, env=env, cwd=REPO_ROOT)
        self._launched_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> float:
        """Spawn and wait for /health; returns the seconds it took."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        if not port_is_free(self.port):
            raise PortBusy(f"{self.name}: port {self.port} is busy")
        self.process.start()
        self._launched_at = time.monotonic()

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Wait for GET /health to say UP; returns the seconds since launch."""
        self.process.wait_http(
            f"{self.url}/health",
            timeout,
            ok=lambda r: r.status_code == 200 and r.json().get("status") == "UP",
        )
        return time.monotonic() - self._launched_at

    def wait_port_free(self, timeout: float = 15.0) -> None:
        """After a kill, the port must be bindable again before a restart."""
        deadline = time.monotonic() + timeout
        while not port_is_free(self.port):
            if time.monotonic() > deadline:
                raise PortBusy(f"{self.name}: port {self.port} still busy after {timeout} s")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.stop()

    def kill9(self) -> None:
        self.process.kill9()

    def tail(self, lines: int = 60) -> str:
        return self.process.tail(lines)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30.0, **kwargs)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=120.0)


# --------------------------------------------------------------------------------------- REST API


class LabelStudioError(AssertionError):
    """A REST call answered an unexpected status; carries request and response for the report."""


class LabelStudioClient:
    """The Label Studio REST calls a user (or the UI) makes, with `Authorization: Token`."""

    def __init__(self, base_url: str, token: str, timeout: float = 180.0) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Token {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, expect: tuple[int, ...] = (200, 201, 204), **kw: Any) -> Any:
        """Send, check the status, return parsed JSON (or None for an empty body)."""
        response = self.http.request(method, path, **kw)
        if response.status_code not in expect:
            body = kw.get("json")
            raise LabelStudioError(
                f"{method} {path} body={json.dumps(body)[:500] if body is not None else None} -> "
                f"{response.status_code} {response.text[:1000]}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # projects and tasks
    def create_project(self, title: str, label_config: str) -> dict[str, Any]:
        return self.request("POST", "/api/projects", json={"title": title, "label_config": label_config})

    def project(self, project_id: int) -> dict[str, Any]:
        return self.request("GET", f"/api/projects/{project_id}")

    def patch_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/api/projects/{project_id}", json=fields)

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        return self.request("POST", f"/api/projects/{project_id}/import", json=tasks)

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        """All tasks of a project, following the data manager's pagination."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.request(
                "GET",
                "/api/tasks",
                params={"project": project_id, "page": page, "page_size": 500},
                expect=(200, 404),
            )
            batch = body.get("tasks", []) if isinstance(body, dict) else []
            out.extend(batch)
            if not batch or len(out) >= body.get("total", 0):
                return out
            page += 1

    # ML backends
    def connect_ml(self, project_id: int, url: str, title: str) -> dict[str, Any]:
        return self.request("POST", "/api/ml", json={"url": url, "project": project_id, "title": title})

    def ml(self, ml_id: int) -> dict[str, Any]:
        """GET /api/ml/{id}; LS re-runs /health + /setup on the backend first, so this is fresh."""
        return self.request("GET", f"/api/ml/{ml_id}")

    def train(self, ml_id: int) -> Any:
        return self.request("POST", f"/api/ml/{ml_id}/train", json={})

    def retrieve_predictions(self, project_id: int) -> dict[str, Any]:
        """The data manager's "Retrieve predictions" action over all tasks."""
        return self.request(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": {"all": True, "excluded": []}},
        )

    def predictions(self, project_id: int) -> list[dict[str, Any]]:
        body = self.request("GET", "/api/predictions", params={"project": project_id})
        return body if isinstance(body, list) else body.get("results", [])

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return self.request("GET", "/api/webhooks", params={"project": project_id})

    # annotations
    def annotate(self, task_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        return self.request("POST", f"/api/tasks/{task_id}/annotations", json={"result": result})

    def update_annotation(self, annotation_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        return self.request("PATCH", f"/api/annotations/{annotation_id}", json={"result": result})

    def delete_annotation(self, annotation_id: int) -> None:
        self.request("DELETE", f"/api/annotations/{annotation_id}")

    def annotations(self, task_id: int) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/tasks/{task_id}/annotations")


def choice_result(label: str, from_name: str = "sentiment", to_name: str = "text") -> list[dict[str, Any]]:
    """An annotation `result` for a single-choice classification."""
    return [{"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [label]}}]


def poll(
    what: str,
    fetch: Callable[[], Any],
    done: Callable[[Any], bool],
    timeout: float,
    interval: float = 0.5,
) -> Any:
    """Call fetch until done(value); on timeout fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while True:
        with contextlib.suppress(httpx.HTTPError):
            value = fetch()
            if done(value):
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last value: {value!r}")
        time.sleep(interval)


def loop_state(suggest: HttpServer, pid: int) -> dict[str, Any] | None:
    """`suggest`'s /metrics entry for a Label Studio project (None until it knows the project)."""
    return suggest.get("/metrics").json()["projects"].get(str(pid))


def wait_pushed(suggest: HttpServer, pid: int, trained: bool, timeout: float = 120.0) -> dict[str, Any]:
    """Until the loop has pushed the current version (a trained one if asked) and is idle."""

    def done(m: dict[str, Any] | None) -> bool:
        if not m or not m["loop"].get("enabled") or m["loop"].get("version") != m["model_version"]:
            return False
        if m["loop"].get("pushing"):  # the head's paced rest is still being written
            return False
        return (not trained or m["model_version"].startswith("v")) and not m["training"]

    what = f"suggest to push {'a trained' if trained else 'its starting'} version"
    return poll(what, lambda: loop_state(suggest, pid), done, timeout)
