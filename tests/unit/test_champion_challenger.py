"""Champion and challenger (backends/finetune.champion_challenger): a worse challenger is never published."""

from __future__ import annotations

import hashlib

import numpy as np

from backends.embedding import EmbeddingClassifier
from backends.finetune import FineTuneClassifier, _folds, champion_challenger, out_of_fold_accuracy
from suggest.schema import Item


class _NoisyEncoder:
    """Texts 'pos-i' / 'neg-i' map near +e0 / -e0 with noise: a head on them is good but not perfect."""

    encoder_id = "noisy-test"
    base_id = "noisy-test"
    dim = 8
    loaded = True
    layers = (-1,)

    def encode(self, texts, progress=None):
        out = []
        for t in texts:
            rng = np.random.default_rng(list(hashlib.sha256(t.encode()).digest()))
            v = rng.normal(scale=1.0, size=self.dim)
            v[0] += 1.0 if t.startswith("pos") else -1.0 if t.startswith("neg") else 0.0
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


class _Fixed:
    """A challenger that answers from a rule: `truth` (always right) or a constant label."""

    def __init__(self, rule):
        self.labels, self.rule = ["neg", "pos"], rule

    def predict_proba(self, items):
        out = np.zeros((len(items), 2))
        for i, it in enumerate(items):
            out[i, self.labels.index(self.rule(it.text))] = 1.0
        return out


ITEMS = [Item(f"{c}-{i}") for i in range(30) for c in ("pos", "neg")]
LABELS = [it.text.split("-")[0] for it in ITEMS]


def _champion():
    return EmbeddingClassifier(["neg", "pos"], encoder=_NoisyEncoder(), prior_weight=0.0).fit(ITEMS, LABELS)


def test_worse_and_equal_challengers_are_not_published() -> None:
    calls = []

    def constant(items, labels):
        calls.append(len(items))
        return _Fixed(lambda text: "pos")

    verdict = champion_challenger(_champion(), constant, ITEMS, LABELS, folds=3, seed=0)
    assert calls == [40, 40, 40]  # tuned inside each fold, on the other folds only
    assert verdict["challenger"] == 0.5 and verdict["champion"] > 0.5 and verdict["publish"] is False
    for seed in range(5):  # on every split, never published
        assert not champion_challenger(_champion(), constant, ITEMS, LABELS, seed=seed)["publish"]


def test_better_challenger_is_published_and_a_tie_keeps_the_champion() -> None:
    oracle = champion_challenger(_champion(), lambda i, y: _Fixed(lambda t: t.split("-")[0]), ITEMS, LABELS)
    assert oracle["challenger"] == 1.0 and oracle["champion"] < 1.0 and oracle["publish"] is True

    def same_as_champion(items, labels):  # the champion's own recipe: the same out-of-fold answers
        return EmbeddingClassifier(["neg", "pos"], encoder=_NoisyEncoder(), prior_weight=0.0).fit(items, labels)

    tie = champion_challenger(_champion(), same_as_champion, ITEMS, LABELS)
    assert tie["challenger"] == tie["champion"] == oracle["champion"] and tie["publish"] is False

    stopped = champion_challenger(_champion(), lambda items, labels: None, ITEMS, LABELS)  # a tuning cut short
    assert stopped["challenger"] == 0.0 and not stopped["publish"]


def test_out_of_fold_folds_are_stratified_and_disjoint() -> None:
    folds = _folds(LABELS, 3, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(LABELS)))
    for f in folds:
        assert sorted(set(np.asarray(LABELS)[f])) == ["neg", "pos"]
    y = np.asarray(LABELS)
    assert out_of_fold_accuracy(lambda train, test: y[test], LABELS) == 1.0


# -- the background worker (suggest/finetuner.py): it publishes only a challenger that won ------------------

class _Model(FineTuneClassifier):
    """The family with its tuning replaced by a rule, so the worker's decisions can be checked in milliseconds."""

    challenger_rule = None

    def finetuned(self, items, labels, *, seed=0, fit_head=True, should_stop=None):
        model = _Fixed(self.challenger_rule)
        model.embedded, model.encoder = [], _NoisyEncoder()
        model.embed = lambda items: model.embedded.extend(items)
        return model


class _Project:
    def __init__(self, rule, n=60):
        from types import SimpleNamespace

        model = _Model(["neg", "pos"], encoder=_NoisyEncoder(), prior_weight=0.0).fit(ITEMS[:n], LABELS[:n])
        model.challenger_rule = rule
        self.project_id = "p1"
        self.schemas = (SimpleNamespace(from_name="sentiment", value_key="text"),)
        self.published = SimpleNamespace(models={"sentiment": model}, version="v1")
        self._labeled = {i: SimpleNamespace(text=ITEMS[i].text, label=LABELS[i]) for i in range(n)}
        self.store = SimpleNamespace(unlabeled_tasks=lambda pid: [(900, {"text": "pos-x"}), (901, {"text": "neg-y"})])
        self.published_models = []

    def labeled(self, control):
        return self._labeled

    def publish_model(self, control, model, *, info=None):
        from types import SimpleNamespace

        self.published_models.append((control, model, info))
        return SimpleNamespace(version="v2")


def test_worker_never_publishes_a_worse_challenger_and_publishes_a_better_one() -> None:
    from suggest.finetuner import FineTuner

    tuner = FineTuner(min_labels=50)
    try:
        worse = _Project(lambda text: "pos")
        verdicts = tuner.tune(worse)
        assert len(verdicts) == 1 and verdicts[0]["publish"] is False and worse.published_models == []
        assert tuner.tune(worse) == []  # not due again until the labels grow by half

        better = _Project(lambda text: text.split("-")[0])
        better.project_id = "p2"
        verdict = tuner.tune(better)[0]
        assert verdict["publish"] is True and verdict["published"] == "v2" and verdict["pool_embedded"] == 2
        control, model, info = better.published_models[0]
        assert control == "sentiment" and info["finetune"]["challenger"] == 1.0
        assert [it.text for it in model.embedded] == ["pos-x", "neg-y"]  # pool embedded before the publish

        few = _Project(lambda text: text.split("-")[0], n=40)
        few.project_id = "p3"
        assert tuner.tune(few) == []  # below min_labels: nothing runs
    finally:
        tuner.stop()
