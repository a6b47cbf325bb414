"""Session fixtures for the end-to-end suite: one Label Studio, one `suggest`, one stub backend.

All three start once per session, in parallel (Label Studio's first start migrates a new SQLite
database and takes 25-60 s; `suggest` imports torch meanwhile), on free loopback ports, each in its
own process group, with logs in the session's temp folder. The log tails are attached to every
failing test's report, since the interesting half of an e2e failure is usually in a server log.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.labelstudio_server import (
    REPO_ROOT,
    HttpServer,
    LabelStudioClient,
    LabelStudioServer,
    ensure_ls_venv,
    free_port,
    ls_venv_path,
    suggest_argv,
)

N_TASKS = 300
SAMPLE_SEED = 20261121
LATENCY_JSON = REPO_ROOT / "benchmarks" / "out" / "e2e_latency.json"

LABEL_CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text" choice="single">'
    '<Choice value="fresh"/><Choice value="rotten"/>'
    "</Choices></View>"
)
LABELS = ("fresh", "rotten")

# Settings `suggest` reads from the environment (plus every SUGGEST_*); a developer's shell must not
# steer the test server.
SUGGEST_ENV_NAMES = (
    "MODEL_DIR", "HOST", "PORT", "LABEL_STUDIO_URL", "LABEL_STUDIO_HOST", "LABEL_STUDIO_API_KEY",
    "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "LOG_LEVEL",
)  # fmt: skip


@dataclass
class Stack:
    """The servers of one session and what their start-up cost (the figures the report quotes)."""

    workdir: Path
    label_studio: LabelStudioServer
    suggest: HttpServer
    stub: HttpServer
    model_dir: Path
    figures: dict[str, Any] = field(default_factory=dict)
    suggest_error: str | None = None

    def tails(self) -> list[tuple[str, str]]:
        return [
            ("label-studio log", self.label_studio.tail()),
            ("suggest log", self.suggest.tail()),
            ("stub log", self.stub.tail(20)),
        ]

    def record(self, **figures: Any) -> None:
        """Keep figures in memory and (re)write benchmarks/out/e2e_latency.json (gitignored).

        The file holds this session's figures only, so a failed run never shows stale numbers.
        """
        self.figures.update(figures)
        LATENCY_JSON.parent.mkdir(parents=True, exist_ok=True)
        LATENCY_JSON.write_text(json.dumps(self.figures, indent=2, sort_keys=True) + "\n")


_STACK: Stack | None = None


def suggest_env() -> dict[str, str]:
    """The caller's environment minus the settings `suggest` reads (a shell must not steer the test)."""
    env = {k: v for k, v in os.environ.items() if k not in SUGGEST_ENV_NAMES and not k.startswith("SUGGEST_")}
    env["HF_HUB_OFFLINE"] = "1"  # no model hub on these machines; the encoder ships in a package
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Install (if needed) and start Label Studio, `suggest` and the stub; stop all three at the end."""
    global _STACK
    workdir = tmp_path_factory.mktemp("e2e")
    session_start = time.monotonic()
    install_seconds = ensure_ls_venv(ls_venv_path())

    model_dir = workdir / "suggest-models"  # fresh: no state from earlier runs
    suggest_port = free_port()
    stub_port = free_port()
    label_studio = LabelStudioServer(ls_venv_path(), workdir / "label-studio")
    suggest = HttpServer(
        "suggest", suggest_argv("127.0.0.1", suggest_port, model_dir), suggest_port,
        workdir / "suggest.log", env=suggest_env(),
    )  # fmt: skip
    stub = HttpServer(
        "stub", [sys.executable, str(Path(__file__).with_name("stub_backend.py")), "--port", str(stub_port)],
        stub_port, workdir / "stub.log", env=dict(os.environ),
    )  # fmt: skip
    _STACK = Stack(workdir, label_studio, suggest, stub, model_dir)
    try:
        # Spawn all three first, then wait: the start-ups overlap instead of adding up.
        label_studio.launch()
        suggest.launch()
        stub.launch()
        stub.wait_ready(30)
        try:
            suggest_seconds: float | None = suggest.wait_ready(180)
        except Exception as exc:  # reported by the `suggest` fixture; LS-only tests still run
            _STACK.suggest_error = str(exc)
            suggest_seconds = None
        ls_seconds = label_studio.wait_ready()
        _STACK.record(
            ls_install_seconds=round(install_seconds, 1),
            ls_start_seconds=round(ls_seconds, 1),
            suggest_start_seconds=None if suggest_seconds is None else round(suggest_seconds, 1),
            session_setup_seconds=round(time.monotonic() - session_start, 1),
        )
        suggest_text = "FAILED" if suggest_seconds is None else f"{suggest_seconds:.1f} s"
        print(
            f"\n[e2e] label-studio install {install_seconds:.0f} s (0 = reused), first start {ls_seconds:.1f} s, "
            f"suggest start {suggest_text}; logs in {workdir}"
        )
        yield _STACK
    finally:
        for server in (suggest, stub, label_studio):
            server.stop()
        _STACK.record(suite_seconds=round(time.monotonic() - session_start, 1))
        print(f"\n[e2e] session took {time.monotonic() - session_start:.0f} s; logs in {workdir}")


@pytest.fixture(scope="session")
def label_studio(stack: Stack) -> LabelStudioServer:
    return stack.label_studio


@pytest.fixture(scope="session")
def ls(stack: Stack) -> Iterator[LabelStudioClient]:
    """The REST client, authenticated with the admin's legacy token."""
    client = stack.label_studio.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def suggest_server(stack: Stack) -> HttpServer:
    """`suggest serve`; fails the test (with its log) when the server could not start."""
    if stack.suggest_error:
        pytest.fail(f"suggest did not start: {stack.suggest_error}", pytrace=False)
    return stack.suggest


@pytest.fixture(scope="session")
def stub_server(stack: Stack) -> HttpServer:
    return stack.stub


@pytest.fixture(scope="session")
def rt_tasks() -> list[tuple[str, str]]:
    """300 Rotten Tomatoes snippets with their true labels, a fixed sample (same every run)."""
    from suggest.datasets import rotten_tomatoes

    texts, labels = rotten_tomatoes()
    picked = random.Random(SAMPLE_SEED).sample(range(len(texts)), N_TASKS)
    return [(texts[i], labels[i]) for i in picked]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the servers' log tails to a failing e2e test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _STACK is not None and "e2e" in item.keywords:
        for title, text in _STACK.tails():
            report.sections.append((title, text))
