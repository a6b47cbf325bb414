"""A user's pre-trained token classifier (a transformers `pipeline("token-classification")` folder) for <Labels>.

The "pipeline-spans" family: before the tagger has enough labeled spans, the user's NER model
pre-annotates (in place of the spaCy bootstrap); after, the built-in tagger (backends/spans.py)
serves, trained on the annotations. The model's entity types (id2label without B-/I- prefixes) map
onto the config's labels by name, case-insensitively, or per label with
`<Label value="Person" model_label="PER"/>`; a label that maps to nothing is refused
(backends/pipeline.map_labels), `model_label="none"` marks a label the model never gives.

Not done here: the NER model as a feature of the trained tagger, measured against it (the
classifier family does that for single choice; here the tagger keeps spaCy's marginals).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backends.base import Backend, Guess
from backends.encoders import EmbeddingCache
from backends.pipeline import map_labels, shared_model
from backends.schema import Item, Span
from backends.spans import SpanTagger, _no_overlaps, _span, _trim
from backends.user_encoder import check_model_folder, model_identity


class TokenPipeline:
    """One token-classification pipeline per folder: entity groups with character offsets and scores."""

    def __init__(self, folder: str):
        self.folder = check_model_folder(folder, classifier=True)
        config = json.loads((self.folder / "config.json").read_text())
        names = [str(v) for _, v in sorted(((int(k), v) for k, v in config["id2label"].items()))]
        types = [n.split("-", 1)[1] if n[:2] in ("B-", "I-", "E-", "S-") else n for n in names]
        self.model_labels: tuple[str, ...] = tuple(dict.fromkeys(t for t in types if t != "O"))
        self.identity = model_identity(self.folder)
        self._pipe = None
        self._lock = threading.Lock()

    def entities(self, texts: list[str]) -> list[list[dict]]:
        """Per text: [{"entity_group", "score", "start", "end"}], adjacent pieces of one entity merged."""
        if not texts:
            return []
        with self._lock:
            if self._pipe is None:
                from transformers import pipeline

                self._pipe = pipeline("token-classification", model=str(self.folder), tokenizer=str(self.folder),
                                      aggregation_strategy="simple", device=-1)
            out = self._pipe(list(texts), batch_size=16)
        return [list(row) for row in out] if texts else []


def shared_token_pipeline(folder: str) -> TokenPipeline:
    return shared_model(TokenPipeline, folder)


class PipelineTagger(Backend):
    """The user's NER model until the built-in tagger has trained; then the tagger (`min_spans` labeled spans)."""

    gives_proba = False

    def __init__(self, labels: list[str], *, model: str, label_map: dict[str, tuple[str, ...]] | None = None,
                 min_spans: int = 20, cache: EmbeddingCache | None = None):
        self.labels = list(labels)
        self.model = model
        self.label_map = {k: tuple(v) for k, v in (label_map or {}).items()}
        self.min_spans = min_spans
        self.cache = cache
        self.pipe = shared_token_pipeline(model)
        self.mapping = map_labels(self.labels, self.pipe.model_labels, self.label_map)
        self._label_of = {m: label for label, names in self.mapping.items() for m in names}
        self.tagger = SpanTagger(self.labels, cache=cache, min_spans=min_spans)

    @property
    def mode(self) -> str:
        return self.tagger.mode

    def fit(self, items: list[Item], labels: list[tuple[Span, ...]]) -> PipelineTagger:
        self.classes_ = list(self.labels)
        self.tagger.fit(items, labels)
        return self

    def guess(self, items: list[Item], method: str | None = None) -> list[Guess | None]:
        if not items:
            return []
        if self.tagger.mode == "trained":
            return self.tagger.guess(items, method)
        out: list[Guess | None] = []
        for item, found in zip(items, self.pipe.entities([it.text for it in items]), strict=True):
            spans = []
            for ent in found:
                label = self._label_of.get(str(ent.get("entity_group", "")))
                cut = _trim(item.text, int(ent["start"]), int(ent["end"])) if label else None
                if cut is not None:
                    spans.append(_span(item.text, *cut, label, float(ent["score"])))
            spans = list(_no_overlaps(tuple(sorted(spans, key=lambda s: (s.start, s.end)))))
            scores = [s.score for s in spans]
            out.append(Guess(tuple(spans), float(np.mean(scores)) if scores else 1.0,
                             float(min(scores)) if scores else 1.0))
        return out

    def embed(self, items: list[Item], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.tagger.embed(items, progress)

    def warm_start_from(self, old: Backend) -> None:
        if isinstance(old, PipelineTagger):
            self.tagger.warm_start_from(old.tagger)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        (directory / "tagger").mkdir()
        self.tagger.save(directory / "tagger")
        meta = {"family": "pipeline-spans", "labels": self.labels, "model": self.model,
                "model_identity": self.pipe.identity, "label_map": self.label_map, "min_spans": self.min_spans}
        (directory / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path, *, cache: EmbeddingCache | None = None, **kwargs) -> PipelineTagger:
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("family") != "pipeline-spans":
            raise ValueError(f"{directory} holds a {meta.get('family')!r} model, not a pipeline tagger")
        model = cls(meta["labels"], model=meta["model"], label_map=meta["label_map"], min_spans=meta["min_spans"],
                    cache=cache)
        if model.pipe.identity != meta["model_identity"]:
            raise ValueError(f"the token classifier at {meta['model']} changed since this version was trained")
        model.tagger = SpanTagger.load(directory / "tagger", cache=cache)
        model.classes_ = list(model.labels)
        return model
