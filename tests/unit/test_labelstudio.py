"""Label Studio JSON in and out: config parsing, ids, tasks, annotations, prediction shape."""

from __future__ import annotations

import pytest

from suggest import labelstudio as ls
from suggest.schema import BadInput, Item, Prediction, SchemaError
from tests.conftest import CONFIG


def test_parse_config_reads_control_object_field_labels_and_hints():
    schema = ls.parse_config(CONFIG)
    assert (schema.from_name, schema.to_name, schema.value_key) == ("sentiment", "text", "text")
    assert schema.labels == ("fresh", "rotten")
    assert schema.hints["fresh"] == "a positive, good movie review"


def test_parse_controls_serves_every_control_it_can_and_ignores_the_rest(caplog):
    config = ('<View><Text name="body" value="$review"/><Image name="img" value="$photo"/>'
              '<Labels name="ner" toName="body"><Label value="PER"/></Labels>'
              '<TextArea name="notes" toName="body"/>'
              '<Choices name="tags" toName="body" choice="multiple"><Choice value="a"/><Choice value="b"/></Choices>'
              '<Choices name="kind" toName="img"><Choice value="cat"/><Choice value="dog"/></Choices></View>')
    with caplog.at_level("INFO"):
        schemas = ls.parse_controls(config)
    assert [(s.from_name, s.task_kind, s.object_type, s.value_key) for s in schemas] == [
        ("ner", "spans", "text", "review"), ("tags", "multilabel", "text", "review"),
        ("kind", "classification", "image", "photo"),
    ]
    assert sum("notes" in r.getMessage() for r in caplog.records) == 1


def test_a_config_with_nothing_servable_says_what_is_served():
    config = '<View><Audio name="a" value="$a"/><Choices name="c" toName="a"><Choice value="x"/></Choices></View>'
    with pytest.raises(SchemaError, match="Labels.*entity spans"):
        ls.parse_config(config)


@pytest.mark.parametrize("value, key", [("5.1795257467", "5"), (5, "5"), ({"id": 12}, "12"), ("  3 ", "3")])
def test_project_key_accepts_every_shape_label_studio_sends(value, key):
    assert ls.project_key(value) == key


@pytest.mark.parametrize("value", [None, True, "abc", {"title": "x"}, "-1.2", "9" * 5000, "\u0663"])
def test_project_key_rejects_what_is_not_a_project(value):
    with pytest.raises(BadInput):
        ls.project_key(value)


def test_task_item_keeps_unicode_text_exactly():
    schema = ls.parse_config(CONFIG)
    text = "Émile 😀\nline two — ünïcödé"
    assert ls.task_item({"id": 3, "data": {"text": text}}, schema) == Item(text, 3)


def test_cancelled_or_empty_annotations_give_no_label():
    schema = ls.parse_config(CONFIG)
    t = {"id": 1, "data": {"text": "good"}}
    result = [{"from_name": "sentiment", "type": "choices", "value": {"choices": ["fresh"]}}]
    assert ls.annotation_label({"id": 1, "was_cancelled": True, "result": result}, t, schema) is None
    assert ls.annotation_label({"id": 1, "result": []}, t, schema) is None
    other = [{"from_name": "other", "type": "choices", "value": {"choices": ["fresh"]}}]
    assert ls.annotation_label({"id": 1, "result": other}, t, schema) is None
    label = ls.annotation_label({"id": 1, "result": result, "ground_truth": True}, t, schema)
    assert (label.task_id, label.label, label.text, label.ground_truth) == (1, "fresh", "good", True)


def test_annotation_with_an_unknown_label_names_it():
    schema = ls.parse_config(CONFIG)
    result = [{"from_name": "sentiment", "type": "choices", "value": {"choices": ["neutral"]}}]
    with pytest.raises(BadInput, match="'neutral' is not in the config"):
        ls.annotation_label({"id": 1, "result": result}, {"id": 1, "data": {"text": "x"}}, schema)


def test_prediction_json_validates_with_label_studio_sdk_and_clamps_scores():
    schema = ls.parse_config(CONFIG)
    out = ls.prediction_json(Prediction("rotten", 0.8, 0.6, "v1-abc"), schema)
    assert ls.validate_predictions(CONFIG, [out]) == []
    assert out["score"] == 0.6 and out["result"][0]["score"] == 0.8 and out["model_version"] == "v1-abc"
    clamped = ls.prediction_json(Prediction("rotten", float("nan"), 1.5, "v"), schema)
    assert clamped["score"] == 1.0 and clamped["result"][0]["score"] == 0.0


def test_labels_from_exported_tasks_skip_bad_annotations():
    schema = ls.parse_config(CONFIG)
    good = [{"from_name": "sentiment", "type": "choices", "value": {"choices": ["fresh"]}}]
    bad = [{"from_name": "sentiment", "type": "choices", "value": {"choices": ["nope"]}}]
    tasks = [{"id": 1, "data": {"text": "a"}, "annotations": [{"id": 10, "result": good}, {"id": 11, "result": bad}]},
             {"id": 2, "data": {"text": "b"}, "annotations": []}]
    assert [(lb.task_id, lb.annotation_id) for lb in ls.labels_from_tasks(tasks, schema)] == [(1, 10)]


# the webhook suggest signs (issue 20) ------------------------------------------------------------


def _hook(hook_id: int, url: str, **extra) -> dict:
    return {"id": hook_id, "project": 7, "url": url, "send_payload": True, "is_active": True, "headers": {},
            **extra}


def test_the_one_backend_webhook_of_a_project_is_ours():
    hooks = [_hook(1, "http://ml.internal:9090/webhook"), _hook(2, "https://chat.example/notify")]
    assert ls.backend_webhook(hooks, "7", 9090)["id"] == 1
    assert ls.backend_webhook(hooks, "7", 1234)["id"] == 1  # behind a proxy: one candidate is enough


def test_no_backend_webhook_is_chosen_when_it_could_be_another_backends():
    two = [_hook(1, "http://a.internal:9191/webhook"), _hook(2, "http://b.internal:9292/webhook/")]
    assert ls.backend_webhook(two, "7", 9090) is None
    assert ls.backend_webhook(two, "7", 9292)["id"] == 2  # exactly one on our port
    same_port = [_hook(1, "http://a.internal:9090/webhook"), _hook(2, "http://b.internal:9090/webhook")]
    assert ls.backend_webhook(same_port, "7", 9090) is None


def test_inactive_payloadless_and_other_projects_webhooks_are_never_ours():
    assert ls.backend_webhook([_hook(1, "http://a:9090/webhook", is_active=False)], "7") is None
    assert ls.backend_webhook([_hook(1, "http://a:9090/webhook", send_payload=False)], "7") is None
    assert ls.backend_webhook([_hook(1, "http://a:9090/webhook", project=8)], "7") is None
    assert ls.backend_webhook([_hook(1, "http://a:9090/hooks")], "7") is None
    assert ls.backend_webhook([_hook(1, "http://[bad/webhook")], "7") is None
    assert ls.backend_webhook([{"url": "http://a:9090/webhook", "project": 7}], "7") is None  # no id


def test_a_webhooks_task_says_whether_it_is_labelled():
    assert ls.task_labelled({"id": 3, "total_annotations": 1}) is True
    assert ls.task_labelled({"id": 3, "total_annotations": 0}) is False
    assert ls.task_labelled({"id": 3}) is None
    assert ls.task_labelled(None) is None
    assert ls.task_labelled({"id": 3, "total_annotations": True}) is None
