"""Entity spans and images in the real Label Studio: valid pre-annotations, then retraining on annotations.

The NER project starts from the packaged spaCy model (mapped onto the project's label names);
the image project's pictures are uploaded to Label Studio through its import API, so `suggest`
has to fetch `/data/upload/...` files back with the project's token. In both, the loop pushes
predictions without anyone pressing "Retrieve predictions", and every prediction Label Studio
holds passes label-studio-sdk's validator for the project's config.
"""

from __future__ import annotations

from typing import Any

import pytest
from label_studio_sdk.label_interface import LabelInterface

from tests.e2e.labelstudio_server import HttpServer, LabelStudioClient
from tests.e2e.labelstudio_server import wait_pushed as _wait_pushed
from tests.samples import NER_SENTENCES, png, span_regions

pytestmark = pytest.mark.e2e

TIMEOUT = 150.0

NER_CONFIG = (
    '<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
    '<Label value="Person"/><Label value="Organization"/><Label value="Location"/></Labels></View>'
)
IMAGE_CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
    '<Choice value="warm"/><Choice value="cool"/></Choices></View>'
)

SENTENCES = [
    *NER_SENTENCES,
    ("Tim Cook said Apple will invest in Texas.", [("Tim Cook", "Person"), ("Apple", "Organization"),
                                                   ("Texas", "Location")]),
    ("Ana García moved from Madrid to Toronto to join Shopify.", [("Ana García", "Person"), ("Madrid", "Location"),
                                                                  ("Toronto", "Location"),
                                                                  ("Shopify", "Organization")]),
    ("Unilever and Nestlé compete across Europe.", []),
    ("Satya Nadella spoke at Stanford about Microsoft.", []),
    ("Rain is expected in Dublin on Friday.", []),
    ("Priya Patel founded Zenith Labs in Bangalore.", []),
]
N_ANNOTATED = 8


def wait_pushed(suggest: HttpServer, pid: int, trained: bool) -> dict[str, Any]:
    return _wait_pushed(suggest, pid, trained, TIMEOUT)


def held_predictions(ls: LabelStudioClient, pid: int, version: str) -> dict[int, dict]:
    preds = [p for p in ls.predictions(pid) if p["model_version"] == version]
    return {p["task"]: p for p in preds}


def assert_valid(config: str, preds: dict[int, dict]) -> None:
    interface = LabelInterface(config)
    bad = [p for p in preds.values() if not interface.validate_prediction(p)]
    assert not bad, f"{len(bad)} predictions do not validate, e.g. {bad[0]}"


def test_ner_project_gets_valid_span_preannotations_and_retrains(ls: LabelStudioClient, suggest_server: HttpServer):
    pid = ls.create_project("e2e entities", NER_CONFIG)["id"]
    ls.import_tasks(pid, [{"text": text} for text, _ in SENTENCES])
    tasks = {t["data"]["text"]: t["id"] for t in ls.tasks(pid)}
    ls.connect_ml(pid, suggest_server.url, "suggest ner")

    start = wait_pushed(suggest_server, pid, trained=False)
    assert start["controls"]["ner"]["mode"] == "bootstrap"
    preds = held_predictions(ls, pid, start["model_version"])
    assert set(preds) == set(tasks.values())  # every task pre-annotated before any label
    assert_valid(NER_CONFIG, preds)
    text_of = {tid: text for text, tid in tasks.items()}
    found = set()
    for tid, p in preds.items():
        for r in p["result"]:
            v = r["value"]
            assert text_of[tid][v["start"]:v["end"]] == v["text"]
            found.add((v["text"], v["labels"][0]))
    assert ("Paris", "Location") in found and ("Angela Merkel", "Person") in found

    for text, spans in SENTENCES[:N_ANNOTATED]:
        ls.annotate(tasks[text], span_regions(text, spans))
    trained = wait_pushed(suggest_server, pid, trained=True)
    assert trained["controls"]["ner"] == {"kind": "spans", "object": "text", "labels": N_ANNOTATED,
                                          "mode": "trained"}
    after = held_predictions(ls, pid, trained["model_version"])
    unlabeled = {tasks[text] for text, _ in SENTENCES[N_ANNOTATED:]}
    assert unlabeled <= set(after)
    assert_valid(NER_CONFIG, after)
    assert ls.project(pid)["model_version"] == trained["model_version"]


def test_image_project_uploaded_to_label_studio_learns_and_pushes_valid_predictions(
    ls: LabelStudioClient, suggest_server: HttpServer
):
    pid = ls.create_project("e2e images", IMAGE_CONFIG)["id"]
    warm_of: dict[str, bool] = {}
    for i in range(12):
        warm = i % 2 == 0
        name = f"{'warm' if warm else 'cool'}-{i}.png"
        ls.request("POST", f"/api/projects/{pid}/import",
                   files={"file": (name, png(warm, i, size=96), "image/png")})
        warm_of[name] = warm
    tasks = ls.tasks(pid)
    assert len(tasks) == 12 and all(t["data"]["image"].startswith("/data/upload/") for t in tasks)
    truth = {t["id"]: next(w for n, w in warm_of.items() if t["data"]["image"].endswith(n)) for t in tasks}
    ls.connect_ml(pid, suggest_server.url, "suggest images")
    start = wait_pushed(suggest_server, pid, trained=False)
    assert start["controls"]["kind"]["mode"] == "untrained"  # no zero-shot for images offline
    cold = held_predictions(ls, pid, start["model_version"])
    assert set(cold) == set(truth)  # empty pre-annotations that carry the cold-start queue order
    assert all(p["result"] == [] for p in cold.values())
    assert ls.project(pid)["model_version"] == start["model_version"]

    ids = sorted(truth)
    for tid in ids[:6]:
        ls.annotate(tid, [{"from_name": "kind", "to_name": "image", "type": "choices",
                           "value": {"choices": ["warm" if truth[tid] else "cool"]}}])
    trained = wait_pushed(suggest_server, pid, trained=True)
    preds = held_predictions(ls, pid, trained["model_version"])
    assert set(ids[6:]) <= set(preds)  # fetched back from Label Studio with the project's token
    assert_valid(IMAGE_CONFIG, preds)
    for tid in ids[6:]:
        assert preds[tid]["result"][0]["value"]["choices"] == ["warm" if truth[tid] else "cool"]
    assert ls.project(pid)["model_version"] == trained["model_version"]
