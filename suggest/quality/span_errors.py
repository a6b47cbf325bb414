"""Suspected errors in entity spans: a span people marked that is not an entity (extra), an entity they
left out (missing), or a span of the wrong type, found from out-of-fold tag probabilities.

Confident learning carried over to tagging (Northcutt et al., JAIR 2021, written from the paper): a
tagger that never saw a text gives each word piece a probability per class (O or an entity type, B and
I merged); a class's threshold is the mean probability the pieces of that class get, the per-class
threshold of the paper, capped at 0.5 (see FLOOR). A marked span is suspect when, averaged over its
pieces, another class reaches its threshold and beats the marked type; an unmarked stretch the tagger
decodes as an entity is suspect when its type reaches its threshold there. The score is that average probability.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from suggest.schema import Item, Span

FLOOR = 0.5  # a class's threshold is at most this: more likely than not, over the span's pieces
MAX_FOLDS = 5  # each fold refits the tagger's head on cached piece features; 5 keep 1,000 texts in seconds


def out_of_fold_tags(make: Callable[[], object], items: Sequence[Item], gold: Sequence[tuple[Span, ...]], *,
                     folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, object] | None]:
    """Per item: (piece offsets, class probabilities (O, then each label), the fold's tagger) from a tagger
    fitted on the other folds; None where that fold's tagger could not train (too few spans)."""
    n = len(items)
    out: list[tuple[np.ndarray, np.ndarray, object] | None] = [None] * n
    order = np.random.default_rng(seed).permutation(n)
    for held in np.array_split(order, max(2, min(folds, n))):
        rest = np.setdiff1d(order, held)
        tagger = make()
        tagger.fit([items[i] for i in rest], [gold[i] for i in rest])
        if tagger.mode != "trained":
            continue
        for i, (offsets, proba) in zip(held, tagger.token_proba([items[i] for i in held]), strict=True):
            out[i] = (offsets, _by_class(tagger, proba), tagger)
    return out


def _by_class(tagger, proba: np.ndarray) -> np.ndarray:
    """(pieces, 1 + labels): O, then each label's B and I summed."""
    cols = [proba[:, 0]]
    for label in tagger.labels:
        cols.append(proba[:, tagger.tags_.index(f"B-{label}")] + proba[:, tagger.tags_.index(f"I-{label}")])
    return np.column_stack(cols)


def _pieces(offsets: np.ndarray, start: int, end: int) -> np.ndarray:
    return np.flatnonzero((offsets[:, 0] < end) & (offsets[:, 1] > start))


def _gold_classes(offsets: np.ndarray, spans: tuple[Span, ...], labels: list[str]) -> np.ndarray:
    classes = np.zeros(len(offsets), dtype=np.int64)
    for sp in spans:
        if sp.label in labels:
            classes[_pieces(offsets, sp.start, sp.end)] = 1 + labels.index(sp.label)
    return classes


def find_span_suspects(tasks: Sequence[int], items: Sequence[Item], gold: Sequence[tuple[Span, ...]],
                       labels: list[str], oof: Sequence[tuple[np.ndarray, np.ndarray, object] | None],
                       control: str = "") -> list[dict]:
    """Suspect spans, most suspicious first, from out-of-fold class probabilities (see the module doc)."""
    names = ["O", *labels]
    sums, counts = np.zeros(len(names)), np.zeros(len(names))
    for entry, spans in zip(oof, gold, strict=True):
        if entry is None:
            continue
        offsets, proba, _ = entry
        classes = _gold_classes(offsets, spans, labels)
        np.add.at(sums, classes, proba[np.arange(len(classes)), classes])
        np.add.at(counts, classes, 1)
    if counts[0] == 0 or counts[1:].sum() == 0:
        return []
    # A tagger is far surer of its classes than a document classifier (mean self-confidence 0.93-0.99 on
    # tests/data/ner), so the paper's threshold alone missed plain planted errors at 0.917; a class that beats
    # the marked one with at least half the probability is evidence enough. Unseen classes are never suggested.
    threshold = np.where(counts > 0, np.minimum(sums / np.maximum(counts, 1), FLOOR), np.inf)
    suspects: list[dict] = []
    for task, item, spans, entry in zip(tasks, items, gold, oof, strict=True):
        if entry is None:
            continue
        offsets, proba, tagger = entry
        given = [_show(item.text, sp) for sp in spans]
        for sp in spans:
            at = _pieces(offsets, sp.start, sp.end)
            if sp.label not in labels or len(at) == 0:
                continue
            mean = proba[at].mean(axis=0)
            mine = 1 + labels.index(sp.label)
            other = int(np.argmax(np.where(np.arange(len(names)) == mine, -1.0, mean)))
            if mean[other] > mean[mine] and mean[other] >= threshold[other]:
                wrong_type = other != 0
                suggested = _show(item.text, Span(sp.start, sp.end, names[other])) if wrong_type else "no entity"
                suspects.append(_entry(task, control, given, [suggested], float(mean[other]),
                                       "wrong type" if wrong_type else "extra span", sp))
        (decoded,) = tagger.guess([item])  # the fold's own decoding: valid BIO paths only
        for sp in decoded.value if decoded is not None else ():
            if any(g.start < sp.end and g.end > sp.start for g in spans):
                continue
            at = _pieces(offsets, sp.start, sp.end)
            k = 1 + labels.index(sp.label)
            score = float(proba[at, k].mean()) if len(at) else 0.0
            if score >= threshold[k]:
                suspects.append(_entry(task, control, given, [*given, _show(item.text, sp)], score, "missing span",
                                       Span(sp.start, sp.end, sp.label)))
    suspects.sort(key=lambda s: -s["score"])
    return suspects


def _show(text: str, sp: Span) -> str:
    return f"{text[sp.start:sp.end]} ({sp.label})"


def _entry(task: int, control: str, given: list[str], suggested: list[str], score: float, problem: str,
           span: Span) -> dict:
    return {"task_id": task, "control": control, "given": given, "suggested": suggested, "score": round(score, 4),
            "problem": problem, "span": {"start": span.start, "end": span.end, "label": span.label}}


def span_report(make: Callable[[], object], tasks: Sequence[int], items: Sequence[Item],
                gold: Sequence[tuple[Span, ...]], labels: list[str], *, control: str, folds: int
                ) -> tuple[list[dict], dict]:
    """(suspects, info) for one span control: out-of-fold taggers, then find_span_suspects."""
    started = time.perf_counter()
    folds = min(MAX_FOLDS, folds)
    oof = out_of_fold_tags(make, items, gold, folds=folds)
    suspects = find_span_suspects(tasks, items, gold, labels, oof, control)
    info = {"method": f"confident learning on word pieces (O or a type), {folds}-fold out-of-fold taggers",
            "labels": len(tasks), "scored": sum(e is not None for e in oof), "suspects": len(suspects),
            "seconds": round(time.perf_counter() - started, 3)}
    return suspects, info


__all__ = ["find_span_suspects", "out_of_fold_tags", "span_report"]
