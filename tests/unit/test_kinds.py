"""Control kinds (suggest.kinds): each kind's answers round-trip through the store under an explicit tag,
old stores are tagged once, and every kind has its Label Studio half."""

from __future__ import annotations

import json
import sqlite3

import pytest

from suggest import labelstudio as ls
from suggest.kinds import KINDS, kind_of, kind_of_answer
from suggest.schema import Label, Schema, Span
from suggest.store import ANNOTATORS_KEPT, ANSWERS_TAGGED, Store

ANSWERS = {
    "classification": "fresh",
    "multilabel": ("action", "comedy"),
    "spans": (Span(0, 3, "Person", "Ada"), Span(12, 18, "Location", "London")),
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_round_trips_through_json(name):
    kind, answer = KINDS[name], ANSWERS[name]
    assert kind.decode(json.loads(json.dumps(kind.encode(answer)))) == answer
    assert kind_of_answer(answer) is kind


def test_an_empty_answer_is_spans():
    """A choices control with nothing chosen gives no answer at all, so () is "no entities here"."""
    assert kind_of_answer(()).name == "spans"


def test_enough_to_train_and_counts():
    single, spans = KINDS["classification"], KINDS["spans"]
    same = {1: Label(1, 1, "fresh", "a"), 2: Label(2, 2, "fresh", "b")}
    assert not single.enough_to_train(same), "one class teaches a classifier nothing"
    assert single.enough_to_train(same | {3: Label(3, 3, "rotten", "c")})
    assert spans.enough_to_train({1: Label(1, 1, (), "a"), 2: Label(2, 2, ANSWERS["spans"], "b")})
    assert spans.count_key(ANSWERS["spans"]) == "2 spans"
    assert KINDS["multilabel"].count_key(ANSWERS["multilabel"]) == "action|comedy"
    assert KINDS["multilabel"].within(("action",), ["action", "drama"])
    assert not spans.within(ANSWERS["spans"], ["Person"])


def test_every_kind_has_its_label_studio_half():
    assert set(KINDS) == set(ls._READERS) == set(ls._WRITERS)
    for name in KINDS:
        schema = Schema("c", "text", "text", ("Person", "Location", "fresh", "action", "comedy"),
                        control="labels" if name == "spans" else "choices", multiple=name == "multilabel")
        assert kind_of(schema).name == name


def test_the_store_writes_the_tag_and_reads_by_it(tmp_path):
    store = Store(tmp_path)
    try:
        store.upsert_labels("1", [Label(1, 10, ANSWERS["classification"], "t", control="a"),
                                  Label(1, 10, ANSWERS["spans"], "Ada was in London", control="b"),
                                  Label(2, 11, ANSWERS["multilabel"], "u", control="c")])
        raw = [json.loads(a) for (a,) in store._query("SELECT answers FROM annotations ORDER BY annotation_id")]
        assert raw[0]["a"]["kind"] == "classification" and raw[0]["b"]["kind"] == "spans"
        assert raw[1]["c"]["kind"] == "multilabel"
        assert {(lb.control, lb.label) for lb in store.labels("1")} == {
            ("a", "fresh"), ("b", ANSWERS["spans"]), ("c", ANSWERS["multilabel"])}
    finally:
        store.close()


def test_an_old_store_is_tagged_once(tmp_path):
    """Answers stored before they carried their kind's tag are tagged once, by shape, and read back right
    (rows from before multi-control projects: tests/unit/test_store.py)."""
    Store(tmp_path).close()
    untagged = {2: {"ner": {"value": [], "text": "no names here"}},
                3: {"ner": {"value": [[0, 3, "Person", "Ada"]], "text": "Ada"}, "genre": {"value": ["a", "b"],
                                                                                         "text": "Ada"}},
                4: {"sentiment": {"value": "fresh", "text": "fine"}}}
    db = sqlite3.connect(tmp_path / "suggest.sqlite3")
    db.executemany("INSERT INTO annotations (project_id, annotation_id, task_id, label, text, ground_truth, "
                   "updated_at, answers) VALUES ('1', ?, ?, 'x', 'x', 0, '', ?)",
                   [(ann, ann, json.dumps(entries)) for ann, entries in untagged.items()])
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    store = Store(tmp_path)
    try:
        labels = {(lb.annotation_id, lb.control): lb.label for lb in store.labels("1")}
        assert labels == {(2, "ner"): (), (3, "ner"): (Span(0, 3, "Person", "Ada"),), (3, "genre"): ("a", "b"),
                          (4, "sentiment"): "fresh"}
        assert store._query("PRAGMA user_version") == [(ANNOTATORS_KEPT,)] and ANNOTATORS_KEPT > ANSWERS_TAGGED
        assert all("kind" in entry for (a,) in store._query("SELECT answers FROM annotations")
                   for entry in json.loads(a).values())
    finally:
        store.close()
