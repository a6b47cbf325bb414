"""The text encoder's layer pooling on the real MiniLM: what a sentence vector is, and old versions keep theirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backends.embedding import EmbeddingClassifier
from backends.encoders import (
    DEFAULT_LAYERS,
    LAST_LAYER_ONLY,
    TextEncoder,
    encoder_for_saved,
    parse_encoder_id,
    shared_text_encoder,
)
from suggest.schema import Item

TEXTS = ["A gorgeous, moving film.", "Dull and far too long.", "The plot follows two brothers in 1920s Chicago."]


def test_default_vector_is_the_mean_of_unit_layer_4_and_last_layer_pools() -> None:
    encoder = shared_text_encoder()
    assert encoder.layers == DEFAULT_LAYERS == (4, -1)
    assert encoder.encoder_id == "all-MiniLM-L6-v2@L4+last"
    got = encoder.encode(TEXTS)
    # with layer 0 in the list the pools come from transformers' own hidden_states, not the block hooks
    pools = encoder.encode_layers(TEXTS, (0, 4, 6))[:, 1:].astype(np.float64)  # [6]: the last of 6 blocks
    pools /= np.linalg.norm(pools, axis=-1, keepdims=True)
    want = pools.mean(axis=1)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert got.shape == (3, 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # and it is not the last layer alone: the two poolings really differ
    last = shared_text_encoder(layers=LAST_LAYER_ONLY).encode(TEXTS)
    assert np.abs(got - last).max() > 0.05


def test_last_layer_pooling_keeps_the_old_id_and_shares_the_weights() -> None:
    old = shared_text_encoder(layers=LAST_LAYER_ONLY)
    new = shared_text_encoder()
    assert old.encoder_id == "all-MiniLM-L6-v2"  # the id every store and version before layer pooling recorded
    old.load(), new.load()
    assert old._model is new._model  # one copy of the weights in memory, whatever the pooling
    assert shared_text_encoder(layers=LAST_LAYER_ONLY) is old


@pytest.mark.parametrize("encoder_id, layers", [
    ("all-MiniLM-L6-v2", (-1,)), ("all-MiniLM-L6-v2@L4+last", (4, -1)), ("my-model@L2+L3+last", (2, 3, -1)),
])
def test_encoder_id_round_trip(encoder_id: str, layers: tuple[int, ...]) -> None:
    base, parsed = parse_encoder_id(encoder_id)
    assert parsed == layers and base == encoder_id.partition("@")[0]
    if base == "all-MiniLM-L6-v2":
        assert TextEncoder(layers=layers).encoder_id == encoder_id


def test_empty_layers_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one layer"):
        TextEncoder(layers=())


def test_a_version_trained_on_last_layer_vectors_loads_with_them(tmp_path: Path, rt_sample) -> None:
    """A head fitted before layer pooling must keep predicting from the space it was fitted in."""
    items = [Item(t) for t, _ in rt_sample[:40]]
    labels = [label for _, label in rt_sample[:40]]
    old = EmbeddingClassifier(["fresh", "rotten"], encoder=shared_text_encoder(layers=LAST_LAYER_ONLY))
    old.fit(items, labels).save(tmp_path)
    assert json.loads((tmp_path / "meta.json").read_text())["encoder_id"] == "all-MiniLM-L6-v2"

    loaded = EmbeddingClassifier.load(tmp_path)  # the server passes no encoder: the default would be wrong
    assert loaded.encoder.layers == LAST_LAYER_ONLY
    probe = [Item(t) for t, _ in rt_sample[100:120]]
    np.testing.assert_allclose(loaded.predict_proba(probe), old.predict_proba(probe), atol=1e-9)
    assert encoder_for_saved("all-MiniLM-L6-v2@L4+last").encoder_id == "all-MiniLM-L6-v2@L4+last"
    assert encoder_for_saved(None) is shared_text_encoder()
