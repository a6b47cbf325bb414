"""Suspected span errors on real held-out NER texts (tests/data/ner) with planted mistakes: a span
removed (missing), a span's type changed (wrong type), a plain word marked as an entity (extra). The
real span tagger (MiniLM pieces, spaCy features) is fitted out of fold; the planted ones must rank high."""

from __future__ import annotations

import json
from pathlib import Path

from backends.spans import SpanTagger
from suggest.quality.span_errors import span_report
from suggest.schema import Item, Span

DATA = Path(__file__).resolve().parents[1] / "data" / "ner" / "train.jsonl"
LABELS = ["Person", "Organization", "Location"]


def _data(n: int) -> tuple[list[Item], list[tuple[Span, ...]]]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[:n]]
    items = [Item(r["text"], i) for i, r in enumerate(rows)]
    gold = [tuple(Span(s, e, lb, r["text"][s:e]) for s, e, lb in r["spans"] if lb in LABELS) for r in rows]
    return items, gold


def test_planted_span_errors_rank_near_the_top():
    items, gold = _data(120)
    gold = list(gold)
    with_spans = [i for i, g in enumerate(gold) if len(g) >= 2]
    missing, wrong, extra = with_spans[3], with_spans[11], with_spans[19]
    dropped = gold[missing][0]
    gold[missing] = gold[missing][1:]  # the annotator left an entity out
    first = gold[wrong][0]
    other = next(lb for lb in LABELS if lb != first.label)
    gold[wrong] = (Span(first.start, first.end, other, first.text), *gold[wrong][1:])  # wrong type
    text = items[extra].text
    word_start = next(i for i in range(len(text)) if text[i].islower() and (i == 0 or text[i - 1] == " ")
                      and not any(s.start <= i < s.end for s in gold[extra]))
    word_end = text.index(" ", word_start) if " " in text[word_start:] else len(text)
    gold[extra] = (*gold[extra], Span(word_start, word_end, "Location", text[word_start:word_end]))  # a plain word

    suspects, info = span_report(lambda: SpanTagger(LABELS), list(range(len(items))), items, gold, LABELS,
                                 control="ner", folds=5)
    assert info["scored"] == len(items) and info["suspects"] == len(suspects) > 0
    assert [s["score"] for s in suspects] == sorted((s["score"] for s in suspects), reverse=True)
    assert len(suspects) <= 10  # 120 clean texts besides the three plants: few false alarms (3 when written)
    top = suspects[:6]

    def found(task: int, problem: str, start: int) -> bool:
        return any(s["task_id"] == task and s["problem"] == problem and s["span"]["start"] == start for s in top)

    assert found(missing, "missing span", dropped.start), top
    assert found(wrong, "wrong type", first.start), top
    assert found(extra, "extra span", word_start), top
    flagged = next(s for s in top if s["task_id"] == wrong and s["problem"] == "wrong type")
    assert flagged["suggested"] == [f"{first.text} ({first.label})"]  # the type it really has


def test_too_few_spans_to_train_give_no_suspects():
    items, gold = _data(4)
    suspects, info = span_report(lambda: SpanTagger(LABELS), [0, 1, 2, 3], items, gold, LABELS, control="ner",
                                 folds=2)
    assert suspects == [] and info["scored"] == 0
