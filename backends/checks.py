"""`check_backend`: does a model family keep the Backend contract? In the spirit of scikit-learn's check_estimator.

Plug-in authors call it from their own tests with a few real items of a control their family
serves; tests/unit/test_backend_contract.py runs it over every registered family. Each check raises
AssertionError saying what broke; nothing here needs pytest.

What it holds a family to (backends/base.py says why):
- `make` gives a model with `labels` = the config's labels and no learned (trailing-underscore)
  state but the declared `zero_shot_state`; it can `guess` already (None for "nothing to suggest").
- `fit` returns self and sets `classes_` to the labels.
- `predict_proba` (where `gives_proba`): (n, k) float in [0, 1], rows summing to 1 where `exclusive`,
  columns in `labels` order (a model made with the labels reversed gives the columns reversed);
  NotImplementedError where not offered.
- `guess`: one entry per item, None or a Guess with probability and certainty in [0, 1], its value
  a label, a sorted tuple of labels or a tuple of Spans, as the control's kind says; a single-choice
  classifier suggests its most probable column.
- `embed`: (n, dim) float32, finite, the same twice; `embed_partial` and `cached_hashes` keep their
  shapes; `predict_proba_embedded` (where `supports_embedded`) agrees with `predict_proba`.
- save -> load gives the same predictions, before a fit as after one; `warm_start_from` a sibling
  does not stop a fit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from backends.base import Backend, Guess
from backends.registry import Context, Family
from backends.schema import Answer, Item, Schema, Span

MODES = ("trained", "zero-shot", "bootstrap", "untrained")
_TOL = 1e-4  # predictions compared across save/load and across label orders


class MemoryCache:
    """An in-memory embedding cache (encoder id, content hash) -> vector, so checks embed each item once."""

    def __init__(self) -> None:
        self.vectors: dict[tuple[str, str], np.ndarray] = {}

    def get_embeddings(self, encoder_id: str, hashes: list[str]) -> dict[str, np.ndarray]:
        return {h: self.vectors[(encoder_id, h)] for h in hashes if (encoder_id, h) in self.vectors}

    def put_embeddings(self, encoder_id: str, vectors: dict[str, np.ndarray]) -> None:
        self.vectors.update(((encoder_id, h), v) for h, v in vectors.items())


def check_backend(
    family: Family, schema: Schema, items: list[Item], labels: Sequence[Answer], context: Context | None = None
) -> None:
    """Run every contract check on `family` for one control; AssertionError on the first that fails.

    `items` and `labels` should be small (a dozen), real, and cover at least two labels.
    """
    context = context or Context(cache=MemoryCache())
    assert family.supports(schema), f"family {family.name!r} does not support the schema it is checked with"
    labels = list(labels)
    fresh = family.make(schema, context)
    check_fresh(fresh, schema)
    check_guesses(fresh, schema, items, "before fit")
    check_round_trip(family, fresh, schema, items, context, "before fit")
    fitted = family.make(schema, context)
    fitted.warm_start_from(fresh)
    assert fitted.fit(items, labels) is fitted, "fit must return self"
    assert list(fitted.classes_) == list(schema.labels), f"classes_ {fitted.classes_} != labels {schema.labels}"
    assert fitted.mode in MODES, f"mode {fitted.mode!r} is not one of {MODES}"
    check_proba(fitted, items)
    check_guesses(fitted, schema, items, "after fit")
    check_embed(fitted, items)
    check_column_order(family, fitted, schema, items, labels, context)
    check_round_trip(family, fitted, schema, items, context, "after fit")


def check_fresh(model: Backend, schema: Schema) -> None:
    """A made model: parameters only, plus the zero-shot state it declares; capabilities are booleans."""
    assert isinstance(model, Backend), f"{type(model).__name__} does not subclass backends.base.Backend"
    assert list(model.labels) == list(schema.labels), f"labels {model.labels} != the config's {schema.labels}"
    learned = sorted(k for k in vars(model) if k.endswith("_") and not k.startswith("__")
                     and k not in model.zero_shot_state)
    assert not learned, f"{type(model).__name__} has learned state before fit: {learned} (set it in fit/load)"
    for flag in ("gives_proba", "exclusive", "supports_embedded"):
        assert isinstance(getattr(model, flag), bool), f"{flag} must be a bool"
    assert model.mode in MODES, f"mode {model.mode!r} is not one of {MODES}"
    assert isinstance(model.cached_hashes([]), set), "cached_hashes must return a set"


def check_proba(model: Backend, items: list[Item]) -> np.ndarray | None:
    """predict_proba's shape, range and row sums, or NotImplementedError where it is not offered."""
    if not model.gives_proba:
        try:
            model.predict_proba(items)
        except NotImplementedError:
            return None
        raise AssertionError("gives_proba is False but predict_proba answered")
    proba = np.asarray(model.predict_proba(items))
    k = len(model.labels)
    assert proba.shape == (len(items), k), f"predict_proba shape {proba.shape} != {(len(items), k)}"
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all(), "probabilities outside [0, 1]"
    if model.exclusive:
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6, err_msg="exclusive rows must sum to 1")
    return proba


def check_guesses(model: Backend, schema: Schema, items: list[Item], when: str) -> list[Guess | None]:
    """One entry per item; each None or a Guess of the control's kind, probability and certainty in [0, 1]."""
    guesses = model.guess(items)
    assert len(guesses) == len(items), f"{when}: {len(guesses)} guesses for {len(items)} items"
    assert model.guess([]) == [], f"{when}: guess([]) must be []"
    valid = set(schema.labels)
    for i, g in enumerate(guesses):
        if g is None:
            continue
        assert isinstance(g, Guess), f"{when}: guess {i} is a {type(g).__name__}, not a Guess"
        assert 0.0 <= g.probability <= 1.0 and 0.0 <= g.certainty <= 1.0, f"{when}: guess {i} out of [0, 1]: {g}"
        _check_value(g.value, schema, valid, f"{when}: guess {i}")
    if model.gives_proba and model.exclusive and any(g is not None for g in guesses):
        proba = model.predict_proba(items)
        best = [schema.labels[j] for j in np.asarray(proba).argmax(axis=1)]
        assert [g.value for g in guesses if g is not None] == [b for b, g in zip(best, guesses, strict=True) if g], \
            f"{when}: a classifier's guess must be its most probable column (columns follow labels)"
    return guesses


def _check_value(value: object, schema: Schema, valid: set[str], where: str) -> None:
    if schema.task_kind == "classification":
        assert isinstance(value, str) and value in valid, f"{where}: {value!r} is not one of the labels"
    elif schema.task_kind == "multilabel":
        assert isinstance(value, tuple) and set(value) <= valid and list(value) == sorted(value), \
            f"{where}: {value!r} is not a sorted tuple of labels"
    else:
        assert isinstance(value, tuple) and all(isinstance(s, Span) and s.label in valid for s in value), \
            f"{where}: {value!r} is not a tuple of Spans with the config's labels"


def check_embed(model: Backend, items: list[Item]) -> None:
    """embed: (n, dim) float32, finite, deterministic; embed_partial and predict_proba_embedded agree with it."""
    X = model.embed(items)
    assert isinstance(X, np.ndarray) and X.dtype == np.float32, f"embed gave {type(X).__name__} {X.dtype}"
    assert X.ndim == 2 and X.shape[0] == len(items) and X.shape[1] > 0, f"embed shape {X.shape}"
    assert np.isfinite(X).all(), "embed gave NaN or inf"
    np.testing.assert_allclose(model.embed(items), X, atol=1e-5, err_msg="embed must be deterministic")
    Xp, errors = model.embed_partial(items)
    assert isinstance(errors, dict) and not errors, f"embed_partial reported problems with good items: {errors}"
    np.testing.assert_allclose(Xp, X, atol=1e-5, err_msg="embed_partial must agree with embed")
    known = model.cached_hashes([it.content_hash for it in items])
    assert isinstance(known, set) and known <= {it.content_hash for it in items}, "cached_hashes: not a subset"
    if model.supports_embedded:
        np.testing.assert_allclose(model.predict_proba_embedded(X), model.predict_proba(items), atol=_TOL,
                                   err_msg="predict_proba_embedded(embed(items)) != predict_proba(items)")
    else:
        try:
            model.predict_proba_embedded(X)
        except NotImplementedError:
            return
        raise AssertionError("supports_embedded is False but predict_proba_embedded answered")


def check_column_order(
    family: Family, fitted: Backend, schema: Schema, items: list[Item], labels: list[Answer], context: Context
) -> None:
    """The label order is a parameter: with the labels reversed, predict_proba's columns come reversed."""
    if not fitted.gives_proba or len(schema.labels) < 2:
        return
    reversed_schema = replace(schema, labels=tuple(reversed(schema.labels)))
    other = family.make(reversed_schema, context).fit(items, labels)
    np.testing.assert_allclose(other.predict_proba(items)[:, ::-1], fitted.predict_proba(items), atol=1e-3,
                               err_msg="predict_proba's columns do not follow the labels' order")


def check_round_trip(
    family: Family, model: Backend, schema: Schema, items: list[Item], context: Context, when: str
) -> Backend:
    """save -> load: the same mode, classes_, guesses and probabilities."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model.save(folder)
        assert any(folder.iterdir()), f"{when}: save wrote nothing"
        loaded = family.load(schema, folder, context)
    assert type(loaded) is type(model), f"{when}: load gave a {type(loaded).__name__}"
    assert list(loaded.classes_) == list(schema.labels), f"{when}: loaded classes_ {loaded.classes_}"
    assert loaded.mode == model.mode, f"{when}: mode {model.mode!r} came back as {loaded.mode!r}"
    before, after = model.guess(items), loaded.guess(items)
    assert [g and g.value for g in before] == [g and g.value for g in after], f"{when}: guesses changed on load"
    np.testing.assert_allclose([g.certainty for g in before if g], [g.certainty for g in after if g], atol=_TOL,
                               err_msg=f"{when}: certainties changed on load")
    if model.gives_proba:
        np.testing.assert_allclose(loaded.predict_proba(items), model.predict_proba(items), atol=_TOL,
                                   err_msg=f"{when}: predict_proba changed on load")
    return loaded
