"""The "suggest: review" tab's writes (Engine.write_review_tab): after the loop has pointed Label Studio at the
report's version, the tab listing the suspects first, then one row per call at the queue head's pace (the rows
order the tab), given up when a newer version lands.

Why (issue 17, 10,000 tasks): written at once after each version, the tab's rows (up to 100) met the version's
first slice and the annotators' first /next under it, which took 1.4-3.2 s instead of 0.2-0.5 s. And paced, a
tab saved only after its rows was never brought up to date while annotators kept producing versions."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from suggest import labelstudio
from suggest.config import Settings
from suggest.engine import Engine
from suggest.labelstudio import parse_controls, review_tab_rows
from tests.conftest import CONFIG


def _status(version: str) -> dict:
    """The loop status a finished push leaves (timed to its end: "push")."""
    return {"enabled": True, "version": version, "seconds": {"fetch": 0.1, "rank": 0.4, "first_choice": 0.6,
                                                            "push": 0.3}}


class TabLabelStudio:
    """What the review tab calls on a Label Studio client, recorded; one-row writes take `hold` s."""

    def __init__(self, hold: float, pointed: str):
        self.hold, self.calls, self.saved = hold, [], []
        self.pointed = pointed
        self.url = f"fake://{id(self)}"

    def create_prediction(self, project_id, row):
        time.sleep(self.hold)
        self.calls.append(("create_prediction", (row["task"], row["model_version"], row["score"])))
        return len(self.calls)

    def import_predictions(self, project_id, rows, chunk=2000):
        self.calls.append(("import", len(rows)))

    def request(self, method, path, **kw):
        project = {"model_version": self.pointed}
        return SimpleNamespace(json=lambda: project)

    def update_project(self, project_id, **fields):
        self.calls.append(("update_project", fields))

    def views(self, project_id):
        return []

    def save_view(self, project_id, data, view_id=None):
        self.calls.append(("save_view", None))
        self.saved.append(data["filters"]["items"][0]["value"])
        return {"id": 1, "data": data}

    def close(self):
        pass


@pytest.fixture
def engine(tmp_path):
    eng = Engine(Settings.from_env({}, model_dir=tmp_path, push=True, push_duty=0.25), load_encoder=False)
    yield eng
    eng.close()


def _due(engine: Engine, project, ls: TabLabelStudio, tasks: list[int]) -> None:
    """A report on the project's version named `tasks` as suspects, most suspicious first."""
    schemas = parse_controls(CONFIG)
    suspects = [{"task_id": t, "suggested": "rotten", "score": 0.2, "control": schemas[0].from_name} for t in tasks]
    top, rows = review_tab_rows(suspects, project.model_version, schemas)
    engine._tabs_due[project.project_id] = (project.model_version, top, rows)
    engine._review_tabs[project.project_id] = {"version": project.model_version, "tasks": len(top), "listed": False,
                                               "written": False}
    engine.client = lambda _project: ls


def test_the_tab_waits_for_the_loop_then_goes_one_paced_row_at_a_time(engine) -> None:
    project = SimpleNamespace(project_id="7", model_version="v5", loop_status=_status("v4"))
    ls = TabLabelStudio(hold=0.02, pointed="v4")
    labelstudio.prediction_pace(ls, "7").rows = True  # a big project: one row per call
    engine.store.put_tasks("7", [(t, {"text": f"t{t}"}, True) for t in (12, 3, 7, 9, 1, 4)])  # the task list
    _due(engine, project, ls, [12, 3, 7, 9, 1, 4])
    writer = threading.Thread(target=engine.write_review_tab, args=(project,))
    writer.start()
    time.sleep(0.4)
    assert ls.calls == [], "nothing written before the loop points Label Studio at the version"
    # the first slice is in and Label Studio points, but the push's prune steps still run
    project.loop_status = {**_status("v5"), "pushing": True, "seconds": {"fetch": 0.1, "first_choice": 0.6}}
    ls.pointed = "v5"
    time.sleep(0.4)
    assert ls.calls == [], "nothing written beside the push's own Data Manager calls"
    project.loop_status = _status("v5")  # pushed, its prune steps done
    ls.pointed = "v5"
    began = time.perf_counter()
    writer.join(30)
    took = time.perf_counter() - began
    rows = [arg for name, arg in ls.calls if name == "create_prediction"]
    assert [t for t, _, _ in rows] == [12, 3, 7, 9, 1, 4] and {v for _, v, _ in rows} == {"v5"}
    assert [s for _, _, s in rows] == sorted(s for _, _, s in rows), "scores keep the suspicion order"
    assert [name for name, _ in ls.calls][0] == "save_view" and ls.saved == [[12, 3, 7, 9, 1, 4]], \
        "the tab lists the suspects once, before the rows that order them"
    assert took > 6 * 0.02 / 0.25 * 0.9, "paced at push_duty 0.25, not written at once"
    assert engine._review_tabs["7"] == {"version": "v5", "tasks": 6, "listed": True, "written": True}
    made = [i for i, (name, _) in enumerate(ls.calls, 1) if name == "create_prediction"]
    assert engine.store.pushed_predictions("7", [12, 3, 7, 9, 1, 4]) == {
        t: ("v5", i) for t, i in zip([12, 3, 7, 9, 1, 4], made, strict=True)}, \
        "the store knows each row by id: once superseded, a later head takes it over instead of a prune's delete"


def test_a_tab_whose_version_is_replaced_is_left(engine) -> None:
    project = SimpleNamespace(project_id="7", model_version="v5", loop_status=_status("v5"))
    ls = TabLabelStudio(hold=0.05, pointed="v5")
    labelstudio.prediction_pace(ls, "7").rows = True
    _due(engine, project, ls, list(range(20, 0, -1)))
    writer = threading.Thread(target=engine.write_review_tab, args=(project,))
    writer.start()
    time.sleep(0.5)
    project.model_version = "v6"  # a newer version landed: its own report writes the next tab
    writer.join(30)
    written = [name for name, _ in ls.calls]
    assert 0 < written.count("create_prediction") < 20
    assert written.count("save_view") == 1 and written[0] == "save_view", "listed at once, never saved again"
    assert engine._review_tabs["7"]["listed"] is True and engine._review_tabs["7"]["written"] is False


def test_the_newest_versions_suspects_are_listed_while_annotators_keep_publishing(engine) -> None:
    """Seen at 10,000 and 100,000 tasks (issue 17): with a version every ~15 s and ~1.5 s a row, no tab of
    20-40 suspects was finished, and the tab listed an old version's suspects until a long pause. Each version
    replaced before its rows are in still gets its suspects listed."""
    project = SimpleNamespace(project_id="7", model_version="v5", loop_status=_status("v5"))
    ls = TabLabelStudio(hold=0.05, pointed="v5")
    labelstudio.prediction_pace(ls, "7").rows = True
    for version, suspects in (("v5", [20, 19, 18, 17]), ("v6", [31, 30, 29, 28]), ("v7", [40, 41, 42, 43])):
        project.model_version = version
        project.loop_status = _status(version)
        ls.pointed = version
        _due(engine, project, ls, suspects)
        writer = threading.Thread(target=engine.write_review_tab, args=(project,))
        writer.start()
        deadline = time.monotonic() + 10
        while not engine._review_tabs["7"]["listed"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ls.saved[-1] == suspects, f"{version}'s suspects listed before its rows are in"
        assert not engine._review_tabs["7"]["written"]
        if version != "v7":
            project.model_version = f"{version}-replaced"  # a newer version lands while the rows are written
        writer.join(30)
    assert ls.saved == [[20, 19, 18, 17], [31, 30, 29, 28], [40, 41, 42, 43]]
    assert engine._review_tabs["7"] == {"version": "v7", "tasks": 4, "listed": True, "written": True}


def test_a_small_project_writes_the_tab_in_one_call(engine) -> None:
    project = SimpleNamespace(project_id="7", model_version="v5", loop_status=_status("v5"))
    ls = TabLabelStudio(hold=0.0, pointed="v5")
    _due(engine, project, ls, [3, 1, 2])
    engine.write_review_tab(project)
    assert [name for name, _ in ls.calls] == ["import", "save_view"] and ls.calls[0][1] == 3
