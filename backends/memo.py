"""One in-memory vector memo for the whole process, bounded in bytes.

Each model used to keep its own dict of recent vectors with a cap per model, so memory grew with the
number of projects (and of controls in each). Now every family reads and writes through a view of one
least-recently-used memo whose budget is the process's (SUGGEST_MEMORY_MB): a hundred projects cost
what one does. A vector dropped from the memo is read again from the store's embedding cache, never
re-computed, so the budget trades only speed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np

DEFAULT_BUDGET_BYTES = 1024 * 1024 * 1024


class VectorMemo:
    """Least-recently-used (namespace, content hash) -> vector, at most `budget_bytes` of vectors in all."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.budget_bytes = int(budget_bytes)
        self._data: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def view(self, namespace: str) -> MemoView:
        """The part of the memo one encoder's vectors live in (vectors of two encoders never mix)."""
        return MemoView(self, namespace)

    def resize(self, budget_bytes: int) -> None:
        with self._lock:
            self.budget_bytes = int(budget_bytes)
            self._evict()

    def get(self, key: tuple[str, str]) -> np.ndarray | None:
        with self._lock:
            vector = self._data.get(key)
            if vector is not None:
                self._data.move_to_end(key)
            return vector

    def get_many(self, namespace: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """The held vectors of these hashes, under one lock. Why: a version of a 100,000-task pool looks up
        every task's vector, and two locked calls per hash took ~0.6 s of the head's candidates step."""
        out: dict[str, np.ndarray] = {}
        with self._lock:
            data = self._data
            for h in hashes:
                if h in out:
                    continue
                key = (namespace, h)
                vector = data.get(key)
                if vector is not None:
                    data.move_to_end(key)
                    out[h] = vector
        return out

    def put_many(self, namespace: str, vectors: Mapping[str, np.ndarray]) -> None:
        with self._lock:
            for h, vector in vectors.items():
                key = (namespace, h)
                old = self._data.pop(key, None)
                if old is not None:
                    self._bytes -= old.nbytes
                if vector.nbytes > self.budget_bytes:
                    continue
                self._data[key] = vector
                self._bytes += vector.nbytes
            self._evict()

    def clear(self, namespace: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._data if namespace is None or k[0] == namespace]:
                self._bytes -= self._data.pop(key).nbytes

    def _evict(self) -> None:
        while self._bytes > self.budget_bytes and self._data:
            _, vector = self._data.popitem(last=False)
            self._bytes -= vector.nbytes


class MemoView:
    """The dict-like face a family's embedding code uses: `h in view`, `view[h]`, `view.update(...)`."""

    def __init__(self, memo: VectorMemo, namespace: str):
        self.memo, self.namespace = memo, namespace

    def __contains__(self, h: object) -> bool:
        return isinstance(h, str) and self.memo.get((self.namespace, h)) is not None

    def __getitem__(self, h: str) -> np.ndarray:
        vector = self.memo.get((self.namespace, h))
        if vector is None:
            raise KeyError(h)
        return vector

    def get(self, h: str, default: np.ndarray | None = None) -> np.ndarray | None:
        vector = self.memo.get((self.namespace, h))
        return default if vector is None else vector

    def get_many(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        return self.memo.get_many(self.namespace, hashes)

    def update(self, vectors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> None:
        self.memo.put_many(self.namespace, dict(vectors))

    def __setitem__(self, h: str, vector: np.ndarray) -> None:
        self.memo.put_many(self.namespace, {h: vector})

    def clear(self) -> None:
        self.memo.clear(self.namespace)


_shared = VectorMemo()


def shared_memo() -> VectorMemo:
    """The process's memo (the engine sizes it from SUGGEST_MEMORY_MB at start)."""
    return _shared


def held_vectors(memory: Mapping[str, np.ndarray] | MemoView, hashes: list[str]) -> dict[str, np.ndarray]:
    """What a family's memory (the process memo's view, or an offline harness's plain dict) holds of these."""
    many = getattr(memory, "get_many", None)
    if many is not None:
        return many(hashes)
    return {h: memory[h] for h in hashes if h in memory}


def memo_for(encoder_id: str) -> MemoView:
    """A family's view of the process's memo, for vectors of one encoder."""
    return _shared.view(encoder_id)


class SharedMemo:
    """Mixin for families that embed with one encoder: `self._memory` is the process memo's view for that
    encoder. An offline harness (simulate, benchmarks) may assign its own dict to keep its vectors apart."""

    _memo_override: dict | None = None

    @property
    def _memory(self) -> MemoView | dict:
        if self._memo_override is not None:
            return self._memo_override
        # one namespace per (encoder, store): a vector found in memory is then known to be in that store too
        store = getattr(getattr(self, "cache", None), "memo_key", "none")
        return memo_for(f"{self.encoder.encoder_id}|{store}")  # type: ignore[attr-defined]

    @_memory.setter
    def _memory(self, value: dict) -> None:
        self._memo_override = value

    def share_memo_of(self, old: object) -> None:
        """After a retrain: keep an offline harness's own dict (the process memo is shared anyway)."""
        if isinstance(old, SharedMemo) and old._memo_override is not None and \
                old.encoder.encoder_id == self.encoder.encoder_id:  # type: ignore[attr-defined]
            self._memo_override = old._memo_override
