"""`suggest autolabel` in the real Label Studio: the standing report appears after a retrain, `--apply`
creates annotations marked as machine work only on tasks nobody annotated (a task a person skips or
annotates between the dry run and --apply is left alone), they never become training labels, and `--undo RUN`
removes exactly them, leaving every human annotation in place."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.e2e.conftest import LABEL_CONFIG, Stack
from tests.e2e.labelstudio_server import HttpServer, LabelStudioClient, choice_result, loop_state, poll, suggest_command

pytestmark = pytest.mark.e2e

N_TASKS = 170
LABELED = 110
TIMEOUT = 180.0


def _cli(stack: Stack, *args: str) -> dict[str, Any]:
    done = subprocess.run([*suggest_command(), "autolabel", *args, "--format", "json", "--model-dir",
                           str(stack.model_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _annotations(ls: LabelStudioClient, pid: int) -> dict[int, list[dict[str, Any]]]:
    return {t["id"]: t.get("annotations") or [] for t in ls.request(
        "GET", f"/api/projects/{pid}/export", params={"exportType": "JSON", "download_all_tasks": "true"})}


def test_autolabel_applies_marked_annotations_on_unannotated_tasks_and_undo_removes_exactly_them(
    ls: LabelStudioClient, suggest_server: HttpServer, stack: Stack, rt_tasks: list[tuple[str, str]]
):
    pid = ls.create_project("e2e autolabel", LABEL_CONFIG)["id"]
    sample = rt_tasks[:N_TASKS]
    ls.import_tasks(pid, [{"text": text} for text, _ in sample])
    truth_by_text = dict(sample)
    tasks = sorted(ls.tasks(pid), key=lambda t: t["id"])
    truth = {t["id"]: truth_by_text[t["data"]["text"]] for t in tasks}
    ls.connect_ml(pid, suggest_server.url, "suggest autolabel")
    ids = list(truth)
    for task_id in ids[:LABELED]:
        ls.annotate(task_id, choice_result(truth[task_id]))

    def standing() -> dict[str, Any]:
        m = loop_state(suggest_server, pid) or {}
        return {**(m.get("standing") or {}), "current": m.get("model_version"), "labels": m.get("labels")}

    st = poll("a standing report for the trained version", standing,
              lambda s: s.get("model_version") == s["current"] and (s.get("estimates") or {}).get(
                  "out_of_fold", {}).get("n") == LABELED, TIMEOUT)
    assert st["estimates"]["out_of_fold"]["low"] <= st["estimates"]["out_of_fold"]["estimate"]
    assert st["learning_curve"] and st["stopping"]["stop_set"] > 0  # the stop set was drawn at the first push

    plan = _cli(stack, str(pid), "--target", "0.6")
    assert plan["qualifying"] >= 3, plan
    picked = [t["task_id"] for t in plan["tasks"]]
    assert set(picked).isdisjoint(ids[:LABELED])
    # after the dry run a person skips one qualifying task and annotates another: --apply leaves both alone
    skipped, human_late = picked[0], picked[1]
    ls.request("POST", f"/api/tasks/{skipped}/annotations", json={"result": [], "was_cancelled": True})
    ls.annotate(human_late, choice_result(truth[human_late]))
    before = _annotations(ls, pid)
    human = {a["id"] for anns in before.values() for a in anns}

    applied = _cli(stack, str(pid), "--target", "0.6", "--apply")
    run = applied["run_id"]
    assert skipped in applied["skipped_annotated"] and applied["created"] >= 1  # suggest holds no label for it
    after = _annotations(ls, pid)
    machine = {a["id"]: (t, a) for t, anns in after.items() for a in anns if a["id"] not in human}
    assert len(machine) == applied["created"]
    assert not {skipped, human_late} & {t for t, _ in machine.values()}
    for task_id, ann in machine.values():
        assert not before[task_id], f"task {task_id} had an annotation and got a machine one"
        assert ann["ground_truth"] is False
        mark = ann["result"][0]["suggest_autolabel"]
        assert mark["run_id"] == run and mark["model_version"].startswith("v")
        assert mark["probability"] >= mark["threshold"]
        assert ann["result"][0]["value"]["choices"][0] == next(t["label"] for t in applied["tasks"]
                                                                if t["task_id"] == task_id)
    assert [len(after[t]) for t in before if before[t]] == [len(before[t]) for t in before if before[t]]

    # machine work never becomes a label: suggest holds the people's LABELED + 1 annotations only
    def held() -> int | None:
        m = loop_state(suggest_server, pid) or {}
        return None if m.get("training") or m.get("unconfirmed") else m.get("labels")

    poll("suggest to settle after the machine annotations' webhooks", held, lambda n: n is not None, TIMEOUT)
    assert held() == LABELED + 1

    undone = _cli(stack, str(pid), "--undo", run)
    assert undone["removed"] == applied["created"] and not undone["kept_changed_by_a_person"]
    final = _annotations(ls, pid)
    assert {a["id"] for anns in final.values() for a in anns} == human  # exactly the machine ones went
    again = subprocess.run([*suggest_command(), "autolabel", str(pid), "--undo", "nonexistent", "--model-dir",
                            str(stack.model_dir)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "no autolabel run" in again.stderr and "Traceback" not in again.stderr
