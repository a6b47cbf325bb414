"""Image family: the real EfficientNet-Lite0 on images drawn with Pillow (no mocks)."""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

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


# hostile and unusual files ---------------------------------------------------------------------


def _png_header(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose header claims width x height, with a few bytes of pixels: ~70 bytes of file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
            + chunk(b"IEND", b""))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("width, height, shown", [
    (20000, 20000, "400,000,000 pixels"),  # past Pillow's own limit: it refuses while opening
    (10000, 10000, "10000x10000 pixels"),  # in Pillow's warning band
    (9000, 9000, "9000x9000 pixels"),  # under Pillow's limits, over ours
])
def test_a_decompression_bomb_is_bad_input_and_costs_only_its_own_image(encoder, shapes, width, height, shown):
    bomb = _png_header(width, height)
    assert len(bomb) < 120
    with pytest.raises(BadInput, match=f"too large: {shown}"):
        decode_image(bomb)
    good = shapes[0][0].data
    X, errors = encoder.encode_partial([good, bomb, good])
    assert list(errors) == [1] and "too large" in errors[1] and X[0].any() and X[2].any()


def test_a_big_16_bit_image_is_scaled_before_it_is_stretched(tmp_path):
    """8000x8000 16-bit greyscale (a ~140 KB file): 1.16 GiB and ~4 s before, ~130 MiB and <1 s now."""
    a = np.zeros((8000, 8000), dtype=np.uint16)
    a[:, :4000] = 40000
    a[2000:, :] += 1000
    path = tmp_path / "sixteen.png"
    Image.fromarray(a).save(path, format="PNG")
    del a
    assert path.stat().st_size < 400_000
    probe = (
        "import io, resource, sys\n"
        "from PIL import Image\n"
        "from backends.images import decode_image\n"
        "buf = io.BytesIO(); Image.new('RGB', (300, 200)).save(buf, 'PNG'); decode_image(buf.getvalue())\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = decode_image(data)\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(grown // 1024, out.shape, int(out[0, 0, 0]), int(out[0, -1, 0]), int(out[-1, -1, 0]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    grown_mib, *rest = done.stdout.split(maxsplit=1)
    assert int(grown_mib) < 400, done.stdout  # the 16-bit raster is 122 MiB; 1.16 GiB before
    shape, left, right, bottom_right = rest[0].rsplit(maxsplit=3)
    assert shape == "(160, 160, 3)"
    # stretched to 8 bits over the image's own range (0 .. 41000): top left 40000, top right 0, bottom right 1000
    assert int(left) == 248 and int(right) == 0 and int(bottom_right) == 6


def test_memory_per_pixel_depends_on_the_mode():
    rgb, rgba = _png(Image.new("RGB", (100, 100), (9, 9, 9))), _png(Image.new("RGBA", (100, 100)))
    assert decode_image(rgb, 32, max_decode_bytes=50_000).shape == (32, 32, 3)  # 4 bytes a pixel
    with pytest.raises(BadInput, match=r"too large: 100x100 RGBA pixels need 0 MiB to decode"):
        decode_image(rgba, 32, max_decode_bytes=50_000)  # 8: decoded + its white canvas
    wide = Image.fromarray(np.arange(10_000, dtype=np.float32).reshape(100, 100))  # "F": 4 bytes a pixel
    buf = io.BytesIO()
    wide.save(buf, format="TIFF")
    assert decode_image(buf.getvalue(), 32, max_decode_bytes=40_000).shape == (32, 32, 3)
    with pytest.raises(BadInput, match="100x100 F pixels"):
        decode_image(buf.getvalue(), 32, max_decode_bytes=39_999)


def test_a_jpeg_counts_at_the_scale_it_is_decoded_at():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (2000, 2000, 3), dtype=np.uint8))
    jpeg, png = io.BytesIO(), io.BytesIO()
    photo.save(jpeg, format="JPEG", quality=80)
    photo.save(png, format="PNG", compress_level=1)
    assert decode_image(jpeg.getvalue(), 160, max_pixels=1_000_000).shape == (160, 160, 3)  # decoded at 1/8: 250x250
    with pytest.raises(BadInput, match=r"too large: 2000x2000 pixels \(at most 1,000,000\)"):
        decode_image(png.getvalue(), 160, max_pixels=1_000_000)


def test_every_mode_decodes_to_rgb_and_other_formats_are_refused():
    def save(img: Image.Image, fmt: str, **kwargs) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kwargs)
        return buf.getvalue()

    ramp = np.arange(90 * 70).reshape(70, 90)
    files = {
        "1": save(Image.new("1", (90, 70), 1), "PNG"),
        "P": save(Image.new("RGB", (90, 70), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "P+transparency": save(Image.new("P", (90, 70), 0), "PNG", transparency=0),
        "LA": save(Image.new("LA", (90, 70), (100, 0)), "PNG"),
        "CMYK": save(Image.new("CMYK", (90, 70), (0, 255, 0, 0)), "TIFF"),
        "I;16": save(Image.fromarray(ramp.astype(np.uint16)), "PNG"),
        "I;16B": save(Image.fromarray(ramp.astype(">u2")), "TIFF"),
        "I": save(Image.fromarray(ramp.astype(np.int32)), "TIFF"),
        "F": save(Image.fromarray(ramp.astype(np.float32)), "TIFF"),
        "F with NaN": save(Image.fromarray(np.where(ramp % 7, ramp, np.nan).astype(np.float32)), "TIFF"),
        "WEBP": save(Image.new("RGB", (90, 70), (10, 200, 30)), "WEBP", lossless=True),
        "BMP": save(Image.new("RGB", (90, 70), (10, 200, 30)), "BMP"),
    }
    out = {name: decode_image(data, 32) for name, data in files.items()}
    assert all(a.shape == (32, 32, 3) and a.dtype == np.uint8 for a in out.values())
    assert out["1"].min() == 255 and out["P+transparency"].min() == 255 and out["LA"].min() == 255
    assert tuple(out["P"][0, 0]) == (10, 200, 30) == tuple(out["BMP"][5, 5]) == tuple(out["WEBP"][9, 9])
    for name in ("I;16", "I;16B", "I", "F"):  # a left-to-right, top-to-bottom ramp, stretched
        a = out[name][..., 0].astype(int)
        assert a[0, 0] < 10 and a[-1, -1] > 245 and (np.diff(a[:, 16]) >= 0).all(), name
    with pytest.raises(BadInput, match="not an image"):
        decode_image(save(Image.new("RGB", (90, 70)), "PPM"))  # Pillow reads it; Label Studio does not show it


def test_decodes_at_once_are_bounded_process_wide(monkeypatch):
    import backends.images as images

    inner, lock = images._to_square_rgb, threading.Lock()
    running, most = [0], [0]

    def slow(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        try:
            return inner(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(images, "_to_square_rgb", slow)
    payload = _png(Image.new("RGB", (50, 40), (1, 2, 3)))
    threads = [threading.Thread(target=decode_image, args=(payload, 32)) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert images.DECODE_CONCURRENCY >= 2 and most[0] == images.DECODE_CONCURRENCY


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_bomb_in_a_predict_batch_empties_only_its_own_task(client):
    """Before: Pillow's bomb error escaped the loader (untrained) or the decoder (trained): the
    whole /predict answered 500, and so did every re-rank of a pool holding the file."""
    from tests.api.test_protocol import predict, setup
    from tests.api.test_task_types import IMAGES, choices_region, event, wait_for_version
    from tests.samples import image_uri

    def bomb(task_id: int, side: int) -> dict:
        return {"id": task_id, "data": {"image": "data:image/png;base64,"
                                        + base64.b64encode(_png_header(side, side)).decode()}}

    setup(client, IMAGES)
    kinds = [i % 2 == 0 for i in range(8)]
    tasks = [{"id": i + 1, "data": {"image": image_uri(w, i)}} for i, w in enumerate(kinds)]
    not_a_url = {"id": 97, "data": {"image": "http://[::1/x.png"}}  # urlparse raised ValueError: a 500 too
    first = predict(client, [*tasks, bomb(98, 20000), not_a_url], IMAGES)  # refused by the loader
    assert first.status_code == 200 and all(r["result"] == [] for r in first.json()["results"])
    for i, (task, warm) in enumerate(zip(tasks[:6], kinds, strict=False)):
        client.post("/webhook", json=event(20 + i, task, [choices_region("kind", "image", ["warm" if warm else
                                                                                          "cool"])], IMAGES))
    wait_for_version(client, IMAGES, first.json()["model_version"])
    resp = predict(client, [*tasks, bomb(99, 10000), bomb(100, 20000)], IMAGES)  # 10000: refused by the decoder
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert results[-1]["result"] == [] and results[-2]["result"] == []
    assert [r["result"][0]["value"]["choices"][0] for r in results[:-2]] == ["warm" if w else "cool" for w in kinds]
