"""Fine-tuned text classification: SetFit-style contrastive fine-tuning of the sentence encoder, then the head.

SetFit (Tunstall et al. 2022) fine-tunes a sentence encoder on pairs of labelled texts (same label:
cosine 1, different labels: cosine 0), then fits a logistic-regression head on the tuned vectors.
This is that recipe in our own code on transformers + torch (no `setfit` package: it pulls in
`datasets` and its own trainer stack; see benchmarks/results/issue16_notes.md), with two choices of
ours: the pooled vector trained is exactly the one the engine serves (the mean of the unit mean-pools
of layer 4 and the last layer, backends/encoders.DEFAULT_LAYERS), and the head is the engine's own
(class-balanced logistic regression with the label prompts as weighted pseudo-examples).

Pieces:
  `contrastive_finetune`   a tuned copy of an encoder's weights (the base is never touched), on the GPU
                           when torch sees one
  `FineTunedEncoder`       a TextEncoder over such weights; its `encoder_id` names the tuning, so cached
                           vectors of the base and of every tuning stay apart in the embedding store
  `FineTuneClassifier`     the "finetune" family: EmbeddingClassifier whose encoder may be a tuned one;
                           `finetuned(...)` returns the challenger, `save`/`load` keep its weights
  `champion_challenger`    out-of-fold accuracy of the serving model against a challenger tuned inside
                           each fold (tuning on all labels and scoring on the same labels would flatter
                           it); publish only when the challenger is strictly better
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backends.embedding import EmbeddingClassifier, fit_logistic
from backends.encoders import DEFAULT_LAYERS, EmbeddingCache, TextEncoder, apply_thread_budget, shared_text_encoder
from backends.schema import Item

log = logging.getLogger(__name__)

FAMILY = "finetune"

_min_labels = 0  # SUGGEST_FINETUNE_MIN_LABELS: 0 keeps the family off (text classification stays "embedding")


def configure_finetune(min_labels: int) -> None:
    """Turn the family on (labels from which a tuning starts) or off (0) for this process."""
    global _min_labels
    _min_labels = int(min_labels)


def finetune_min_labels() -> int:
    return _min_labels


def supports(schema) -> bool:
    """Single-choice text classification, while fine-tuning is on."""
    return _min_labels > 0 and schema.task_kind == "classification" and schema.object_type == "text"


def _device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def make_pairs(labels: list[str], n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SetFit's pairs: for each anchor in turn, one positive (same label) then one negative (another label).

    Returns (left, right, target) index arrays; a class with one example gives no positive pair of it.
    """
    y = np.asarray(labels)
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    left, right, target = [], [], []
    order = rng.permutation(len(y))
    i = 0
    while len(left) < n_pairs and i < 4 * n_pairs + len(y):
        a = int(order[i % len(y)])
        same, other = by_class[y[a]], np.flatnonzero(y != y[a])
        positive = (len(left) % 2 == 0)
        i += 1
        if positive and len(same) > 1:
            b = int(rng.choice(same[same != a]))
        elif not positive and len(other):
            b = int(rng.choice(other))
        else:
            continue
        left.append(a)
        right.append(b)
        target.append(1.0 if positive else 0.0)
    return np.asarray(left), np.asarray(right), np.asarray(target, dtype=np.float32)


def _pooled(model, batch, layers: tuple[int, ...]):
    """The engine's sentence vector, differentiable: mean of unit mean-pooled `layers` (-1: last), unit length."""
    import torch

    out = model(**batch, output_hidden_states=True)
    hidden = out.hidden_states
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden[-1].dtype)
    count = mask.sum(1).clamp(min=1e-9)
    pools = [torch.nn.functional.normalize((hidden[k] * mask).sum(1) / count, dim=-1) for k in layers]
    return torch.nn.functional.normalize(torch.stack(pools, 0).mean(0), dim=-1)


def contrastive_finetune(
    base: TextEncoder,
    texts: list[str],
    labels: list[str],
    *,
    pairs_per_text: int = 20,
    max_pairs: int = 2000,
    epochs: int = 1,
    batch_size: int = 16,
    lr: float = 2e-5,
    max_length: int = 128,
    seed: int = 0,
    train_embeddings: bool = False,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
):
    """A tuned deep copy of `base`'s transformer (on CPU, in eval mode) and stats; `base` is left as it was.

    Cosine-similarity loss (MSE between the pair's cosine and 1 or 0) on min(pairs_per_text * n,
    max_pairs) pairs, AdamW, `epochs` passes. `should_stop` is polled between steps: a tuning that
    is no longer wanted (the labels changed, the server stops) ends early and returns None.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if len(set(labels)) < 2:
        raise ValueError("fine-tuning needs at least 2 classes")
    import torch

    base.load()
    dev = _device(device)
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    with base._run_lock:  # a consistent copy, never mid-forward
        # rebuilt from config and weights, not deep-copied: another part of the process may have hung a
        # hook or lock on the shared module (deepcopy then fails: "cannot pickle '_thread.lock' object")
        model = type(base._model)(base._model.config)
        model.load_state_dict(base._model.state_dict())
    tokenizer = base._tokenizer
    model.to(dev).train()
    for p in model.parameters():
        p.requires_grad_(True)
    if not train_embeddings and hasattr(model, "embeddings"):  # the word-piece table: 11M of MiniLM's 22M
        model.embeddings.requires_grad_(False)                 # weights, costly to update, little to gain
    apply_thread_budget(torch)
    left, right, target = make_pairs(labels, min(pairs_per_text * len(texts), max_pairs), rng)
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = epochs * int(np.ceil(len(left) / batch_size))
    done = 0
    losses: list[float] = []  # per step: whether the tuning fits its pairs at all (stats' loss_first/loss_last)
    for _ in range(epochs):
        order = rng.permutation(len(left))
        for start in range(0, len(order), batch_size):
            if should_stop is not None and should_stop():
                return None, {"stopped": True}
            idx = order[start: start + batch_size]
            ids = [encoded[i] for i in left[idx]] + [encoded[i] for i in right[idx]]
            batch = {k: v.to(dev) for k, v in tokenizer.pad({"input_ids": ids}, return_tensors="pt").items()}
            vectors = _pooled(model, batch, base.layers)
            u, v = vectors[: len(idx)], vectors[len(idx):]
            loss = torch.nn.functional.mse_loss((u * v).sum(-1), torch.as_tensor(target[idx], device=dev))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            done += 1
            if progress:
                progress(done, steps)
    model.eval().to("cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    stats = {"pairs": int(len(left)), "steps": done, "device": dev, "seconds": round(time.perf_counter() - started, 2)}
    if losses:  # mean pair loss over the first and the last tenth of the steps
        tenth = max(1, len(losses) // 10)
        stats.update(loss_first=round(float(np.mean(losses[:tenth])), 4),
                     loss_last=round(float(np.mean(losses[-tenth:])), 4))
    return model, stats


def tuning_id(base_id: str, texts: list[str], labels: list[str], seed: int) -> str:
    """A short, stable id of one tuning (base, labelled texts, seed): the encoder id's suffix."""
    h = hashlib.sha256(f"{base_id}\0{seed}".encode())
    for t, y in sorted(zip(texts, labels, strict=True)):
        h.update(f"\0{t}\0{y}".encode())
    return h.hexdigest()[:12]


class FineTunedEncoder(TextEncoder):
    """A TextEncoder over tuned weights that live in this object (and in a version folder once saved).

    `encoder_id` is "<base id>+ft-<tuning id>@<layers>": vectors cached under it never mix with the
    base's or another tuning's. The weights are not put in the process-wide weight cache: a rejected
    challenger is garbage once dropped.
    """

    def __init__(self, model, tokenizer, *, base_id: str, tuning: str, layers: tuple[int, ...] = DEFAULT_LAYERS,
                 folder: Path | None = None):
        super().__init__(None, layers=layers)
        self._base_id = base_id
        self.tuning = tuning
        self.folder = folder
        self._model, self._tokenizer = model, tokenizer
        self._run_lock = threading.Lock()

    @property
    def base_id(self) -> str:
        return f"{self._base_id}+ft-{self.tuning}"

    def load(self) -> FineTunedEncoder:
        with self._load_lock:
            if self._model is None:
                if self.folder is None:
                    raise RuntimeError(f"encoder {self.encoder_id} has neither weights nor a folder")
                from transformers import AutoModel, AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
                self._model = AutoModel.from_pretrained(str(self.folder), local_files_only=True).eval()
        return self

    def save(self, folder: Path) -> None:
        """Write the weights into `folder`, hard-linking them from an earlier version's copy of the same tuning
        when one is beside it: every head retrain publishes a version, and ~90 MB each would add up."""
        folder.mkdir(parents=True, exist_ok=True)
        earlier = self._earlier_copy(folder)
        if earlier is not None:
            try:
                for file in earlier.iterdir():
                    os.link(file, folder / file.name)
                return
            except OSError:
                for file in folder.iterdir():
                    file.unlink()
        self.load()
        self._model.save_pretrained(str(folder))
        self._tokenizer.save_pretrained(str(folder))
        (folder / "tuning.txt").write_text(self.encoder_id)

    def _earlier_copy(self, folder: Path) -> Path | None:
        """A saved copy of this tuning in a sibling version (one control: versions/*/encoder; several:
        versions/*/<control>/encoder)."""
        for pattern, root in (("*/encoder", folder.parent.parent), ("*/*/encoder", folder.parent.parent.parent)):
            for candidate in sorted(root.glob(pattern), reverse=True)[:50]:
                marker = candidate / "tuning.txt"
                if candidate != folder and marker.exists() and marker.read_text() == self.encoder_id:
                    return candidate
        return None


class FineTuneClassifier(EmbeddingClassifier):
    """The "finetune" family: the engine's head on a SetFit-style tuned encoder once one has been published.

    Until then it is exactly EmbeddingClassifier (frozen base encoder). `fit` refits only the head on
    the current encoder's vectors (the fast retrain after every burst); `finetuned(items, labels)`
    makes the challenger, a new classifier whose encoder is tuned (from the base, never from a
    previous tuning) on those labels. `min_labels` is the labelled count from which the trainer starts
    a background tuning (SUGGEST_FINETUNE_MIN_LABELS).
    """

    def __init__(self, labels: list[str], *, min_labels: int = 100, finetune_params: dict | None = None,
                 base_encoder: TextEncoder | None = None, **kwargs):
        super().__init__(labels, **kwargs)
        self.min_labels = min_labels
        self.finetune_params = dict(finetune_params or {})
        self.base_encoder = base_encoder or (self.encoder if not isinstance(self.encoder, FineTunedEncoder)
                                             else shared_text_encoder())

    @property
    def tuned(self) -> bool:
        return isinstance(self.encoder, FineTunedEncoder)

    def warm_start_from(self, old: object) -> None:
        """The retrain after a burst keeps the serving version's tuned encoder: only the head is refitted."""
        if isinstance(old, FineTuneClassifier) and old.tuned and old.labels == self.labels:
            self.encoder = old.encoder
        super().warm_start_from(old)

    def fit_embedded(self, X: np.ndarray, labels: list[str]) -> FineTuneClassifier:
        """The head from already-computed vectors of this model's encoder (out-of-fold scoring, simulations)."""
        self.classes_ = list(self.labels)
        if len(set(labels)) < 2:
            self.head_ = None
            return self
        X = np.asarray(X, dtype=np.float64)
        self._ensure_prototypes()
        if self.prior_weight > 0:
            X = np.vstack([X, self.prototypes_.astype(np.float64)])
            labels = [*labels, *self.labels]
        weights = np.concatenate([np.ones(len(X) - (len(self.labels) if self.prior_weight > 0 else 0)),
                                  np.full(len(self.labels) if self.prior_weight > 0 else 0, self.prior_weight)])
        self.head_ = fit_logistic(X, np.asarray(labels), weights, C=self.C, max_iter=2000,
                                  init=getattr(self, "warm_head_", None))
        return self

    def finetuned(self, items: list[Item], labels: list[str], *, seed: int = 0, fit_head: bool = True,
                  should_stop: Callable[[], bool] | None = None) -> FineTuneClassifier | None:
        """The challenger: a copy with an encoder tuned on (items, labels) and, with `fit_head`, its head fitted."""
        texts = [it.text for it in items]
        model, stats = contrastive_finetune(self.base_encoder, texts, labels, seed=seed, should_stop=should_stop,
                                            **self.finetune_params)
        if model is None:
            return None
        encoder = FineTunedEncoder(model, self.base_encoder._tokenizer, base_id=self.base_encoder.base_id,
                                   tuning=tuning_id(self.base_encoder.base_id, texts, labels, seed),
                                   layers=self.base_encoder.layers)
        challenger = FineTuneClassifier(
            self.labels, hints=self.hints, C=self.C, prior_weight=self.prior_weight,
            zero_shot_temperature=self.zero_shot_temperature, encoder=encoder, cache=self.cache,
            min_labels=self.min_labels, finetune_params=self.finetune_params, base_encoder=self.base_encoder,
        )
        challenger.finetune_stats_ = stats
        log.info("fine-tuned %s on %d labels: %s", encoder.encoder_id, len(texts), stats)
        return challenger.fit(items, labels) if fit_head else challenger

    # persistence: the head as EmbeddingClassifier saves it, the tuned weights beside it --------------------

    def save(self, directory: Path) -> None:
        super().save(directory)
        meta_path = Path(directory) / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta.update(family=FAMILY, min_labels=self.min_labels, finetune_params=self.finetune_params)
        if self.tuned:
            meta.update(base_encoder_id=self.base_encoder.encoder_id, tuning=self.encoder.tuning,
                        base_id=self.encoder._base_id)
            self.encoder.save(Path(directory) / "encoder")
        meta_path.write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path, *, encoder: TextEncoder | None = None,
             cache: EmbeddingCache | None = None) -> FineTuneClassifier:
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        base = encoder or shared_text_encoder()
        tuned = None
        if meta.get("tuning"):
            tuned = FineTunedEncoder(None, None, base_id=meta["base_id"], tuning=meta["tuning"],
                                     layers=base.layers, folder=directory / "encoder")
        plain = EmbeddingClassifier.load(directory, encoder=base if tuned is None else None, cache=cache) \
            if tuned is None else None
        model = cls(meta["labels"], hints=meta.get("hints"), C=meta["C"], prior_weight=meta.get("prior_weight", 0.0),
                    zero_shot_temperature=meta["zero_shot_temperature"], cache=cache,
                    encoder=tuned or plain.encoder, min_labels=meta.get("min_labels", 100),
                    finetune_params=meta.get("finetune_params"), base_encoder=base)
        model.classes_ = list(model.labels)
        model.head_ = None
        if meta["mode"] == "trained":
            from backends.embedding import LinearHead

            with np.load(directory / "head.npz", allow_pickle=False) as arrays:
                coef, intercept = arrays["coef"].astype(np.float64), arrays["intercept"].astype(np.float64)
            model.head_ = LinearHead(np.asarray(meta["head_classes"]), coef, intercept)
        return model


def _folds(labels: list[str], k: int, seed: int) -> list[np.ndarray]:
    """Stratified fold ids' members: every class spread over the folds."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % k
    return [np.flatnonzero(fold == f) for f in range(k)]


def out_of_fold_accuracy(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], labels: list[str],
                         folds: int = 3, seed: int = 0) -> float:
    """Accuracy of predictions made for each fold by a model fitted on the other folds.

    `fit_predict(train_idx, test_idx)` returns predicted labels for test_idx.
    """
    y = np.asarray(labels)
    hits = 0
    for test in _folds(labels, folds, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        if len(test) == 0 or len(set(y[train])) < 2:
            continue
        hits += int((np.asarray(fit_predict(train, test)) == y[test]).sum())
    return hits / len(y)


def champion_challenger(
    champion: EmbeddingClassifier,
    challenger_factory: Callable[[list[Item], list[str]], EmbeddingClassifier | None],
    items: list[Item],
    labels: list[str],
    *,
    folds: int = 3,
    seed: int = 0,
) -> dict:
    """Out-of-fold accuracy of the serving model's head and of a challenger tuned inside each fold.

    The champion's head is refitted per fold on its own encoder's vectors (cheap); the challenger is
    `challenger_factory(train items, train labels)` per fold (a tuning each), scored on the fold it
    never saw. `publish` is True only when the challenger's accuracy is strictly higher: a tie keeps
    the serving version. A champion that is itself tuned scores on vectors its encoder was tuned on,
    which flatters it: the rule can reject a better challenger, never publish a worse one on that
    account.
    """
    y = np.asarray(labels)
    X = champion.embed(items)

    def champion_fold(train, test):
        head = FineTuneClassifier(champion.labels, hints=champion.hints, C=champion.C,
                                  prior_weight=champion.prior_weight, encoder=champion.encoder, cache=None)
        head.prototypes_ = getattr(champion, "prototypes_", None)
        head.fit_embedded(X[train], list(y[train]))
        return np.asarray(head.labels)[head.predict_proba_embedded(X[test]).argmax(1)]

    def challenger_fold(train, test):
        model = challenger_factory([items[i] for i in train], list(y[train]))
        if model is None:
            return np.full(len(test), None)
        return np.asarray(model.labels)[model.predict_proba([items[i] for i in test]).argmax(1)]

    started = time.perf_counter()
    champ = out_of_fold_accuracy(champion_fold, labels, folds, seed)
    chall = out_of_fold_accuracy(challenger_fold, labels, folds, seed)
    return {"champion": round(champ, 4), "challenger": round(chall, 4), "publish": chall > champ,
            "folds": folds, "labels": len(labels), "seconds": round(time.perf_counter() - started, 1)}
