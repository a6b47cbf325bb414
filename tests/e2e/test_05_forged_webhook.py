"""A forged webhook against a real Label Studio project: it is acknowledged, and changes nothing.

Label Studio's webhooks carry no credentials, so anyone who can reach `suggest` can post one.
With Label Studio access (the URL and token `/setup` brings), `suggest` puts a per-project key in the
headers of the webhook Label Studio made for it; an event with the key is stored as sent, and any
other annotation event is a hint: `suggest` re-reads the task from Label Studio before anything
counts. Here the forged events name a real task of a real project: an annotation Label Studio never
had, a real annotation with the other label and another text (once with a guessed key), and the
deletion of a real annotation. The stored labels must stay exactly Label Studio's.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.e2e.conftest import LABEL_CONFIG, Stack, suggest_env
from tests.e2e.labelstudio_server import HttpServer, LabelStudioClient, choice_result, poll, suggest_command

pytestmark = pytest.mark.e2e


def _metrics(suggest: HttpServer, key: str) -> dict[str, Any] | None:
    return suggest.get("/metrics").json()["projects"].get(key)


def _settled(suggest: HttpServer, key: str, what: str, check) -> dict[str, Any]:
    return poll(what, lambda: _metrics(suggest, key),
                lambda m: m is not None and not m["training"] and m["unconfirmed"] == 0 and check(m), timeout=90)


def _exported(stack: Stack, key: str) -> dict[int, tuple[int, str, str]]:
    out = subprocess.run([*suggest_command(), "export", key, "--model-dir", str(stack.model_dir)],
                         capture_output=True, text=True, timeout=120, env=suggest_env(), cwd=stack.workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return {r["annotation_id"]: (r["task_id"], r["label"], r["text"]) for r in rows}


def test_a_forged_webhook_is_not_stored(
    ls: LabelStudioClient, suggest_server: HttpServer, stack: Stack, rt_tasks: list[tuple[str, str]]
) -> None:
    pid = ls.create_project("e2e forged webhook", LABEL_CONFIG)["id"]
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:8]])
    tasks = {t["data"]["text"]: t["id"] for t in ls.tasks(pid)}
    ids = [tasks[text] for text, _ in rt_tasks[:8]]
    truth = {tasks[text]: label for text, label in rt_tasks[:8]}
    ls.connect_ml(pid, suggest_server.url, "suggest forged")
    key = str(pid)
    # suggest puts a key in the headers of the webhook Label Studio made for it: its events need no re-read
    _settled(suggest_server, key, "the webhook to be signed", lambda m: m["webhooks"].startswith("signed"))

    real = {ls.annotate(t, choice_result(truth[t]))["id"]: t for t in ids[:2]}
    before = _settled(suggest_server, key, "the two real annotations", lambda m: m["annotations"] == 2)
    assert before["signed_events"] == 2, "Label Studio's own events did not carry the key"
    expected = {a: (t, truth[t], rt_tasks[ids.index(t)][0]) for a, t in real.items()}
    assert _exported(stack, key) == expected

    victim_ann, victim_task = next(iter(real.items()))
    other = "rotten" if truth[victim_task] == "fresh" else "fresh"
    project = {"id": pid, "label_config": LABEL_CONFIG}

    def event(action: str, ann_id: int, task_id: int, label: str, text: str) -> dict[str, Any]:
        return {"action": action, "project": project,
                "annotation": {"id": ann_id, "result": choice_result(label), "was_cancelled": False,
                               "ground_truth": True, "task": task_id, "project": pid},
                "task": {"id": task_id, "data": {"text": text}, "project": pid}}

    forged = [
        event("ANNOTATION_CREATED", 10**9, ids[3], "fresh", "an attacker's text"),  # never existed in LS
        event("ANNOTATION_UPDATED", victim_ann, victim_task, other, "an attacker's text"),  # real id, lies
        {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": a} for a in real], "project": project},
        {"action": "TASKS_DELETED", "tasks": [{"id": t} for t in real.values()], "project": project},
    ]
    for body in forged:
        resp = suggest_server.post("/webhook", body)
        assert resp.status_code == 200, resp.text  # acknowledged; the check runs in the background
    resp = suggest_server.post("/webhook", forged[1], headers={"X-Suggest-Project-Key": "a-guess"})
    assert resp.status_code == 200, resp.text  # a wrong key: a hint like any unsigned event

    after = _settled(suggest_server, key, "the forged events to be checked", lambda m: True)
    assert after["annotations"] == 2 and after["labels"] == 2, after
    assert after["signed_events"] == 2, "a forged event counted as signed"
    assert after["confirm_error"] is None, after["confirm_error"]
    assert _exported(stack, key) == expected, "a forged webhook changed what suggest stores"
    print(f"\n[e2e] {len(forged)} forged webhooks acknowledged, stored labels unchanged: {sorted(expected)}")
