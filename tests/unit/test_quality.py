"""Label quality: agreement against textbook figures and scikit-learn, confident learning on flipped
labels, the weighted consensus on fixed data, and annotators kept through Label Studio JSON and the store."""

from __future__ import annotations

import json
import random
import sqlite3

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from suggest.config import Settings, SettingsError
from suggest.labelstudio import annotation_labels, parse_controls, review_view_data
from suggest.quality.agreement import (
    cohen_kappa,
    control_agreement,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    span_f1,
)
from suggest.quality.consensus import weighted_consensus
from suggest.quality.label_errors import find_suspects, out_of_fold_proba, suspicion_ranking
from suggest.schema import Label, Span
from suggest.store import ANNOTATORS_KEPT, Store
from tests.conftest import CONFIG

# textbook cases ---------------------------------------------------------------------------------


def test_cohen_kappa_textbook_and_scikit_learn():
    # Wikipedia's worked example: 50 proposals, yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po 0.7, pe 0.5, 0.4
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    rng = random.Random(3)
    for _ in range(20):
        x = [rng.choice("abcd") for _ in range(40)]
        y = [v if rng.random() < 0.6 else rng.choice("abcd") for v in x]
        assert cohen_kappa(x, y) == pytest.approx(cohen_kappa_score(x, y), abs=1e-12)


def test_fleiss_kappa_textbook():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                       [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(counts) == pytest.approx(0.20993, abs=1e-5)


def test_krippendorff_alpha_textbook_with_missing_values():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, nominal 0.743
    n = None
    rows = [[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
            [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]]
    counts = np.zeros((12, 5))
    for row in rows:
        for unit, value in enumerate(row):
            if value is not None:
                counts[unit, value - 1] += 1
    assert krippendorff_alpha_nominal(counts) == pytest.approx(0.743, abs=5e-4)
    # with two raters and no missing values alpha is close to Scott's pi: perfect agreement is 1
    assert krippendorff_alpha_nominal(np.array([[2, 0], [0, 2], [2, 0]])) == pytest.approx(1.0)


def test_span_f1_counts_exact_matches_only():
    a = [Span(0, 3, "Person"), Span(10, 16, "Location")]
    b = [Span(0, 3, "Person"), Span(10, 16, "Organization"), Span(20, 22, "Person")]
    assert span_f1(a, b) == (1, 2, 3)


# agreement per control ----------------------------------------------------------------------------


def _lb(task: int, ann: int, label, who: int | None, control: str = "sentiment") -> Label:
    return Label(task, ann, label, f"text {task}", control=control, annotator=who,
                 updated_at=f"2026-01-01T00:{ann:02d}")


def test_agreement_of_two_annotators_matches_scikit_learn_and_counts_tasks():
    rng = random.Random(0)
    truth = [rng.choice(["fresh", "rotten"]) for _ in range(30)]
    other = [t if rng.random() < 0.7 else ("rotten" if t == "fresh" else "fresh") for t in truth]
    labels = [_lb(t, 2 * t, truth[t], 1) for t in range(30)] + [_lb(t, 2 * t + 1, other[t], 2) for t in range(30)]
    labels.append(_lb(99, 500, "fresh", 1))  # a task only one person saw: not shared
    out = control_agreement(labels, "classification", ("fresh", "rotten"), {t: truth[t] for t in range(30)})
    assert out["status"] == "ok" and out["annotators"] == 2 and out["tasks_shared"] == 30
    (pair,) = out["pairs"]
    assert pair["annotators"] == [1, 2] and pair["tasks"] == 30
    assert pair["cohen_kappa"]["value"] == pytest.approx(cohen_kappa_score(truth, other), abs=1e-4)
    lo, hi = pair["cohen_kappa"]["ci95"]
    assert lo <= pair["cohen_kappa"]["value"] <= hi and hi - lo > 0.05
    assert out["krippendorff_alpha"]["tasks"] == 30 and out["fleiss_kappa"]["value"] is not None
    vs = {v["annotator"]: v["agreement"]["value"] for v in out["vs_consensus"]}
    same = np.mean([a == b for a, b in zip(truth, other, strict=True)])
    assert vs[1] == 1.0 and vs[2] == pytest.approx(same, abs=1e-4)


def test_one_annotator_is_not_available_with_the_reason():
    labels = [_lb(t, t, "fresh" if t % 2 else "rotten", 4) for t in range(10)]
    out = control_agreement(labels, "classification", ("fresh", "rotten"))
    assert out["status"].startswith("n/a") and "only annotator 4" in out["status"]
    assert "pairs" not in out and "krippendorff_alpha" not in out
    unknown = control_agreement([_lb(t, t, "fresh", None) for t in range(3)], "classification", ("fresh", "rotten"))
    assert unknown["status"].startswith("n/a") and unknown["answers_without_annotator"] == 3


def test_multilabel_agreement_is_per_label_and_spans_by_f1():
    ml = [_lb(1, 1, ("action", "comedy"), 1), _lb(1, 2, ("action",), 2),
          _lb(2, 3, ("drama",), 1), _lb(2, 4, ("drama",), 2)]
    out = control_agreement(ml, "multilabel", ("action", "comedy", "drama"))
    assert out["per_label"]["action"]["percent_agreement"] == 1.0
    assert out["per_label"]["comedy"]["percent_agreement"] == 0.5
    spans = [_lb(1, 1, (Span(0, 3, "Person"),), 1), _lb(1, 2, (Span(0, 3, "Person"), Span(5, 9, "Location")), 2)]
    out = control_agreement(spans, "spans", ("Person", "Location"))
    assert out["span_f1"]["value"] == pytest.approx(2 * 1 / 3, abs=1e-4)


# suspected label errors ----------------------------------------------------------------------------


def test_confident_learning_finds_flipped_labels_in_separable_data():
    rng = np.random.default_rng(0)
    centers = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3]], dtype=float)
    y = rng.integers(0, 3, 300)
    X = centers[y] + rng.normal(0, 0.7, (300, 3))
    flipped = rng.choice(300, 15, replace=False)
    given = y.copy()
    given[flipped] = (given[flipped] + 1) % 3
    proba = out_of_fold_proba(X, given, 3, folds=5, C=1.0)
    found = find_suspects(proba, given)
    hits = set(flipped.tolist()) & set(found.index.tolist())
    assert len(hits) >= 12 and len(found.index) <= 18  # nearly every flip found, with few false alarms
    assert all(found.suggested[list(found.index).index(i)] == y[i] for i in hits)  # the true class is suggested
    assert 0.03 < found.noise_rate < 0.07  # 5% flipped
    assert list(found.score) == sorted(found.score, reverse=True)


def test_suspects_on_real_rotten_tomatoes_snippets_with_planted_flips(rt_sample):
    from backends.encoders import shared_text_encoder

    texts = [t for t, _ in rt_sample]
    y = np.array([lb == "rotten" for _, lb in rt_sample], dtype=int)
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), 20, replace=False)
    given = y.copy()
    given[flipped] = 1 - given[flipped]
    X = shared_text_encoder().encode(texts)
    proba = out_of_fold_proba(X, given, 2, folds=5, C=3.0)
    top = set(suspicion_ranking(proba, given)[:20].tolist())
    hits = len(top & set(flipped.tolist()))
    assert hits >= 8, hits  # 10% of the labels are flipped: chance would find 2 of 20
    found = find_suspects(proba, given)
    assert len(set(found.index.tolist()) & set(flipped.tolist())) >= 8


# consensus --------------------------------------------------------------------------------------


def test_weighted_consensus_trusts_the_reliable_annotator_and_the_model():
    classes = ("a", "b")
    ratings: dict[int, dict[int, str]] = {}
    truth = {t: "a" if t % 2 else "b" for t in range(12)}
    for t in range(10):  # annotators 1 and 2 agree with the truth, 3 answers at odds with them
        ratings[t] = {1: truth[t], 2: truth[t], 3: "b" if truth[t] == "a" else "a"}
    ratings[10] = {1: "b", 3: "a"}  # truth b; a tie: the documented rule takes the latest (annotator 3)
    ratings[11] = {2: "a", 3: "b"}  # truth a
    majority = {t: truth[t] for t in range(10)} | {10: "a", 11: "b"}
    model = {t: np.array([0.9, 0.1]) if truth[t] == "a" else np.array([0.1, 0.9]) for t in range(12)}
    result, weights = weighted_consensus(ratings, classes, majority, model)
    assert result[10][0] == "b" and result[11][0] == "a"
    assert weights["annotators"]["3"]["weight"] == 0.0 and weights["annotators"]["1"]["weight"] > 0.5
    assert all(result[t][0] == truth[t] for t in range(10))
    assert 0.5 < result[10][1] <= 1.0
    truth_wins, _ = weighted_consensus(ratings, classes, majority, model, ground_truth={10: "a"})
    assert truth_wins[10][0] == "a"


def test_consensus_setting_is_validated():
    assert Settings.from_env({"SUGGEST_CONSENSUS": "weighted"}).consensus == "weighted"
    assert Settings.from_env({}).consensus == "majority"
    with pytest.raises(SettingsError, match="SUGGEST_CONSENSUS must be one of majority, weighted"):
        Settings.from_env({"SUGGEST_CONSENSUS": "vote"})


# annotators through Label Studio JSON and the store ---------------------------------------------------


def test_annotation_keeps_annotator_times_and_lead_time():
    schemas = parse_controls(CONFIG)
    task = {"id": 5, "data": {"text": "a fine film"}}
    ann = {"id": 9, "completed_by": 3, "lead_time": 4.5, "created_at": "2026-11-21T10:00:00Z",
           "updated_at": "2026-11-21T10:01:00Z", "ground_truth": True,
           "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                       "value": {"choices": ["fresh"]}}]}
    (lb,) = annotation_labels(ann, task, schemas)
    assert (lb.annotator, lb.lead_time, lb.created_at, lb.ground_truth) == (3, 4.5, "2026-11-21T10:00:00Z", True)
    (lb2,) = annotation_labels({**ann, "completed_by": {"id": 7, "email": "x@y"}, "lead_time": None}, task, schemas)
    assert lb2.annotator == 7 and lb2.lead_time is None


def test_an_older_store_migrates_without_losing_annotations(tmp_path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "suggest.sqlite3")  # make it look like a store from before annotators
    db.executescript("""
        DROP TABLE annotations;
        CREATE TABLE annotations (project_id TEXT NOT NULL, annotation_id INTEGER NOT NULL, task_id INTEGER NOT NULL,
            label TEXT NOT NULL, text TEXT NOT NULL, ground_truth INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL DEFAULT '', answers TEXT, PRIMARY KEY (project_id, annotation_id));
        PRAGMA user_version = 2;
    """)
    answers = json.dumps({"sentiment": {"kind": "classification", "value": "fresh", "text": "fine"}})
    db.execute("INSERT INTO annotations VALUES ('1', 4, 8, 'fresh', 'fine', 1, '2026-01-01', ?)", (answers,))
    db.commit()
    db.close()
    store = Store(tmp_path)
    try:
        assert store.labels("1") == [Label(8, 4, "fresh", "fine", True, "2026-01-01", "sentiment")]
        assert store._query("PRAGMA user_version") == [(ANNOTATORS_KEPT,)]
        kept = Label(9, 5, "rotten", "dull", control="sentiment", annotator=2, created_at="c", lead_time=1.25)
        store.upsert_labels("1", [kept])
        assert store.labels("1")[-1] == kept
        store.put_quality("1", "v1-x", {"suspects": [{"task_id": 9}]})
        assert store.quality("1")["version"] == "v1-x" and store.quality("2") is None
    finally:
        store.close()


def test_review_tab_filters_the_suspects_by_id():
    data = review_view_data([5, 3])
    assert data["title"] == "suggest: review" and data["ordering"] == ["tasks:predictions_score"]
    (item,) = data["filters"]["items"]
    assert item == {"filter": "filter:tasks:id", "operator": "in_list", "type": "Number", "value": [5, 3]}
    assert review_view_data([])["filters"]["items"][0]["value"] == [-1]



class _ReviewTabLabelStudio:
    """What finish_review_tab calls on a Label Studio client, recorded; the project points at `pointed`."""

    def __init__(self, pointed: str):
        self.pointed, self.imported, self.patched = pointed, [], []
        self.url = f"fake://{id(self)}"

    def request(self, method, path, **kw):
        project = {"model_version": self.pointed}
        return type("Answer", (), {"json": lambda _self: project})()

    def import_predictions(self, project_id, rows):
        self.imported.extend(rows)

    def update_project(self, project_id, **fields):
        self.patched.append(fields)
        self.pointed = fields.get("model_version", self.pointed)

    def views(self, project_id):
        return []

    def save_view(self, project_id, data, view_id=None):
        return {"id": 1, "data": data}


def test_a_report_on_a_replaced_version_never_points_label_studio_back_at_it():
    """Seen in the 10,000-task benchmark: the report on v13 finished after v14's push had pointed Label Studio at
    v14, and pointed it back at v13, whose predictions covered only the suspects: Label Studio served random
    tasks and the loop never noticed."""
    from suggest.labelstudio import finish_review_tab, review_tab_rows

    schemas = parse_controls(CONFIG)
    suspects = [{"task_id": 3, "suggested": "rotten", "score": 0.1, "control": schemas[0].from_name}]
    top, rows = review_tab_rows(suspects, "v13", schemas)
    assert top == [3] and [r["model_version"] for r in rows] == ["v13"]
    newest = {"version": "v14"}
    ls = _ReviewTabLabelStudio("v14")
    finish_review_tab(ls, "7", top, "v13", still_current=lambda: newest["version"] == "v13")
    assert ls.patched == [] and ls.pointed == "v14"
    # a report on the version that is still the newest does point Label Studio at it (nothing else would)
    ls = _ReviewTabLabelStudio("v12")
    finish_review_tab(ls, "7", top, "v13", still_current=lambda: True)
    assert ls.patched == [{"model_version": "v13"}]

# the project's training rule -------------------------------------------------------------------------


def _project(tmp_path, consensus: str = "majority"):
    from suggest.project import open_project
    from suggest.store import ProjectRecord

    store = Store(tmp_path)
    record = ProjectRecord("7", CONFIG, None, None)
    store.save_project(record)
    return store, record, open_project(store, record, parse_controls(CONFIG), consensus=consensus)


def test_weighted_rule_trains_on_the_weighted_consensus_but_never_invents_a_label(tmp_path):
    store, record, project = _project(tmp_path, "weighted")
    store.upsert_labels("7", [
        Label(1, 10, "fresh", "a", updated_at="2026-01-01T00:01", control="sentiment", annotator=1),
        Label(1, 11, "rotten", "a", updated_at="2026-01-01T00:02", control="sentiment", annotator=2),
        Label(2, 12, "fresh", "b", ground_truth=True, control="sentiment", annotator=1),
        Label(2, 13, "rotten", "b", control="sentiment", annotator=2),
        Label(3, 14, "rotten", "c", control="sentiment", annotator=2),
    ])
    assert project.labeled()[1].label == "rotten"  # no report yet: the documented rule (a tie: the latest)
    project.weighted_consensus = {"sentiment": {1: "fresh", 2: "rotten", 3: "fresh"}}
    labeled = project.labeled()
    assert labeled[1].label == "fresh" and labeled[1].annotation_id == 10  # the weighted consensus
    assert labeled[2].label == "fresh"  # ground truth still wins
    assert labeled[3].label == "rotten"  # nobody answered "fresh" on task 3: never invented
    assert project.labeled(rule="majority")[1].label == "rotten"
    store.put_quality("7", "v1-x", {"consensus": {"sentiment": {"tasks": {"1": {"label": "fresh", "quality": 0.9}}}}})
    store.close()
    store2 = Store(tmp_path)
    from suggest.project import open_project

    reopened = open_project(store2, record, parse_controls(CONFIG), consensus="weighted")
    assert reopened.weighted_consensus == {"sentiment": {1: "fresh"}} and reopened.labeled()[1].label == "fresh"
    store2.close()


def test_the_report_of_a_trained_project_holds_suspects_agreement_and_consensus(tmp_path, rt_sample):
    from suggest.quality.report import compute_report, metrics_entry

    store, _, project = _project(tmp_path)
    flipped = set(range(0, 60, 6))
    other = {"fresh": "rotten", "rotten": "fresh"}
    labels = [Label(t, t, other[y] if t in flipped else y, text, control="sentiment", annotator=1)
              for t, (text, y) in enumerate(rt_sample[:60])]
    labels += [Label(t, 1000 + t, y, text, control="sentiment", annotator=2, updated_at="z")
               for t, (text, y) in enumerate(rt_sample[:12])]  # annotator 2 corrects 0 and 6 (and wins the tie)
    store.upsert_labels("7", labels)
    assert project.retrain() is not None
    report = compute_report(project)
    agreement = report["agreement"]["sentiment"]
    assert agreement["tasks_shared"] == 12 and agreement["pairs"][0]["percent_agreement"] == round(10 / 12, 4)
    assert report["label_errors"]["sentiment"]["labels"] == 60 and report["counts"]["annotators"] == 2
    suspects = report["suspects"]
    assert suspects and all(s["given"] != s["suggested"] for s in suspects)
    assert {0, 6}.isdisjoint(s["task_id"] for s in suspects[:3])  # corrected by annotator 2: no longer wrong
    consensus = report["consensus"]["sentiment"]
    assert set(consensus["tasks"]) == {str(t) for t in range(12)}
    assert all(0.0 <= v["quality"] <= 1.0 for v in consensus["tasks"].values())
    store.put_quality("7", report["model_version"], report)
    shown = metrics_entry(store.quality("7"), top=3)
    assert len(shown["top_suspects"]) <= 3 and shown["agreement"]["sentiment"]["tasks"] == 12
    assert shown["consensus_changed"] == {"sentiment": consensus["changed_from_majority"]}
    store.close()


def test_multi_label_suspects_name_the_missing_or_extra_label(tmp_path, rt_sample):
    from suggest.project import open_project
    from suggest.quality.report import compute_report
    from suggest.store import ProjectRecord

    config = ('<View><Text name="text" value="$text"/><Choices name="tags" toName="text" choice="multiple">'
              '<Choice value="fresh"/><Choice value="rotten"/></Choices></View>')
    store = Store(tmp_path)
    record = ProjectRecord("8", config, None, None)
    store.save_project(record)
    project = open_project(store, record, parse_controls(config))
    flipped = set(range(0, 80, 8))
    other = {"fresh": "rotten", "rotten": "fresh"}
    store.upsert_labels("8", [Label(t, t, ((other[y] if t in flipped else y),), text, control="tags", annotator=1)
                              for t, (text, y) in enumerate(rt_sample[:80])])
    assert project.retrain() is not None
    report = compute_report(project)
    assert report["label_errors"]["tags"]["labels"] == 80
    suspects = report["suspects"]
    assert suspects and {s["problem"] for s in suspects} <= {"missing label", "extra label"}
    for s in suspects:
        if s["problem"] == "extra label":
            assert s["label"] in s["given"] and s["suggested"] == sorted(set(s["given"]) - {s["label"]})
        else:
            assert s["label"] not in s["given"] and s["label"] in s["suggested"]
    assert len({s["task_id"] for s in suspects[:20]} & flipped) >= 3  # chance: about 2 of the 10 flips
    store.close()


def test_a_warm_started_head_reaches_the_same_fit():
    """The out-of-fold fits start from the served head; the problem is convex, so only the path changes."""
    from backends.embedding import LinearHead, fit_logistic

    rng = np.random.default_rng(4)
    for k in (2, 3):
        X = rng.normal(size=(300, 8))
        y = (X[:, :k] + rng.normal(0, 0.5, (300, k))).argmax(axis=1)
        cold = fit_logistic(X, y, C=3.0, max_iter=500, tol=1e-8)
        full = fit_logistic(X[:250], y[:250], C=3.0, max_iter=500)
        reordered = LinearHead(full.classes_[::-1], -full.coef_ if k == 2 else full.coef_[::-1],
                               -full.intercept_ if k == 2 else full.intercept_[::-1])
        for init in (full, reordered):  # either class order of the starting head
            warm = fit_logistic(X, y, C=3.0, max_iter=500, tol=1e-8, init=init)
            assert np.allclose(warm.predict_proba(X), cold.predict_proba(X), atol=1e-4)


def test_the_review_tab_points_label_studio_only_at_a_version_the_loop_has_handled():
    """In the 10,000-task benchmark the report on the newest version pointed Label Studio at it before the
    loop's push had written a single unlabelled task's row of it: Label Studio served random tasks (/next was
    not the engine's first choice in 13 of 20 versions) until the push pointed it again."""
    from types import SimpleNamespace

    from suggest.engine import Engine

    done = {"fetch": 0.1, "rank": 0.5, "push": 0.3}
    pushing = SimpleNamespace(model_version="v14", loop_status={"enabled": True, "version": "v13", "seconds": done})
    assert not Engine._loop_handled(pushing, "v14")
    # the status shown once the first slice is in: the push's prune steps still run, so the tab waits for them
    first_slice = SimpleNamespace(model_version="v14", loop_status={
        "enabled": True, "version": "v14", "pushing": True, "seconds": {"fetch": 0.1, "rank": 0.5, "first_choice": 1}})
    assert not Engine._loop_handled(first_slice, "v14")
    pushed = SimpleNamespace(model_version="v14", loop_status={"enabled": True, "version": "v14", "seconds": done})
    assert Engine._loop_handled(pushed, "v14")
    replaced = SimpleNamespace(model_version="v15", loop_status={"enabled": True, "version": "v14", "seconds": done})
    assert not Engine._loop_handled(replaced, "v14")
    never_pushed = SimpleNamespace(model_version="v1", loop_status={"enabled": False, "reason": "no version yet"})
    assert not Engine._loop_handled(never_pushed, "v1")
