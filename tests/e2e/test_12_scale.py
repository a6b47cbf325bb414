"""Issue 17 in the real Label Studio: bounded writes per version, the head refilled, an incremental task list.

Label Studio's uncertainty sampling only looks at unlabelled tasks holding a prediction of the
project's current model_version, and falls back to random when none is left. `suggest` therefore
pushes only the queue's head per version (SUGGEST_QUEUE_HEAD), refills it before it runs out, learns
new tasks from an incremental listing (no export per version) and drops deleted tasks.

Runs its own `suggest serve` (head of 30, batch of 10) against the session's Label Studio; the refill
test uses a second one whose pushes are rate-limited to once in 10 minutes, so only refills keep
the queue alive while an annotator works through more tasks than the head holds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import LABEL_CONFIG, Stack, suggest_env
from tests.e2e.labelstudio_server import (
    HttpServer,
    LabelStudioClient,
    choice_result,
    free_port,
    loop_state,
    poll,
    suggest_argv,
    wait_pushed,
)

pytestmark = pytest.mark.e2e

N = 200
HEAD = 30
TIMEOUT = 120.0


def _server(stack: Stack, name: str, **env: str) -> HttpServer:
    port = free_port()
    server = HttpServer(name, suggest_argv("127.0.0.1", port, stack.workdir / f"{name}-models"), port,
                        stack.workdir / f"{name}.log", env=suggest_env() | env)
    server.start(180)
    return server


@pytest.fixture(scope="module")
def head_server(stack: Stack) -> Iterator[HttpServer]:
    server = _server(stack, "suggest-head", SUGGEST_QUEUE_HEAD=str(HEAD), SUGGEST_BATCH_SIZE="10",
                     SUGGEST_PUSH_INTERVAL_SECONDS="1", SUGGEST_PRUNE_CHUNK="20")
    yield server
    server.stop()


def _versions(ls: LabelStudioClient, pid: int) -> Counter:
    return Counter(p["model_version"] for p in ls.predictions(pid))


def _full_exports(stack: Stack, pid: int) -> int:
    """Exports of the whole project in Label Studio's request log (a filtered export names ids[])."""
    log = stack.label_studio.process.log_path.read_text(errors="replace")
    return sum(1 for line in log.splitlines() if f"/api/projects/{pid}/export" in line and "ids" not in line)


def test_only_the_head_is_pushed_and_next_serves_the_first_choice(
    ls: LabelStudioClient, head_server: HttpServer, rt_tasks: list[tuple[str, str]]
) -> None:
    pid = ls.create_project("e2e queue head", LABEL_CONFIG)["id"]
    truth = dict(rt_tasks[:N])
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:N]])
    ls.connect_ml(pid, head_server.url, "suggest head")
    m = wait_pushed(head_server, pid, trained=False, timeout=TIMEOUT)
    cold = m["model_version"]
    assert m["loop"]["tasks_scored"] == N
    assert _versions(ls, pid)[cold] == HEAD, "a version writes only the queue head"
    assert m["loop"]["head"]["written"] == HEAD
    assert m["task_list"]["tasks"] == N
    first = ls.request("GET", f"/api/projects/{pid}/next")
    assert first["id"] == m["loop"]["next_tasks"][0]

    by_text = {t["id"]: truth[t["data"]["text"]] for t in ls.tasks(pid)}
    labeled = [first["id"], *[t for t in m["loop"]["next_tasks"][1:] if t != first["id"]]][:8]
    for task_id in labeled:
        ls.annotate(task_id, choice_result(by_text[task_id]))
    m = wait_pushed(head_server, pid, trained=True, timeout=TIMEOUT)
    trained = m["model_version"]
    written = _versions(ls, pid)[trained]
    assert written <= HEAD, f"the retrain wrote {written} predictions, more than the head ({HEAD})"
    assert written >= HEAD - len(labeled) - 5
    assert ls.project(pid)["model_version"] == trained
    nxt = ls.request("GET", f"/api/projects/{pid}/next")
    assert nxt["id"] == m["loop"]["next_tasks"][0], "Label Studio serves the engine's first choice"

    # superseded predictions leave Label Studio in chunks once annotators pause
    poll("the zero-shot version's predictions to be pruned", lambda: _versions(ls, pid),
         lambda held: cold not in held, TIMEOUT)


def test_imported_tasks_enter_the_list_and_deleted_ones_leave(
    ls: LabelStudioClient, head_server: HttpServer, rt_tasks: list[tuple[str, str]], stack: Stack
) -> None:
    pid = ls.create_project("e2e task list", LABEL_CONFIG)["id"]
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:60]])
    ls.connect_ml(pid, head_server.url, "suggest task list")
    wait_pushed(head_server, pid, trained=False, timeout=TIMEOUT)
    assert loop_state(head_server, pid)["task_list"]["tasks"] == 60
    exports = _full_exports(stack, pid)

    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[60:75]])
    m = poll("the 15 imported tasks in suggest's task list", lambda: loop_state(head_server, pid),
             lambda m: m["task_list"]["tasks"] == 75 and not m["training"], TIMEOUT)
    assert m["loop"]["task_list"]["added"] == 15, m["loop"]  # an incremental listing, not a full export
    assert _full_exports(stack, pid) == exports, "the push exported the project"

    gone = [t["id"] for t in ls.tasks(pid)][:3]
    for task_id in gone:
        ls.request("DELETE", f"/api/tasks/{task_id}", expect=(204, 200))
    poll("the 3 deleted tasks to leave suggest's task list", lambda: loop_state(head_server, pid),
         lambda m: m["task_list"]["tasks"] == 72, TIMEOUT)


def _direct_pusher(ls: LabelStudioClient, rt_tasks: list[tuple[str, str]], tmp_path, title: str, *,
                   queue_head: int) -> tuple:
    """A project of 40 tasks in Label Studio, and suggest's store, project and head pusher for it, driven
    directly (no server, no webhooks): (project id, store, project, pusher)."""
    from suggest.labelstudio import parse_controls
    from suggest.loop import LoopSettings, rank_rows
    from suggest.project import open_project
    from suggest.queuehead import HeadPusher, HeadSettings
    from suggest.store import ProjectRecord, Store
    from suggest.tasksync import TaskSync

    pid = ls.create_project(title, LABEL_CONFIG)["id"]
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:40]])
    store = Store(tmp_path / "models")
    record = ProjectRecord(str(pid), LABEL_CONFIG, None, None)
    store.save_project(record)
    project = open_project(store, record, parse_controls(LABEL_CONFIG))
    loop = LoopSettings(batch_size=5)
    pusher = HeadPusher(HeadSettings(queue_head=queue_head, batch_size=5), TaskSync(store),
                        lambda p, rows: rank_rows(p, rows, loop))
    return pid, store, project, pusher


def test_one_row_per_call_lands_in_label_studio_as_the_bulk_import_does(
    ls: LabelStudioClient, stack: Stack, rt_tasks: list[tuple[str, str]], tmp_path
) -> None:
    """Row mode (labelstudio.PredictionPace: stock Label Studio recounts every task on each bulk import, so big
    projects get one POST /api/predictions/ per row) writes the same head: the version's rows, each task's
    prediction counter, the project pointed at the version, /next serving the engine's first choice; and
    the next version overwrites the rows of tasks still in its head in place, and moves those of tasks that
    left it to the tasks that came in."""
    from suggest.labelstudio import NO_COUNTS, prediction_pace
    from suggest.labelstudio import LabelStudioClient as SuggestClient
    from suggest.queuehead import ROWS_FIRST_SLICE
    from suggest.schema import Label

    pid, store, project, pusher = _direct_pusher(ls, rt_tasks, tmp_path, "e2e rows import", queue_head=25)
    client = SuggestClient(stack.label_studio.url, stack.label_studio.token)
    prediction_pace(client, str(pid)).rows = True  # as in a project of ROWS_MIN_TASKS tasks or more
    try:
        status = pusher.push(project, client)
        version = project.model_version
        # the count-free project read names the fields it returns: the version must be among them
        assert client.request("GET", f"/api/projects/{pid}", params=NO_COUNTS).json()["model_version"] == version
        assert client.task_count(str(pid)) == 40, "the reconcile's count, read alone, is Label Studio's"
    finally:
        client.close()
    assert status["head"] == {"size": 25, "written": 25, "refills": 0, "import": "rows"}
    held = [p for p in ls.predictions(pid) if p["model_version"] == version]
    assert len(held) == 25 and ROWS_FIRST_SLICE < 25
    assert {p["task"] for p in held} == set(store.pushed(str(pid), version))
    assert all(p["result"][0]["value"]["choices"][0] in ("fresh", "rotten") for p in held)
    counted = {t["id"]: t.get("total_predictions") for t in ls.tasks(pid)}
    assert sum(1 for p in held if counted[p["task"]] == 1) == 25, "Label Studio counted each row on its task"
    assert ls.project(pid)["model_version"] == version
    assert ls.request("GET", f"/api/projects/{pid}/next")["id"] == status["next_tasks"][0]

    # the next version overwrites the rows of tasks that stay in the head in place (Label Studio's PATCH):
    # same ids, the new version's label, score and counter; the rest of the old rows are pruned
    first = {p["task"]: p["id"] for p in held}
    task_of = {t["data"]["text"]: t["id"] for t in ls.tasks(pid)}
    labelled = [(task_of[text], text, label) for text, label in rt_tasks[:12]]
    served = status["next_tasks"][0]  # /next locked it for this user: answered, so the next /next moves on
    text = next(t["data"]["text"] for t in ls.tasks(pid) if t["id"] == served)
    label = dict(rt_tasks[:40])[text]
    ls.annotate(served, choice_result(label))
    labelled += [(served, text, label)] if served not in {t for t, _, _ in labelled} else []
    store.upsert_labels(str(pid), [Label(task, 9000 + i, label, text, control="sentiment")
                                   for i, (task, text, label) in enumerate(labelled)])
    assert project.retrain(force=True) is not None
    client = SuggestClient(stack.label_studio.url, stack.label_studio.token)
    try:
        status = pusher.push(project, client)
    finally:
        client.close()
    trained = project.model_version
    rows = ls.predictions(pid)
    now = {p["task"]: p for p in rows if p["model_version"] == trained}
    both = set(first) & set(now)
    assert len(now) == 25 and both, "the heads overlap (else this checks nothing)"
    assert all(now[t]["id"] == first[t] for t in both), "overwritten in place: the same row, the new version"
    # a task new to the head takes over the row of one that left it: Label Studio's PATCH moves the row
    moved = {t for t in set(now) - both if now[t]["id"] in set(first.values())}
    assert moved, "rows of tasks that left the head were taken over, not created and pruned"
    assert all(p["task"] in now for p in rows if p["id"] in {now[t]["id"] for t in moved}), "moved, not copied"
    scores = store.pushed(str(pid), trained)
    assert all(now[t]["score"] == pytest.approx(scores[t], abs=1e-5) for t in now)
    assert all(now[t]["result"][0]["value"]["choices"][0] in ("fresh", "rotten") for t in now)
    counted = {t["id"]: t.get("total_predictions") for t in ls.tasks(pid)}
    assert all(counted[t] == 1 for t in now), "Label Studio still counts one row on each head task"
    left = {t for t, i in first.items() if i in {now[m]["id"] for m in moved}}  # the tasks rows moved from
    assert left and all(counted[t] == 1 for t in left), \
        "Label Studio 1.23 does not recount the task a row moved from (README says so; if this fails, update it)"
    client = SuggestClient(stack.label_studio.url, stack.label_studio.token)
    try:  # in row mode the push deletes nothing: the Maintainer prunes what no new row took over
        while pusher.prune(project, client)[1]:
            pass
    finally:
        client.close()
    rows = ls.predictions(pid)
    assert len(rows) == 25, "the old rows of tasks that left the head were taken over or pruned"
    assert ls.request("GET", f"/api/projects/{pid}/next")["id"] == status["next_tasks"][0]
    client = SuggestClient(stack.label_studio.url, stack.label_studio.token)
    try:  # a row deleted meanwhile answers 404: the caller then creates it anew
        gone = max(p["id"] for p in rows) + 1000
        assert client.update_prediction(str(pid), gone, {"task": served, "model_version": trained, "score": 0.5,
                                                         "result": choice_result("fresh")}) is False
    finally:
        client.close()


def test_a_task_deleted_with_no_webhook_does_not_stop_a_push(
    ls: LabelStudioClient, stack: Stack, rt_tasks: list[tuple[str, str]], tmp_path
) -> None:
    """Label Studio refuses a whole bulk import that names a task it no longer holds, and a one-row create
    for one. A bulk push then checks the task list at once and goes again without the deleted tasks; a row
    push skips their rows. Either way the version is served, and the deleted tasks leave the store."""
    from suggest.labelstudio import LabelStudioClient as SuggestClient
    from suggest.labelstudio import LabelStudioError, prediction_pace
    from suggest.schema import Label

    pid, store, project, pusher = _direct_pusher(ls, rt_tasks, tmp_path, "e2e deleted with no webhook",
                                                 queue_head=40)  # every task in the head
    task_of = {t["data"]["text"]: t["id"] for t in ls.tasks(pid)}
    client = SuggestClient(stack.label_studio.url, stack.label_studio.token)

    def delete_head_tasks(n: int) -> list[int]:
        """Unlabelled tasks (all in the next head), deleted in Label Studio behind suggest's back."""
        gone = sorted(store.unlabeled_task_ids(str(pid)))[-n:]
        for task in gone:
            ls.request("DELETE", f"/api/tasks/{task}", expect=(204, 200))
        return gone

    def new_version(k: int) -> None:
        labelled = rt_tasks[: 6 * k]
        store.upsert_labels(str(pid), [Label(task_of[text], 9000 + i, label, text, control="sentiment")
                                       for i, (text, label) in enumerate(labelled)])
        assert project.retrain(force=True) is not None

    try:
        pusher.push(project, client)  # bulk: 40 tasks
        gone = delete_head_tasks(3)
        new_version(1)
        with pytest.raises(LabelStudioError, match="400"):  # what the push meets: one refusal for the whole import
            client.import_predictions(str(pid), [{"task": gone[0], "model_version": "probe", "score": 0.5,
                                                  "result": choice_result("fresh")}])
        status = pusher.push(project, client)
        assert status["head"]["import"] == "bulk" and status["head"]["written"] > 0
        held = {p["task"] for p in ls.predictions(pid) if p["model_version"] == project.model_version}
        assert held and not held & set(gone), "a deleted task got a row"
        # only the check a refusal sets off drops them (the periodic one is not due for 300 s)
        assert not set(store.task_ids(str(pid))) & set(gone), "the deleted tasks stayed in the store"
        assert ls.project(pid)["model_version"] == project.model_version

        prediction_pace(client, str(pid)).rows = True  # as in a project of ROWS_MIN_TASKS tasks or more
        gone = delete_head_tasks(2)
        assert client.create_prediction(str(pid), {"task": gone[0], "model_version": "probe", "score": 0.5,
                                                   "result": choice_result("fresh")}) is None
        new_version(2)
        status = pusher.push(project, client)
        assert status["head"]["import"] == "rows" and status["head"]["written"] > 0
        held = {p["task"] for p in ls.predictions(pid) if p["model_version"] == project.model_version}
        assert held and not held & set(gone), "a deleted task got a row"
        assert len(held) == len(store.unlabeled_task_ids(str(pid))) - len(gone), "a held task was skipped"
        assert ls.project(pid)["model_version"] == project.model_version
        with pytest.raises(LabelStudioError, match="400"):  # a refusal of a held task is raised as before
            client.create_prediction(str(pid), {"task": min(held), "model_version": "probe", "score": "not a score",
                                                "result": choice_result("fresh")})
    finally:
        client.close()


@pytest.fixture(scope="module")
def slow_push_server(stack: Stack) -> Iterator[HttpServer]:
    server = _server(stack, "suggest-refill", SUGGEST_QUEUE_HEAD="12", SUGGEST_BATCH_SIZE="5",
                     SUGGEST_PUSH_INTERVAL_SECONDS="600", SUGGEST_PRUNE_CHUNK="0")
    yield server
    server.stop()


def test_the_head_is_refilled_before_label_studio_falls_back_to_random(
    ls: LabelStudioClient, slow_push_server: HttpServer, rt_tasks: list[tuple[str, str]]
) -> None:
    pid = ls.create_project("e2e head refill", LABEL_CONFIG)["id"]
    truth = dict(rt_tasks[:80])
    ls.import_tasks(pid, [{"text": text} for text, _ in rt_tasks[:80]])
    ls.connect_ml(pid, slow_push_server.url, "suggest refill")
    m = wait_pushed(slow_push_server, pid, trained=False, timeout=TIMEOUT)
    version = m["model_version"]
    assert _versions(ls, pid)[version] == 12
    by_text = {t["id"]: truth[t["data"]["text"]] for t in ls.tasks(pid)}
    served = []
    for _ in range(25):  # more than twice the head, at an annotator's pace
        nxt = ls.request("GET", f"/api/projects/{pid}/next")
        current = ls.project(pid)["model_version"]
        held = {p["model_version"] for p in ls.request("GET", "/api/predictions", params={"task": nxt["id"]})}
        assert current in held, f"/next served task {nxt['id']} without a {current} prediction: random fallback"
        served.append(nxt["id"])
        ls.annotate(nxt["id"], choice_result(by_text[nxt["id"]]))
        time.sleep(1.0)
    assert ls.project(pid)["model_version"] == version, "no new version was pushed (600 s interval)"
    assert _versions(ls, pid)[version] > 12, "the head was refilled under the same version"
    assert loop_state(slow_push_server, pid)["loop"]["head"]["refills"] >= 1

