"""Re-ranking an image pool reads each Label Studio upload once: later rounds use its remembered digest.

Real EfficientNet-Lite0, real PNGs, a real store; the loader stands in for Label Studio's file
server and counts what it is asked for.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from suggest.labelstudio import parse_controls
from suggest.loop import LoopSettings, rank_rows
from suggest.media import ImageLoader, immutable_ref
from suggest.project import open_project
from suggest.schema import BadInput, Item, Label
from suggest.store import ProjectRecord, Store
from tests.samples import image_uri, png

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="tone" toName="image">'
          '<Choice value="warm"/><Choice value="cool"/></Choices></View>')


class Files:
    """What Label Studio would serve: uploads by path, plus one broken upload; counts every read."""

    def __init__(self, n: int):
        self.bytes = {f"/data/upload/3/{i:04x}-photo.png": png(i % 2 == 0, i) for i in range(n)}
        self.reads: Counter[str] = Counter()

    def load(self, ref: str) -> bytes:
        self.reads[ref] += 1
        if ref.startswith("data:"):
            return ImageLoader().load(ref)  # inline bytes, read by the real loader
        if ref.endswith("broken.png"):
            raise BadInput("is not an image")
        return self.bytes[ref]


@pytest.fixture
def project(tmp_path):
    files = Files(12)
    store = Store(tmp_path)
    record = ProjectRecord("3", CONFIG, None, None)
    store.save_project(record)
    return open_project(store, record, parse_controls(CONFIG), load_image=files.load), files


def _rows(refs: list[str]) -> list[dict[str, Item]]:
    return [{"tone": Item(ref, task_id)} for task_id, ref in enumerate(refs, start=100)]


def test_only_label_studio_uploads_are_remembered() -> None:
    assert immutable_ref("/data/upload/3/ab12-cat.png") == "/data/upload/3/ab12-cat.png"
    assert immutable_ref("http://ls:8080/data/upload/3/ab12-cat.png") == "/data/upload/3/ab12-cat.png"
    assert immutable_ref("/upload/3/ab12-cat.png") == "/data/upload/3/ab12-cat.png"  # older exports
    for ref in ("/data/local-files/?d=cats/1.png", "https://example.com/cat.png", "data:image/png;base64,AAAA",
                "s3://bucket/cat.png", "/data/upload/3/a.png?x=1"):
        assert immutable_ref(ref) is None, ref


def test_a_second_rank_and_a_retrain_read_no_upload_again(project) -> None:
    proj, files = project
    refs = [*files.bytes, "/data/upload/3/ffff-broken.png", image_uri(True, 99)]
    first, _ = rank_rows(proj, _rows(refs), LoopSettings(batch_size=4))
    assert all(files.reads[r] == 1 for r in refs[:-1])

    second, _ = rank_rows(proj, _rows(refs), LoopSettings(batch_size=4))
    uploads = list(files.bytes)
    assert files.reads[refs[-1]] == 2  # a data: URI carries its bytes: decoded each time, never remembered
    assert all(files.reads[r] == 1 for r in uploads), "a remembered upload was downloaded again"
    assert files.reads["/data/upload/3/ffff-broken.png"] == 2  # failures are not remembered: retried
    assert [p[0].score for p in first] == [p[0].score for p in second]  # same ranking from the digests

    warm = {ref: "warm" if i % 2 == 0 else "cool" for i, ref in enumerate(uploads)}
    proj.store.upsert_labels("3", [Label(100 + i, 500 + i, warm[ref], ref, control="tone")
                                   for i, ref in enumerate(uploads[:8])])
    assert proj.retrain(force=True) is not None
    assert all(files.reads[r] == 1 for r in uploads), "training downloaded a remembered upload again"
    ranked, _ = rank_rows(proj, _rows(uploads[8:]), LoopSettings(batch_size=2))
    assert all(files.reads[r] == 1 for r in uploads)
    assert [p[0].label for p in ranked] == [warm[r] for r in uploads[8:]]  # the digests fed a real model


def test_a_remembered_upload_whose_embedding_is_gone_is_read_again(project) -> None:
    proj, files = project
    ref = next(iter(files.bytes))
    proj.store.put_digests({ref: "0" * 64})  # remembered, but no embedding under that digest
    (item,) = proj.prepare(proj.schema, [Item(ref, 1)], proj.published.model)
    assert files.reads[ref] == 1 and item is not None and item.data == files.bytes[ref]
    assert proj.store.get_digests([ref])[ref] == item.content_hash  # and the memo is corrected
    assert np.isfinite(proj.published.model.embed([item])).all()
