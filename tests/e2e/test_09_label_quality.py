"""Label quality in the real Label Studio: two annotators (two Label Studio users made through its API)
label overlapping tasks; their disagreement shows in the agreement figures, wrong labels planted on
purpose head the "suggest: review" tab, a reviewer's fix takes a task out of it after the next retrain,
and a tab of the annotators' own is left alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import LABEL_CONFIG
from tests.e2e.labelstudio_server import HttpServer, LabelStudioClient, choice_result, loop_state, poll

pytestmark = pytest.mark.e2e

N_TASKS = 150
PLANTED = 8
SHARED = 20  # tasks both annotators label; they disagree on every fourth
TIMEOUT = 150.0
OTHER = {"fresh": "rotten", "rotten": "fresh"}


@dataclass
class Setup:
    project_id: int
    truth: dict[int, str]
    planted: list[int]
    annotators: tuple[int, int]
    own_tab: dict[str, Any]
    annotation_of: dict[int, int]  # planted task -> annotator A's annotation id


def _user(ls: LabelStudioClient, name: str) -> int:
    return ls.request("POST", "/api/users/", json={"email": f"{name}@example.com", "username": name,
                                                   "first_name": name})["id"]


def _quality(suggest: HttpServer, pid: int) -> dict[str, Any]:
    m = loop_state(suggest, pid) or {}
    q = m.get("quality") or {}
    return {**q, "current": m.get("model_version")}


def _review_tab(ls: LabelStudioClient, pid: int) -> tuple[dict[str, Any] | None, list[int]]:
    views = ls.request("GET", "/api/dm/views", params={"project": pid})
    tab = next((v for v in views if v.get("data", {}).get("title") == "suggest: review"), None)
    if tab is None:
        return None, []
    body = ls.request("GET", "/api/tasks", params={"project": pid, "view": tab["id"], "page_size": 200})
    return tab, [t["id"] for t in body.get("tasks", [])]


def _clear_cut(ids: list[int], texts: list[str], labels: list[str], n: int) -> list[int]:
    """The n tasks whose text a model trained on other Rotten Tomatoes snippets finds plainest in its true
    label: a wrong label there is an error a reviewer would call an error (not an ambiguous snippet)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from backends.encoders import shared_text_encoder
    from suggest.datasets import rotten_tomatoes

    every, truth = rotten_tomatoes()
    held = set(texts)
    others = [(t, lb) for t, lb in zip(every[:1500], truth[:1500], strict=True) if t not in held][:400]
    encoder = shared_text_encoder()
    head = LogisticRegression(C=3.0, max_iter=1000).fit(encoder.encode([t for t, _ in others]),
                                                         [lb for _, lb in others])
    proba = head.predict_proba(encoder.encode(texts))
    cols = list(head.classes_)
    own = np.array([proba[i, cols.index(lb)] for i, lb in enumerate(labels)])
    return [ids[i] for i in np.argsort(-own)[:n]]


@pytest.fixture(scope="module")
def setup(ls: LabelStudioClient, suggest_server: HttpServer, rt_tasks: list[tuple[str, str]]) -> Setup:
    pid = ls.create_project("e2e label quality", LABEL_CONFIG)["id"]
    sample = rt_tasks[-N_TASKS:]  # other tests use the front of the sample
    ls.import_tasks(pid, [{"text": text} for text, _ in sample])
    truth_by_text = dict(sample)
    tasks = sorted(ls.tasks(pid), key=lambda t: t["id"])
    truth = {t["id"]: truth_by_text[t["data"]["text"]] for t in tasks}
    own_tab = ls.request("POST", "/api/dm/views", json={"project": pid, "data": {"title": "my own tab"}})
    ls.connect_ml(pid, suggest_server.url, "suggest quality")
    a, b = _user(ls, f"anna{pid}"), _user(ls, f"ben{pid}")
    ids = list(truth)
    planted = _clear_cut(ids[SHARED:], [next(t["data"]["text"] for t in tasks if t["id"] == i) for i in ids[SHARED:]],
                         [truth[i] for i in ids[SHARED:]], PLANTED)  # wrong labels on tasks only annotator A labels
    annotation_of = {}
    for i, task_id in enumerate(ids):
        label = OTHER[truth[task_id]] if task_id in planted else truth[task_id]
        made = ls.request("POST", f"/api/tasks/{task_id}/annotations",
                          json={"result": choice_result(label), "completed_by": a, "lead_time": 3.0})
        annotation_of[task_id] = made["id"]
        if i < SHARED:
            theirs = OTHER[truth[task_id]] if i % 4 == 0 else truth[task_id]
            ls.request("POST", f"/api/tasks/{task_id}/annotations",
                       json={"result": choice_result(theirs), "completed_by": b, "lead_time": 2.0})
    return Setup(pid, truth, planted, (a, b), own_tab, annotation_of)


def test_disagreement_shows_in_the_agreement_figures(suggest_server: HttpServer, setup: Setup):
    q = poll(f"a quality report for all {N_TASKS} annotated tasks", lambda: _quality(suggest_server, setup.project_id),
             lambda q: q.get("counts", {}).get("tasks") == N_TASKS and q.get("model_version") == q["current"],
             TIMEOUT)
    assert q["counts"]["annotators"] == 2
    headline = q["agreement"]["sentiment"]
    assert headline["tasks"] == SHARED
    assert headline["krippendorff_alpha"] is not None and headline["krippendorff_alpha"] < 0.8  # they disagree on 5


def test_planted_wrong_labels_head_the_review_tab(ls: LabelStudioClient, suggest_server: HttpServer, setup: Setup):
    pid = setup.project_id

    def tab_ready() -> tuple[list[int], dict]:
        q = _quality(suggest_server, pid)  # the tab is written after the report, paced, once annotators pause
        state = q.get("review_tab") or {}
        if not (state.get("written") and state.get("version") == q.get("model_version") == q["current"]):
            return [], q
        tab, ids = _review_tab(ls, pid)
        return (ids if tab is not None else []), q

    ids, q = poll("the review tab to hold suspects", tab_ready, lambda r: bool(r[0]), TIMEOUT)
    assert q["review_tab"]["tasks"] == len(ids)
    report = [s["task_id"] for s in q.get("top_suspects", [])]
    assert ids[: len(report)] == report  # the tab keeps the suspicion order
    top = set(ids[: 2 * len(setup.planted)])
    assert len(top & set(setup.planted)) >= PLANTED // 2, (ids[:20], setup.planted)  # chance: about 1
    views = ls.request("GET", "/api/dm/views", params={"project": pid})
    mine = next(v for v in views if v["id"] == setup.own_tab["id"])
    assert mine["data"] == setup.own_tab["data"]  # the annotators' own tab is untouched
    assert sum(1 for v in views if v.get("data", {}).get("title") == "suggest: review") == 1


def test_a_reviewers_fix_takes_the_task_out_after_the_next_retrain(
    ls: LabelStudioClient, suggest_server: HttpServer, setup: Setup
):
    pid = setup.project_id
    _, ids = _review_tab(ls, pid)
    fixed = next(t for t in ids if t in setup.planted)
    before = _quality(suggest_server, pid)["model_version"]
    ls.update_annotation(setup.annotation_of[fixed], choice_result(setup.truth[fixed]))

    def after() -> list[int] | None:
        q = _quality(suggest_server, pid)
        if q.get("model_version") in (None, before) or q.get("model_version") != q["current"]:
            return None
        if not (q.get("review_tab") or {}).get("written") or q["review_tab"]["version"] != q["model_version"]:
            return None  # that version's tab is still being written
        tab, held = _review_tab(ls, pid)
        return held if tab is not None else None

    held = poll("a new quality report and review tab after the fix", after, lambda h: h is not None, TIMEOUT)
    assert fixed not in held
