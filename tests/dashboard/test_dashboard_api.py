"""The dashboard inside one process (FastAPI TestClient, real encoder, real store, no Label Studio): the
figures a page shows are the ones /metrics and the stored quality report hold, hostile text is escaped,
an unknown project is a 404, and basic auth guards the pages when it is set."""

from __future__ import annotations

import base64
import re
import time

from fastapi.testclient import TestClient

from suggest.config import Settings
from suggest.dashboard.svg import Series, line_chart, nice_ticks
from suggest.server import create_app
from tests.conftest import CONFIG, PROJECT, annotation_event

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _event(ann: int, task: int, text: str, label: str, who: int) -> dict:
    event = annotation_event(ann, task, text, label)
    event["annotation"].update(completed_by=who, lead_time=1.5)
    return event


def _wait_for_quality(client: TestClient, deadline_s: float = 120) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        m = client.get("/metrics").json()["projects"]["7"]
        quality = m.get("quality", {})
        if quality.get("counts") and (m.get("standing") or {}).get("estimates"):  # standing follows quality
            return quality
        time.sleep(0.2)
    raise AssertionError("no quality report in time")


def test_the_project_page_shows_what_metrics_and_the_report_hold(client, settings, rt_sample):
    assert client.get("/ui").status_code == 200 and "No project yet" in client.get("/ui").text
    assert client.post("/setup", json={"project": PROJECT, "schema": CONFIG}).status_code == 200
    other = {"fresh": "rotten", "rotten": "fresh"}
    ann = 1
    for t, (text, label) in enumerate(rt_sample[:60]):
        if t < 20:
            client.post("/webhook", json=_event(ann, 1000 + t, text, other[label] if t % 4 == 0 else label, 2))
            ann += 1
        shown = HOSTILE if t == 30 else text
        client.post("/webhook", json=_event(ann, 1000 + t, shown, other[label] if t in (35, 45) else label, 1))
        ann += 1
    quality = _wait_for_quality(client)
    metrics = client.get("/metrics").json()["projects"]["7"]

    index = client.get("/ui")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    row = re.search(r'<tr data-project="7">(.*?)</tr>', index.text, re.S).group(1)
    assert f">{metrics['labels']}<" in row and 'href="/ui/projects/7"' in row
    oof = metrics["standing"]["estimates"]["out_of_fold"]["estimate"]
    assert f"{oof:.3f} (out of fold)" in row or "(audit)" in row  # the list shows the accuracy estimate

    page = client.get("/ui/projects/7")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert re.search(r'id="labels">(\d+)<', html).group(1) == str(metrics["labels"])
    assert re.search(r'id="model-version">([^<]+)<', html).group(1) == metrics["model_version"]
    assert re.search(r'id="suspect-count">(\d+)<', html).group(1) == str(quality["counts"]["suspects"])
    listed = [int(t) for t in re.findall(r'<tr class="suspect" data-task="(\d+)"', html)]
    top = [s["task_id"] for s in quality["top_suspects"]]
    assert top and listed[:len(top)] == top  # most suspicious first, as the report ranks them
    # the agreement table carries the report's alpha for the 20 shared tasks
    alpha = quality["agreement"]["sentiment"]["krippendorff_alpha"]
    assert f"{alpha:.3f}" in html and "20 shared task(s)" in html
    # the timeline's last point is the number of annotations stored
    ys = [float(y) for y in re.findall(r'data-series="annotations" data-x="[^"]+" data-y="([^"]+)"', html)]
    assert ys and ys[-1] == metrics["annotations"]
    assert "<script" not in html.lower() and "<img src=x" not in html  # a stranger's text never runs

    assert client.get("/ui/projects/99").status_code == 404
    assert client.get("/ui/projects/7?refresh=-1").status_code == 422


def test_the_dashboard_needs_the_basic_auth_credentials_when_they_are_set(tmp_path):
    settings = Settings.from_env({"BASIC_AUTH_USER": "lead", "BASIC_AUTH_PASS": "s3cret"},
                                 model_dir=tmp_path / "models")
    with TestClient(create_app(settings)) as client:
        assert client.get("/ui").status_code == 401
        assert client.get("/ui/projects/7").status_code == 401
        good = base64.b64encode(b"lead:s3cret").decode()
        assert client.get("/ui", headers={"Authorization": f"Basic {good}"}).status_code == 200


def test_a_strangers_text_and_labels_render_as_text_and_links_only_to_http():
    from suggest.dashboard.data import task_link
    from suggest.dashboard.pages import render_project

    view = {"project_id": "7", "metrics": {"labels": 1, "model_version": HOSTILE, "label_studio": {}},
            "ls_url": "http://ls:8080", "timeline": [("2026-11-29T10:00:00", 1)], "annotators": [(1, 1)],
            "versions": [], "standing": {}, "agreement": {}, "quality": {"counts": {"suspects": 1},
            "model_version": "v1"}, "loop": {"enabled": False, "reason": HOSTILE}, "generated_at": "now",
            "suspects": [{"task_id": 5, "given": HOSTILE, "suggested": "b", "score": 0.9, "text": HOSTILE,
                          "link": task_link("http://ls:8080", "7", 5)}], "next": []}
    html = render_project(view, root="/ui/")
    assert "<script" not in html.lower() and "<img src=x" not in html and html.count("&lt;script&gt;") >= 3
    assert 'href="http://ls:8080/projects/7/data?task=5"' in html
    assert task_link("javascript:alert(1)//", "7", 5) is None and task_link(None, "7", 5) is None


def test_a_chart_draws_each_point_where_its_numbers_say():
    svg = line_chart([Series("acc", [(10, 0.5), (20, 0.75)], band=[(10, 0.4, 0.6), (20, 0.7, 0.8)])],
                     title="t", x_label="labels", y_label="accuracy", y_range=(0.0, 1.0), width=652, height=268)
    points = re.findall(r'data-x="([^"]+)" data-y="([^"]+)" cx="([^"]+)" cy="([^"]+)"', svg)
    assert [(float(x), float(y)) for x, y, _, _ in points] == [(10, 0.5), (20, 0.75)]
    (_, _, cx0, cy0), (_, _, cx1, cy1) = points
    assert float(cx0) == 52 and float(cx1) == 52 + 588  # x range spans the plot, 52 px left margin
    assert float(cy0) == 28 + 0.5 * 200 and float(cy1) == 28 + 0.25 * 200  # y from 1.0 at the top
    assert "<polygon" in svg and "no data yet" in line_chart([], title="t", x_label="x", y_label="y")
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0] and nice_ticks(0, 370)[-1] >= 300


def test_a_strangers_project_reference_is_a_4xx_never_a_500(client):
    for path in ("/ui/projects/" + "9" * 5000, "/ui/projects/<script>", "/metrics?project=" + "1" * 5000):
        response = client.get(path)
        assert response.status_code == 422 and "not a Label Studio project reference" in response.text, path
