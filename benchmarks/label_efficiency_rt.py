"""Label efficiency on Rotten Tomatoes (issue 4): strategy, head and feature variants, `suggest simulate` protocol.

Why a separate harness: `suggest simulate` re-embeds through the store and fits the real
`EmbeddingClassifier`; this script replays the exact same protocol (stratified 80/20 split from
`suggest.simulate._split`, 10 random seed labels, batches of 10, 5 seeds) on the cached MiniLM
embeddings (benchmarks/out/rt_minilm.npy) and the engine's label prompts, so a variant costs
seconds, and head/feature ideas can be prototyped without touching backends/embedding.py.
The "base" head reproduces EmbeddingClassifier (class-balanced LR C=1 + prompts with weight 5).

    nice -n 15 .venv/bin/python benchmarks/label_efficiency_rt.py --variants base/random,base/margin
    nice -n 15 .venv/bin/python benchmarks/label_efficiency_rt.py --list

Results merge into benchmarks/results/label_efficiency_rt.json (per variant: mean/std at every
step, labels to 95% of the same head's full-pool accuracy, saving vs random under the same head,
per-seed curves; names ending in #20 are 20-seed reruns). `--compare A,B` prints paired per-seed
differences.

What it found (2026-11-21): margin x density on pool-centred embeddings ("densityc", landed as
suggest.strategies.DenseUncertainty = "dense") is the only change that wins beyond seed noise:
250 labels to 95% vs 440 (margin, diverse) and 670-680 (random), better than margin on 19/20
seeds, with spread=0 ("dense0") and spread=3 (the default) alike. Head/feature ideas (pool
centring, whitening, kNN smoothing, label propagation, C, prior weight, no class balance) and
cold-start seeds did not beat the engine's head.

Then (same day, `--layers 4,6`): sentence vectors that average MiniLM's layer-4 and last-layer
mean pools raise the full pool from 0.767 to 0.778, and with them a weaker penalty (C=3) makes
dense batches better (100 labels: 0.715 / 0.718 on seeds 0-9 / 10-19, against 0.698 / 0.688 at
C=1); both landed (encoders.DEFAULT_LAYERS, EmbeddingClassifier C=3). Names ending in [L4+L6] use
those vectors, '@10' marks seeds 10-19. Random or cold-start rows mixed into each batch
("dense_eps*", "dense_*_until*") and BADGE weighted by density ("badge_dense*") did worse.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # 2 shared cores: one thread each

import numpy as np  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from suggest.simulate import _split  # noqa: E402
from suggest.strategies import ColdStart, make_strategy  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
RESULTS = ROOT / "benchmarks" / "results" / "label_efficiency_rt.json"
CLASSES = ["fresh", "rotten"]  # sorted, as simulate passes them to EmbeddingClassifier
REPORT_AT = (50, 100, 200, 400)
HINTS = {"fresh": "a positive, good movie review", "rotten": "a negative, bad movie review"}


# -- data ---------------------------------------------------------------------------------------


def load_data(layers: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Embeddings (12752, 384), string labels, label-prompt prototypes (2, 384) in CLASSES order.

    Prototypes "names" are what simulate uses (the label names in templates); "hints" come from
    descriptive Choice hints, which simulate does not pass.
    """
    from suggest.datasets import rotten_tomatoes

    _, labels = rotten_tomatoes()
    if layers:
        return load_layer_data(layers, np.asarray(labels))
    X = np.load(OUT / "rt_minilm.npy")
    protos_path = OUT / "rt_prototypes.npy"
    if not protos_path.exists():  # one encoder load, 6 prompts
        from backends.embedding import EmbeddingClassifier

        model = EmbeddingClassifier(CLASSES)
        model._ensure_prototypes()
        np.save(protos_path, model.prototypes_)
    hints = OUT / "rt_prototypes_hints.npy"
    if not hints.exists():  # the prompts a Label Studio config could give as Choice hints
        from backends.embedding import EmbeddingClassifier

        model = EmbeddingClassifier(CLASSES, hints=HINTS)
        model._ensure_prototypes()
        np.save(hints, model.prototypes_)
    return X, np.asarray(labels), {"names": np.load(protos_path), "hints": np.load(hints)}


def load_layer_data(layers: tuple[int, ...], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """The same data with sentence vectors = unit mean of the unit mean-pooled hidden states of `layers`.

    Reads benchmarks/out/rt_layers.npy (12752, 7, 384) and rt_layers_protos_{names,hints}.npy
    (2, 7, 384), written by the engine's own TextEncoder (`write_layer_cache`) on first use.
    """
    if not (OUT / "rt_layers.npy").exists():
        write_layer_cache()
    def pool(A: np.ndarray) -> np.ndarray:
        A = np.asarray(A, dtype=np.float64)[..., list(layers), :]
        A = A / np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), 1e-12)
        return _unit(A.mean(axis=-2)).astype(np.float32)

    protos = {k: pool(np.load(OUT / f"rt_layers_protos_{k}.npy")) for k in ("names", "hints")}
    return pool(np.load(OUT / "rt_layers.npy")), labels, protos


def write_layer_cache() -> None:
    from backends.embedding import _label_prompts
    from backends.encoders import TextEncoder
    from suggest.datasets import rotten_tomatoes

    encoder = TextEncoder(layers=tuple(range(7)))  # every hidden state; encode_layers leaves them unpooled
    texts, _ = rotten_tomatoes()
    np.save(OUT / "rt_layers.npy", encoder.encode_layers(texts))
    for name, hints in (("names", {}), ("hints", HINTS)):
        groups = [_label_prompts(label, hints) for label in CLASSES]
        np.save(OUT / f"rt_layers_protos_{name}.npy", np.stack([encoder.encode_layers(g).mean(0) for g in groups]))


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def knn_mean(Q: np.ndarray, P: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    """Mean of the k nearest rows of P (cosine) for each row of Q, chunked."""
    out = np.empty_like(Q, dtype=np.float64)
    for s in range(0, len(Q), 2048):
        sims = Q[s : s + 2048] @ P.T
        if exclude_self:
            sims[np.arange(sims.shape[0]), np.arange(s, s + sims.shape[0])] = -np.inf
        idx = np.argpartition(-sims, k, axis=1)[:, :k]
        out[s : s + 2048] = P[idx].mean(axis=1)
    return out


# -- features (fitted on the unlabeled pool: transductive, as the server sees its whole pool) ----


@dataclass
class Features:
    """How raw embeddings become head inputs; `fit` sees only the pool's embeddings."""

    kind: str = "raw"  # raw | center | center_norm | whiten | smooth
    k: int = 10
    beta: float = 1.0
    dims: int = 128

    def transform(self, pool: np.ndarray, test: np.ndarray, protos: np.ndarray) -> tuple[np.ndarray, ...]:
        pool, test, protos = (np.asarray(a, dtype=np.float64) for a in (pool, test, protos))
        if self.kind == "raw":
            return pool, test, protos
        if self.kind in ("center", "center_norm"):
            mu = pool.mean(axis=0)
            f = (lambda Z: _unit(Z - mu)) if self.kind == "center_norm" else (lambda Z: Z - mu)
            return f(pool), f(test), f(protos)
        if self.kind == "whiten":  # PCA whitening on the pool, top `dims` components, then unit norm
            mu = pool.mean(axis=0)
            _, s, vt = np.linalg.svd(pool - mu, full_matrices=False)
            W = vt[: self.dims].T / (s[: self.dims] / np.sqrt(len(pool)))
            return tuple(_unit((Z - mu) @ W) for Z in (pool, test, protos))
        if self.kind == "smooth":  # SGC-like: add the mean of the k nearest pool neighbours
            p2 = _unit(pool + self.beta * knn_mean(pool, pool, self.k, True))
            t2 = _unit(test + self.beta * knn_mean(test, pool, self.k, False))
            return p2, t2, protos
        raise ValueError(self.kind)


# -- head ---------------------------------------------------------------------------------------


@dataclass
class Head:
    """EmbeddingClassifier's trained head: balanced LR + label prompts as weighted pseudo-examples."""

    C: float = 1.0
    prior_weight: float = 5.0
    balanced: bool = True
    prior_correct: bool = False  # shift the intercept so mean pool prediction matches the labelled prior

    def fit(self, X: np.ndarray, y: np.ndarray, protos: np.ndarray) -> LogisticRegression:
        Xf, yf, w = X, y, np.ones(len(X))
        if self.prior_weight > 0:
            Xf = np.vstack([X, protos])
            yf = np.concatenate([y, np.asarray(CLASSES)])
            w = np.concatenate([w, np.full(len(protos), self.prior_weight)])
        head = LogisticRegression(C=self.C, class_weight="balanced" if self.balanced else None, max_iter=2000)
        head.fit(Xf, yf, sample_weight=w)
        return head


def proba_of(head: LogisticRegression, X: np.ndarray) -> np.ndarray:
    out = np.zeros((len(X), len(CLASSES)))
    out[:, [CLASSES.index(c) for c in head.classes_]] = head.predict_proba(X)
    return out


# -- strategies ---------------------------------------------------------------------------------

Picker = Callable[..., np.ndarray]  # (proba, Xpool_feats, Xpool_raw, mask, batch, seed) -> indices


def lib(name: str, on: str = "raw", **kw) -> Callable[[int], Picker]:
    """A suggest.strategies strategy, built once per seed run like simulate does."""

    def build(seed: int) -> Picker:
        strategy = make_strategy(name, random_state=seed, **kw)

        def pick(proba, Xf, Xr, mask, batch, seed):
            return strategy.query(proba=proba, X=Xf if on == "feats" else Xr, batch_size=batch, labeled_mask=mask)

        return pick

    return build


def _margin(proba: np.ndarray) -> np.ndarray:
    return np.abs(proba[:, 0] - proba[:, 1])


def density_margin(beta: float = 1.0, k: int = 20, on: str = "raw") -> Callable[[int], Picker]:
    """Margin divided by density^beta (information density, Settles & Craven): uncertain AND typical."""

    def build(seed: int) -> Picker:
        cache: dict[str, np.ndarray] = {}

        def pick(proba, Xf, Xr, mask, batch, seed):
            if "dens" not in cache:
                X = np.asarray(Xf if on == "feats" else Xr, dtype=np.float64)
                if on == "centered":  # the pool's own mean removed: neighbours by what differs, not by topic-free bias
                    X = _unit(X - X.mean(axis=0))
                dens = np.empty(len(X))
                for s in range(0, len(X), 2048):
                    sims = X[s : s + 2048] @ X.T
                    dens[s : s + 2048] = np.partition(-sims, k, axis=1)[:, 1 : k + 1].mean(axis=1) * -1
                cache["dens"] = np.clip(dens, 1e-3, None)
            score = (1 - _margin(proba)) * cache["dens"] ** beta
            score[mask] = -np.inf
            return np.argsort(-score, kind="stable")[:batch]

        return pick

    return build


def _kmeanspp(g: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
    """BADGE's seeding: the largest row first, then rows drawn with probability ~ squared distance."""
    sq = np.einsum("ij,ij->i", g, g)
    picks = [int(np.argmax(sq))]
    d2 = np.maximum(sq - 2 * g @ g[picks[0]] + sq[picks[0]], 0)
    for _ in range(batch - 1):
        w = d2.copy()
        w[picks] = 0
        nxt = int(rng.choice(len(g), p=w / w.sum())) if w.sum() > 0 else int(np.argsort(-sq)[len(picks)])
        picks.append(nxt)
        d2 = np.minimum(d2, np.maximum(sq - 2 * g @ g[nxt] + sq[nxt], 0))
    return np.asarray(picks)


def badge_binary(shortlist: int | None = None) -> Callable[[int], Picker]:
    """BADGE for a binary LR: gradient embedding (p_hat - 1[y_hat]) * x has norm (1 - p_max) |x|.

    k-means++ seeding over g = (1 - p_max) * x on the (optionally shortlisted) pool.
    """

    def build(seed: int) -> Picker:
        rng = np.random.default_rng(seed)

        def pick(proba, Xf, Xr, mask, batch, seed):
            avail = np.flatnonzero(~mask)
            if shortlist:
                avail = avail[np.argsort(_margin(proba[avail]), kind="stable")[: shortlist * batch]]
            g = (1 - proba[avail].max(axis=1))[:, None] * np.asarray(Xf[avail], dtype=np.float64)
            return avail[_kmeanspp(g, batch, rng)]

        return pick

    return build


def badge_weighted(on: str = "raw", density: float = 0.0, k: int = 20) -> Callable[[int], Picker]:
    """BADGE's k-means++ over g = (1 - p_max) * density^beta * x, x raw or pool-centred unit vectors."""

    def build(seed: int) -> Picker:
        rng = np.random.default_rng(seed)
        cache: dict[str, np.ndarray] = {}

        def pick(proba, Xf, Xr, mask, batch, seed_):
            if "Z" not in cache:
                Z = np.asarray(Xr, dtype=np.float64)
                if on == "centered":
                    Z = _unit(Z - Z.mean(axis=0))
                cache["Z"] = Z
                if density:
                    dens = np.empty(len(Z))
                    for s in range(0, len(Z), 2048):
                        sims = Z[s : s + 2048] @ Z.T
                        dens[s : s + 2048] = -np.partition(-sims, k, axis=1)[:, 1 : k + 1].mean(axis=1)
                    cache["w"] = np.clip(dens, 1e-3, None) ** density
                else:
                    cache["w"] = np.ones(len(Z))
            avail = np.flatnonzero(~mask)
            g = ((1 - proba[avail].max(axis=1)) * cache["w"][avail])[:, None] * cache["Z"][avail]
            return avail[_kmeanspp(g, batch, rng)]

        return pick

    return build


def switch(first: Callable[[int], Picker], then: Callable[[int], Picker], at: int) -> Callable[[int], Picker]:
    """`first` while fewer than `at` rows are labelled, `then` after."""

    def build(seed: int) -> Picker:
        a, b = first(seed), then(seed)

        def pick(proba, Xf, Xr, mask, batch, seed_):
            chosen = a if mask.sum() < at else b
            chosen.y_pool, chosen.protos, chosen.head = pick.y_pool, pick.protos, pick.head
            return chosen(proba, Xf, Xr, mask, batch, seed_)

        return pick

    return build


def band_diverse(eps_quantile: float = 0.0, min_mult: int = 2, max_mult: int = 10) -> Callable[[int], Picker]:
    """Adaptive shortlist: k-means over rows within the margin band, band sized to [min_mult, max_mult] x batch."""

    def build(seed: int) -> Picker:
        from suggest.strategies import DiverseUncertainty

        def pick(proba, Xf, Xr, mask, batch, seed):
            m = _margin(proba)
            avail = ~mask
            # the band: rows whose margin is below twice the batch-th smallest margin
            kth = np.sort(m[avail])[batch - 1]
            band = int(((m <= 2 * kth + 1e-9) & avail).sum())
            mult = int(np.clip(np.ceil(band / batch), min_mult, max_mult))
            return DiverseUncertainty(candidates=mult, random_state=seed).query(
                proba=proba, X=Xr, batch_size=batch, labeled_mask=mask)

        return pick

    return build


def explore(inner: Callable[[int], Picker], share: int = 2, until: int | None = None,
            how: str = "random") -> Callable[[int], Picker]:
    """`share` rows of each batch picked at random (or by cold-start typicality) instead of by `inner`,
    while fewer than `until` rows are labelled (always when None): guards against a wrong early boundary."""

    def build(seed: int) -> Picker:
        rng = np.random.default_rng(seed + 1000)
        inner_pick = inner(seed)
        cold = ColdStart(random_state=seed)

        def pick(proba, Xf, Xr, mask, batch, seed_):
            inner_pick.y_pool, inner_pick.protos, inner_pick.head = pick.y_pool, pick.protos, pick.head
            n_share = share if until is None or mask.sum() < until else 0
            if n_share >= batch:
                n_share = batch
            chosen = list(inner_pick(proba, Xf, Xr, mask, batch - n_share, seed_)) if n_share < batch else []
            if n_share:
                m2 = mask.copy()
                m2[chosen] = True
                avail = np.flatnonzero(~m2)
                if how == "random":
                    chosen += list(rng.choice(avail, size=n_share, replace=False))
                else:
                    sub = cold.query(proba=None, X=Xr[avail], batch_size=n_share)
                    chosen += list(avail[sub])
            return np.asarray(chosen)

        return pick

    return build


class PromptLR(ClassifierMixin, BaseEstimator):
    """The variant's head as a scikit-learn estimator (labels 0/1 = CLASSES order), for scikit-activeml."""

    def __init__(self, protos: np.ndarray | None = None, C: float = 1.0, prior_weight: float = 5.0):
        self.protos, self.C, self.prior_weight = protos, C, prior_weight

    def fit(self, X, y, sample_weight=None) -> PromptLR:
        w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if self.protos is not None and self.prior_weight > 0:
            X = np.vstack([X, self.protos])
            y = np.concatenate([np.asarray(y), np.arange(len(self.protos))])
            w = np.concatenate([w, np.full(len(self.protos), self.prior_weight)])
        self.lr_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000).fit(X, y, sample_weight=w)
        self.classes_ = self.lr_.classes_
        return self

    def predict_proba(self, X):
        return self.lr_.predict_proba(X)

    def predict(self, X):
        return self.lr_.predict(X)


def dedupe_margin(rel: float = 0.1, mult: int = 10) -> Callable[[int], Picker]:
    """Margin order, skipping rows closer to an earlier pick than rel x the shortlist's median squared distance."""

    def build(seed: int) -> Picker:
        def pick(proba, Xf, Xr, mask, batch, seed):
            m = np.where(mask, np.inf, _margin(proba))
            cand = np.argsort(m, kind="stable")[: mult * batch]
            Z = np.asarray(Xr[cand], dtype=np.float64)
            sq = np.einsum("ij,ij->i", Z, Z)
            d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * Z @ Z.T, 0)
            thr = rel * np.median(d2[np.triu_indices(len(Z), 1)])
            picks: list[int] = []
            for i in range(len(Z)):
                if not picks or d2[i, picks].min() >= thr:
                    picks.append(i)
                    if len(picks) == batch:
                        break
            if len(picks) < batch:
                picks += [i for i in range(len(Z)) if i not in picks][: batch - len(picks)]
            return cand[np.asarray(picks)]

        return pick

    return build


def skal(cls_name: str, with_clf: bool, **kw) -> Callable[[int], Picker]:
    """A scikit-activeml strategy on the variant's features, its classifier = the variant's head."""

    def build(seed: int) -> Picker:
        def pick(proba, Xf, Xr, mask, batch, seed):
            from skactiveml import pool
            from skactiveml.classifier import SklearnClassifier

            y = np.full(len(Xf), np.nan)
            y[mask] = (pick.y_pool[mask] == CLASSES[1]).astype(float)
            qs = getattr(pool, cls_name)(random_state=seed, **kw)
            if not with_clf:
                return qs.query(Xf, y, batch_size=batch)
            clf = SklearnClassifier(PromptLR(pick.protos, pick.head.C, pick.head.prior_weight),
                                    classes=[0, 1], random_state=seed)
            return qs.query(Xf, y, clf, batch_size=batch)

        return pick

    return build


# -- variants -----------------------------------------------------------------------------------


@dataclass
class Variant:
    head: Head = field(default_factory=Head)
    features: Features = field(default_factory=Features)
    strategy: Callable[[int], Picker] = field(default_factory=lambda: lib("random"))
    start: str = "random"  # random | coldstart | zeroshot (first batch by the strategy on zero-shot proba)
    propagate: float = 0.0  # blend head proba with the kNN mean of pool proba (label-propagation-lite)
    prompts: str = "names"  # names | hints


HEADS = {
    "base": (Head(), Features()),
    "center": (Head(), Features("center")),
    "centernorm": (Head(), Features("center_norm")),
    "whiten128": (Head(), Features("whiten", dims=128)),
    "whiten64": (Head(), Features("whiten", dims=64)),
    "smooth": (Head(), Features("smooth", k=10, beta=1.0)),
    "smooth05": (Head(), Features("smooth", k=10, beta=0.5)),
    "centernorm_C3": (Head(C=3.0), Features("center_norm")),
    "centernorm_C03": (Head(C=0.3), Features("center_norm")),
    "centernorm_p0": (Head(prior_weight=0.0), Features("center_norm")),
    "centernorm_p10": (Head(prior_weight=10.0), Features("center_norm")),
    "centernorm_unbal": (Head(balanced=False), Features("center_norm")),
    "C05": (Head(C=0.5), Features()),
    "C2": (Head(C=2.0), Features()),
    "C3": (Head(C=3.0), Features()),
    "C4": (Head(C=4.0), Features()),
    "p0": (Head(prior_weight=0.0), Features()),
    "p2": (Head(prior_weight=2.0), Features()),
}
STRATS = {
    "random": lib("random"),
    "margin": lib("margin"),
    "diverse": lib("diverse"),
    "diverse2": lib("diverse", candidates=2),
    "diverse3": lib("diverse", candidates=3),
    "diverse5": lib("diverse", candidates=5),
    "diversef": lib("diverse", on="feats"),
    "diverse3f": lib("diverse", on="feats", candidates=3),
    "diverse3pp": lib("diverse", candidates=3, diversity="kmeanspp"),
    "diverse3agg": lib("diverse", candidates=3, diversity="agglomerative"),
    "band": band_diverse(),
    "dedupe": dedupe_margin(),
    "density": density_margin(1.0),
    "density05": density_margin(0.5),
    "badge": badge_binary(),
    "badge10": badge_binary(10),
    "badge_c": badge_weighted("centered"),
    "badge40_dense": switch(badge_binary(), lib("dense"), 40),
    "badge80_dense": switch(badge_binary(), lib("dense"), 80),
    "badge_dense": badge_weighted("raw", density=1.0),
    "badge_dense_c": badge_weighted("centered", density=1.0),
    "density2": density_margin(2.0),
    "density_k50": density_margin(1.0, k=50),
    "densityf": density_margin(1.0, on="feats"),
    "densityc": density_margin(1.0, on="centered"),
    "densityc_k10": density_margin(1.0, k=10, on="centered"),
    "densityc2": density_margin(2.0, on="centered"),
    "dense": lib("dense"),  # suggest.strategies.DenseUncertainty as landed (spread=3): the whole pool scored
    "dense_spread3": lib("dense", spread=3),
    "dense_spread5": lib("dense", spread=5),
    "dense_spread10": lib("dense", spread=10),
    "dense_k50": lib("dense", k=50),
    "dense_b05": lib("dense", beta=0.5),
    "dense0": lib("dense", spread=0),  # best distinct rows in score order, no k-means spread
    "dense10": lib("dense", candidates=10, spread=0),  # on a shortlist of 10 x batch least certain rows
    "dense50": lib("dense", candidates=50, spread=0),
    "dense200": lib("dense", candidates=200, spread=0),
    "dense0_b2": lib("dense", beta=2.0, spread=0),
    "dense0_b05": lib("dense", beta=0.5, spread=0),
    "dense0_k10": lib("dense", k=10, spread=0),
    "dense_eps2": explore(lib("dense")),
    "dense_eps3": explore(lib("dense"), share=3),
    "dense_eps5": explore(lib("dense"), share=5),
    "dense_eps2_until100": explore(lib("dense"), until=100),
    "dense_eps5_until100": explore(lib("dense"), share=5, until=100),
    "dense_rand_until50": explore(lib("dense"), share=10, until=50),
    "dense_cold_until50": explore(lib("dense"), share=10, until=50, how="cold"),
    "skal-Badge": skal("Badge", True),
    "skal-margin": skal("UncertaintySampling", True, method="margin_sampling"),
    "skal-Clue": skal("Clue", True),
    "skal-Falcun": skal("Falcun", True),
    "skal-DropQuery": skal("DropQuery", True),
    "skal-TypiClust": skal("TypiClust", False),
    "skal-ProbCover": skal("ProbCover", False),
}


def variant(name: str) -> Variant:
    """'<head>/<strategy>[/coldstart|/zeroshot][/prop<alpha>][/hints]'."""
    parts = name.split("/")
    head, feats = HEADS[parts[0]]
    v = Variant(head=head, features=feats, strategy=STRATS[parts[1]])
    for extra in parts[2:]:
        if extra in ("coldstart", "zeroshot"):
            v.start = extra
        elif extra == "hints":
            v.prompts = "hints"
        elif extra.startswith("prop"):
            v.propagate = float(extra[4:])
        else:
            raise ValueError(extra)
    return v


# -- simulation ---------------------------------------------------------------------------------


def run_seed(v: Variant, data, seed: int, budget: int, batch: int = 10, initial: int = 10) -> tuple[list[float], float]:
    X, y, prompt_sets = data
    protos = prompt_sets[v.prompts]
    rng = np.random.default_rng(seed)
    train, test = _split(y, 0.2, rng)
    pool = np.sort(train)
    start = np.searchsorted(pool, rng.choice(train, size=initial, replace=False))
    Xp, Xt, P = v.features.transform(X[pool], X[test], protos)
    yp, yt = y[pool], y[test]
    full = float((v.head.fit(Xp, yp, P).predict(Xt) == yt).mean())
    pick = v.strategy(seed)
    pick.y_pool, pick.protos, pick.head = yp, P, v.head
    if v.start == "coldstart":
        start = ColdStart(random_state=seed).query(proba=None, X=X[pool], batch_size=initial)
    elif v.start == "zeroshot":
        logits = np.asarray(X[pool], np.float64) @ protos.T.astype(np.float64) / 0.05
        p0 = np.exp(logits - logits.max(axis=1, keepdims=True))
        start = pick(p0 / p0.sum(axis=1, keepdims=True), Xp, X[pool], np.zeros(len(pool), bool), initial, seed)
    nbr = None
    if v.propagate:
        nbr = {}
    mask = np.zeros(len(pool), dtype=bool)
    mask[start] = True
    curve = []
    steps = list(range(initial, budget + 1, batch))
    for step in steps:
        if len(set(yp[mask])) < 2:  # zero-shot until two classes have labels, as the engine does
            head = None
            lp = Xp @ P.T / 0.05 if v.features.kind == "raw" else np.asarray(X[pool], np.float64) @ protos.T / 0.05
            lt = np.asarray(X[test], np.float64) @ protos.T / 0.05
            pp, pt = (np.exp(z - z.max(axis=1, keepdims=True)) for z in (lp, lt))
            pp, pt = pp / pp.sum(axis=1, keepdims=True), pt / pt.sum(axis=1, keepdims=True)
        else:
            head = v.head.fit(Xp[mask], yp[mask], P)
            pp, pt = proba_of(head, Xp), proba_of(head, Xt)
        if v.propagate and head is not None:
            pp, pt = propagate(pp, pt, Xp, Xt, nbr, v.propagate)
        curve.append(float((np.asarray(CLASSES)[pt.argmax(axis=1)] == yt).mean()))
        if step == steps[-1]:
            break
        mask[pick(pp, Xp, X[pool], mask, batch, seed)] = True
    return curve, full


def propagate(pp, pt, Xp, Xt, nbr: dict, alpha: float, k: int = 10):
    """Blend each row's proba with the mean proba of its k nearest pool rows (one smoothing step)."""
    if "pool" not in nbr:
        def idx(Q, excl):
            rows = []
            for s in range(0, len(Q), 2048):
                sims = Q[s : s + 2048] @ Xp.T
                if excl:
                    sims[np.arange(sims.shape[0]), np.arange(s, s + sims.shape[0])] = -np.inf
                rows.append(np.argpartition(-sims, k, axis=1)[:, :k])
            return np.concatenate(rows)

        nbr["pool"], nbr["test"] = idx(Xp, True), idx(Xt, False)
    return ((1 - alpha) * pp + alpha * pp[nbr["pool"]].mean(axis=1),
            (1 - alpha) * pt + alpha * pp[nbr["test"]].mean(axis=1))


def summarize(curves: np.ndarray, fulls: list[float], steps: list[int]) -> dict:
    target = 0.95 * float(np.mean(fulls))
    mean, std = curves.mean(axis=0), curves.std(axis=0)
    reached = [s for s, m in zip(steps, mean, strict=True) if m >= target]
    per_seed = [next((s for s, a in zip(steps, c, strict=True) if a >= target), None) for c in curves]
    at = {n: steps.index(n) for n in REPORT_AT if n in steps}
    return {
        "full_pool": round(float(np.mean(fulls)), 4),
        "target_95": round(target, 4),
        "at": {str(n): [round(float(mean[i]), 4), round(float(std[i]), 4)] for n, i in at.items()},
        "labels_to_95": reached[0] if reached else None,
        "labels_to_95_per_seed": per_seed,
        "mean_acc_10_400": round(float(mean[: steps.index(400) + 1].mean()), 4) if 400 in steps else None,
        "mean": [round(float(m), 4) for m in mean],
        "std": [round(float(s), 4) for s in std],
        "labels": steps,
    }


def compare(results: dict, a: str, b: str, upto: int = 400) -> str:
    """Paired by seed: mean accuracy over steps 10..upto of b minus a, and at 100 labels."""
    va, vb = results["variants"][a], results["variants"][b]
    n = va["labels"].index(upto) + 1
    ca, cb = np.asarray(va["per_seed_curves"])[:, :n], np.asarray(vb["per_seed_curves"])[:, :n]
    d = (cb - ca).mean(axis=1)
    i100 = va["labels"].index(100)
    d100 = cb[:, i100] - ca[:, i100]
    return (f"{b} - {a}: mean acc 10..{upto} {d.mean():+.4f} (per seed {np.round(d, 4).tolist()}, "
            f"{int((d > 0).sum())}/{len(d)} better); @100 {d100.mean():+.4f} ({int((d100 > 0).sum())}/{len(d)} better)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="base/random,base/margin,base/diverse")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=700)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (a held-out set of seeds "
                    "to confirm a choice made on others; stored names get the suffix @<first>)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--tag", default="", help="suffix for the stored names, e.g. '#20seeds' for a robustness rerun")
    ap.add_argument("--layers", default="", help="e.g. 4,6: sentence vectors from these MiniLM layers "
                    "(names get the suffix [L4+L6]); default: the cached last-layer embeddings")
    ap.add_argument("--compare", help="A,B[;A,B...]: paired per-seed differences of recorded variants")
    args = ap.parse_args(argv)
    if args.compare:
        results = json.loads(RESULTS.read_text())
        for pair in args.compare.split(";"):
            print(compare(results, *pair.split(",")))
        return
    if args.list:
        print("heads:", ", ".join(HEADS), "\nstrategies:", ", ".join(STRATS), "\nextras: coldstart, zeroshot, prop<a>")
        return
    warnings.filterwarnings("ignore")
    layers = tuple(int(k) for k in args.layers.split(",") if k)
    data = load_data(layers)
    if layers:
        args.tag = "[" + "+".join(f"L{k}" for k in layers) + "]" + args.tag
    if args.first_seed:
        args.tag += f"@{args.first_seed}"
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"variants": {}}
    results["protocol"] = ("suggest simulate protocol on Rotten Tomatoes: stratified 80/20 split "
                           "(suggest.simulate._split), 10 random seed labels, batch 10, seeds 0..4; "
                           "cached MiniLM embeddings; head = "
                           "EmbeddingClassifier's (balanced LR C=1 + label prompts weight 5) unless the variant says")
    for name in args.variants.split(","):
        started = time.perf_counter()
        v = variant(name)
        runs = [run_seed(v, data, seed, args.budget) for seed in range(args.first_seed, args.first_seed + args.seeds)]
        curves = np.asarray([c for c, _ in runs])
        steps = list(range(10, args.budget + 1, 10))
        summary = summarize(curves, [f for _, f in runs], steps)
        summary["per_seed_curves"] = [[round(a, 4) for a in c] for c in curves.tolist()]
        summary["seconds"] = round(time.perf_counter() - started, 1)
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else results  # merge: others may write too
        rand = results["variants"].get(f"{name.split('/')[0]}/random{args.tag}")
        if rand and rand["labels_to_95"] and summary["labels_to_95"]:
            summary["saving_vs_random"] = round(1 - summary["labels_to_95"] / rand["labels_to_95"], 3)
        results["variants"][name + args.tag] = summary
        at = "  ".join(f"@{n} {m:.4f}±{s:.4f}" for n, (m, s) in summary["at"].items())
        print(f"{name + args.tag:32s} full {summary['full_pool']:.4f}  {at}  to95 {summary['labels_to_95']} "
              f"{summary['labels_to_95_per_seed']}  auc {summary['mean_acc_10_400']}  "
              f"save {summary.get('saving_vs_random')}  ({summary['seconds']} s)", flush=True)
        RESULTS.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
