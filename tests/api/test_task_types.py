"""Every task type through the real app: multi-label, entity spans, images and several controls at once.

Each prediction is checked with label-studio-sdk's own validator for its config, and each project
retrains from annotation webhooks shaped like Label Studio's.
"""

from __future__ import annotations

import base64
import json
import random
import time
from pathlib import Path

import pytest

from suggest.labelstudio import validate_predictions
from tests.api.test_protocol import predict, setup
from tests.samples import NER_SENTENCES, image_uri, span_regions

NER_DATA = Path(__file__).resolve().parents[1] / "data" / "ner"
NER = (
    '<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
    '<Label value="Person"/><Label value="Organization"/><Label value="Location"/></Labels></View>'
)
TAGS = (
    '<View><Text name="text" value="$text"/><Choices name="tags" toName="text" choice="multiple">'
    '<Choice value="acting"/><Choice value="music"/><Choice value="story"/></Choices></View>'
)
IMAGES = (
    '<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
    '<Choice value="warm"/><Choice value="cool"/></Choices></View>'
)
BOTH = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>'
    '<Labels name="ner" toName="text"><Label value="Person"/><Label value="Location"/></Labels>'
    '<TextArea name="notes" toName="text"/></View>'
)


def wait_for_version(client, config: str, previous: str, timeout: float = 90.0) -> str:
    """A version newer than `previous` once the trainer is idle: on a slow machine the first retrain may start
    before the last webhook of a burst, and a second one then follows with every label."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = setup(client, config).json()["model_version"]
        if version != previous:
            m = client.get("/metrics").json()["projects"]["7"]
            if not m.get("training") and m["model_version"] == version:
                return version
        time.sleep(0.05)
    raise AssertionError(f"no new version after {timeout} s (still {previous})")


def event(annotation_id: int, task: dict, result: list[dict], config: str) -> dict:
    return {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": annotation_id, "was_cancelled": False, "ground_truth": False, "result": result,
                       "created_at": "2026-11-21T10:00:00Z", "updated_at": "2026-11-21T10:00:00Z",
                       "task": task["id"], "project": 7},
        "task": {**task, "project": 7},
        "project": {"id": 7, "label_config": config, "title": "p"},
    }


def span_region(text: str, start: int, end: int, label: str) -> dict:
    return {"from_name": "ner", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]}}


def choices_region(name: str, to: str, choices: list[str]) -> dict:
    return {"from_name": name, "to_name": to, "type": "choices", "value": {"choices": choices}}


def assert_valid(config: str, results: list[dict]) -> None:
    assert validate_predictions(config, results) == []


# entity spans ---------------------------------------------------------------------------------



def ner_tasks() -> list[dict]:
    return [{"id": i + 1, "data": {"text": text}} for i, (text, _) in enumerate(NER_SENTENCES)]


def test_ner_bootstraps_from_spacy_then_retrains_on_annotated_spans(client):
    assert setup(client, NER).status_code == 200
    first = predict(client, ner_tasks(), NER).json()
    results = first["results"]
    assert_valid(NER, results)
    texts = [t for t, _ in NER_SENTENCES]
    found = [(r["value"]["text"], r["value"]["labels"][0]) for res in results for r in res["result"]]
    assert ("Paris", "Location") in found and ("Google", "Organization") in found  # spaCy, mapped to our names
    for res, text in zip(results, texts, strict=True):
        assert 0.0 <= res["score"] <= 1.0
        for r in res["result"]:
            v = r["value"]
            assert text[v["start"]:v["end"]] == v["text"]  # offsets line up, emoji and umlauts included
            assert 0.0 <= r["score"] <= 1.0
    for i, (task, (text, spans)) in enumerate(zip(ner_tasks(), NER_SENTENCES, strict=True)):
        resp = client.post("/webhook", json=event(100 + i, task, span_regions(text, spans), NER))
        assert resp.status_code == 200
    version = wait_for_version(client, NER, first["results"][0]["model_version"])
    ner = client.get("/metrics").json()["projects"]["7"]["controls"]["ner"]
    assert ner == {"kind": "spans", "object": "text", "labels": 6, "mode": "bootstrap"}  # < 20 spans: spaCy still
    more = [json.loads(line) for line in (NER_DATA / "train.jsonl").read_text().splitlines()[:20]]
    for i, row in enumerate(more):
        regions = [span_region(row["text"], s, e, label) for s, e, label in row["spans"]]
        client.post("/webhook", json=event(200 + i, {"id": 50 + i, "data": {"text": row["text"]}}, regions, NER))
    version = wait_for_version(client, NER, version)
    after = predict(client, ner_tasks(), NER).json()["results"]
    assert_valid(NER, after)
    assert all(r["model_version"] == version for r in after)
    ner = client.get("/metrics").json()["projects"]["7"]["controls"]["ner"]
    assert ner["mode"] == "trained" and ner["labels"] == 26


def test_a_span_outside_its_text_is_refused_and_nothing_stored(client):
    setup(client, NER)
    task = {"id": 1, "data": {"text": "short"}}
    resp = client.post("/webhook", json=event(1, task, [span_region("short text here", 0, 14, "Person")], NER))
    assert resp.status_code == 422 and "outside the text" in resp.json()["detail"]
    assert client.get("/metrics").json()["projects"]["7"]["annotations"] == 0


# multi-label ----------------------------------------------------------------------------------

TAG_TEXTS = [
    ("The lead actor gives a stunning performance.", ["acting"]),
    ("The soundtrack and the score are gorgeous.", ["music"]),
    ("A clever plot with a twist ending.", ["story"]),
    ("Great acting and a beautiful score.", ["acting", "music"]),
    ("The cast is superb and the story gripping.", ["acting", "story"]),
    ("Songs that carry a moving story.", ["music", "story"]),
    ("Wooden performances from the whole cast.", ["acting"]),
    ("The melody stays with you for days.", ["music"]),
]


def test_multilabel_gives_label_sets_and_retrains(client):
    setup(client, TAGS)
    tasks = [{"id": i + 1, "data": {"text": t}} for i, (t, _) in enumerate(TAG_TEXTS)]
    first = predict(client, tasks, TAGS).json()["results"]
    assert_valid(TAGS, first)
    assert all(r["result"] and r["result"][0]["type"] == "choices" for r in first)
    for i, (task, (_, tags)) in enumerate(zip(tasks, TAG_TEXTS, strict=True)):
        client.post("/webhook", json=event(10 + i, task, [choices_region("tags", "text", tags)], TAGS))
    version = wait_for_version(client, TAGS, first[0]["model_version"])
    after = predict(client, tasks, TAGS).json()["results"]
    assert_valid(TAGS, after)
    assert {r["model_version"] for r in after} == {version}
    chosen = [set(r["result"][0]["value"]["choices"]) if r["result"] else set() for r in after]
    assert any(len(c) >= 2 for c in chosen)  # a label set, not one label
    assert sum(c == set(tags) for c, (_, tags) in zip(chosen, TAG_TEXTS, strict=True)) >= 5  # learned its data


# images ---------------------------------------------------------------------------------------




def test_images_wait_for_two_classes_then_predict_and_a_broken_image_only_empties_its_task(client):
    setup(client, IMAGES)
    kinds = [i % 2 == 0 for i in range(8)]
    tasks = [{"id": i + 1, "data": {"image": image_uri(w, i)}} for i, w in enumerate(kinds)]
    first = predict(client, tasks, IMAGES).json()
    assert all(r["result"] == [] for r in first["results"])  # no zero-shot for images offline: nothing to guess
    for i, (task, warm) in enumerate(zip(tasks[:6], kinds, strict=False)):
        client.post("/webhook", json=event(20 + i, task, [choices_region("kind", "image", ["warm" if warm else
                                                                                          "cool"])], IMAGES))
    version = wait_for_version(client, IMAGES, first["model_version"])
    broken = {"id": 99, "data": {"image": "data:image/png;base64," + base64.b64encode(b"not a png").decode()}}
    resp = predict(client, [*tasks, broken], IMAGES)
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert_valid(IMAGES, results)
    assert results[-1]["result"] == []
    guessed = [r["result"][0]["value"]["choices"][0] for r in results[:-1]]
    assert guessed == ["warm" if w else "cool" for w in kinds]
    assert {r["model_version"] for r in results[:-1]} == {version}


def test_a_lone_broken_image_is_an_empty_result_not_a_500(client):
    setup(client, IMAGES)
    resp = predict(client, [{"id": 1, "data": {"image": "/data/upload/7/missing.png"}}], IMAGES)
    assert resp.status_code == 200 and resp.json()["results"][0]["result"] == []


# several controls -----------------------------------------------------------------------------


def test_each_servable_control_gets_predictions_and_trains_on_its_own_answers(client):
    assert setup(client, BOTH).status_code == 200
    text = "Angela Merkel loved her holiday in Rome: a wonderful, happy trip."
    tasks = [{"id": 1, "data": {"text": text}}]
    res = predict(client, tasks, BOTH).json()["results"][0]
    assert_valid(BOTH, [res])
    names = {r["from_name"] for r in res["result"]}
    assert names == {"sentiment", "ner"}  # the TextArea is ignored
    rng = random.Random(0)
    texts = [("A joyful, wonderful film set in Rome.", "positive"), ("A dull, awful trip to Paris.", "negative"),
             ("John Smith was brilliant in Madrid.", "positive"), ("Terrible service in London.", "negative")]
    for i, (t, label) in enumerate(texts):
        place = next(p for p in ("Rome", "Paris", "Madrid", "London") if p in t)
        regions = [choices_region("sentiment", "text", [label]),
                   span_region(t, t.index(place), t.index(place) + len(place), "Location")]
        rng.shuffle(regions)
        client.post("/webhook", json=event(30 + i, {"id": 10 + i, "data": {"text": t}}, regions, BOTH))
    version = wait_for_version(client, BOTH, res["model_version"])
    after = predict(client, tasks, BOTH).json()["results"][0]
    assert_valid(BOTH, [after])
    assert after["model_version"] == version
    controls = client.get("/metrics").json()["projects"]["7"]["controls"]
    assert controls["sentiment"] == {"kind": "classification", "object": "text", "labels": 4, "mode": "trained"}
    assert controls["ner"] == {"kind": "spans", "object": "text", "labels": 4, "mode": "bootstrap"}  # few spans


@pytest.mark.parametrize("config", [NER, TAGS, BOTH])
def test_versions_of_every_task_type_survive_a_restart(settings, config):
    from fastapi.testclient import TestClient

    from suggest.server import create_app

    text = "Angela Merkel met the acting cast in Paris."
    regions = {
        NER: [span_region(text, 0, 13, "Person"), span_region(text, 37, 42, "Location")],
        TAGS: [choices_region("tags", "text", ["acting", "story"])],
        BOTH: [choices_region("sentiment", "text", ["positive"]), span_region(text, 37, 42, "Location")],
    }[config]
    other = "Nothing but dull music."
    regions2 = {
        NER: [], TAGS: [choices_region("tags", "text", ["music"])],
        BOTH: [choices_region("sentiment", "text", ["negative"])],
    }[config]
    with TestClient(create_app(settings)) as c:
        setup(c, config)
        v0 = setup(c, config).json()["model_version"]
        c.post("/webhook", json=event(1, {"id": 1, "data": {"text": text}}, regions, config))
        c.post("/webhook", json=event(2, {"id": 2, "data": {"text": other}}, regions2, config))
        version = wait_for_version(c, config, v0)
        before = predict(c, [{"id": 1, "data": {"text": text}}], config).json()["results"][0]
    with TestClient(create_app(settings)) as c:
        assert setup(c, config).json()["model_version"] == version
        again = predict(c, [{"id": 1, "data": {"text": text}}], config).json()["results"][0]
    assert [{k: v for k, v in r.items() if k != "score"} for r in again["result"]] == \
        [{k: v for k, v in r.items() if k != "score"} for r in before["result"]]
    assert [r["score"] for r in again["result"]] == pytest.approx([r["score"] for r in before["result"]], abs=1e-4)


def test_a_label_names_the_spacy_types_that_bootstrap_it(client):
    config = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
              '<Label value="Firm" entity="ORG"/><Label value="Place" entity="none"/><Label value="Person"/>'
              '</Labels></View>')
    assert setup(client, config).status_code == 200
    text = "Google opened a new office in Paris, said Sundar Pichai."
    res = predict(client, [{"id": 1, "data": {"text": text}}], config).json()["results"][0]
    assert_valid(config, [res])
    found = {(r["value"]["text"], r["value"]["labels"][0]) for r in res["result"]}
    assert ("Google", "Firm") in found  # ORG -> Firm, as the config says
    assert any(t.startswith("Sundar Pichai") and label == "Person" for t, label in found)  # the default map
    assert not any(label == "Place" for _, label in found)  # entity="none": no bootstrap for Place


def test_an_unknown_spacy_type_is_refused_at_setup_with_the_valid_ones():
    from suggest.labelstudio import parse_controls
    from suggest.schema import SchemaError

    config = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
              '<Label value="Firm" entity="COMPANY"/></Labels></View>')
    with pytest.raises(SchemaError, match="COMPANY.*not spaCy entity types.*ORG"):
        parse_controls(config)
