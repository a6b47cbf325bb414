"""A model class in the LabelStudioMLBase shape hosted by suggest (issue 15): examples/keyword_model.

The example class is served through the real app (TestClient, a real store, webhooks): its
predictions come back in /predict, annotations make `fit` run in the background and a new version
appear with the class's state carried in it, the pool is ranked by the class's `score`, and a bad
`--model` is one line. The adapter keeps the Backend contract (backends/checks.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from backends.checks import check_backend
from backends.schema import Item, Schema
from examples.keyword_model.model import KeywordModel
from suggest.cli import app as cli_app
from suggest.config import Settings, SettingsError
from suggest.hosted import HostedModel, hosted_family
from suggest.loop import LoopSettings, rank_rows
from suggest.mlbase import SuggestMLBase
from suggest.server import create_app
from tests.api.test_protocol import predict, setup, wait_for_version
from tests.conftest import CONFIG, PROJECT, annotation_event, task

TARGET = "examples.keyword_model.model:KeywordModel"
SCHEMA = Schema("sentiment", "text", "text", ("fresh", "rotten"),
                hints={"fresh": "a positive, good movie review", "rotten": "a negative, bad movie review"})


@pytest.fixture
def hosted(tmp_path) -> TestClient:
    settings = Settings.from_env({}, model_dir=tmp_path / "models", debounce_seconds=0.05, max_delay_seconds=0.5,
                                 model_class=TARGET)
    with TestClient(create_app(settings)) as client:
        yield client


def _choice(prediction: dict) -> str:
    (result,) = prediction["result"]
    return result["value"]["choices"][0]


def test_the_example_class_is_served_trained_in_the_background_and_versioned(hosted, tmp_path) -> None:
    assert hosted.get("/health").json()["model_class"] == "KeywordModel"  # not our own class's name
    first = setup(hosted).json()["model_version"]
    # before any label: the class's own answers (its hint words), its score passed through
    body = predict(hosted, [task(1, "a good movie"), task(2, "a bad movie"), task(3, "the plot of it")]).json()
    preds = body["results"]
    assert [_choice(p) for p in preds[:2]] == ["fresh", "rotten"]
    assert all(p["model_version"] == first for p in preds)
    assert 0.5 < preds[0]["score"] <= 1.0
    # annotations: "plot" is rotten, "actor" is fresh; fit runs in the background and a version appears
    events = [(10, "the plot was dull"), (11, "what a plot"), (12, "the actor shines"), (13, "an actor to love")]
    for i, (task_id, text) in enumerate(events):
        label = "rotten" if "plot" in text else "fresh"
        assert hosted.post("/webhook", json=annotation_event(100 + i, task_id, text, label)).status_code == 200
    second = wait_for_version(hosted, first)
    after = predict(hosted, [task(3, "the plot of it"), task(4, "that actor")]).json()["results"]
    assert [_choice(p) for p in after] == ["rotten", "fresh"]
    assert all(p["model_version"] == second for p in after)
    # the class's state (set() in fit) is saved with the version
    saved = [json.loads(m.read_text()) for m in (tmp_path / "models").rglob("meta.json")]
    (state,) = [m["state"] for m in saved if m.get("family") == "hosted" and m.get("fitted")]
    assert state["trained_on"] == 4 and state["model_version"] == "keywords-4"
    metrics = hosted.get("/metrics").json()
    assert second in json.dumps(metrics)


def test_the_next_instance_starts_from_the_previous_state() -> None:
    family = hosted_family(TARGET, "1", lambda: CONFIG)
    old = family.make(SCHEMA, _context())
    old.fit([Item("plot plot", 1), Item("actor", 2)], ["rotten", "fresh"])
    new = family.make(SCHEMA, _context())
    assert new.instance.get("trained_on") is None
    new.warm_start_from(old)
    assert new.instance.get("trained_on") == 2
    assert new.instance is not old.instance  # a version per fit: a new instance


def test_hosted_adapter_keeps_the_backend_contract() -> None:
    items = [Item(t, i) for i, t in enumerate(["a good movie", "a bad movie", "good and fun", "bad and dull",
                                                  "a great plot", "an awful plot"])]
    check_backend(hosted_family(TARGET, "1", lambda: CONFIG), SCHEMA, items,
                  ["fresh", "rotten", "fresh", "rotten", "fresh", "rotten"])


def test_the_pool_is_ranked_by_the_class_score(tmp_path) -> None:
    """The least certain task by the class's own score goes first; its prediction keeps the class's answer."""
    from suggest.project import open_project
    from suggest.store import ProjectRecord, Store

    store = Store(tmp_path)
    record = ProjectRecord("9", CONFIG, None, None)
    store.save_project(record)
    from backends.registry import Registry

    project = open_project(store, record, (SCHEMA,), registry=Registry([hosted_family(TARGET, "9", lambda: CONFIG)]))
    from suggest.schema import Label

    store.upsert_labels("9", [Label(1, 1, "fresh", "good fun", control="sentiment"),
                              Label(2, 2, "rotten", "bad dull", control="sentiment")])
    assert project.retrain() is not None  # a trained version: the queue follows certainty (cold start does not)
    texts = ["good good good good", "bad bad bad", "good bad", "a good plot", "a bad plot", "good good bad"]
    rows = [{"sentiment": Item(t, 100 + i)} for i, t in enumerate(texts)]
    model = project.published.model
    assert model.mode == "trained"
    assert isinstance(model, HostedModel)
    scores = [g.certainty for g in model.guess([r["sentiment"] for r in rows])]
    ranked, batch = rank_rows(project, rows, LoopSettings(1, "least_confidence", True, 0, uncertainty="margin"))
    assert int(batch[0]) == int(np.argmin(scores))  # "good bad": the class is least sure of it
    assert [p[0].label for p in ranked] == [g.value for g in model.guess([r["sentiment"] for r in rows])]
    store.close()


def test_a_class_that_is_not_importable_is_one_line(monkeypatch) -> None:
    with pytest.raises(SettingsError, match=r"^SUGGEST_MODEL_CLASS \(--model\): 'no_such_module' does not import"):
        Settings.from_env({"SUGGEST_MODEL_CLASS": "no_such_module:Model"})
    with pytest.raises(SettingsError, match="is not a class with a predict"):
        Settings.from_env({"SUGGEST_MODEL_CLASS": "json:dumps"})
    for var in ("SUGGEST_MODEL_CLASS", "SUGGEST_TEXT_ENCODER", "SUGGEST_TEXT_CLASSIFIER"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--model", "examples.keyword_model.model:Nope"])
    assert result.exit_code == 2
    assert "SUGGEST_MODEL_CLASS (--model): 'examples.keyword_model.model' has no 'Nope'" in result.output


def test_a_broken_encoder_is_exit_2_naming_the_setting(tmp_path, monkeypatch) -> None:
    """The folder looks right (config, weights, tokenizer) but the weights are garbage: `serve` stops in one line."""
    from tests.tiny_models import tiny_encoder

    folder = tiny_encoder(tmp_path / "broken")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    monkeypatch.setenv("SUGGEST_TEXT_ENCODER", str(folder))
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    result = CliRunner().invoke(cli_app, ["serve", "--host", "127.0.0.1"])
    assert result.exit_code == 2, result.output
    assert "suggest: error: SUGGEST_TEXT_ENCODER: the model does not load" in result.output
    from backends.encoders import configure_text_encoder

    configure_text_encoder(None)


def test_base_class_helpers() -> None:
    model = KeywordModel(project_id="3", label_config=CONFIG)
    assert model.model_version == SuggestMLBase.INITIAL_VERSION
    model.set("k", {"a": 1})
    assert model.get("k") == {"a": 1} and model.has("k")
    with pytest.raises(TypeError):
        model.set("bad", object())
    assert model.get_first_tag_occurence("Choices", "Text") == ("sentiment", "text", "text")
    assert model.parsed_label_config["sentiment"]["labels"] == ["fresh", "rotten"]
    assert model.bump_model_version() == "0.1.0" and model.model_version == "0.1.0"
    assert model.project_id == "3" and PROJECT


def _context():
    from backends.checks import MemoryCache
    from backends.registry import Context

    return Context(cache=MemoryCache())
