"""Every registered model family, plug-ins included, keeps the Backend contract (backends/checks.py).

Real models on small real data: MiniLM on Rotten Tomatoes snippets, spaCy + the tagger on
tests/data/ner, EfficientNet-Lite0 on a few PNGs. Each family is checked on every standard sample
whose control it says it serves; also: the registry's order and refusals, a version trained for
other labels is reported, and `backends` never imports `suggest`.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from backends.checks import check_backend, check_fresh
from backends.registry import BUILTINS, Context, Family, Registry, discover, ordered
from backends.schema import Answer, Item, Schema, SchemaError, Span
from suggest.project import open_project
from suggest.schema import Label
from suggest.store import ProjectRecord, Store
from tests.samples import png

ROOT = Path(__file__).resolve().parents[2]

Sample = tuple[Schema, list[Item], list[Answer]]

SCHEMAS: dict[str, Schema] = {
    "text-classification": Schema("sentiment", "text", "text", ("fresh", "rotten")),
    "text-multilabel": Schema("tags", "text", "text", ("rotten", "fresh", "short"), multiple=True),
    "text-spans": Schema("ner", "text", "text", ("Person", "Organization", "Location"), control="labels"),
    "image-classification": Schema("kind", "image", "image", ("warm", "cool"), object_type="image"),
    "image-multilabel": Schema("tags", "image", "image", ("warm", "cool", "large"), object_type="image",
                               multiple=True),
}


def _text_classification(rt: list[tuple[str, str]]) -> Sample:
    pairs = rt[:12]
    return SCHEMAS["text-classification"], [Item(t) for t, _ in pairs], [y for _, y in pairs]


def _text_multilabel(rt: list[tuple[str, str]]) -> Sample:
    pairs = rt[:12]
    cut = sorted(len(t) for t, _ in pairs)[len(pairs) // 2]
    answers = [tuple(sorted({y} | ({"short"} if len(t) < cut else set()))) for t, y in pairs]
    return SCHEMAS["text-multilabel"], [Item(t) for t, _ in pairs], answers


def _text_spans(_: object) -> Sample:
    items, answers = [], []
    for line in (ROOT / "tests/data/ner/train.jsonl").read_text(encoding="utf-8").splitlines()[:12]:  # 23 spans
        row = json.loads(line)
        items.append(Item(row["text"]))
        answers.append(tuple(Span(s, e, lb, row["text"][s:e]) for s, e, lb in row["spans"]))
    return SCHEMAS["text-spans"], items, answers


def _image_classification(_: object) -> Sample:
    warm = [i % 2 == 0 for i in range(8)]
    return (SCHEMAS["image-classification"], [Item(f"img{i}.png", i, png(w, i)) for i, w in enumerate(warm)],
            ["warm" if w else "cool" for w in warm])


def _image_multilabel(_: object) -> Sample:
    shape = [(i % 2 == 0, i % 3 == 0) for i in range(8)]  # (warm, large)
    items = [Item(f"img{i}.png", i, png(w, i, 96 if big else 64)) for i, (w, big) in enumerate(shape)]
    answers = [tuple(sorted({"warm" if w else "cool"} | ({"large"} if big else set()))) for w, big in shape]
    return SCHEMAS["image-multilabel"], items, answers


SAMPLES: dict[str, Callable[[list[tuple[str, str]]], Sample]] = {
    "text-classification": _text_classification,
    "text-multilabel": _text_multilabel,
    "text-spans": _text_spans,
    "image-classification": _image_classification,
    "image-multilabel": _image_multilabel,
}


def _cases() -> list:
    """(family, sample) for every registered family and every standard control it says it serves."""
    cases = []
    for family in discover().families:
        served = [name for name, schema in SCHEMAS.items() if family.supports(schema)]
        cases += [pytest.param(family, name, id=f"{family.name}-{name}") for name in served]
        if not served:
            cases.append(pytest.param(family, None, id=family.name, marks=pytest.mark.skip(
                reason=f"family {family.name!r} serves none of the standard controls; check it with its own data")))
    return cases


@pytest.mark.parametrize(("family", "sample"), _cases())
def test_family_keeps_the_backend_contract(family: Family, sample: str, rt_sample) -> None:
    schema, items, answers = SAMPLES[sample](rt_sample)
    check_backend(family, schema, items, answers)


def test_builtins_serve_each_control_kind_once_in_order() -> None:
    registry = Registry(BUILTINS)
    assert registry.names == ["pipeline", "finetune", "embedding", "multilabel", "pipeline-spans", "spans", "images",
                              "images-multilabel"]
    # "pipeline" and "pipeline-spans" serve only where SUGGEST_TEXT_CLASSIFIER names a model
    # (tests/unit/test_user_models.py)
    assert [registry.family_for(s).name for s in SCHEMAS.values()] == [
        "embedding", "multilabel", "spans", "images", "images-multilabel"]
    with pytest.raises(SchemaError, match="no model family serves <Labels name='boxes'> on a image"):
        registry.family_for(Schema("boxes", "image", "image", ("cat",), object_type="image", control="labels"))


def test_order_rule_and_a_failing_supports_is_skipped(caplog) -> None:
    """Plug-ins marked `first` come before the built-ins, the others after; a supports() that raises is skipped."""
    def broken(schema: Schema) -> bool:
        raise RuntimeError("bug in a plug-in")

    def unused(*args):
        raise AssertionError("not called")

    early = Family("early", broken, unused, unused, first=True)
    late = Family("late", lambda s: True, unused, unused)
    registry = ordered(BUILTINS, [late, early])
    assert registry.names == ["early", *(f.name for f in BUILTINS), "late"]
    with caplog.at_level(logging.WARNING, logger="backends.registry"):
        assert registry.family_for(SCHEMAS["text-classification"]).name == "embedding"
    assert "'early': supports('sentiment') failed (bug in a plug-in)" in caplog.text
    with pytest.raises(ValueError, match="unique"):
        Registry([late, late])


def test_learned_state_before_fit_is_caught() -> None:
    """check_fresh fails a model that sets fitted state in __init__ (the old classes_ habit)."""
    model = Registry(BUILTINS).make(SCHEMAS["text-classification"], Context())
    check_fresh(model, SCHEMAS["text-classification"])
    model.classes_ = list(model.labels)
    with pytest.raises(AssertionError, match=r"learned state before fit: \['classes_'\]"):
        check_fresh(model, SCHEMAS["text-classification"])


def test_a_version_trained_for_other_labels_is_reported(tmp_path, rt_sample, caplog) -> None:
    """Not served (as before), but now a WARNING names both label lists and metrics shows it."""
    config = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
              '<Choice value="fresh"/><Choice value="rotten"/></Choices></View>')
    store = Store(tmp_path)
    record = ProjectRecord("5", config, None, None)
    store.save_project(record)
    schema = SCHEMAS["text-classification"]
    project = open_project(store, record, (schema,))
    store.upsert_labels("5", [Label(i, i, y, t, control="sentiment") for i, (t, y) in enumerate(rt_sample[:8])])
    version = project.retrain().version
    renamed = Schema("sentiment", "text", "text", ("good", "bad"))
    with caplog.at_level(logging.WARNING, logger="suggest.project"):
        reopened = open_project(store, record, (renamed,))
    assert reopened.model_version.startswith("zeroshot-")
    assert f"version {version} was trained for labels ['fresh', 'rotten'] but the config's 'sentiment' has " \
           "['good', 'bad']" in caplog.text
    assert reopened.metrics()["unserved_versions"] == {
        version: "control 'sentiment' was trained for labels ['fresh', 'rotten'], the config has ['good', 'bad']"}
    assert "unserved_versions" not in project.metrics()


def test_backends_never_import_suggest() -> None:
    """The dependency runs one way: suggest -> backends. A family (a plug-in too) needs only `backends`."""
    offenders = []
    for path in sorted((ROOT / "backends").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                          if n == "suggest" or n.startswith("suggest.")]
    assert not offenders, offenders
