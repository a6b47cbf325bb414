"""The `suggest` command line: help that shows variables and defaults, one-line errors, status of Label Studio."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suggest.cli import app
from suggest.config import SOURCES
from suggest.store import ProjectRecord, Store

CONFIG = '<View><Text name="text" value="$text"/><Choices name="label" toName="text">' \
         '<Choice value="pos"/><Choice value="neg"/></Choices></View>'


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    """A runner whose environment holds none of the settings a developer's shell may have set."""
    for source in SOURCES.values():
        for var in source.env:
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich help: one option per line
    return CliRunner()


def _clean_env() -> dict[str, str]:
    names = {var for source in SOURCES.values() for var in source.env}
    return {k: v for k, v in os.environ.items() if k not in names}


def test_serve_help_shows_each_variable_and_default(runner):
    out = runner.invoke(app, ["serve", "--help"]).output
    for expected in ("HOST", "0.0.0.0", "PORT", "9090", "MODEL_DIR", "SUGGEST_UNCERTAINTY", "margin",
                     "SUGGEST_STRATEGY", "SUGGEST_BATCH_SIZE", "LOG_LEVEL", "--strategy", "--batch-size"):
        assert expected in out, expected
    for name, source in SOURCES.items():  # the environment-only ones too, listed after the flags
        assert source.env[0] in out, name
    for command in ("status", "export"):
        assert "MODEL_DIR" in runner.invoke(app, [command, "--help"]).output


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["serve", "--uncertainty", "vibes"], {}, "--uncertainty"),
    (["serve", "--strategy", "densee"], {}, "--strategy"),
    (["serve"], {"PORT": "abc"}, "PORT must be an integer, got 'abc'"),
    (["serve"], {"BASIC_AUTH_PASS": "pw"}, "BASIC_AUTH_PASS is set but BASIC_AUTH_USER is empty"),
    (["serve"], {"LABEL_STUDIO_API_KEY": "tok"}, "LABEL_STUDIO_API_KEY is set but LABEL_STUDIO_URL"),
    (["status"], {"SUGGEST_DEBOUNCE_SECONDS": "-1"}, "SUGGEST_DEBOUNCE_SECONDS"),
    (["export", "1"], {"SUGGEST_PUSH": "maybe"}, "SUGGEST_PUSH"),
])
def test_a_bad_setting_is_one_line_and_exit_status_2(runner, tmp_path, args, env, expected):
    result = runner.invoke(app, [*args, "--model-dir", str(tmp_path)], env=env)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("suggest: error: ") and expected in lines[0], result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_real_process_exits_2_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "from suggest.cli import app; app(prog_name='suggest')",
         "serve", "--uncertainty", "vibes", "--model-dir", str(tmp_path)],
        env=_clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("suggest: error: SUGGEST_UNCERTAINTY (--uncertainty) must be one of margin, "
                                   "least_confidence, entropy, got 'vibes'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serving_on_all_interfaces_without_auth_warns_at_start(tmp_path):
    """The warning is printed before the server's slow imports; the process is stopped once it has shown."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from suggest.cli import app; app(prog_name='suggest')", "serve",
         "--host", "0.0.0.0", "--port", str(_free_port()), "--model-dir", str(tmp_path / "models")],
        env=_clean_env() | {"COLUMNS": "400"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    seen = ""
    try:
        deadline = time.monotonic() + 60
        while "anyone on the network" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                line = proc.stderr.readline()
                if not line:
                    break
                seen += line
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert "WARNING" in seen and "anyone on the network can reach /setup and /predict" in seen, seen
    assert "BASIC_AUTH_USER" in seen and "127.0.0.1" in seen


def test_status_shows_label_studio_unreachable_with_the_url_redacted(runner, tmp_path):
    store = Store(tmp_path)
    if not hasattr(store, "set_label_studio_state"):
        pytest.skip("this store does not record Label Studio's state yet")
    store.save_project(ProjectRecord("7", CONFIG, "http://ann:s3cret@localhost:8080", "tok-123"))
    store.set_label_studio_state("7", error="ConnectError: [Errno 111] Connection refused")
    store.save_project(ProjectRecord("8", CONFIG, None, None))
    store.close()
    result = runner.invoke(app, ["status", "--model-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert ("Label Studio unreachable at http://localhost:8080" in result.stdout
            and "Connection refused" in result.stdout
            and "set LABEL_STUDIO_URL to an address this host can reach" in result.stdout), result.stdout
    assert "Label Studio: no URL and token" in result.stdout  # project 8: nothing from /setup yet
    assert "s3cret" not in result.output and "tok-123" not in result.output


def test_status_says_reachable_and_prefers_the_configured_url(runner, tmp_path):
    store = Store(tmp_path)
    store.save_project(ProjectRecord("7", CONFIG, "http://localhost:8080", "tok"))
    if hasattr(store, "set_label_studio_state"):
        store.set_label_studio_state("7", error=None)
    store.close()
    env = {"LABEL_STUDIO_URL": "http://user:pw@label-studio:8080", "LABEL_STUDIO_API_KEY": "k"}
    result = runner.invoke(app, ["status", "--model-dir", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    assert "Label Studio reachable at http://label-studio:8080" in result.stdout or \
        "Label Studio at http://label-studio:8080 (not contacted yet)" in result.stdout, result.stdout
    assert "pw@" not in result.output


def test_status_of_an_empty_model_dir_says_what_to_do(runner, tmp_path):
    result = runner.invoke(app, ["status", "--model-dir", str(Path(tmp_path) / "m")])
    assert result.exit_code == 0 and "connect suggest in Label Studio" in result.output


def test_serve_on_a_model_dir_in_use_is_one_line_and_exit_2(tmp_path):
    """Two servers on one MODEL_DIR would sweep each other's half-written versions: the second is refused."""
    from suggest.store import Store

    held = Store(tmp_path / "models")
    held.lock()
    try:
        result = subprocess.run(
            [sys.executable, "-c", "from suggest.cli import app; app(prog_name='suggest')", "serve",
             "--model-dir", str(tmp_path / "models"),
             "--host", "127.0.0.1", "--port", "1"],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        held.close()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "in use by another suggest process" in result.stderr and "Traceback" not in result.stderr


def test_serve_shortens_the_gil_switch_interval_before_listening(tmp_path):
    """Issue 20: webhook answers wait for the GIL behind background retrains; `suggest serve` sets the interval
    from SUGGEST_GIL_SWITCH_MS (default 0.5 ms, Python's is 5 ms) and refuses a value it cannot use."""
    listen = ("import sys, uvicorn; uvicorn.run = lambda *a, **k: print('switch interval', sys.getswitchinterval()); "
              "from suggest.cli import app; app(prog_name='suggest')")
    argv = [sys.executable, "-c", listen, "serve", "--model-dir", str(tmp_path / "models"), "--host", "127.0.0.1",
            "--port", "1"]
    default = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=_clean_env())
    assert default.returncode == 0, default.stderr[-2000:]
    assert "switch interval 0.0005" in default.stdout
    chosen = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                            env={**_clean_env(), "SUGGEST_GIL_SWITCH_MS": "2"})
    assert "switch interval 0.002" in chosen.stdout, chosen.stderr[-2000:]
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                             env={**_clean_env(), "SUGGEST_GIL_SWITCH_MS": "0"})
    assert refused.returncode == 2 and "SUGGEST_GIL_SWITCH_MS must be milliseconds" in refused.stderr
    assert "Traceback" not in refused.stderr
