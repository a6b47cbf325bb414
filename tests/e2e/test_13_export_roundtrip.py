"""Export round trip in the real Label Studio (issue 18): a project annotated there by two users (choices and
entity spans, a ground-truth annotation, an edit and a deletion), exported by `suggest export --format
label-studio`, imported into a new project, holds the same annotations; `--version` still gives what the
first version trained on after the edit and the deletion, and the history holds one event per change however
often suggest re-read the annotations."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from suggest.store import Store
from tests.e2e.conftest import Stack, suggest_env
from tests.e2e.labelstudio_server import HttpServer, LabelStudioClient, loop_state, poll, suggest_command

pytestmark = pytest.mark.e2e

CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text" choice="single"><Choice value="fresh"/><Choice value="rotten"/>'
    '</Choices><Labels name="ner" toName="text"><Label value="PER"/><Label value="ORG"/></Labels></View>'
)
N_TASKS = 12
TIMEOUT = 150.0


def _user(ls: LabelStudioClient, name: str) -> int:
    return ls.request("POST", "/api/users/", json={"email": f"{name}@example.com", "username": name,
                                                   "first_name": name})["id"]


def _result(text: str, label: str, spans: list[tuple[str, str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                  "value": {"choices": [label]}}]
    for i, (fragment, tag) in enumerate(spans):
        start = text.index(fragment)
        out.append({"id": f"r{i}", "from_name": "ner", "to_name": "text", "type": "labels",
                    "value": {"start": start, "end": start + len(fragment), "text": fragment, "labels": [tag]}})
    return out


def _export(stack: Stack, pid: int, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([*suggest_command(), "export", str(pid), "--model-dir", str(stack.model_dir), *args],
                         capture_output=True, text=True, timeout=120, env=suggest_env(), cwd=stack.workdir)
    assert out.returncode == 0, f"suggest export failed ({out.returncode}): {out.stderr[-2000:]}"
    return out


def _annotations(ls: LabelStudioClient, pid: int) -> dict[str, list[tuple]]:
    """text -> its annotations as comparable tuples: annotator, ground truth, lead time, regions."""
    out: dict[str, list[tuple]] = {}
    for task in ls.tasks(pid):
        anns = []
        for a in ls.annotations(task["id"]):
            if a.get("was_cancelled"):
                continue
            regions = sorted(json.dumps({k: r[k] for k in ("from_name", "to_name", "type", "value")}, sort_keys=True)
                             for r in a["result"])
            who = a["completed_by"]["id"] if isinstance(a["completed_by"], dict) else a["completed_by"]
            anns.append((who, bool(a["ground_truth"]), a.get("lead_time"), tuple(regions)))
        out[task["data"]["text"]] = sorted(anns)
    return out


def test_a_label_studio_export_imports_back_unchanged(
    ls: LabelStudioClient, suggest_server: HttpServer, stack: Stack, rt_tasks: list[tuple[str, str]], tmp_path: Path
):
    sample = rt_tasks[100:100 + N_TASKS]  # other tests use other slices
    names = ["Ada Lovelace", "Acme Corp"]
    texts = [f"{names[i % 2]} said: {text}" for i, (text, _) in enumerate(sample)]
    pid = ls.create_project("e2e export round trip", CONFIG)["id"]
    ls.import_tasks(pid, [{"text": t} for t in texts])
    ml_id = ls.connect_ml(pid, suggest_server.url, "suggest export")["id"]
    a, b = _user(ls, f"exa{pid}"), _user(ls, f"exb{pid}")
    tasks = sorted(ls.tasks(pid), key=lambda t: t["id"])
    made: list[int] = []
    for i, task in enumerate(tasks):
        text, label = task["data"]["text"], sample[i][1]
        spans = [(names[i % 2], "PER" if i % 2 == 0 else "ORG")] if i % 3 else []
        made.append(ls.request("POST", f"/api/tasks/{task['id']}/annotations", json={
            "result": _result(text, label, spans), "completed_by": a, "lead_time": 1.0 + i,
            "ground_truth": i == 5})["id"])
        if i < 4:  # a second annotator on a few tasks, disagreeing on one
            other = {"fresh": "rotten", "rotten": "fresh"}[label] if i == 0 else label
            made.append(ls.request("POST", f"/api/tasks/{task['id']}/annotations", json={
                "result": _result(text, other, []), "completed_by": b, "lead_time": 2.5})["id"])

    def stored(pid: int = pid) -> set[int]:
        return {json.loads(x)["annotation_id"] for x in _export(stack, pid).stdout.split("\n") if x.strip()}

    poll("suggest to hold every annotation", stored, lambda got: got == set(made), TIMEOUT)
    first = poll("a trained version", lambda: (loop_state(suggest_server, pid) or {}).get("model_version", ""),
                 lambda v: v.startswith("v"), TIMEOUT)
    pinned = _export(stack, pid, "--version", first).stdout

    # an edit and a deletion in Label Studio reach the store; the first version's snapshot stays as it was
    edited, deleted = made[-1], made[1]  # the last task's annotation; the second annotator's on the first task
    ls.update_annotation(edited, _result(tasks[-1]["data"]["text"], "fresh", []))
    ls.delete_annotation(deleted)
    poll("the deletion to reach suggest", stored, lambda got: got == set(made) - {deleted}, TIMEOUT)
    assert _export(stack, pid, "--version", first).stdout == pinned

    # a change that came with no webhook (the project's webhook switched off meanwhile) reaches the store by the
    # full re-read that Start Training makes when Label Studio's annotation count differs from the store's; the
    # history then holds one event per change, however often suggest re-read the annotations
    silent = made[3]  # the second annotator's on the second task
    hooks = [h for h in ls.webhooks(pid) if h["url"].startswith(suggest_server.url)]
    assert hooks, ls.webhooks(pid)
    for hook in hooks:
        ls.request("PATCH", f"/api/webhooks/{hook['id']}", json={"is_active": False})
    ls.delete_annotation(silent)
    for hook in hooks:
        ls.request("PATCH", f"/api/webhooks/{hook['id']}", json={"is_active": True})
    assert silent in stored()  # no webhook told suggest
    full = f"project {pid}: reconciled with Label Studio"

    def full_reads() -> int:
        return stack.suggest.process.log_path.read_text(errors="replace").count(full)

    before = full_reads()
    ls.train(ml_id)
    poll("a full re-read after Start Training", full_reads, lambda n: n > before, TIMEOUT)
    assert stored() == set(made) - {deleted, silent}
    store = Store(stack.model_dir)
    try:
        events = [(e["annotation_id"], e["op"]) for e in store.history(str(pid))]
    finally:
        store.close()
    changes = [(edited, "put"), (deleted, "delete"), (silent, "delete")]
    assert sorted(events) == sorted([(a, "put") for a in made] + changes), events

    out = tmp_path / "export.json"
    _export(stack, pid, "--format", "label-studio", "--out", str(out))
    exported = json.loads(out.read_text())
    assert len(exported) == N_TASKS
    copy = ls.create_project("e2e export round trip: the import", CONFIG)["id"]
    ls.request("POST", f"/api/projects/{copy}/import", json=exported)
    assert _annotations(ls, copy) == _annotations(ls, pid)
