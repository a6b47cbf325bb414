"""Standing end to end inside one process: the loop records suggestions, the audit slice and the stop set;
a retrain's standing holds the three estimates, kappa and drift; readers (/metrics, `suggest status`,
`suggest autolabel`) read it; the analysis worker never holds up a retrain; machine annotations never train."""

from __future__ import annotations

import json
import threading
import time

import pytest
from typer.testing import CliRunner

from suggest.cli import app
from suggest.config import Settings
from suggest.labelstudio import annotation_labels, autolabel_annotation_json, is_autolabel, parse_controls
from suggest.loop import LoopSettings, rank_rows
from suggest.schema import Item, Label, Prediction
from suggest.standing.report import compute_standing, metrics_entry
from suggest.store import ProjectRecord, Store
from tests.conftest import CONFIG


def _project(tmp_path):
    from suggest.project import open_project

    store = Store(tmp_path)
    record = ProjectRecord("7", CONFIG, None, None)
    store.save_project(record)
    return store, open_project(store, record, parse_controls(CONFIG))


def _rows(pairs, start=0):
    return [{"sentiment": Item(text, start + i)} for i, (text, _) in enumerate(pairs)]


def test_the_loop_records_suggestions_an_audit_slice_and_a_stop_set_then_standing_reads_them(tmp_path, rt_sample):
    store, project = _project(tmp_path)
    truth = {i: y for i, (_, y) in enumerate(rt_sample)}
    store.upsert_labels("7", [Label(t, t, truth[t], rt_sample[t][0], control="sentiment", annotator=1,
                                    created_at=f"2026-11-21T10:{t // 60:02d}:{t % 60:02d}Z") for t in range(60)])
    assert project.retrain() is not None
    pool = _rows(rt_sample[60:], 60)
    ranked, batch = rank_rows(project, pool, LoopSettings(batch_size=20, audit_fraction=0.25))
    shown = {s["task_id"]: s for s in store.suggestions("7")}
    assert set(shown) == set(range(60, 200))  # every ranked task's suggestion is recorded
    audited = {t for t, s in shown.items() if s["audit_weight"]}
    assert 4 <= len(audited) <= 5 and audited <= {pool[int(i)]["sentiment"].task_id for i in batch}
    assert all(shown[t]["audit_weight"] == pytest.approx(140 / 5) for t in audited)
    assert len(store.stop_set("7")) == 140  # drawn once from the pool (all of it: fewer than 1,000)
    first = project.model_version

    # people label the batch (audit included); a new version; standing for it
    done = [pool[int(i)]["sentiment"].task_id for i in batch]
    store.upsert_labels("7", [Label(t, t, truth[t], rt_sample[t][0], control="sentiment", annotator=1,
                                    created_at=f"2026-11-21T11:00:{j:02d}Z") for j, t in enumerate(done)])
    report0, stop0, _ = compute_standing(project)  # the first version's standing (before the retrain)
    store.put_standing("7", first, 1, 80, stop0, report0)
    assert project.retrain() is not None and project.model_version != first
    report, stop, validation = compute_standing(project)
    est = report["estimates"]
    agree = [shown[t]["label"] == truth[t] for t in done]
    assert est["agreement"]["n"] == 20 and est["agreement"]["estimate"] == pytest.approx(sum(agree) / 20, abs=1e-4)
    assert est["audit"]["n"] == len(audited) and est["audit"]["low"] <= est["audit"]["estimate"] <= est["audit"]["high"]
    assert est["out_of_fold"]["n"] == 80 and 0.5 < est["out_of_fold"]["estimate"] <= 1.0
    assert len(stop) == 140 and all(s in ("fresh", "rotten") for s in stop)
    assert report["stopping"]["kappa"] is not None and -1 <= report["stopping"]["kappa"] <= 1
    assert report["stopping"]["consecutive"] <= 1 and not report["stopping"]["stable"]
    assert "na" in report["drift"]["agreement_over_time"]  # 20 annotated suggestions: below the minimum
    assert len(validation) == 80 + len(audited)
    store.put_standing("7", project.model_version, 2, 80, stop, report)
    shown_m = metrics_entry(store.standing("7"), store.standing_history("7"))
    assert [p["labels"] for p in shown_m["learning_curve"]] == [80, 80]
    assert "tasks" not in shown_m["autolabel"]  # /metrics carries counts, not task lists
    json.dumps(shown_m)
    store.close()


def test_served_suggestions_skip_annotated_tasks(tmp_path, rt_sample):
    from suggest.standing.live import record_served

    store, project = _project(tmp_path)
    preds = [[Prediction("fresh", 0.9, 0.8, "v1", "sentiment")], [Prediction("rotten", 0.7, 0.4, "v1", "sentiment")]]
    record_served(project, _rows(rt_sample[:2]), preds, [False, True])
    assert [s["task_id"] for s in store.suggestions("7")] == [0]
    store.close()


def test_autolabel_annotations_are_marked_and_never_train():
    schema = parse_controls(CONFIG)[0]
    body = autolabel_annotation_json(Prediction("fresh", 0.991, 0.9, "v3-abc", "sentiment"), schema,
                                     run_id="1732880000000", threshold=0.97)
    assert body["ground_truth"] is False and body["import_id"] == 1732880000000
    mark = body["result"][0]["suggest_autolabel"]
    assert mark == {"run_id": "1732880000000", "model_version": "v3-abc", "threshold": 0.97, "probability": 0.991}
    assert "suggest autolabel" in body["result"][0]["meta"]["text"][0]
    exported = {**body, "id": 5, "task": 3}
    assert is_autolabel(exported)
    task = {"id": 3, "data": {"text": "a fine film"}}
    assert annotation_labels(exported, task, (schema,)) == []  # machine work is not a label
    human = {**exported, "result": [{k: v for k, v in body["result"][0].items() if k != "suggest_autolabel"}]}
    assert not is_autolabel(human) and annotation_labels(human, task, (schema,))[0].label == "fresh"


# readers ----------------------------------------------------------------------------------------------


def _stored_standing(tmp_path, rt_sample):
    store, project = _project(tmp_path)
    truth = {i: y for i, (_, y) in enumerate(rt_sample)}
    store.upsert_labels("7", [Label(t, t, truth[t], rt_sample[t][0], control="sentiment", annotator=1)
                              for t in range(100)])
    assert project.retrain() is not None
    rank_rows(project, _rows(rt_sample[100:], 100), LoopSettings(batch_size=10))
    report, stop, validation = compute_standing(project)
    store.put_validation("7", project.model_version, validation)
    store.put_standing("7", project.model_version, 1, 100, stop, report)
    return store, project, report


def test_cli_autolabel_dry_run_status_json_and_plot(tmp_path, rt_sample):
    store, project, report = _stored_standing(tmp_path, rt_sample)
    store.close()
    runner = CliRunner()
    got = runner.invoke(app, ["autolabel", "7", "--target", "0.6", "--format", "json", "--model-dir", str(tmp_path)])
    assert got.exit_code == 0, got.output
    out = json.loads(got.output)
    assert out["project"] == "7" and out["target"] == 0.6 and set(out["thresholds"]) == {"fresh", "rotten"}
    assert out["qualifying"] == len(out["tasks"]) and all(t["task_id"] >= 100 for t in out["tasks"])
    for t in out["tasks"]:
        assert t["probability"] >= out["thresholds"][t["label"]]["threshold"]
    strict = json.loads(runner.invoke(app, ["autolabel", "7", "--target", "0.99", "--format", "json",
                                            "--model-dir", str(tmp_path)]).output)
    assert strict["qualifying"] <= out["qualifying"]
    table = runner.invoke(app, ["autolabel", "7", "--model-dir", str(tmp_path)])
    assert table.exit_code == 0 and "per-class thresholds" in table.output
    status = runner.invoke(app, ["status", "--format", "json", "--plot", str(tmp_path / "plots"),
                                 "--model-dir", str(tmp_path)])
    assert status.exit_code == 0, status.output
    st = json.loads(status.output)["projects"]["7"]["standing"]
    assert st["estimates"]["out_of_fold"]["n"] == 100 and st["learning_curve"][0]["labels"] == 100
    assert (tmp_path / "plots" / "curve-7.png").read_bytes()[:4] == b"\x89PNG"
    text = runner.invoke(app, ["status", "--model-dir", str(tmp_path)])
    assert text.exit_code == 0 and "out-of-fold accuracy" in text.output and "labels" in text.output


@pytest.mark.parametrize("args,message", [
    (["autolabel", "99"], "no project 99"),
    (["autolabel", "7", "--target", "1.5"], "--target"),
    (["autolabel", "7", "--confidence", "0.1"], "--confidence"),
    (["autolabel", "7", "--format", "xml"], "--format"),
    (["autolabel", "7", "--apply", "--undo", "1"], "cannot be used together"),
    (["autolabel", "7", "--undo", "123"], "no autolabel run"),
    (["autolabel", "7", "--apply"], "no Label Studio URL and token"),
    (["status", "--format", "xml"], "--format"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, rt_sample, args, message):
    store, _, _ = _stored_standing(tmp_path, rt_sample)
    store.close()
    got = CliRunner().invoke(app, [*args, "--model-dir", str(tmp_path)])
    assert got.exit_code == 2 and message in got.output and "Traceback" not in got.output


def test_autolabel_before_any_standing_says_so(tmp_path):
    store, _ = _project(tmp_path)
    store.close()
    got = CliRunner().invoke(app, ["autolabel", "7", "--model-dir", str(tmp_path)])
    assert got.exit_code == 2 and "no standing yet" in got.output


# the analysis worker -----------------------------------------------------------------------------------


def test_analysis_runs_off_the_trainer_and_never_delays_a_retrain(tmp_path, rt_sample, monkeypatch):
    """Quality made slow on purpose: the next version still publishes while the analysis of the last runs."""
    import suggest.quality.report as quality
    from suggest.engine import Engine

    gate = threading.Event()
    started = threading.Event()
    real = quality.compute_report

    def slow(project, oof=None):
        started.set()
        gate.wait(30)
        return real(project, oof)

    monkeypatch.setattr(quality, "compute_report", slow)
    eng = Engine(Settings.from_env({}, model_dir=tmp_path, push=False, debounce_seconds=0.05,
                                   max_delay_seconds=0.2), load_encoder=False)
    try:
        project = eng.setup("7", CONFIG, None, None)
        for t, (text, y) in enumerate(rt_sample[:30]):
            eng.record_annotation(project, t, Label(t, t, y, text, control="sentiment"))
        assert started.wait(60), "the analysis never started"
        first = project.model_version
        for t, (text, y) in enumerate(rt_sample[30:60], 30):
            eng.record_annotation(project, t, Label(t, t, y, text, control="sentiment"))
        deadline = time.monotonic() + 60
        while project.model_version == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert project.model_version != first  # published while the analysis still waits
        assert eng.analyst.is_busy("7") and not gate.is_set()
        assert eng.metrics("7")["projects"]["7"]["analysing"] is True
        gate.set()
        assert eng.analyst.wait_idle(120)
        assert eng.metrics("7")["projects"]["7"]["analysing"] is False
        assert eng.store.quality_stamp("7")[0] == project.model_version  # coalesced: the newest version
        entry = eng.metrics("7")["projects"]["7"]
        assert entry["standing"]["model_version"] == project.model_version
        assert entry["standing"]["estimates"]["out_of_fold"]["n"] == 60
        assert eng.metrics("7")["projects"]["7"]["standing"] is entry["standing"]  # cached by version
    finally:
        gate.set()
        eng.close()
