"""suggest.loop.rank_rows on its own: the queue scores the loop pushes, with real models on real texts.

A project is opened on a temporary store with the real MiniLM encoder and trained on Rotten Tomatoes
snippets given three classes (so margin, least confidence and entropy order tasks differently; with
two classes they agree). `SUGGEST_UNCERTAINTY` (LoopSettings.uncertainty) must decide every score
after the batch, in the pushed queue and in /predict; `SUGGEST_STRATEGY` decides the batch.
"""

from __future__ import annotations

import numpy as np
import pytest

from suggest.labelstudio import parse_controls
from suggest.loop import LoopSettings, rank_rows
from suggest.project import Project, open_project
from suggest.schema import Item, Label
from suggest.store import ProjectRecord, Store
from suggest.strategies import BATCH_BAND, DenseUncertainty, certainty
from suggest.strategies.auto import AutoStrategy

TEXT = '<Text name="text" value="$text"/>'
TONE = ('<Choices name="tone" toName="text"><Choice value="fresh"/><Choice value="rotten"/>'
        '<Choice value="plot"/></Choices>')
LENGTH = ('<Choices name="length" toName="text"><Choice value="short"/><Choice value="medium"/>'
          '<Choice value="long"/></Choices>')
ONE_CONTROL = f"<View>{TEXT}{TONE}</View>"
TWO_CONTROLS = f"<View>{TEXT}{TONE}{LENGTH}</View>"


def _tone(i: int, label: str) -> str:
    return "plot" if i % 3 == 0 else label


def _length(text: str) -> str:
    return "short" if len(text) < 80 else "medium" if len(text) < 140 else "long"


def _project(store: Store, pid: str, config: str, uncertainty: str) -> Project:
    record = ProjectRecord(pid, config, None, None)
    store.save_project(record)
    return open_project(store, record, parse_controls(config), uncertainty=uncertainty)


def _train(project: Project, pairs: list[tuple[str, str]]) -> None:
    controls = {s.from_name for s in project.schemas}
    labels = []
    for i, (text, label) in enumerate(pairs):
        labels.append(Label(1000 + i, 2000 + i, _tone(i, label), text, control="tone"))
        if "length" in controls:
            labels.append(Label(1000 + i, 2000 + i, _length(text), text, control="length"))
    project.store.upsert_labels(project.project_id, labels)
    assert project.retrain(force=True) is not None


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(tmp_path_factory.mktemp("loop"))


@pytest.fixture(scope="module")
def one_control(store, rt_sample) -> Project:
    """A single text classifier (the class-probability route), trained, measuring by entropy."""
    project = _project(store, "1", ONE_CONTROL, "entropy")
    _train(project, rt_sample[:60])
    return project


@pytest.fixture(scope="module")
def two_controls(store, rt_sample) -> Project:
    """Two classifiers on one text (the per-control route), trained, measuring by entropy."""
    project = _project(store, "2", TWO_CONTROLS, "entropy")
    _train(project, rt_sample[:60])
    return project


def _rows(pairs: list[tuple[str, str]], controls: tuple[str, ...]) -> list[dict[str, Item]]:
    return [{c: Item(text, 1 + i) for c in controls} for i, (text, _) in enumerate(pairs)]


def _scores(ranked) -> np.ndarray:
    return np.array([row[0].score for row in ranked])


def _orders_differ(a: np.ndarray, b: np.ndarray) -> bool:
    return not np.array_equal(np.argsort(a, kind="stable"), np.argsort(b, kind="stable"))


def test_loop_settings_name_the_measure() -> None:
    assert LoopSettings().uncertainty == "margin"
    assert LoopSettings(50, "auto", True, 0).uncertainty == "margin"  # the engine's positional fields still fit
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        LoopSettings(uncertainty="bald")


def test_probability_route_scores_the_rest_by_the_measure_and_the_batch_by_the_strategy(one_control, rt_sample):
    rows = _rows(rt_sample[100:200], ("tone",))
    ranked, batch = rank_rows(one_control, rows, LoopSettings(batch_size=8, strategy="margin", uncertainty="entropy"))
    proba = one_control.published.model.predict_proba([row["tone"] for row in rows])
    by_margin, by_entropy = certainty(proba, "margin"), certainty(proba, "entropy")
    np.testing.assert_array_equal(batch, np.argsort(by_margin, kind="stable")[:8])  # "margin" picks the batch
    scores = _scores(ranked)
    rest = np.setdiff1d(np.arange(len(rows)), batch)
    assert _orders_differ(by_margin[rest], by_entropy[rest])  # else this test would prove nothing
    np.testing.assert_allclose(scores[rest], BATCH_BAND + (1 - BATCH_BAND) * by_entropy[rest], atol=1e-6)
    np.testing.assert_allclose(scores[batch], BATCH_BAND * np.arange(8) / 8)
    assert [p[0].score for p in one_control.predict_rows(rows)] == scores.tolist()  # /predict says the same
    assert {p[0].label for p in ranked} <= {"fresh", "rotten", "plot"}


def test_probability_route_dense_weighs_the_measure(one_control, rt_sample):
    rows = _rows(rt_sample[100:200], ("tone",))
    _, batch = rank_rows(one_control, rows, LoopSettings(batch_size=8, strategy="dense", uncertainty="entropy"))
    model = one_control.published.model
    items = [row["tone"] for row in rows]
    X, proba = model.embed(items), model.predict_proba(items)
    by_entropy = DenseUncertainty("entropy", random_state=0).query(proba=proba, X=X, batch_size=8)
    by_margin = DenseUncertainty("margin", random_state=0).query(proba=proba, X=X, batch_size=8)
    assert set(by_entropy.tolist()) != set(by_margin.tolist())
    np.testing.assert_array_equal(batch, by_entropy)
    _, auto = rank_rows(one_control, rows, LoopSettings(batch_size=8, uncertainty="entropy"))
    blend = AutoStrategy("entropy", random_state=0).query(proba=proba, X=X, batch_size=8)
    np.testing.assert_array_equal(auto, blend)  # "auto" for text: dense and margin's picks, by the measure given


def test_per_control_route_scores_the_rest_by_the_least_certain_control(two_controls, rt_sample):
    rows = _rows(rt_sample[100:200], ("tone", "length"))
    ranked, batch = rank_rows(two_controls, rows, LoopSettings(batch_size=8, strategy="dense", uncertainty="entropy"))
    models = two_controls.published.models
    probas = [models[c].predict_proba([row[c] for row in rows]) for c in ("tone", "length")]
    by_entropy = np.minimum(*(certainty(p, "entropy") for p in probas))
    by_margin = np.minimum(*(certainty(p, "margin") for p in probas))
    rest = np.setdiff1d(np.arange(len(rows)), batch)
    assert _orders_differ(by_margin[rest], by_entropy[rest])
    for row in ranked:
        assert [p.control for p in row] == ["tone", "length"] and len({p.score for p in row}) == 1
    scores = _scores(ranked)
    np.testing.assert_allclose(scores[rest], BATCH_BAND + (1 - BATCH_BAND) * by_entropy[rest], atol=1e-6)
    X = models["tone"].embed([row["tone"] for row in rows])  # diversity in the first control's space
    expected = DenseUncertainty("entropy", random_state=0).select(certainty=by_entropy, X=X, batch_size=8)
    np.testing.assert_array_equal(batch, expected)
    assert [p[0].score for p in two_controls.predict_rows(rows)] == scores.tolist()


def test_a_strategy_that_needs_class_probabilities(one_control, two_controls, rt_sample):
    """modal: runs on the class-probability route; elsewhere it gives way to "auto", without importing it."""
    pytest.importorskip("modAL")
    rows = _rows(rt_sample[100:200], ("tone",))
    modal = LoopSettings(batch_size=8, strategy="modal:modAL.uncertainty:margin_sampling")
    _, batch = rank_rows(one_control, rows, modal)
    proba = one_control.published.model.predict_proba([row["tone"] for row in rows])
    assert set(batch.tolist()) == set(np.argsort(certainty(proba, "margin"), kind="stable")[:8].tolist())
    with pytest.raises(ValueError, match="cannot import"):
        rank_rows(one_control, rows, LoopSettings(strategy="modal:no_such_module_xyz:fn"))
    rows2 = _rows(rt_sample[100:200], ("tone", "length"))
    settings = LoopSettings(batch_size=8, uncertainty="entropy")
    _, fallback = rank_rows(two_controls, rows2, LoopSettings(8, "modal:no_such_module_xyz:fn", uncertainty="entropy"))
    np.testing.assert_array_equal(fallback, rank_rows(two_controls, rows2, settings)[1])


def test_cold_start(store, rt_sample):
    """Before any label: a coverage batch; the rest by zero-shot certainty (one classifier) or all 1.0."""
    rows = _rows(rt_sample[100:160], ("tone",))
    project = _project(store, "3", ONE_CONTROL, "least_confidence")
    ranked, batch = rank_rows(project, rows, LoopSettings(batch_size=6, uncertainty="least_confidence"))
    assert batch.size == 6 and np.unique(batch).size == 6
    proba = project.published.model.predict_proba([row["tone"] for row in rows])
    rest = np.setdiff1d(np.arange(len(rows)), batch)
    expected = BATCH_BAND + (1 - BATCH_BAND) * certainty(proba, "least_confidence")[rest]
    np.testing.assert_allclose(_scores(ranked)[rest], expected, atol=1e-6)
    project = _project(store, "4", TWO_CONTROLS, "least_confidence")
    ranked, batch = rank_rows(project, _rows(rt_sample[100:160], ("tone", "length")), LoopSettings(batch_size=6))
    assert batch.size == 6 and (np.delete(_scores(ranked), batch) == 1.0).all()
