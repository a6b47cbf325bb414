"""`<Choices choice="multiple">` on `<Image>` through the real app (issue 11: /setup answered 500).

Served by the images-multilabel family: EfficientNet-Lite0 vectors, one logistic head per label.
"""

from __future__ import annotations

from suggest.labelstudio import validate_predictions
from tests.api.test_protocol import predict, setup
from tests.api.test_task_types import choices_region, event, wait_for_version
from tests.samples import image_uri

IMAGE_TAGS = (
    '<View><Image name="image" value="$image"/><Choices name="tags" toName="image" choice="multiple">'
    '<Choice value="warm"/><Choice value="cool"/><Choice value="large"/></Choices></View>'
)


def tags_of(warm: bool, large: bool) -> list[str]:
    return sorted({"warm" if warm else "cool"} | ({"large"} if large else set()))


def test_multiple_choice_on_an_image_is_set_up_untrained_then_learns_label_sets(client):
    resp = setup(client, IMAGE_TAGS)
    assert resp.status_code == 200, resp.text
    shapes = [(i % 2 == 0, i % 3 == 0) for i in range(9)]  # (warm, large)
    tasks = [{"id": i + 1, "data": {"image": image_uri(w, i, 96 if big else 64)}} for i, (w, big) in enumerate(shapes)]
    first = predict(client, tasks, IMAGE_TAGS)
    assert first.status_code == 200
    assert all(r["result"] == [] for r in first.json()["results"])  # untrained: no image zero-shot offline
    for i, (task, (warm, large)) in enumerate(zip(tasks[:7], shapes, strict=False)):
        region = choices_region("tags", "image", tags_of(warm, large))
        client.post("/webhook", json=event(40 + i, task, [region], IMAGE_TAGS))
    version = wait_for_version(client, IMAGE_TAGS, first.json()["model_version"])
    results = predict(client, tasks, IMAGE_TAGS).json()["results"]
    assert validate_predictions(IMAGE_TAGS, results) == []
    assert {r["model_version"] for r in results} == {version}
    chosen = [set(r["result"][0]["value"]["choices"]) for r in results]
    assert all(c and c <= {"warm", "cool", "large"} for c in chosen)
    # colour is what these images are made of: every suggestion gets it right, held-out ones included
    assert [("warm" in c, "cool" in c) for c in chosen] == [(w, not w) for w, _ in shapes]
    controls = client.get("/metrics").json()["projects"]["7"]["controls"]
    assert controls["tags"] == {"kind": "multilabel", "object": "image", "labels": 7, "mode": "trained"}
