"""backends.memo: one byte budget for the vectors every project and family keeps in memory."""

from __future__ import annotations

import numpy as np

from backends.memo import VectorMemo


def vec(value: float, dim: int = 256) -> np.ndarray:
    return np.full(dim, value, dtype=np.float32)  # 1 KiB


def test_the_budget_is_the_process_s_not_a_model_s():
    memo = VectorMemo(budget_bytes=10 * 1024)
    projects = [memo.view("enc") for _ in range(5)]  # five models, one encoder
    for p, view in enumerate(projects):
        view.update({f"p{p}-{i}": vec(i) for i in range(4)})
    assert memo.nbytes <= 10 * 1024 and len(memo) == 10
    assert "p4-3" in projects[0], "a view sees what another model of the same encoder put"
    assert "p0-0" not in projects[4], "the least recently used vectors go first"


def test_recently_read_vectors_stay():
    memo = VectorMemo(budget_bytes=3 * 1024)
    view = memo.view("enc")
    view.update({"a": vec(1), "b": vec(2), "c": vec(3)})
    assert view["a"][0] == 1  # touch a
    view.update({"d": vec(4)})
    assert "a" in view and "b" not in view


def test_many_vectors_are_read_at_once_and_stay_as_recently_read():
    """The queue head reads a big pool's vectors with one lock (held_vectors); what it reads counts as
    recently used, as single reads do; a plain dict (an offline harness's memory) answers the same."""
    from backends.memo import held_vectors

    memo = VectorMemo(budget_bytes=3 * 1024)
    view = memo.view("enc")
    view.update({"a": vec(1), "b": vec(2), "c": vec(3)})
    held = held_vectors(view, ["a", "x", "a", "c"])
    assert sorted(held) == ["a", "c"] and held["a"][0] == 1 and held["c"][0] == 3
    assert held_vectors(memo.view("other"), ["a"]) == {}, "another encoder's vectors are not read"
    view.update({"d": vec(4)})
    assert "a" in view and "c" in view and "b" not in view, "the vectors read at once were evicted first"
    plain = {"a": vec(1)}
    assert list(held_vectors(plain, ["a", "b"])) == ["a"]


def test_an_items_content_hash_is_computed_once():
    """A pool's items live between versions in the queue head; their sha256 is computed once, not per version."""
    import hashlib

    from backends.schema import Item

    item = Item("some text", task_id=3)
    assert item.content_hash == hashlib.sha256(b"some text").hexdigest()
    assert "content_hash" in item.__dict__, "not kept"
    assert item == Item("some text", task_id=3) and hash(item) == hash(Item("some text", task_id=3))


def test_encoders_never_mix_and_clear_is_per_encoder():
    memo = VectorMemo(budget_bytes=1 << 20)
    text, image = memo.view("text"), memo.view("image")
    text.update({"h": vec(1)})
    assert "h" not in image and image.get("h") is None
    image.update({"h": vec(2)})
    text.clear()
    assert "h" not in text and image["h"][0] == 2


def test_resize_evicts_at_once():
    memo = VectorMemo(budget_bytes=1 << 20)
    memo.view("enc").update({str(i): vec(i) for i in range(100)})
    memo.resize(10 * 1024)
    assert memo.nbytes <= 10 * 1024


def test_the_engine_sizes_the_process_memo_from_settings(tmp_path):
    from backends.memo import shared_memo
    from suggest.config import Settings
    from suggest.engine import Engine

    engine = Engine(Settings.from_env({"SUGGEST_MEMORY_MB": "64"}, model_dir=tmp_path), load_encoder=False)
    try:
        assert shared_memo().budget_bytes == 64 * 1024 * 1024
    finally:
        engine.close()
        shared_memo().resize(Settings().memory_budget_mb * 1024 * 1024)
