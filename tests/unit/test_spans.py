"""Entity spans (backends/spans.py) with the real models: spaCy bootstrap and the MiniLM BIO tagger."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backends.encoders import shared_text_encoder  # noqa: E402
from backends.spans import CERTAINTY_METHODS, SpanTagger, default_entity_map  # noqa: E402
from suggest.schema import Item, Span  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "ner"
LABELS = ["Person", "Organization", "Location"]

HARD_TEXTS = [
    "Zoë Ångström met José García in Zürich.",
    "👩‍👩‍👧 Maria Rossi moved to 東京 with 王伟 🇫🇷 last year.",
    "Meeting notes:\n\tTim Cook will call Apple tomorrow.\r\nBudget review in Paris 👍🏽",
    "Café Noir Ltd hired Siobhán O'Brien in São Paulo.",
    "  leading spaces, then Angela Merkel\tin Berlin\t ",
    "e\u0301mile Zola (with a combining accent) wrote in Paris.",
    "",
    "   \n\t ",
    "nothing here at all",
]


def load(name: str, n: int | None = None) -> tuple[list[Item], list[tuple[Span, ...]]]:
    items, spans = [], []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines()[:n]:
        row = json.loads(line)
        items.append(Item(row["text"]))
        spans.append(tuple(Span(s, e, lb, row["text"][s:e]) for s, e, lb in row["spans"]))
    return items, spans


def micro_f1(gold: list[tuple[Span, ...]], pred: list[tuple[Span, ...]]) -> float:
    g = {(i, s.start, s.end, s.label) for i, spans in enumerate(gold) for s in spans}
    p = {(i, s.start, s.end, s.label) for i, spans in enumerate(pred) for s in spans}
    tp = len(g & p)
    return 2 * tp / (len(g) + len(p)) if g or p else 1.0


def check_spans(text: str, spans: tuple[Span, ...]) -> None:
    starts = [s.start for s in spans]
    assert starts == sorted(starts)
    for a, b in zip(spans, spans[1:], strict=False):
        assert a.end <= b.start, "spans overlap"
    for s in spans:
        assert 0 <= s.start < s.end <= len(text)
        assert s.text == text[s.start : s.end]
        assert s.text == s.text.strip() and s.text
        assert s.label in LABELS
        assert s.score is not None and 0.0 <= s.score <= 1.0


@pytest.fixture(scope="module")
def bootstrap() -> SpanTagger:
    return SpanTagger(LABELS)


@pytest.fixture(scope="module")
def heldout() -> tuple[list[Item], list[tuple[Span, ...]]]:
    return load("heldout.jsonl", 100)


@pytest.fixture(scope="module")
def trained() -> SpanTagger:
    items, spans = load("train.jsonl", 150)
    return SpanTagger(LABELS).fit(items, spans)


def test_token_offsets_line_up_and_long_texts_are_windowed():
    enc = shared_text_encoder()
    long_text = " ".join(["filler"] * 300) + " and finally Grace Hopper in Arlington."
    out = enc.encode_tokens([*HARD_TEXTS, long_text], layer=4)
    assert len(out) == len(HARD_TEXTS) + 1
    for text, (offsets, vectors) in zip([*HARD_TEXTS, long_text], out, strict=True):
        assert offsets.shape == (len(vectors), 2) and vectors.shape[1] == enc.dim
        for a, b in offsets.tolist():
            assert text[a:b].strip() == text[a:b] != ""
    offsets, vectors = out[-1]
    assert len(offsets) > 256  # not truncated
    assert int(offsets[-1, 1]) == len(long_text)
    assert np.all(np.abs(vectors).sum(axis=1) > 0)


def test_default_map_and_override():
    m = default_entity_map(["Person", "Organisation", "Place", "Date", "Misc"])
    assert m["PERSON"] == "Person" and m["ORG"] == "Organisation"
    assert m["GPE"] == m["LOC"] == "Place" and m["DATE"] == "Date"
    assert m["NORP"] == "Misc" and "CARDINAL" not in m
    both = default_entity_map(["gpe", "Location", "PER", "company"])
    assert both["GPE"] == "gpe" and both["LOC"] == "Location"  # a type's own name wins over a synonym
    assert both["PERSON"] == "PER" and both["ORG"] == "company"

    tagger = SpanTagger(["Name", "City", "Firm"], entity_map={"GPE": "City", "org": "Firm", "PERSON": ""})
    assert tagger.entity_map_["GPE"] == "City" and tagger.entity_map_["ORG"] == "Firm"
    assert "PERSON" not in tagger.entity_map_  # "" drops a type the default would map to Name
    with pytest.raises(ValueError, match="not among"):
        SpanTagger(["Person"], entity_map={"GPE": "Planet"})
    with pytest.raises(ValueError, match="not a spaCy type"):
        SpanTagger(["Person"], entity_map={"CITY": "Person"})


def test_bootstrap_finds_entities_before_any_fit(bootstrap):
    assert bootstrap.mode == "bootstrap"
    text = "Tim Cook visited Microsoft in London on Monday."
    (g,) = bootstrap.guess([Item(text)])
    found = {(s.text, s.label) for s in g.value}
    assert ("Tim Cook", "Person") in found and ("London", "Location") in found
    assert 0.0 <= g.probability <= 1.0 and 0.0 <= g.certainty <= 1.0
    check_spans(text, g.value)
    # a project whose labels spaCy cannot name gets empty suggestions, not errors
    (none,) = SpanTagger(["Skill"]).guess([Item(text)])
    assert none.value == ()


@pytest.mark.parametrize("which", ["bootstrap", "trained"])
def test_offsets_exact_on_hard_texts(which, bootstrap, trained):
    model = bootstrap if which == "bootstrap" else trained
    guesses = model.guess([Item(t) for t in HARD_TEXTS])
    assert len(guesses) == len(HARD_TEXTS)
    for text, g in zip(HARD_TEXTS, guesses, strict=True):
        assert g is not None and isinstance(g.value, tuple)
        check_spans(text, g.value)
        assert 0.0 <= g.probability <= 1.0 and 0.0 <= g.certainty <= 1.0
    assert guesses[HARD_TEXTS.index("")].value == ()
    names = {s.text for g in guesses for s in g.value}
    assert "Zürich" in names or "Maria Rossi" in names


def test_fit_beats_bootstrap_on_heldout(bootstrap, trained, heldout):
    items, gold = heldout
    boot = micro_f1(gold, [g.value for g in bootstrap.guess(items)])
    fitted = micro_f1(gold, [g.value for g in trained.guess(items)])
    assert trained.mode == "trained"
    assert fitted > boot + 0.1, (fitted, boot)


def test_save_load_round_trip(tmp_path, trained, heldout):
    items = heldout[0][:20] + [Item(t) for t in HARD_TEXTS]
    trained.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"meta.json", "head.npz"}
    again = SpanTagger.load(tmp_path)
    assert again.mode == "trained" and again.classes_ == LABELS
    before, after = trained.guess(items), again.guess(items)
    assert [g.value for g in before] == [g.value for g in after]
    # features are recomputed in other batches (padding moves floats by ~1e-6), hence the tolerance
    scores = [s.score for g in after for s in g.value]
    assert [s.score for g in before for s in g.value] == pytest.approx(scores, abs=1e-4)
    assert [g.certainty for g in before] == pytest.approx([g.certainty for g in after], abs=1e-4)

    boot_dir = tmp_path / "boot"
    boot_dir.mkdir()
    SpanTagger(LABELS, entity_map={"FAC": "Location"}).save(boot_dir)
    restored = SpanTagger.load(boot_dir)
    assert restored.mode == "bootstrap" and restored.entity_map_["FAC"] == "Location"


def test_certainty_lower_on_an_ambiguous_text(trained):
    clear = "Maria Fernández joined Acme Corporation last spring."
    murky = "jordan georgia washington chelsea florence sydney paris hilton"
    g_clear, g_murky = trained.guess([Item(clear), Item(murky)])
    for method in CERTAINTY_METHODS:
        c_clear, c_murky = (g.certainty for g in trained.guess([Item(clear), Item(murky)], method))
        assert 0.0 <= c_murky < c_clear <= 1.0, method
    assert g_murky.certainty < g_clear.certainty


def test_no_spans_stays_bootstrap_and_bad_labels_are_refused(heldout):
    items = heldout[0][:3]
    tagger = SpanTagger(LABELS).fit(items, [(), (), ()])
    assert tagger.mode == "bootstrap"
    with pytest.raises(ValueError, match="not among"):
        tagger.fit(items[:1], [(Span(0, 2, "Planet"),)])
    with pytest.raises(ValueError, match="outside"):
        tagger.fit(items[:1], [(Span(0, 10_000, "Person"),)])
    with pytest.raises(ValueError):
        tagger.fit(items, [()])


def test_embed_gives_sentence_vectors(trained):
    X = trained.embed([Item("Alice works at Acme."), Item("")])
    assert X.shape == (2, 384) and X.dtype == np.float32
    assert np.linalg.norm(X[0]) == pytest.approx(1.0, abs=1e-4)


def test_entity_at_the_end_of_a_long_text(trained):
    text = " ".join(["the meeting went on"] * 80) + ".\nAfterwards Maria Rossi flew to Berlin."
    (g,) = trained.guess([Item(text)])
    check_spans(text, g.value)
    assert any(s.start > 300 for s in g.value)  # found past the model's 256-token window
