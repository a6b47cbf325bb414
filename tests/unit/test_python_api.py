"""The Python API (issue 18): docs/python-api.md's worked example runs as written, and the functions
behave as their docstrings say."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import suggest
from suggest.schema import Label
from suggest.store import ProjectRecord, Store
from tests.conftest import CONFIG

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


@pytest.fixture
def project_store(tmp_path, rt_sample):
    store = Store(tmp_path / "models")
    store.save_project(ProjectRecord("1", CONFIG, None, None))
    store.upsert_labels("1", [Label(i, 100 + i, y, t, False, "2026-11-29T10:00:00Z", "sentiment", 1 + i % 3)
                              for i, (t, y) in enumerate(rt_sample[:30])])
    store.publish_version("1", "v1-abc", lambda f: (f / "w").write_text("w"), n_labels=30, train_seconds=0.1)
    store.delete_annotations("1", [100, 101])
    store.close()
    return tmp_path / "models"


def test_the_worked_example_runs(project_store, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.setenv("MODEL_DIR", str(project_store))
    monkeypatch.setenv("SUGGEST_PROJECT", "1")
    namespace: dict = {"__name__": "__docs__"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the documented example, as written
    out = capsys.readouterr().out
    assert re.search(r"^random accuracy after 60 labels: 0\.\d+", out, flags=re.M), out
    assert re.search(r"^1 (fresh|rotten) 0\.\d+ ", out, flags=re.M), out
    assert "28 tasks ready" in out and "v1-abc trained on 30 annotations" in out
    assert "quality report: none yet" in out
    table = namespace["table"]
    assert len(table) == 28 and set(table["sentiment"]) <= {"fresh", "rotten"}
    labeler = namespace["labeler"]
    assert labeler.widget is not None and labeler.labels == {}


def test_the_api_functions(project_store):
    then = suggest.labels("1", model_dir=project_store, version="v1-abc")
    now = suggest.labels(1, model_dir=project_store)
    assert len(then) == 30 and len(now) == 28
    text = suggest.export("1", model_dir=project_store, format="csv", version="v1-abc")
    assert isinstance(text, str) and text.count("\n") == 31
    path = suggest.export("1", model_dir=project_store, format="label-studio", out=project_store / "ls.json")
    assert path.exists()
    assert suggest.stats("1", model_dir=project_store)["versions"][0]["snapshot_annotations"] == 30
    assert suggest.quality("1", model_dir=project_store) is None
    for call, message in ((lambda: suggest.stats("2", model_dir=project_store), "no project 2"),
                          (lambda: suggest.export("1", model_dir=project_store, version="v7"), "no version 'v7'"),
                          (lambda: suggest.export("1", model_dir=project_store, format="xls"), "format must be"),
                          (lambda: suggest.rank([], []), "pool is empty"),
                          (lambda: suggest.simulate(["a", "b"], ["x"]), "2 texts but 1 labels"),
                          (lambda: suggest.stats("1", model_dir=project_store / "nope"), "no store at")):
        with pytest.raises(suggest.BadInput, match=message):
            call()


def test_import_suggest_stays_light_and_documented():
    import subprocess

    code = "import sys, suggest; print('torch' in sys.modules, callable(suggest.export))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False True"
    for name in ("rank", "simulate", "export", "labels", "stats", "quality"):
        assert getattr(suggest, name).__doc__, name
    import suggest.quality.report as report  # a submodule sharing an API name is still importable

    assert hasattr(report, "__file__")
