"""Edges of the live loop in the real Label Studio: nothing to push, and "Retrieve predictions" after a push.

- A fully labelled project has no queue to push. Label Studio refuses to point a project at a
  model_version none of its predictions carry (400 "Model version doesn't exist"), so the loop
  must not ask: nothing to push is a normal state, said in /metrics, never an ERROR.
- Label Studio's "Retrieve predictions" skips a task that already holds a prediction of the
  version the latest /setup reported (contract doc sections 5.1 and 6). The loop's push and /setup
  must therefore name the same version, or every task ends up with two predictions of it.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.conftest import LABEL_CONFIG, Stack
from tests.e2e.labelstudio_server import HttpServer, LabelStudioClient, choice_result, loop_state, poll, wait_pushed

pytestmark = pytest.mark.e2e

TIMEOUT = 90.0


def test_a_fully_labelled_project_pushes_nothing_and_logs_no_error(
    ls: LabelStudioClient, stack: Stack, suggest_server: HttpServer, rt_tasks: list[tuple[str, str]]
) -> None:
    pid = ls.create_project("e2e fully labelled", LABEL_CONFIG)["id"]
    ls.import_tasks(pid, [{"data": {"text": text}, "annotations": [{"result": choice_result(label)}]}
                          for text, label in rt_tasks[:20]])
    ls.connect_ml(pid, suggest_server.url, "suggest labelled")
    m = wait_pushed(suggest_server, pid, trained=True, timeout=TIMEOUT)
    assert m["loop"]["tasks_scored"] == 0
    assert "nothing to push" in m["loop"]["note"], m["loop"]
    assert m["last_error"] is None, m["last_error"]
    log = stack.suggest.process.log_path.read_text(errors="replace")
    failures = [line for line in log.splitlines() if f"project {pid}:" in line and " ERROR " in line]
    assert not failures, failures


def test_retrieve_predictions_after_the_push_stores_no_second_prediction(
    ls: LabelStudioClient, suggest_server: HttpServer, rt_tasks: list[tuple[str, str]]
) -> None:
    pid = ls.create_project("e2e retrieve after push", LABEL_CONFIG)["id"]
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:40]])
    ml = ls.connect_ml(pid, suggest_server.url, "suggest retrieve")
    m = wait_pushed(suggest_server, pid, trained=False, timeout=TIMEOUT)
    version = m["model_version"]
    pushed = ls.predictions(pid)
    assert len(pushed) == 40 and {p["model_version"] for p in pushed} == {version}
    assert ls.ml(ml["id"])["model_version"] == version  # /setup reports the version the loop pushed
    ls.retrieve_predictions(pid)
    after = ls.predictions(pid)
    per_task = Counter((p["task"], p["model_version"]) for p in after)
    doubled = {key: n for key, n in per_task.items() if n > 1}
    assert not doubled, f"{len(doubled)} tasks hold two predictions of one version, e.g. {list(doubled)[:3]}"
    assert len(after) == 40
    assert loop_state(suggest_server, pid)["model_version"] == version


def test_retrieve_predictions_after_a_trained_push_stores_no_second_prediction(
    ls: LabelStudioClient, suggest_server: HttpServer, rt_tasks: list[tuple[str, str]]
) -> None:
    """The same after annotations: the trained version the loop pushed is the one /setup reports."""
    pid = ls.create_project("e2e retrieve after trained push", LABEL_CONFIG)["id"]
    sample = rt_tasks[:40]
    ls.import_tasks(pid, [{"data": {"text": text}, **({"annotations": [{"result": choice_result(label)}]}
                                                      if i < 10 else {})}
                          for i, (text, label) in enumerate(sample)])
    ls.connect_ml(pid, suggest_server.url, "suggest retrieve trained")
    m = wait_pushed(suggest_server, pid, trained=True, timeout=TIMEOUT)
    version = m["model_version"]
    poll("the trained version's predictions in Label Studio",
         lambda: [p for p in ls.predictions(pid) if p["model_version"] == version], lambda got: len(got) == 30,
         TIMEOUT)
    ls.retrieve_predictions(pid)
    per_task = Counter((p["task"], p["model_version"]) for p in ls.predictions(pid))
    doubled = {key: n for key, n in per_task.items() if n > 1}
    assert not doubled, f"{len(doubled)} tasks hold two predictions of one version, e.g. {list(doubled)[:3]}"


def test_retrieve_predictions_during_the_connect_time_push_stores_no_second_prediction(
    ls: LabelStudioClient, suggest_server: HttpServer, rt_tasks: list[tuple[str, str]]
) -> None:
    """An annotator who presses "Retrieve predictions" right after connecting, while the first push ranks
    the pool: Label Studio stores /predict's answers, and the push must not add a second one per task."""
    pid = ls.create_project("e2e retrieve during push", LABEL_CONFIG)["id"]
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:300]])
    ls.connect_ml(pid, suggest_server.url, "suggest retrieve during push")
    ls.retrieve_predictions(pid)
    m = wait_pushed(suggest_server, pid, trained=False, timeout=TIMEOUT)
    preds = ls.predictions(pid)
    per_task = Counter((p["task"], p["model_version"]) for p in preds)
    doubled = {key: n for key, n in per_task.items() if n > 1}
    assert not doubled, f"{len(doubled)} of 300 tasks hold two predictions of one version ({m['model_version']})"
    assert len(preds) == 300
