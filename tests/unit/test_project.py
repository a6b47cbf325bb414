"""suggest.project on its own: a real store, the real families, one project."""

from __future__ import annotations

import threading

from suggest.labelstudio import parse_controls
from suggest.project import Project, default_backend_factory, min_examples
from suggest.schema import Label
from suggest.store import Store
from tests.conftest import CONFIG

OTHER_CONFIG = CONFIG.replace('"fresh"', '"good"').replace('"rotten"', '"bad"')


def test_a_config_change_during_a_retrain_is_served_at_once(tmp_path, rt_sample):
    """The retrain that started on the old labels must not publish over the new config (it used to,
    and the old labels were served until a restart)."""
    store = Store(tmp_path)
    make, load = default_backend_factory(store)
    entered, gate = threading.Event(), threading.Event()

    def slow_make(schema):
        model = make(schema)
        if "fresh" in schema.labels:  # the old config's model: block inside fit until the config changed
            fit = model.fit

            def blocking_fit(items, labels):
                entered.set()
                gate.wait(60)
                return fit(items, labels)

            model.fit = blocking_fit
        return model

    project = Project("7", CONFIG, parse_controls(CONFIG), store, make_backend=slow_make, load_backend=load)
    store.upsert_labels("7", [Label(i, 100 + i, y, t, control="sentiment") for i, (t, y) in enumerate(rt_sample[:8])])
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(project.retrain()))
    worker.start()
    assert entered.wait(60)
    assert project.update_config(OTHER_CONFIG, parse_controls(OTHER_CONFIG))
    gate.set()
    worker.join(60)
    assert outcome == [None], "a retrain for the old config published a version"
    assert list(project.published.model.labels) == ["good", "bad"]
    assert store.versions("7") == []
    store.close()


def test_what_trains_follows_the_control_kind(tmp_path):
    single, spans = parse_controls(CONFIG)[0], parse_controls(
        '<View><Text name="text" value="$text"/><Labels name="ner" toName="text"><Label value="Person"/></Labels>'
        '</View>')[0]
    one_class = {1: Label(1, 1, "fresh", "a"), 2: Label(2, 2, "fresh", "b")}
    assert not min_examples(single, one_class)
    assert min_examples(spans, {1: Label(1, 1, (), "a"), 2: Label(2, 2, (), "b")})
