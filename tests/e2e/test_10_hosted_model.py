"""A model class of one's own (issue 15) through the whole loop in the real Label Studio.

A second `suggest serve --model examples.keyword_model.model:KeywordModel` (batch of 5 put first)
is connected to a project of Rotten Tomatoes snippets: the class's predictions are pushed as
pre-annotations before any label; annotations made in Label Studio make its `fit` run in the
background and a new version appear (the class's state saved with it); and the pool pushed for that
version is ordered by the class's own `score` (outside the diverse batch put first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, suggest_env
from tests.e2e.labelstudio_server import (
    REPO_ROOT,
    HttpServer,
    LabelStudioClient,
    choice_result,
    free_port,
    suggest_argv,
    wait_pushed,
)

pytestmark = pytest.mark.e2e

TARGET = "examples.keyword_model.model:KeywordModel"
CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text" choice="single">'
          '<Choice value="fresh" hint="good great fun best love funny smart"/>'
          '<Choice value="rotten" hint="bad dull boring worst awful mess tedious"/></Choices></View>')
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def hosted(stack: Stack) -> Iterator[HttpServer]:
    port = free_port()
    model_dir = stack.workdir / "hosted-models"
    env = {**suggest_env(), "PYTHONPATH": str(REPO_ROOT), "SUGGEST_BATCH_SIZE": "5",
           "SUGGEST_PUSH_INTERVAL_SECONDS": "1"}
    server = HttpServer("suggest-hosted", [*suggest_argv("127.0.0.1", port, model_dir), "--model", TARGET], port,
                        stack.workdir / "suggest-hosted.log", env=env)
    server.model_dir = model_dir  # type: ignore[attr-defined]
    server.start(180)
    yield server
    server.stop()


def _class_state(model_dir: Path, version: str) -> dict:
    (meta,) = [p for p in model_dir.rglob("meta.json") if version in p.parts]
    return json.loads(meta.read_text())["state"]


def test_the_class_pre_annotates_trains_in_the_background_and_ranks_the_pool(
    ls: LabelStudioClient, hosted: HttpServer, rt_tasks: list[tuple[str, str]]
) -> None:
    pid = ls.create_project("e2e hosted class", CONFIG)["id"]
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:40]])
    ls.connect_ml(pid, hosted.url, "suggest hosted")
    first = wait_pushed(hosted, pid, trained=False, timeout=TIMEOUT)
    assert first["loop"]["tasks_scored"] == 40
    pre = ls.predictions(pid)
    assert len(pre) == 40 and {p["model_version"] for p in pre} == {first["model_version"]}
    assert all(p["result"][0]["value"]["choices"][0] in ("fresh", "rotten") for p in pre)

    # annotate 8 tasks in Label Studio: the class's fit runs in the background, a version appears
    tasks = sorted(ls.tasks(pid), key=lambda t: t["id"])
    truth = dict(rt_tasks[:40])
    started = time.monotonic()
    for t in tasks[:8]:
        ls.annotate(t["id"], choice_result(truth[t["data"]["text"]]))
    trained = wait_pushed(hosted, pid, trained=True, timeout=TIMEOUT)
    version = trained["model_version"]
    assert version != first["model_version"] and trained["loop"]["tasks_scored"] == 32
    state = _class_state(hosted.model_dir, version)  # type: ignore[attr-defined]
    assert state["trained_on"] == 8 and state["model_version"] == "keywords-8"
    print(f"\n[e2e hosted] 8 annotations -> version {version} pushed in {time.monotonic() - started:.1f} s")

    # the pool of that version, in Label Studio, is ordered by the class's own score (after the batch of 5)
    from examples.keyword_model.model import KeywordModel

    model = KeywordModel(project_id=str(pid), label_config=CONFIG)
    model._state = dict(state)
    pushed = {p["task"]: p for p in ls.predictions(pid) if p["model_version"] == version}
    assert len(pushed) == 32
    by_id = {t["id"]: t for t in tasks}
    ordered = sorted(pushed, key=lambda task_id: pushed[task_id]["score"])
    own = [p["score"] for p in model.predict([by_id[i] for i in ordered])]
    rest = own[5:]
    assert all(a <= b + 1e-9 for a, b in zip(rest, rest[1:], strict=False)), rest
    for task_id, p in zip(ordered, model.predict([by_id[i] for i in ordered]), strict=True):
        assert pushed[task_id]["result"][0]["value"]["choices"] == p["result"][0]["value"]["choices"]
