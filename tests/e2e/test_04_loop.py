"""The live active-learning loop in the real Label Studio: nobody presses "Retrieve predictions".

After connecting, and again after annotations produce a new version, `suggest` itself ranks
the whole pool, bulk-imports one prediction per unlabeled task, points the project's
model_version at that version and turns on uncertainty sampling, so Label Studio's label
stream (`/next`) hands out the task the engine ranks first. New tasks get ranked too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import LABEL_CONFIG
from tests.e2e.labelstudio_server import HttpServer, LabelStudioClient, choice_result, loop_state, poll
from tests.e2e.labelstudio_server import wait_pushed as _wait_pushed

pytestmark = pytest.mark.e2e

N_TASKS = 150
LOOP_TIMEOUT = 120.0


@dataclass
class Loop:
    project_id: int
    truth: dict[int, str]


@pytest.fixture(scope="module")
def loop(ls: LabelStudioClient, suggest_server: HttpServer, rt_tasks: list[tuple[str, str]]) -> Loop:
    pid = ls.create_project("e2e live loop", LABEL_CONFIG)["id"]
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:N_TASKS]])
    truth_by_text = dict(rt_tasks[:N_TASKS])
    truth = {t["id"]: truth_by_text[t["data"]["text"]] for t in ls.tasks(pid)}
    ls.connect_ml(pid, suggest_server.url, "suggest loop")
    return Loop(pid, truth)


def wait_pushed(suggest: HttpServer, pid: int, trained: bool) -> dict[str, Any]:
    return _wait_pushed(suggest, pid, trained, LOOP_TIMEOUT)


def assert_pool_carries(ls: LabelStudioClient, pid: int, version: str, labeled: set[int]) -> dict[int, dict]:
    """Every unlabeled task holds exactly one prediction of `version`; returns them by task."""
    preds = [p for p in ls.predictions(pid) if p["model_version"] == version]
    per_task = Counter(p["task"] for p in preds)
    tasks = {t["id"] for t in ls.tasks(pid)}
    missing = sorted(tasks - labeled - set(per_task))
    assert not missing, f"{len(missing)} unlabeled tasks have no {version} prediction, e.g. {missing[:5]}"
    doubled = [t for t, n in per_task.items() if n > 1]
    assert not doubled, f"{len(doubled)} tasks hold two {version} predictions"
    return {p["task"]: p for p in preds}


def test_connecting_ranks_the_pool_cold_start(ls: LabelStudioClient, suggest_server: HttpServer, loop: Loop):
    m = wait_pushed(suggest_server, loop.project_id, trained=False)
    version = m["model_version"]
    preds = assert_pool_carries(ls, loop.project_id, version, labeled=set())
    project = ls.project(loop.project_id)
    assert project["model_version"] == version
    assert project["sampling"] == "Uncertainty sampling"
    batch = m["loop"]["next_tasks"]
    batch_scores = [preds[t]["score"] for t in batch]
    assert batch_scores == sorted(batch_scores)
    others = [p["score"] for t, p in preds.items() if t not in batch]
    assert max(batch_scores) < min(others)  # the chosen batch sorts first in Label Studio


def test_annotations_rerank_the_whole_pool_and_next_follows(
    ls: LabelStudioClient, suggest_server: HttpServer, loop: Loop
):
    first = ls.request("GET", f"/api/projects/{loop.project_id}/next")
    cold = loop_state(suggest_server, loop.project_id)
    assert first["id"] == cold["loop"]["next_tasks"][0]  # the label stream serves the engine's first pick
    labeled = [first["id"], *[t for t in loop.truth if t != first["id"]][:29]]
    for task_id in labeled:
        ls.annotate(task_id, choice_result(loop.truth[task_id]))
    m = wait_pushed(suggest_server, loop.project_id, trained=True)
    version = m["model_version"]
    assert_pool_carries(ls, loop.project_id, version, labeled=set(labeled))
    assert ls.project(loop.project_id)["model_version"] == version
    nxt = ls.request("GET", f"/api/projects/{loop.project_id}/next")
    assert nxt["id"] == m["loop"]["next_tasks"][0]
    assert m["loop"]["tasks_scored"] <= N_TASKS - len(labeled)


def test_new_tasks_are_ranked_without_a_retrain(
    ls: LabelStudioClient, suggest_server: HttpServer, loop: Loop, rt_tasks: list[tuple[str, str]]
):
    version = loop_state(suggest_server, loop.project_id)["model_version"]
    before = {t["id"] for t in ls.tasks(loop.project_id)}
    ls.import_tasks(loop.project_id, [{"text": text} for text, _ in rt_tasks[N_TASKS : N_TASKS + 10]])
    new = {t["id"] for t in ls.tasks(loop.project_id)} - before

    def predicted() -> set[int]:
        return {p["task"] for p in ls.predictions(loop.project_id) if p["model_version"] == version}

    poll("the 10 new tasks to get predictions of the current version", predicted, lambda got: new <= got,
         LOOP_TIMEOUT)
    assert loop_state(suggest_server, loop.project_id)["model_version"] == version
