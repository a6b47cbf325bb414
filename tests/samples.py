"""Small data the project writes itself for every task type: entity sentences and coloured PNGs.

Shared by the API tests, the e2e tests and the per-type latency benchmark.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

# Sentences with their entities (text, label); unicode, emoji and a newline on purpose.
NER_SENTENCES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Angela Merkel met Emmanuel Macron in Paris.", [("Angela Merkel", "Person"), ("Emmanuel Macron", "Person"),
                                                      ("Paris", "Location")]),
    ("Google opened a new office in Zürich 🎉 last week.", [("Google", "Organization"), ("Zürich", "Location")]),
    ("Barack Obama visited Microsoft\nin Seattle.", [("Barack Obama", "Person"), ("Microsoft", "Organization"),
                                                    ("Seattle", "Location")]),
    ("Siemens hired Maria Schmidt to run its Berlin lab.", [("Siemens", "Organization"),
                                                           ("Maria Schmidt", "Person"), ("Berlin", "Location")]),
    ("The café in Lyon 🥐 was recommended by Jean Dupont.", [("Lyon", "Location"), ("Jean Dupont", "Person")]),
    ("Amazon and Apple both reported earnings in New York.", [("Amazon", "Organization"),
                                                              ("Apple", "Organization"), ("New York", "Location")]),
]


def span_regions(text: str, spans: list[tuple[str, str]], from_name: str = "ner", to_name: str = "text") -> list[dict]:
    """Label Studio `labels` regions for the named substrings of a text."""
    return [{"from_name": from_name, "to_name": to_name, "type": "labels",
             "value": {"start": text.index(s), "end": text.index(s) + len(s), "text": s, "labels": [label]}}
            for s, label in spans]


def png(warm: bool, seed: int, size: int = 64) -> bytes:
    """A real PNG: noisy warm (red/orange) or cool (blue) colours."""
    rng = np.random.default_rng(seed)
    base = np.array([220, 90, 40] if warm else [40, 110, 220], dtype=float)
    pixels = np.clip(base + rng.normal(0, 35, size=(size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def image_uri(warm: bool, seed: int, size: int = 64) -> str:
    """The same PNG as a data: URI, the way a task can carry an image inline."""
    return "data:image/png;base64," + base64.b64encode(png(warm, seed, size)).decode()
