"""Label quality end to end inside one process: two annotators' webhooks, a retrain, then the report the
trainer stored, as /metrics and `suggest quality` show it (real encoder, real store, no Label Studio)."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from suggest.cli import app
from tests.conftest import CONFIG, PROJECT, annotation_event


def _event(ann: int, task: int, text: str, label: str, who: int) -> dict:
    event = annotation_event(ann, task, text, label)
    event["annotation"].update(completed_by=who, lead_time=2.5)
    return event


def test_two_annotators_flipped_labels_show_in_metrics_and_the_cli(client, settings, rt_sample):
    assert client.post("/setup", json={"project": PROJECT, "schema": CONFIG}).status_code == 200
    sample = rt_sample[:80]
    flipped = set(range(0, 80, 10))  # 8 planted wrong labels by annotator 1, on tasks nobody else saw
    other = {"fresh": "rotten", "rotten": "fresh"}
    ann = 1
    for t, (text, label) in enumerate(sample):
        if t < 20:  # annotator 2 also labels the first 20 (of which 10-19 hold no flip): they disagree on 5
            client.post("/webhook", json=_event(ann, 1000 + t, text, other[label] if t % 4 == 0 else label, 2))
            ann += 1
        given = other[label] if t in flipped and t >= 20 else label
        client.post("/webhook", json=_event(ann, 1000 + t, text, given, 1))
        ann += 1
    deadline = time.monotonic() + 90
    quality: dict = {}
    while time.monotonic() < deadline:
        quality = client.get("/metrics").json()["projects"]["7"].get("quality", {})
        if quality.get("counts"):
            break
        time.sleep(0.2)
    assert quality.get("counts"), quality
    assert quality["counts"]["annotators"] == 2 and quality["counts"]["tasks"] == 80
    headline = quality["agreement"]["sentiment"]
    assert headline["tasks"] == 20 and headline["krippendorff_alpha"] < 0.9  # their disagreement shows
    planted = {1000 + t for t in flipped if t >= 20}
    assert quality["top_suspects"], "no suspects"

    result = CliRunner().invoke(app, ["quality", "7", "--model-dir", str(settings.model_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (pair,) = report["agreement"]["sentiment"]["pairs"]
    assert pair["annotators"] == [1, 2] and pair["tasks"] == 20 and pair["percent_agreement"] == 0.75
    suspects = report["suspects"]
    assert [s["score"] for s in suspects] == sorted((s["score"] for s in suspects), reverse=True)
    assert set(suspects[0]) >= {"task_id", "given", "suggested", "score"}
    top = {s["task_id"] for s in suspects[: 2 * len(planted)]}
    assert len(top & planted) >= len(planted) // 2, (top, planted)  # planted flips rank near the top
    csv_out = CliRunner().invoke(app, ["quality", "7", "--model-dir", str(settings.model_dir), "--format", "csv"])
    assert csv_out.exit_code == 0 and csv_out.output.splitlines()[0] == "task_id,control,given,suggested,score"
    table = CliRunner().invoke(app, ["quality", "7", "--model-dir", str(settings.model_dir)])
    assert table.exit_code == 0 and "2 annotator(s)" in table.output and str(suspects[0]["task_id"]) in table.output
    unknown = CliRunner().invoke(app, ["quality", "99", "--model-dir", str(settings.model_dir)])
    assert unknown.exit_code == 2 and "no project 99" in unknown.output


def test_a_planted_wrong_span_type_is_a_suspect_in_the_report(client, settings):
    """Entity spans through webhooks (real tagger, real store): a span typed wrongly on purpose heads the
    report's suspects as "wrong type", with the type it really has suggested."""
    from tests.api.test_task_types import NER, NER_DATA, event, setup, span_region

    assert setup(client, NER).status_code == 200
    rows = [json.loads(line) for line in (NER_DATA / "train.jsonl").read_text().splitlines()[:80]]
    planted = next(i for i, r in enumerate(rows) if i > 40 and any(lb == "Location" for *_, lb in r["spans"]))
    for i, row in enumerate(rows):
        spans = [(s, e, ("Person" if i == planted and lb == "Location" else lb)) for s, e, lb in row["spans"]]
        regions = [span_region(row["text"], s, e, lb) for s, e, lb in spans]
        client.post("/webhook", json=event(300 + i, {"id": 500 + i, "data": {"text": row["text"]}}, regions, NER))
    deadline, report = time.monotonic() + 180, {}
    while time.monotonic() < deadline:
        m = client.get("/metrics").json()["projects"]["7"]
        report = m.get("quality") or {}
        if report.get("model_version") == m["model_version"] and report.get("counts", {}).get("tasks") == 80:
            break
        time.sleep(0.3)
    result = CliRunner().invoke(app, ["quality", "7", "--model-dir", str(settings.model_dir), "--format", "json"])
    full = json.loads(result.output)
    assert full["label_errors"]["ner"]["suspects"] == len(full["suspects"]) > 0, full["label_errors"]
    mine = [s for s in full["suspects"][:5] if s["task_id"] == 500 + planted]
    assert mine and mine[0]["problem"] == "wrong type" and mine[0]["suggested"][0].endswith("(Location)"), \
        full["suspects"][:5]
