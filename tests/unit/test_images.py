"""Image family: the real EfficientNet-Lite0 on images drawn with Pillow (no mocks)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from backends.images import ImageClassifier, ImageError, decode_image, shared_image_encoder
from suggest.schema import BadInput, Item
from suggest.store import Store


def _png(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def _stripes(rng: np.random.Generator) -> bytes:
    """Horizontal stripes in two random dark/light colours."""
    w, h = int(rng.integers(60, 120)), int(rng.integers(60, 120))
    img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(200, 256, 3)))
    draw, step = ImageDraw.Draw(img), int(rng.integers(5, 12))
    dark = tuple(int(c) for c in rng.integers(0, 60, 3))
    for y in range(0, h, 2 * step):
        draw.rectangle([0, y, w, y + step - 1], fill=dark)
    return _png(img)


def _disc(rng: np.random.Generator) -> bytes:
    """One filled red-ish circle on a plain pale background."""
    w, h = int(rng.integers(60, 120)), int(rng.integers(60, 120))
    img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(180, 230, 3)))
    r = int(rng.integers(12, min(w, h) // 2 - 2))
    cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
    ImageDraw.Draw(img).ellipse([cx - r, cy - r, cx + r, cy + r], fill=(int(rng.integers(180, 256)), 20, 20))
    return _png(img)


@pytest.fixture(scope="module")
def encoder():
    return shared_image_encoder().load()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """One embedding cache for the module: each drawing goes through the network once."""
    return Store(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def shapes() -> tuple[list[Item], list[str]]:
    rng = np.random.default_rng(0)
    items, labels = [], []
    for i in range(48):
        kind = "stripes" if i % 2 else "disc"
        items.append(Item(f"img{i}.png", i, _stripes(rng) if kind == "stripes" else _disc(rng)))
        labels.append(kind)
    return items, labels


def test_encoder_gives_deterministic_unit_vectors(encoder, shapes):
    payloads = [it.data for it in shapes[0][:5]]
    a, b = encoder.encode(payloads), encoder.encode(payloads[::-1])
    assert a.shape == (5, 1280) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b[::-1], atol=1e-5)  # batch order does not change a vector
    assert encoder.encoder_id == f"efficientnet-lite0-{encoder.size}px" and encoder.dim == 1280


def test_decode_follows_exif_orientation_and_flattens_alpha():
    rng = np.random.default_rng(1)
    img = Image.open(io.BytesIO(_stripes(rng))).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    tagged = decode_image(_png(img, exif=exif), 64)
    upright = decode_image(_png(img.transpose(Image.Transpose.ROTATE_270)), 64)
    np.testing.assert_array_equal(tagged, upright)
    clear = decode_image(_png(Image.new("RGBA", (40, 30), (0, 0, 0, 0))), 32)
    assert clear.shape == (32, 32, 3) and clear.min() == 255  # transparent -> white, not black


def test_broken_images_are_reported_per_index(encoder, shapes):
    good = shapes[0][0].data
    truncated = good[: len(good) // 2]
    X, errors = encoder.encode_partial([good, b"not an image at all", truncated, b"", None, good])
    assert sorted(errors) == [1, 2, 3, 4]
    assert "not an image" in errors[1] and "broken" in errors[2] and "empty" in errors[3]
    assert "no image bytes" in errors[4]
    np.testing.assert_allclose(X[0], X[5]) and np.testing.assert_allclose(X[0], encoder.encode([good])[0], atol=1e-5)
    assert not X[1:5].any()
    with pytest.raises(ImageError, match="image 1: not an image") as info:
        encoder.encode([good, b"GIF89a-but-not-really"])
    assert list(info.value.errors) == [1] and isinstance(info.value, BadInput)
    with pytest.raises(BadInput, match="too large: 80x60 pixels"):
        decode_image(_png(Image.new("RGB", (80, 60))), max_pixels=1000)


def test_untrained_until_two_classes_then_separates_the_kinds(shapes, store):
    items, labels = shapes
    model = ImageClassifier(["disc", "stripes", "other"], cache=store)
    assert model.mode == "untrained"
    assert model.guess(items[:3]) == [None, None, None]
    np.testing.assert_allclose(model.predict_proba(items[:2]), 1 / 3)
    assert model.embed(items[:2]).shape == (2, 1280)  # cold-start ranking needs vectors before labels
    model.fit(items[:4:2], labels[:4:2])  # two discs: still one class
    assert model.mode == "untrained"

    model.fit(items[:32], labels[:32])
    assert model.mode == "trained"
    guesses = model.guess(items[32:])
    assert [g.value for g in guesses] == labels[32:]
    proba = model.predict_proba(items[32:])
    assert proba.shape == (16, 3) and np.allclose(proba.sum(axis=1), 1) and not proba[:, 2].any()
    assert all(0 <= g.certainty <= 1 and g.probability > 0.5 for g in guesses)


def test_guess_leaves_broken_images_empty_and_embed_names_them(shapes, store):
    items, labels = shapes
    model = ImageClassifier(["disc", "stripes"], cache=store).fit(items[:20], labels[:20])
    broken = Item("/data/upload/3/broken.png", 99, b"\x89PNG\r\n\x1a\nnope")
    out = model.guess([items[30], broken, items[31]])
    assert out[1] is None and out[0].value == labels[30] and out[2].value == labels[31]
    with pytest.raises(ImageError, match=r"task 99 \('/data/upload/3/broken.png'\): .*not an image"):
        model.embed([items[30], broken])
    with pytest.raises(ImageError, match="no image bytes loaded"):
        model.predict_proba([Item("/data/upload/3/never-loaded.png", 5)])
    model.fit([*items[:20], broken], [*labels[:20], "stripes"])  # a labelled file gone bad: train without it
    assert model.mode == "trained" and list(model.skipped_.values())[0].startswith("not an image")
    model.fit([items[0], broken], ["disc", "stripes"])  # one usable class left
    assert model.mode == "untrained"


def test_embeddings_come_from_the_cache_the_second_time(shapes, tmp_path):
    items = shapes[0][:6]
    store = Store(tmp_path)
    first = ImageClassifier(["a", "b"], cache=store).embed(items)
    encoder_id = shared_image_encoder().encoder_id
    cached = store.get_embeddings(encoder_id, [it.content_hash for it in items])
    assert len(cached) == 6
    again = ImageClassifier(["a", "b"], cache=store).embed(items)  # a fresh instance: no memory, only the store
    np.testing.assert_array_equal(first, again)


def test_save_and_load_round_trip_without_pickles(shapes, store, tmp_path):
    items, labels = shapes
    model = ImageClassifier(["disc", "stripes"], C=0.5, cache=store).fit(items[:24], labels[:24])
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.npz", "meta.json"]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["family"] == "images" and meta["mode"] == "trained" and meta["encoder_id"].endswith("px")
    np.load(tmp_path / "head.npz", allow_pickle=False)
    loaded = ImageClassifier.load(tmp_path, cache=store)
    assert loaded.C == 0.5 and loaded.mode == "trained"
    np.testing.assert_allclose(loaded.predict_proba(items[24:]), model.predict_proba(items[24:]))

    untrained = tmp_path / "untrained"
    untrained.mkdir()
    ImageClassifier(["x", "y"]).save(untrained)
    assert ImageClassifier.load(untrained).mode == "untrained"
    meta["encoder_id"] = "efficientnet-lite0-999px"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="trained on efficientnet-lite0-999px"):
        ImageClassifier.load(tmp_path, encoder=shared_image_encoder())
