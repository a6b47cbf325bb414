"""`suggest stats` (issue 18) on fixed data: ready tasks, per label, per annotator, disagreements, versions."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from suggest.cli import app
from suggest.labelstudio import parse_controls
from suggest.schema import Label, Span
from suggest.stats import compute
from suggest.store import ProjectRecord, Store

CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text"><Choice value="fresh"/><Choice value="rotten"/></Choices>'
    '<Labels name="ner" toName="text"><Label value="PER"/><Label value="LOC"/></Labels></View>'
)


def data() -> list[Label]:
    def s(task, ann, who, label, gt=False):
        return Label(task, ann, label, f"t{task}", gt, f"2026-11-29T10:00:{ann:02d}Z", "sentiment", who)

    def n(task, ann, who, spans):
        return Label(task, ann, tuple(spans), f"t{task}", False, "", "ner", who)

    return [
        s(1, 1, 7, "fresh"), s(1, 2, 8, "fresh"),  # shared, agree
        s(2, 3, 7, "fresh"), s(2, 4, 8, "rotten"),  # shared, disagree (tie: the later one, rotten)
        s(3, 5, 7, "rotten"),
        s(4, 6, 8, "neutral"),  # outside the config's labels (a config change): not ready
        s(5, 7, 9, "rotten", gt=True), s(5, 8, 7, "fresh"),  # shared, disagree; ground truth decides
        n(1, 1, 7, [Span(0, 1, "PER")]), n(1, 2, 8, [Span(0, 1, "PER"), Span(1, 2, "LOC")]),
        n(3, 5, 7, []),
    ]


def test_stats_on_fixed_data():
    out = compute(data(), parse_controls(CONFIG), total_tasks=10)
    assert out["annotations"] == 8 and out["labeled_tasks"] == 5 and out["unlabeled_tasks"] == 5
    assert out["ready_tasks"] == 4  # task 4's only answer is outside the config
    sentiment = out["controls"]["sentiment"]
    assert sentiment == {"kind": "classification", "ready": 4, "per_label": {"fresh": 1, "rotten": 3},
                         "annotated_tasks": 5, "not_ready": 1, "shared_tasks": 3, "disagreements": 2}
    ner = out["controls"]["ner"]
    assert ner["ready"] == 2 and ner["per_label"] == {"PER": 1, "LOC": 1}  # task 1: a tie, the later answer
    assert ner["shared_tasks"] == 1 and ner["disagreements"] == 1
    assert out["annotators"] == {"7": {"annotations": 4, "tasks": 4}, "8": {"annotations": 3, "tasks": 3},
                                 "9": {"annotations": 1, "tasks": 1}}
    assert compute(data(), parse_controls(CONFIG))["unlabeled_tasks"] is None


def test_stats_command_table_and_json(tmp_path):
    store = Store(tmp_path)
    store.save_project(ProjectRecord("4", CONFIG, None, None))
    store.upsert_labels("4", data())
    store.publish_version("4", "v1-a", lambda f: (f / "w").write_text("w"), n_labels=4, train_seconds=0.2)
    store.delete_annotations("4", [1])
    store.put_tasks("4", [(t, {"text": f"t{t}"}, t <= 5) for t in range(1, 13)])  # 12 tasks, 5 annotated
    store.close()
    runner = CliRunner()
    out = runner.invoke(app, ["stats", "4", "--format", "json", "--model-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert got["annotations"] == 7 and got["total_tasks"] == 12 and got["unlabeled_tasks"] == 7
    assert got["versions"] == [{"version": "v1-a", "trained_at": got["versions"][0]["trained_at"], "n_labels": 4,
                                "snapshot_annotations": 8}]
    table = runner.invoke(app, ["stats", "4", "--model-dir", str(tmp_path)])
    assert table.exit_code == 0, table.output
    assert "ready for training" in table.stdout and "v1-a" in table.stdout and "rotten" in table.stdout
    assert "unlabelled left: 7" in table.stdout
    for args, message in ((["stats", "4", "--format", "xml"], "--format must be one of table, json"),
                          (["stats", "9"], "no project 9")):
        bad = runner.invoke(app, [*args, "--model-dir", str(tmp_path)])
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output
