"""A third-party model family, installed as a real distribution, serves a project through the registry.

The test writes a tiny distribution (a keyword-vote family for `<Choices>` on `<Text>` whose choices
carry `hint="keywords: ..."`, declared `first` so it wins over the built-in text classifier, plus two
broken entry points), pip-installs it into the running venv, opens a project through the real app and
sees the plug-in's predictions; it is uninstalled afterwards.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.checks import check_backend
from backends.registry import BUILTINS, default_registry, discover
from suggest.labelstudio import parse_controls
from suggest.schema import Item
from tests.api.test_protocol import predict, setup

PLUGIN = '''
"""Keyword votes: a label's keywords come from its Choice hint, "keywords: prize, winner"."""

import json
import re
from pathlib import Path

import numpy as np

from backends.base import Backend
from backends.registry import Family

PREFIX = "keywords:"


def words(text):
    return set(re.findall(r"[a-z]+", text.lower()))


class KeywordModel(Backend):
    """Each keyword in a text adds 3 votes to its label, every label starts with 1: nothing to learn."""

    def __init__(self, labels, keywords):
        self.labels = list(labels)
        self.keywords = {label: list(keywords.get(label, [])) for label in self.labels}

    def fit(self, items, labels):
        self.classes_ = list(self.labels)
        return self

    def embed(self, items, progress=None):
        return np.asarray([[len(words(it.text) & set(self.keywords[label])) for label in self.labels]
                           for it in items], dtype=np.float32).reshape(len(items), len(self.labels))

    def predict_proba(self, items):
        votes = 1.0 + 3.0 * self.embed(items).astype(np.float64)
        return votes / votes.sum(axis=1, keepdims=True)

    def save(self, directory):
        (Path(directory) / "keywords.json").write_text(json.dumps({"labels": self.labels, "keywords": self.keywords}))

    @classmethod
    def load(cls, directory, **kwargs):
        meta = json.loads((Path(directory) / "keywords.json").read_text())
        model = cls(meta["labels"], meta["keywords"])
        model.classes_ = list(model.labels)
        return model


def supports(schema):
    return (schema.task_kind == "classification" and schema.object_type == "text"
            and all(schema.hints.get(label, "").startswith(PREFIX) for label in schema.labels))


def make(schema, context):
    return KeywordModel(schema.labels, {label: [w.strip().lower() for w in schema.hints[label][len(PREFIX):].split(",")]
                                        for label in schema.labels})


family = Family("{name}", supports, make, lambda schema, folder, context: KeywordModel.load(folder), first=True)
not_a_family = "just a string"
'''

CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="mail" toName="text">'
    '<Choice value="spam" hint="keywords: prize, winner, free"/>'
    '<Choice value="ham" hint="keywords: meeting, agenda, minutes"/></Choices></View>'
)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Iterator[str]:
    """Install the distribution (unique names: other test runs may share this venv); yield the family's name."""
    tag = uuid.uuid4().hex[:8]
    name, module, dist = f"keywords_{tag}", f"suggest_plugin_{tag}", f"suggest-plugin-{tag}"
    root = tmp_path_factory.mktemp("plugin")
    (root / module).mkdir()
    (root / module / "__init__.py").write_text(PLUGIN.replace("{name}", name))
    (root / module / "broken.py").write_text("import a_module_that_is_not_installed  # noqa\n")
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "0.0.1"

        [tool.setuptools]
        packages = ["{module}"]

        [project.entry-points."suggest.backends"]
        {name} = "{module}:family"
        broken_{tag} = "{module}.broken:family"
        stray_{tag} = "{module}:not_a_family"
    """))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(root)], check=True,
                   timeout=300, capture_output=True)
    importlib.invalidate_caches()
    default_registry.cache_clear()
    try:
        yield name
    finally:
        subprocess.run([*pip, "uninstall", "-y", dist], check=True, timeout=300, capture_output=True)
        importlib.invalidate_caches()
        default_registry.cache_clear()
        sys.modules.pop(module, None)


def test_installed_plugin_is_registered_first_and_broken_ones_are_skipped(plugin, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="backends.registry"):
        registry = discover()
    assert registry.names[0] == plugin and registry.names[1:] == [f.name for f in BUILTINS]  # `first`: before
    tag = plugin.removeprefix("keywords_")
    assert f"'broken_{tag}'" in caplog.text and "does not import, skipped: ModuleNotFoundError" in caplog.text
    assert f"'stray_{tag}'" in caplog.text and "is a str, not a backends.registry.Family; skipped" in caplog.text
    (schema,) = parse_controls(CONFIG)
    assert registry.family_for(schema).name == plugin
    plain = parse_controls(CONFIG.replace(' hint="keywords: meeting, agenda, minutes"', ""))[0]
    assert registry.family_for(plain).name == "embedding"  # a control it does not claim stays with the built-ins


def test_plugin_keeps_the_backend_contract(plugin) -> None:
    (schema,) = parse_controls(CONFIG)
    texts = ["You are a winner, claim your free prize", "Agenda for the meeting", "Minutes of the meeting",
             "Free prize inside", "Lunch?", "The agenda and minutes"]
    check_backend(discover().family_for(schema), schema, [Item(t) for t in texts],
                  ["spam", "ham", "ham", "spam", "ham", "ham"])


def test_plugin_serves_a_project_through_the_app(plugin, client) -> None:
    """/setup and /predict go through the process's registry: the plug-in's votes come back."""
    assert setup(client, CONFIG).status_code == 200
    tasks = [{"id": 1, "data": {"text": "You won a prize!"}}, {"id": 2, "data": {"text": "Meeting moved to 3 pm"}},
             {"id": 3, "data": {"text": "Nothing to see here"}}]
    results = predict(client, tasks, CONFIG).json()["results"]
    answers = [(r["result"][0]["value"]["choices"][0], r["result"][0]["score"]) for r in results]
    # 4 votes against 1 is 0.8; no keyword at all is a tie, which argmax gives to the first label
    assert answers == [("spam", pytest.approx(0.8)), ("ham", pytest.approx(0.8)), ("spam", 0.5)]
    assert [r["score"] for r in results] == pytest.approx([0.6, 0.6, 0.0])  # margin: 0.8 - 0.2, and a tie
    assert Path(sys.modules[f"suggest_plugin_{plugin.removeprefix('keywords_')}"].__file__).is_file()
