"""Old versions' predictions leave Label Studio: every re-rank adds one per unlabeled task, so
without pruning Label Studio's prediction table grows by a pool's worth with every retrain.

Runs its own `suggest serve` with SUGGEST_KEEP_VERSIONS=1 against the session's Label Studio.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import LABEL_CONFIG, Stack, suggest_env
from tests.e2e.labelstudio_server import (
    HttpServer,
    LabelStudioClient,
    choice_result,
    free_port,
    suggest_argv,
    wait_pushed,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def keep_one(stack: Stack) -> Iterator[HttpServer]:
    port = free_port()
    env = suggest_env() | {"SUGGEST_KEEP_VERSIONS": "1", "SUGGEST_PUSH_INTERVAL_SECONDS": "1"}
    server = HttpServer("suggest-keep1", suggest_argv("127.0.0.1", port, stack.workdir / "keep1-models"), port,
                        stack.workdir / "suggest-keep1.log", env=env)
    server.start(180)
    yield server
    server.stop()


def test_a_new_version_removes_the_previous_versions_predictions(
    ls: LabelStudioClient, keep_one: HttpServer, rt_tasks: list[tuple[str, str]]
) -> None:
    pid = ls.create_project("e2e prune versions", LABEL_CONFIG)["id"]
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:40]])
    truth = dict(rt_tasks[:40])
    tasks = ls.tasks(pid)
    ls.connect_ml(pid, keep_one.url, "suggest keep 1")

    cold = wait_pushed(keep_one, pid, trained=False)["model_version"]
    assert Counter(p["model_version"] for p in ls.predictions(pid))[cold] == 40

    for task in tasks[:12]:
        ls.annotate(task["id"], choice_result(truth[task["data"]["text"]]))
    m = wait_pushed(keep_one, pid, trained=True)
    trained = m["model_version"]

    held = Counter(p["model_version"] for p in ls.predictions(pid))
    assert cold not in held, f"the zero-shot version's predictions are still in Label Studio: {dict(held)}"
    assert cold in m["loop"]["pruned_versions"]
    assert held[trained] >= 40 - 12  # the new version's ranked predictions all stayed
    assert set(held) == {trained}, dict(held)
    assert ls.project(pid)["model_version"] == trained  # pruning never touches the current version
    assert ls.request("GET", f"/api/projects/{pid}/next")["id"] == m["loop"]["next_tasks"][0]
