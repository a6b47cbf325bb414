"""Issue 20's protocol defects: empty credentials in /setup, and one prediction per task and version."""

from __future__ import annotations

from tests.conftest import CONFIG, PROJECT, task


def setup(client, **extra):
    return client.post("/setup", json={"project": PROJECT, "schema": CONFIG, "extra_params": None, **extra})


def test_empty_hostname_and_token_in_setup_mean_absent(client):
    """Label Studio may send "" for both; stored as credentials they would count as a (broken) connection."""
    assert setup(client, hostname="", access_token="").status_code == 200
    engine = client.app.state.engine
    record = next(r for r in engine.store.projects() if r.project_id == "7")
    assert (record.hostname, record.access_token) == (None, None)
    assert engine._credentials["7"] == (None, None)
    label_studio = client.get("/metrics").json()["projects"]["7"]["label_studio"]
    assert label_studio["url"] is None and label_studio["token"] is False
    # a later /setup with real credentials turns the loop on as for any new project
    assert setup(client, hostname="http://127.0.0.1:1", access_token="abc123").status_code == 200
    assert client.get("/metrics").json()["projects"]["7"]["label_studio"]["token"] is True


def test_predict_leaves_out_tasks_the_push_already_covers_for_this_version(client, rt_sample):
    """The loop's push claimed tasks 1 and 2 for the current version: a "Retrieve predictions" racing it
    gets [] for those (Label Studio stores nothing) and a prediction for the rest."""
    version = setup(client).json()["model_version"]
    project = client.app.state.engine.projects["7"]
    assert project.claim_predictions(version, [1, 2], "push") == set()
    tasks = [task(i, text) for i, (text, _) in enumerate(rt_sample[:3], start=1)]
    body = client.post("/predict", json={"tasks": tasks, "project": PROJECT, "label_config": CONFIG}).json()
    assert body["results"][0] == [] and body["results"][1] == []
    assert body["results"][2]["result"] and body["results"][2]["model_version"] == version
    # ... and a push after that /predict leaves out task 3, which Label Studio now holds
    assert project.claim_predictions(version, [1, 2, 3], "push") == {3}
    # interactive pre-annotation stores nothing in Label Studio: it always gets its answer
    interactive = client.post("/predict", json={"tasks": tasks[:1], "project": PROJECT, "label_config": CONFIG,
                                                "params": {"context": {"result": []}}}).json()
    assert interactive["results"][0]["result"]
    # a new version starts with no claims
    assert project.claim_predictions("v99-x", [1, 2, 3], "predict") == set()
