"""Exports (issue 18): every format read back by its own parser gives what was stored, per task the
consensus and each annotator's answer; CoNLL offsets match the text; Label Studio JSON reads back
through suggest's own Label Studio reader to the same annotations; CLI errors name the problem."""

from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

from suggest.cli import app
from suggest.export import bio_tags, read_conll, read_csv, task_records, to_bytes
from suggest.labelstudio import labels_from_tasks, parse_controls
from suggest.schema import Label, Span, answer_to_json
from suggest.store import ProjectRecord, Store

CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text"><Choice value="fresh"/><Choice value="rotten"/></Choices>'
    '<Choices name="topics" toName="text" choice="multiple"><Choice value="plot"/><Choice value="acting"/>'
    '<Choice value="music"/></Choices>'
    '<Labels name="ner" toName="text"><Label value="PER"/><Label value="LOC"/></Labels></View>'
)
SCHEMAS = parse_controls(CONFIG)
TEXTS = {
    1: "Anna Karenina lives in Moscow, very dull.",
    2: "Émile's café in São Paulo 🎬 was great\nsecond line: Bob!",
    3: "No entities here at all",
    4: "x-ray of Zoë",
}


def sp(text, fragment, label, nth=0):
    start = -1
    for _ in range(nth + 1):
        start = text.index(fragment, start + 1)
    return Span(start, start + len(fragment), label, fragment)


def annotation(task, ann, who, sentiment, topics, spans, gt=False):
    text = TEXTS[task]
    common = dict(ground_truth=gt, updated_at=f"2026-11-29T10:00:{ann:02d}Z", annotator=who,
                  created_at="2026-11-29T09:00:00Z", lead_time=1.5 + ann)
    out = [Label(task, ann, sentiment, text, control="sentiment", **common)]
    if topics:  # a choices control with nothing chosen gives no answer at all
        out.append(Label(task, ann, tuple(sorted(topics)), text, control="topics", **common))
    out.append(Label(task, ann, tuple(spans), text, control="ner", **common))
    return out


def labels():
    t1, t2, t4 = TEXTS[1], TEXTS[2], TEXTS[4]
    return [
        *annotation(1, 10, 1, "rotten", ["plot"], [sp(t1, "Anna Karenina", "PER"), sp(t1, "Moscow", "LOC")]),
        *annotation(1, 11, 2, "rotten", ["plot", "acting"], [sp(t1, "Anna Karenina", "PER")]),
        *annotation(1, 12, 3, "fresh", ["plot"], [sp(t1, "Anna Karenina", "PER"), sp(t1, "Moscow", "LOC")]),
        *annotation(2, 20, 1, "fresh", ["music"], [sp(t2, "Émile", "PER"), sp(t2, "São Paulo", "LOC"),
                                                   sp(t2, "Bob", "PER")]),
        *annotation(2, 21, 2, "rotten", [], [], gt=True),  # ground truth wins
        *annotation(3, 30, 2, "fresh", ["acting", "music"], []),
        *annotation(4, 40, 1, "fresh", [], [sp(t4, "ray", "LOC"), sp(t4, "Zoë", "PER")]),  # a span inside a word
    ]


def expected_consensus():
    return {1: "rotten", 2: "rotten", 3: "fresh", 4: "fresh"}


@pytest.fixture
def store_dir(tmp_path):
    store = Store(tmp_path)
    store.save_project(ProjectRecord("5", CONFIG, None, None))
    store.upsert_labels("5", labels())
    store.close()
    return tmp_path


def run(args):
    return CliRunner().invoke(app, args)


def test_records_hold_the_consensus_and_every_annotation():
    records = {r.task_id: r for r in task_records(labels(), SCHEMAS)}
    assert {t: r.consensus["sentiment"].label for t, r in records.items()} == expected_consensus()
    assert records[1].consensus["ner"].label == (sp(TEXTS[1], "Anna Karenina", "PER"), sp(TEXTS[1], "Moscow", "LOC"))
    assert records[2].consensus["ner"].label == ()  # the ground-truth annotation says: no entities
    assert sorted(records[1].annotations) == [10, 11, 12]
    assert records[2].data == {"text": TEXTS[2]}


def test_jsonl_keeps_the_old_lines_and_adds_annotator_and_consensus(store_dir):
    out = run(["export", "5", "--model-dir", str(store_dir)])
    assert out.exit_code == 0, out.output
    rows = [json.loads(x) for x in out.stdout.split("\n") if x.strip()]
    assert len(rows) == len(labels())
    for row, lb in zip(rows, labels(), strict=True):
        assert {k: row[k] for k in ("task_id", "annotation_id", "control", "label", "text", "ground_truth")} == {
            "task_id": lb.task_id, "annotation_id": lb.annotation_id, "control": lb.control,
            "label": answer_to_json(lb.label), "text": lb.text, "ground_truth": lb.ground_truth}
        assert row["annotator"] == lb.annotator and row["lead_time"] == lb.lead_time
        if lb.control == "sentiment":
            assert row["consensus"] == expected_consensus()[lb.task_id]
    assert run(["export", "5", "--format", "jsonl", "--model-dir", str(store_dir)]).stdout == out.stdout


def test_csv_reads_back(store_dir, tmp_path):
    path = tmp_path / "out.csv"
    out = run(["export", "5", "--format", "csv", "--out", str(path), "--model-dir", str(store_dir)])
    assert out.exit_code == 0, out.output
    rows = {r["task_id"]: r for r in read_csv(path, SCHEMAS)}
    assert sorted(rows) == [1, 2, 3, 4]
    for t, r in rows.items():
        assert r["text"] == TEXTS[t]  # newlines and emoji survive
        assert r["sentiment"] == expected_consensus()[t]
    assert rows[1]["topics"] == ["plot"]
    assert rows[1]["ner"] == [{"start": 0, "end": 13, "label": "PER", "text": "Anna Karenina"},
                              {"start": 23, "end": 29, "label": "LOC", "text": "Moscow"}]
    assert [(a["annotator"], a["answer"]) for a in rows[1]["sentiment_annotations"]] == \
        [(1, "rotten"), (2, "rotten"), (3, "fresh")]
    assert rows[2]["sentiment_annotations"][1]["ground_truth"] is True


def test_parquet_loads_in_pandas_and_datasets(store_dir, tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "out.parquet"
    out = run(["export", "5", "--format", "parquet", "--out", str(path), "--model-dir", str(store_dir)])
    assert out.exit_code == 0, out.output
    frame = pd.read_parquet(path)
    assert list(frame["task_id"]) == [1, 2, 3, 4]
    assert list(frame["sentiment"]) == [expected_consensus()[t] for t in (1, 2, 3, 4)]
    assert list(frame["text"]) == [TEXTS[t] for t in (1, 2, 3, 4)]
    assert list(frame.loc[0, "topics"]) == ["plot"]
    assert [a["answer"] for a in frame.loc[0, "sentiment_annotations"]] == ["rotten", "rotten", "fresh"]
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_parquet(str(path))
    assert ds.num_rows == 4 and ds[1]["text"] == TEXTS[2]
    assert ds[0]["ner"] == [{"start": 0, "end": 13, "label": "PER", "text": "Anna Karenina"},
                            {"start": 23, "end": 29, "label": "LOC", "text": "Moscow"}]
    assert ds[3]["sentiment_annotations"][0]["annotator"] == 1
    assert ds[0]["sentiment_annotations"][2]["lead_time"] == 13.5


def test_conll_offsets_match_the_text(store_dir):
    out = run(["export", "5", "--format", "conll", "--model-dir", str(store_dir)])
    assert out.exit_code == 0, out.output
    docs = {d["task_id"]: d for d in read_conll(io.StringIO(out.stdout))}
    records = {r.task_id: r for r in task_records(labels(), SCHEMAS)}
    assert sorted(docs) == [1, 2, 3, 4]
    for t, doc in docs.items():
        assert doc["text"] == TEXTS[t]
        for token, start, end, _ in doc["tokens"]:
            assert TEXTS[t][start:end] == token
        want = [(s.start, s.end, s.label) for s in records[t].consensus["ner"].label]
        assert doc["spans"] == want, t
    assert [tag for *_, tag in docs[1]["tokens"][:3]] == ["B-PER", "I-PER", "O"]
    assert any(tok == "ray" and tag == "B-LOC" for tok, _, _, tag in docs[4]["tokens"])  # cut out of "x-ray"


def test_bio_keeps_the_first_of_overlapping_spans():
    text = "New York City"
    tags = bio_tags(text, [Span(0, 8, "LOC"), Span(4, 13, "ORG")])
    assert [t for *_, t in tags] == ["B-LOC", "I-LOC", "O"]


def test_label_studio_json_reads_back_to_the_same_annotations(store_dir):
    out = run(["export", "5", "--format", "label-studio", "--model-dir", str(store_dir)])
    assert out.exit_code == 0, out.output
    tasks = json.loads(out.stdout)
    assert [t["data"]["text"] for t in tasks] == [TEXTS[t] for t in (1, 2, 3, 4)]
    for n, task in enumerate(tasks):
        task["id"] = n + 1  # Label Studio gives imported tasks their ids
        for ann in task["annotations"]:
            assert set(ann) >= {"result", "ground_truth", "completed_by", "lead_time"}
    back = labels_from_tasks(tasks, SCHEMAS)

    def key(lbs):
        return sorted((lb.annotation_id, lb.control, lb.label, lb.text, lb.ground_truth, lb.annotator, lb.lead_time)
                      for lb in lbs)

    assert key(back) == key(labels())
    from label_studio_sdk.label_interface import LabelInterface

    interface = LabelInterface(CONFIG)
    for task in tasks:
        for ann in task["annotations"]:
            assert interface.validate_annotation(ann), ann


def test_a_version_snapshot_exports_in_every_format(store_dir):
    store = Store(store_dir)
    store.publish_version("5", "v1-x", lambda f: (f / "w").write_text("w"), n_labels=4, train_seconds=0.1)
    store.delete_annotations("5", [10, 11, 20, 21])
    store.close()
    for fmt in ("csv", "label-studio", "conll"):
        then = run(["export", "5", "--version", "v1-x", "--format", fmt, "--model-dir", str(store_dir)])
        now = run(["export", "5", "--format", fmt, "--model-dir", str(store_dir)])
        assert then.exit_code == 0 and now.exit_code == 0
        assert then.stdout == to_bytes(labels(), SCHEMAS, fmt).decode()
        assert then.stdout != now.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["export", "5", "--format", "xml"], "--format must be one of"),
    (["export", "nope"], "is not a Label Studio project reference"),
    (["export", "6"], "no project 6"),
    (["export", "5", "--version", "v9-z"], "no version 'v9-z'"),
    (["export", "5", "--format", "conll", "--control", "sentiment"], "control 'sentiment' is classification"),
    (["export", "5", "--format", "conll", "--control", "zzz"], "no control 'zzz'"),
    (["export", "5", "--out", "/nonexistent/dir/x.csv"], "does not exist"),
])
def test_bad_input_is_one_clear_line(store_dir, args, message):
    out = run([*args, "--model-dir", str(store_dir)])
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output


def test_conll_of_a_project_without_spans_says_so(tmp_path):
    store = Store(tmp_path)
    config = '<View><Text name="text" value="$text"/><Choices name="s" toName="text"><Choice value="a"/>' \
             '<Choice value="b"/></Choices></View>'
    store.save_project(ProjectRecord("3", config, None, None))
    store.close()
    out = run(["export", "3", "--format", "conll", "--model-dir", str(tmp_path)])
    assert out.exit_code == 2 and "has no <Labels> control" in out.output


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    """`suggest export P | head -1`: the export stops quietly when its reader goes away."""
    import subprocess
    import sys

    store = Store(tmp_path)
    store.save_project(ProjectRecord("5", CONFIG, None, None))
    store.upsert_labels("5", [Label(t, t, "fresh", "a text long enough " * 10, control="sentiment")
                              for t in range(1, 3001)])  # far more than a pipe's buffer
    store.close()
    proc = subprocess.Popen([sys.executable, "-m", "suggest", "export", "5", "--model-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["task_id"] == 1
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0 and "Traceback" not in err and "error" not in err, err


def test_the_weighted_consensus_when_asked(store_dir, monkeypatch):
    """--consensus weighted (or SUGGEST_CONSENSUS=weighted) takes the last quality report's consensus as a
    retrain would: ground truth still wins, a label nobody gave is never invented."""
    store = Store(store_dir)
    store.put_quality("5", "v1-x", {"consensus": {"sentiment": {"tasks": {
        "1": {"label": "fresh", "quality": 0.7},  # the majority said rotten; annotator 3 said fresh
        "2": {"label": "fresh", "quality": 0.6},  # ground truth says rotten: it wins
    }}}})
    store.close()

    def consensus(*args):
        out = run(["export", "5", "--format", "csv", "--model-dir", str(store_dir), *args])
        assert out.exit_code == 0, out.output
        import csv

        return {int(row["task_id"]): row["sentiment"] for row in csv.DictReader(io.StringIO(out.stdout))}

    majority, weighted = consensus(), consensus("--consensus", "weighted")
    assert majority == expected_consensus()
    assert weighted == {**expected_consensus(), 1: "fresh"}
    monkeypatch.setenv("SUGGEST_CONSENSUS", "weighted")
    assert consensus() == weighted
    assert consensus("--consensus", "majority") == majority
    bad = run(["export", "5", "--consensus", "mean", "--model-dir", str(store_dir)])
    assert bad.exit_code == 2 and "--consensus must be majority or weighted" in bad.output
