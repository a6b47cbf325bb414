"""The ML backend protocol through FastAPI's TestClient, with the real encoder and a real store."""

from __future__ import annotations

import re
import time

import pytest
from label_studio_sdk.label_interface import LabelInterface

from tests.conftest import CONFIG, PROJECT, annotation_event, task


def setup(client, config: str = CONFIG, **extra):
    return client.post("/setup", json={"project": PROJECT, "schema": config, "hostname": None,
                                       "access_token": None, "extra_params": None, **extra})


def predict(client, tasks, config: str = CONFIG):
    return client.post("/predict", json={"tasks": tasks, "project": PROJECT, "label_config": config,
                                         "params": {"context": None}})


def wait_for_version(client, previous: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = setup(client).json()["model_version"]
        if version != previous:
            return version
        time.sleep(0.05)
    raise AssertionError(f"no new version after {timeout} s (still {previous})")


def test_health_answers_from_memory(client):
    body = client.get("/health").json()
    assert body["status"] == "UP" and body["model_class"] == "EmbeddingClassifier"


@pytest.mark.parametrize("extra_params", [None, "a string", {"k": "v", "n": 1}])
def test_setup_reports_a_version_for_any_extra_params(client, extra_params):
    resp = setup(client, extra_params=extra_params)
    assert resp.status_code == 200
    assert resp.json()["model_version"].startswith("zeroshot-")


@pytest.mark.parametrize(
    "config, named",
    [
        ('<View><Audio name="a" value="$a"/><Choices name="c" toName="a"><Choice value="x"/>'
         '<Choice value="y"/></Choices></View>', "<Choices> on <Audio>"),
        ('<View><Text name="t" value="$t"/><TextArea name="n" toName="t"/></View>', "<TextArea"),
        ('<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="only"/></Choices></View>',
         "1 label"),
        ("<View><Text", "not valid"),
        ("", "empty"),
    ],
)
def test_setup_rejects_configs_it_cannot_serve_and_says_what_it_supports(client, config, named):
    resp = setup(client, config=config)
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert named in detail and "suggest serves" in detail


def test_predict_zero_shot_before_any_label(client):
    tasks = [task(1, "A wonderful, moving film: the best I have seen this year."),
             task(2, "Dull, lifeless and painfully boring. A terrible waste of time."),
             task(3, "An unwatchable mess with awful acting.")]
    resp = predict(client, tasks)
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert len(results) == 3
    assert [r["result"][0]["value"]["choices"][0] for r in results] == ["fresh", "rotten", "rotten"]
    interface = LabelInterface(CONFIG)
    for r in results:
        assert 0.0 <= r["score"] <= 1.0
        assert r["model_version"].startswith("zeroshot-")
        item = r["result"][0]
        assert (item["from_name"], item["to_name"], item["type"]) == ("sentiment", "text", "choices")
        assert 0.5 <= item["score"] <= 1.0  # the probability of the suggested label (2 classes)
        assert interface.validate_prediction(r)


def test_score_is_lower_for_less_certain_tasks(client):
    sure = task(1, "A masterpiece. Brilliant, beautiful, funny and deeply moving; a great film.")
    unsure = task(2, "The film runs for 104 minutes.")
    sure_r, unsure_r = predict(client, [sure, unsure]).json()["results"]
    assert unsure_r["score"] < sure_r["score"]
    # margin certainty for 2 classes: score = p1 - p2 = 2 * p1 - 1
    p1 = sure_r["result"][0]["score"]
    assert sure_r["score"] == pytest.approx(2 * p1 - 1, abs=1e-5)


def test_a_bad_task_in_a_batch_gets_an_empty_result_and_the_rest_are_served(client):
    tasks = [task(1, "Great film."), {"id": 2, "data": {"other": "x"}}, task(3, "   "), task(4, "Awful film.")]
    results = predict(client, tasks).json()["results"]
    assert len(results) == 4
    assert results[1]["result"] == [] and results[2]["result"] == []
    assert results[0]["result"] and results[3]["result"]


@pytest.mark.parametrize(
    "tasks, named",
    [
        ([{"id": 2, "data": {"other": "x"}}], "no field 'text'"),
        ([task(3, "")], "empty"),
        ([{"id": 4, "data": {"text": 12}}], "must be text"),
        ([{"id": 5}], "no 'data'"),
        ("not a list", "tasks"),
    ],
)
def test_predict_bad_input_gets_a_4xx_that_names_the_problem(client, tasks, named):
    resp = predict(client, tasks)
    assert resp.status_code == 422
    assert named in resp.json()["detail"]


def test_malformed_json_is_a_422_not_a_500(client):
    for path in ("/predict", "/setup", "/webhook"):
        resp = client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        assert resp.status_code == 422, path
        assert "JSON" in resp.json()["detail"] or "json" in resp.json()["detail"]


def test_unknown_project_is_a_404_naming_it(client):
    resp = client.post("/predict", json={"tasks": [task(1, "x")], "project": "999.1"})
    assert resp.status_code == 404 and "999" in resp.json()["detail"]
    assert client.get("/metrics", params={"project": "999"}).status_code == 404


def test_annotations_train_a_new_version_that_predict_serves(client, rt_sample):
    zero = setup(client).json()["model_version"]
    for i, (text, label) in enumerate(rt_sample[:40]):
        assert client.post("/webhook", json=annotation_event(100 + i, i, text, label)).status_code == 200
    version = wait_for_version(client, zero)
    deadline = time.monotonic() + 60  # a slow machine may train on the first webhooks, then on all 40
    while client.get("/metrics").json()["projects"]["7"]["versions"][-1]["n_labels"] < 40:
        assert time.monotonic() < deadline, "no version trained on all 40 labels"
        time.sleep(0.1)
    version = client.get("/metrics").json()["projects"]["7"]["model_version"]
    assert version.startswith("v")
    held_out = rt_sample[100:160]
    results = predict(client, [task(1000 + i, t) for i, (t, _) in enumerate(held_out)]).json()["results"]
    assert {r["model_version"] for r in results} == {version}
    accuracy = sum(r["result"][0]["value"]["choices"][0] == y for r, (_, y) in zip(results, held_out, strict=True)) / 60
    assert accuracy > 0.6
    metrics = client.get("/metrics").json()["projects"]["7"]
    assert metrics["labels"] == 40 and metrics["model_version"] == version
    last = metrics["versions"][-1]
    assert last["version"] == version and last["n_labels"] == 40 and last["train_seconds"] > 0
    assert version in client.get("/versions").json()["versions"]


def test_a_burst_coalesces_and_repeated_events_change_nothing(client, rt_sample):
    events = [annotation_event(100 + i, i, t, y) for i, (t, y) in enumerate(rt_sample[:30])]
    for ev in events:
        client.post("/webhook", json=ev)
    client.app.state.engine.trainer.wait_idle()
    versions = client.get("/metrics").json()["projects"]["7"]["versions"]
    assert 1 <= len(versions) <= 3  # 30 events, debounced: not one version per event
    for ev in events[:5]:  # the same events again: same labeled set, no new version
        assert client.post("/webhook", json=ev).status_code == 200
    client.app.state.engine.trainer.wait_idle()
    again = client.get("/metrics").json()["projects"]["7"]
    assert again["versions"] == versions and again["labels"] == 30


def test_update_cancel_and_delete_follow_label_studio(client, rt_sample):
    (t0, _), (t1, _), (t2, _) = rt_sample[:3]
    client.post("/webhook", json=annotation_event(1, 10, t0, "fresh"))
    client.post("/webhook", json=annotation_event(2, 11, t1, "rotten"))
    client.post("/webhook", json=annotation_event(3, 12, t2, "rotten"))
    engine = client.app.state.engine
    labels = lambda: {t: lb.label for t, lb in engine.projects["7"].labeled().items()}  # noqa: E731
    assert labels() == {10: "fresh", 11: "rotten", 12: "rotten"}
    client.post("/webhook", json=annotation_event(1, 10, t0, "rotten", action="ANNOTATION_UPDATED"))
    assert labels()[10] == "rotten"
    client.post("/webhook", json=annotation_event(3, 12, t2, "rotten", action="ANNOTATION_UPDATED", cancelled=True))
    assert 12 not in labels()
    resp = client.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 2}],
                                         "project": {"id": 7}})
    assert resp.status_code == 200
    assert labels() == {10: "rotten"}


def test_a_label_not_in_the_config_is_refused_and_nothing_is_lost(client, rt_sample):
    text, _ = rt_sample[0]
    client.post("/webhook", json=annotation_event(1, 10, text, "fresh"))
    resp = client.post("/webhook", json=annotation_event(2, 11, text, "neutral"))
    assert resp.status_code == 422 and "'neutral'" in resp.json()["detail"]
    stored = client.app.state.engine.store.labels("7")
    assert [(lb.annotation_id, lb.label) for lb in stored] == [(1, "fresh")]


def test_other_actions_are_acknowledged_and_ignored(client):
    resp = client.post("/webhook", json={"action": "PROJECT_CREATED", "project": {"id": 7}})
    assert resp.status_code == 200 and resp.json()["status"] == "ignored"
    assert client.post("/webhook", json={"no": "action"}).status_code == 422
    assert client.post("/webhook", json=[1, 2]).status_code == 422


def test_start_training_without_label_studio_trains_on_what_it_holds(client, rt_sample):
    zero = setup(client).json()["model_version"]
    for i, (t, y) in enumerate(rt_sample[:12]):
        client.post("/webhook", json=annotation_event(i + 1, i, t, y))
    first = wait_for_version(client, zero)
    resp = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7, "label_config": CONFIG}})
    assert resp.status_code == 200
    second = wait_for_version(client, first)  # forced: a new version even with the same labels
    assert second.startswith("v2-")
    metrics = client.get("/metrics").json()["projects"]["7"]
    assert metrics["label_studio"]["url"] is None and metrics["label_studio"]["token"] is False
    assert metrics["label_studio"]["reachable"] is None  # nothing to reach: not "unreachable"


def test_without_label_studio_access_the_loop_is_off_and_metrics_say_why(client, rt_sample):
    zero = setup(client).json()["model_version"]
    for i, (t, y) in enumerate(rt_sample[:12]):
        client.post("/webhook", json=annotation_event(i + 1, i, t, y))
    wait_for_version(client, zero)
    client.app.state.engine.trainer.wait_idle()
    loop = client.get("/metrics").json()["projects"]["7"]["loop"]
    assert loop["enabled"] is False and "LABEL_STUDIO_URL" in loop["reason"]


def test_answer_times_are_kept_per_route_and_slow_ones_logged_with_where_the_time_went(client, caplog):
    """Label Studio waits for /webhook inside each annotator's save (issue 20): suggest shows how long it took."""
    setup(client)
    client.post("/webhook", json=annotation_event(1, 1, "great film", "positive"))
    client.post("/webhook", content=b"not json")
    client.get("/no/such/page")
    client.request("BREW", "/webhook")
    times = client.get("/metrics/requests").json()
    hook = times["routes"]["POST /webhook"]
    assert hook["count"] == 2 and 0 < hook["p50_ms"] <= hook["p99_ms"] <= hook["max_ms"]
    assert times["routes"]["GET (other)"]["count"] == 1  # a stranger's paths do not each become a route
    assert times["routes"]["OTHER /webhook"]["count"] == 1  # nor do a stranger's methods
    assert {a["route"] for a in times["slowest"]} >= {"POST /setup", "POST /webhook"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", a["started"]) for a in times["slowest"])


def test_a_slow_answer_is_logged_with_the_thread_wait_and_run_time(tmp_path, caplog):
    from fastapi.testclient import TestClient

    from suggest.config import Settings
    from suggest.server import create_app

    with TestClient(create_app(Settings(model_dir=tmp_path, slow_answer_ms=0.001))) as slow_logging:
        with caplog.at_level("WARNING", logger="suggest.request_times"):
            slow_logging.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 4}})
    lines = [r.getMessage() for r in caplog.records if "slow answer" in r.getMessage()]
    assert lines and "POST /webhook" in lines[0] and "waiting for a thread" in lines[0] and "running" in lines[0]
    assert "ms waiting for its lock" in lines[0] and "ms committing" in lines[0]  # what the store took of it


def test_the_store_counts_a_threads_wait_for_its_lock_held_by_another_thread(tmp_path):
    """A background thread holding the store (a retrain's big read) shows as the request's lock wait."""
    import threading

    from suggest.store import Store, store_times, store_times_reset

    store = Store(tmp_path)
    held = threading.Event()

    def background() -> None:
        with store._lock:
            held.set()
            time.sleep(0.3)

    worker = threading.Thread(target=background)
    worker.start()
    held.wait(5)
    store_times_reset()
    store.upsert_labels("1", [])
    store.task_count("1")
    waited, committed = store_times()
    worker.join()
    assert waited >= 0.2 and committed >= 0
    store_times_reset()
    assert store_times() == (0.0, 0.0)
    store.close()
