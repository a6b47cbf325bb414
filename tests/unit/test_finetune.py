"""SetFit-style fine-tuning of the packaged MiniLM on a small set (backends/finetune.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from backends.encoders import shared_text_encoder
from backends.finetune import FineTuneClassifier, FineTunedEncoder, contrastive_finetune, make_pairs
from suggest.schema import Item

os.environ.setdefault("HF_HUB_OFFLINE", "1")

POS = ["a wonderful, moving film", "great acting and a clever script", "I loved every minute of it",
       "a joyful, superb comedy", "brilliant and touching", "the best movie of the year"]
NEG = ["a dull, boring mess", "awful acting and a stupid plot", "I hated every minute of it",
       "a tedious, weak sequel", "painfully bad and long", "the worst movie of the year"]
TEXTS, LABELS = POS + NEG, ["pos"] * 6 + ["neg"] * 6


def test_pairs_alternate_positive_and_negative() -> None:
    left, right, target = make_pairs(LABELS, 40, np.random.default_rng(0))
    y = np.asarray(LABELS)
    assert len(left) == 40 and target[0::2].tolist() == [1.0] * 20 and target[1::2].tolist() == [0.0] * 20
    assert np.all((y[left] == y[right]) == (target == 1.0)) and np.all(left != right)


def _separation(vectors: np.ndarray) -> float:
    sims = vectors @ vectors.T
    same = np.equal.outer(np.asarray(LABELS), np.asarray(LABELS))
    off = ~np.eye(len(LABELS), dtype=bool)
    return float(sims[same & off].mean() - sims[~same].mean())


@pytest.fixture(scope="module")
def tuned():
    base = shared_text_encoder()
    before = base.encode(TEXTS)
    weights = {k: v.clone() for k, v in base.load()._model.state_dict().items()}
    model, stats = contrastive_finetune(base, TEXTS, LABELS, max_pairs=48, batch_size=12, lr=1e-4, seed=0)
    return base, before, weights, model, stats


def test_tuning_pulls_classes_apart_and_leaves_the_base_alone(tuned) -> None:
    base, before, weights, model, stats = tuned
    assert stats["pairs"] == 48 and stats["steps"] == 4 and stats["device"] in ("cpu", "cuda")
    assert 0 <= stats["loss_last"] and 0 <= stats["loss_first"]  # mean pair loss, first and last tenth of the steps
    after_base = base._model.state_dict()
    assert all(np.array_equal(weights[k].numpy(), after_base[k].numpy()) for k in weights)  # base untouched
    np.testing.assert_allclose(base.encode(TEXTS), before, atol=1e-5)
    encoder = FineTunedEncoder(model, base._tokenizer, base_id=base.base_id, tuning="t1", layers=base.layers)
    vectors = encoder.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _separation(vectors) > _separation(before) + 0.02
    assert encoder.encoder_id != base.encoder_id and "+ft-t1" in encoder.encoder_id


def test_challenger_save_load_round_trip(tuned, tmp_path: Path) -> None:
    items = [Item(t) for t in TEXTS]
    frozen = FineTuneClassifier(["neg", "pos"], finetune_params={"max_pairs": 24, "batch_size": 12, "lr": 1e-4})
    challenger = frozen.finetuned(items, LABELS, seed=1)
    assert challenger.tuned and not frozen.tuned and challenger.mode == "trained"
    assert challenger.encoder.encoder_id.startswith(frozen.encoder.base_id + "+ft-")
    probe = [Item("a superb, moving story"), Item("a boring, awful film")]
    expected = challenger.predict_proba(probe)
    challenger.save(tmp_path)
    assert (tmp_path / "encoder" / "config.json").exists()
    loaded = FineTuneClassifier.load(tmp_path)
    assert loaded.tuned and loaded.encoder.encoder_id == challenger.encoder.encoder_id
    np.testing.assert_allclose(loaded.predict_proba(probe), expected, atol=1e-5)
    assert expected[0].argmax() == 1 and expected[1].argmax() == 0
    # a frozen model of the family saves and loads as the embedding head does
    (tmp_path / "frozen").mkdir()
    frozen.fit(items, LABELS).save(tmp_path / "frozen")
    assert not FineTuneClassifier.load(tmp_path / "frozen").tuned


def test_a_stopped_tuning_returns_nothing() -> None:
    model, stats = contrastive_finetune(shared_text_encoder(), TEXTS, LABELS, max_pairs=24, should_stop=lambda: True)
    assert model is None and stats == {"stopped": True}
    with pytest.raises(ValueError, match="2 classes"):
        contrastive_finetune(shared_text_encoder(), TEXTS[:3], ["pos"] * 3)


class _HashEncoder:
    encoder_id = "hash-sim"
    dim = 8
    loaded = True

    def encode(self, texts, progress=None):
        import hashlib

        out = np.stack([np.random.default_rng(list(hashlib.sha256(t.encode()).digest())).normal(size=8)
                        for t in texts])
        out[:, 0] += [2.0 if t.startswith("pos") else -2.0 for t in texts]
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def test_simulate_hands_each_step_to_the_finetune_hook() -> None:
    from backends.embedding import EmbeddingClassifier
    from suggest.simulate import SimulationConfig, run_simulation
    from suggest.simulate_finetune import FineTuneProbe, parse_models

    assert parse_models("frozen, finetune") == ("frozen", "finetune")
    with pytest.raises(ValueError, match="--model"):
        parse_models("frozen,lora")
    texts = [f"{c} {i}" for i in range(40) for c in ("pos", "neg")]
    labels = [t.split()[0] for t in texts]
    calls = []
    result = run_simulation(texts, labels, SimulationConfig(("margin",), 1, 10, 30, 10),
                            make_model=lambda classes: EmbeddingClassifier(classes, encoder=_HashEncoder()),
                            on_step=lambda **kw: calls.append(kw))
    assert [c["labels"] for c in calls] == [10, 20, 30] == result["labels"]
    assert [len(c["rows"]) for c in calls] == [10, 20, 30] and not set(calls[0]["rows"]) & set(calls[0]["test"])
    probe = FineTuneProbe(texts, labels, at=(100,))
    probe(**calls[-1])  # 30 labels: not a tuning point, nothing runs
    assert probe.summary()["strategies"] == {}


def test_finetune_family_serves_text_choices_only_when_on_and_keeps_the_contract(rt_sample) -> None:
    from backends.checks import check_backend
    from backends.finetune import configure_finetune
    from backends.registry import BUILTINS, Registry
    from tests.unit.test_backend_contract import SAMPLES, SCHEMAS

    registry = Registry(BUILTINS)
    assert registry.family_for(SCHEMAS["text-classification"]).name == "embedding"  # off by default
    configure_finetune(100)
    try:
        family = registry.family_for(SCHEMAS["text-classification"])
        assert family.name == "finetune"
        assert registry.family_for(SCHEMAS["text-multilabel"]).name == "multilabel"
        schema, items, answers = SAMPLES["text-classification"](rt_sample)
        check_backend(family, schema, items, answers)
    finally:
        configure_finetune(0)


def test_a_tuned_version_still_loads_when_tuning_is_turned_off(tmp_path) -> None:
    """SUGGEST_FINETUNE_MIN_LABELS back to 0 makes the frozen family serve text choices again; a version the
    fine-tuned family published must still load (it was refused as "another family's model")."""
    from backends import finetune
    from backends.registry import Context, default_registry
    from suggest.schema import Schema

    schema = Schema("sentiment", "text", "text", ("neg", "pos"))
    finetune.configure_finetune(0)
    model = finetune.FineTuneClassifier(["neg", "pos"], min_labels=10)
    model.save(tmp_path)
    registry = default_registry()
    assert registry.family_for(schema).name == "embedding"
    loaded = registry.load(schema, tmp_path, Context())
    assert isinstance(loaded, finetune.FineTuneClassifier) and loaded.classes_ == ["neg", "pos"]
