"""Ranking the whole pool for Label Studio: one score per task, the batch first (the score contract)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backends.uncertainty import _certainty_of, _check_method, _check_proba
from suggest.strategies.base import CertaintyStrategy, QueryStrategy, _check_X
from suggest.strategies.coldstart import ColdStart
from suggest.strategies.registry import DEFAULT_STRATEGY, make_strategy

DEFAULT_CHUNK_SIZE = 16_384  # rows per predict_proba call: ~25 MB of float32 384-d embeddings
BATCH_BAND = 0.01  # batch scores live in [0, BATCH_BAND); everything else in [BATCH_BAND, 1]

ProbaSource = np.ndarray | Callable[[np.ndarray], np.ndarray]


def _pool_certainty(
    proba: ProbaSource, X: np.ndarray, methods: tuple[str, ...], chunk_size: int, keep_proba: bool
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Certainty per row by each of `methods`, computed chunk by chunk; the full proba only if `keep_proba`."""
    n = X.shape[0]
    if not callable(proba):
        proba = np.asarray(proba)
        if proba.ndim != 2 or proba.shape[0] != n:
            raise ValueError(f"proba must have shape ({n}, n_classes) to match X; got {proba.shape}")
    certs = [np.empty(n, dtype=np.float64) for _ in methods]
    kept: list[np.ndarray] = []
    for start in range(0, n, chunk_size):  # loop over chunks, not tasks
        stop = min(start + chunk_size, n)
        chunk = proba(X[start:stop]) if callable(proba) else proba[start:stop]
        chunk = _check_proba(chunk)
        if chunk.shape[0] != stop - start:
            raise ValueError(f"predict_proba returned {chunk.shape[0]} rows for a chunk of {stop - start}")
        for cert, method in zip(certs, methods, strict=True):  # one or two measures, not tasks
            cert[start:stop] = _certainty_of(chunk, method)
        if keep_proba:
            kept.append(chunk)
    full = np.concatenate(kept) if keep_proba and kept else None
    return certs, full


def _scores(cert: np.ndarray | None, batch: np.ndarray, n: int) -> np.ndarray:
    """The score contract of `rank_pool` (see there)."""
    scores = np.ones(n) if cert is None else BATCH_BAND + (1.0 - BATCH_BAND) * cert
    if batch.size:
        scores[batch] = BATCH_BAND * np.arange(batch.size) / batch.size
    return scores


def rank_pool(
    proba: ProbaSource | None,
    X: np.ndarray,
    *,
    batch_size: int = 50,
    strategy: QueryStrategy | str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    method: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score every pool row for Label Studio (ascending = shown first); returns (scores, batch).

    `proba` is an (n, k) array or a callable `predict_proba(X_chunk) -> (m, k)` applied to
    `chunk_size` rows at a time, so a 1M-row pool never materialises its probabilities;
    None means no model yet (cold start). `strategy` defaults to "dense" (seeded, so the
    same pool ranks the same way) or "coldstart" when proba is None; a name is built with
    `make_strategy(name, method=method)`. `method` is the certainty measure of the scores (the
    project's uncertainty setting); None: the strategy's own, margin if it has none. A strategy
    that picks by another measure (e.g. "margin" while the scores use entropy) still picks by its own.

    Exact mapping, with B = len(batch), b = BATCH_BAND = 0.01 and c = certainty by `method`:
      - batch row at position i (0 = best): score = b * i / B, in [0, b), ascending in i;
      - every other row: score = b + (1 - b) * c, in [b, 1], non-decreasing in c;
      - every other row when proba is None: 1.0.
    So the batch always comes first, in batch order, and the rest follow least certain first.
    """
    X = _check_X(X)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}")
    if strategy is None:
        strategy = (make_strategy(DEFAULT_STRATEGY, method=method, random_state=0) if proba is not None
                    else ColdStart(random_state=0))
    elif isinstance(strategy, str):
        strategy = make_strategy(strategy, method=method)
    measure = _check_method(method) if method is not None else strategy.method or "margin"
    picks_by = strategy.method or measure
    needs_matrix = not isinstance(strategy, CertaintyStrategy)
    cert = picking = full = None
    if proba is not None:
        methods = (measure,) if picks_by == measure else (measure, picks_by)
        certs, full = _pool_certainty(proba, X, methods, chunk_size, keep_proba=needs_matrix)
        cert, picking = certs[0], certs[-1]
    if isinstance(strategy, CertaintyStrategy):
        batch = strategy.select(certainty=picking, X=X, batch_size=batch_size)
    else:
        batch = strategy.query(proba=full, X=X, batch_size=batch_size)
    return _scores(cert, batch, X.shape[0]), batch


def rank_by_certainty(
    cert: np.ndarray | None, X: np.ndarray, *, batch_size: int = 50, strategy: QueryStrategy | str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`rank_pool` for model families that give a certainty per item instead of class probabilities
    (multi-label, spans, several controls at once): same score contract; None means cold start."""
    X = _check_X(X)
    if strategy is None or isinstance(strategy, str):
        strategy = make_strategy(strategy or ("coldstart" if cert is None else DEFAULT_STRATEGY), random_state=0)
    if not isinstance(strategy, CertaintyStrategy):
        raise ValueError(f"{strategy!r} needs class probabilities; this pool has only certainties")
    batch = strategy.select(certainty=cert, X=X, batch_size=batch_size)
    return _scores(cert, batch, X.shape[0]), batch


def mix_audit(
    scores: np.ndarray, batch: np.ndarray, *, fraction: float, batch_size: int, rng: np.random.Generator,
    drawn: tuple[np.ndarray, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Mix a uniform random audit slice into the batch (issue 14): returns (scores, batch, audit rows, weight).

    Each batch gets k audit rows drawn uniformly from the whole pool, k = fraction * batch_size rounded at
    random so that its mean is exactly fraction * batch_size; they replace the batch's last picks and are
    spread evenly through it, and the score contract of `rank_pool` still holds (the batch first, in order).
    Every pool row is audited with probability pi = fraction * batch_size / n, so an audited row stands for
    `weight` = 1 / pi rows of this pool (its inverse inclusion probability): what makes the audit estimate
    unbiased however the rest of the batch was chosen.

    `drawn` = (rows, N): the audit rows were already drawn uniformly from a larger pool of N tasks (see
    `draw_audit`) of which these scores cover only a part (the queue head ranks only the least certain
    candidates); they are used as they are, each standing for N / (fraction * batch_size) tasks.
    """
    n = len(scores)
    if fraction <= 0 or n == 0:
        return scores, batch, np.array([], dtype=int), 0.0
    if drawn is not None:
        audit, pool = np.asarray(drawn[0], dtype=int), drawn[1]
        expected = min(fraction * batch_size, pool)
        if len(audit) == 0:
            return scores, batch, audit, pool / expected
        k, n_weight = len(audit), pool
    else:
        expected = min(fraction * batch_size, n)
        k = int(np.floor(expected)) + int(rng.random() < expected - np.floor(expected))
        if k == 0:
            return scores, batch, np.array([], dtype=int), n / expected
        audit, n_weight = rng.choice(n, k, replace=False), n
    rest = [int(i) for i in batch if i not in set(audit.tolist())]
    size = max(len(batch), k)
    rest = rest[: size - k]
    merged: list[int] = []
    slots = set(np.linspace(0, size - 1, k).round().astype(int).tolist()) if k > 1 else {0}
    it_a, it_r = iter(audit.tolist()), iter(rest)
    for pos in range(size):
        nxt = next(it_a, None) if pos in slots else next(it_r, None)
        if nxt is None:
            nxt = next(it_r, None) if pos in slots else next(it_a, None)
        if nxt is not None:
            merged.append(int(nxt))
    merged += list(it_a)
    new_batch = np.asarray(merged, dtype=int)
    scores = scores.copy()
    dropped = [int(i) for i in batch if int(i) not in set(merged)]
    if dropped:  # pushed out of the batch: back among the rest, at the band's floor
        scores[dropped] = np.maximum(scores[dropped], BATCH_BAND)
    scores[new_batch] = BATCH_BAND * np.arange(new_batch.size) / max(new_batch.size, 1)
    return scores, new_batch, audit, n_weight / expected


def draw_audit(pool_size: int, *, fraction: float, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of this batch's audit slice drawn uniformly from the whole pool of `pool_size` tasks: k =
    fraction * batch_size rounded at random (mean exact), as `mix_audit` draws it. The queue head draws
    here, before it narrows the pool to its candidates, so the slice stays a uniform sample of every task."""
    if fraction <= 0 or pool_size == 0:
        return np.array([], dtype=int)
    expected = min(fraction * batch_size, pool_size)
    k = int(np.floor(expected)) + int(rng.random() < expected - np.floor(expected))
    return rng.choice(pool_size, k, replace=False) if k else np.array([], dtype=int)
