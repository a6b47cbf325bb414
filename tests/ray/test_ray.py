"""Ray (issue 17) against a real local cluster (tests/ray/conftest.py starts it on loopback).

Pool embedding as a Ray Data job fills the same embedding cache as the local path, so ranking a pool
gives the same output with and without Ray; `suggest embed --ray` and `suggest simulate --ray` run on
the cluster; an unreachable address or a missing Ray gives one clear line and the local path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.encoders import cached_encode, shared_text_encoder
from backends.schema import Item
from suggest.datasets import rotten_tomatoes
from suggest.distributed import RayUnavailable, embed_into_cache, embed_or_local
from suggest.rank import rank_file
from suggest.store import Store

pytestmark = pytest.mark.ray
N = 240


@pytest.fixture(scope="module")
def texts() -> list[str]:
    all_texts, _ = rotten_tomatoes()
    return all_texts[1000 : 1000 + N]


def _pool_file(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def test_ray_embeddings_equal_the_local_ones_and_land_in_the_cache(ray_cluster, texts, tmp_path) -> None:
    encoder = shared_text_encoder()
    local = Store(tmp_path / "local")
    on_ray = Store(tmp_path / "ray")
    hashes = [Item(t).content_hash for t in texts]
    expected = cached_encode(encoder, texts, hashes, local)
    report = embed_into_cache(texts, on_ray, address=ray_cluster, workers=2, batch_size=64)
    assert (report.embedded, report.cached, report.workers) == (len(set(hashes)), 0, 2)
    got = on_ray.get_embeddings(encoder.encoder_id, hashes)
    assert len(got) == len(set(hashes))
    assert np.allclose(np.stack([got[h] for h in hashes]), expected, atol=1e-5)
    again = embed_into_cache(texts, on_ray, address=ray_cluster)
    assert (again.embedded, again.cached) == (0, len(set(hashes))), "a second run embeds nothing"


def test_ranking_is_identical_with_and_without_ray(ray_cluster, texts, tmp_path) -> None:
    pool = _pool_file(tmp_path, texts)
    labeled = tmp_path / "labeled.jsonl"
    all_texts, labels = rotten_tomatoes()
    labeled.write_text("".join(json.dumps({"text": t, "label": lb}) + "\n"
                               for t, lb in zip(all_texts[:40], labels[:40], strict=True)))
    local_cache, ray_cache = tmp_path / "c-local", tmp_path / "c-ray"
    local = rank_file(pool, labeled, batch=20, strategy="dense", text_field="text", label_field="label",
                      cache_dir=local_cache)
    store = Store(ray_cache)
    report = embed_or_local(texts, store, ray_cluster)
    store.close()
    assert report is not None and report.embedded == len(set(texts))
    with_ray = rank_file(pool, labeled, batch=20, strategy="dense", text_field="text", label_field="label",
                         cache_dir=ray_cache)
    assert [r["id"] for r in with_ray] == [r["id"] for r in local]
    assert [r["score"] for r in with_ray] == pytest.approx([r["score"] for r in local], abs=1e-6)


def test_an_unreachable_cluster_says_so_and_the_local_path_runs(texts, tmp_path) -> None:
    lines: list[str] = []
    store = Store(tmp_path / "c")
    assert embed_or_local(texts[:5], store, "127.0.0.1:1", warn=lines.append) is None
    assert len(lines) == 1 and "cannot reach the Ray cluster at '127.0.0.1:1'" in lines[0], lines
    assert "embedding locally" in lines[0]
    with pytest.raises(RayUnavailable):
        embed_into_cache(texts[:5], store, address="127.0.0.1:1")


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "suggest", *args], capture_output=True, text=True, timeout=600,
                          env=env)


def test_suggest_embed_on_the_cluster_then_from_the_cache(ray_cluster, texts, tmp_path) -> None:
    pool = _pool_file(tmp_path, texts[:60])
    first = _cli("embed", "--pool", str(pool), "--cache-dir", str(tmp_path / "c"), "--ray", ray_cluster)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads(first.stdout.strip().splitlines()[-1])
    assert (report["where"], report["embedded"]) == ("ray", 60)
    second = _cli("embed", "--pool", str(pool), "--cache-dir", str(tmp_path / "c"),
                  env_extra={"SUGGEST_RAY_ADDRESS": ray_cluster})
    report = json.loads(second.stdout.strip().splitlines()[-1])
    assert (report["embedded"], report["cached"]) == (0, 60)


def test_suggest_embed_without_a_cluster_falls_back_with_one_line(texts, tmp_path) -> None:
    pool = _pool_file(tmp_path, texts[:8])
    done = _cli("embed", "--pool", str(pool), "--cache-dir", str(tmp_path / "c"), "--ray", "127.0.0.1:1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cannot reach the Ray cluster" in done.stderr and "embedding locally instead" in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["where"] == "local"


def test_simulate_spreads_seeds_and_strategies_over_the_cluster(ray_cluster, tmp_path) -> None:
    all_texts, labels = rotten_tomatoes()
    data = tmp_path / "d.csv"
    import csv

    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(all_texts[:300], labels[:300], strict=True))
    args = ["simulate", "--data", str(data), "--strategies", "random,margin", "--seeds", "2", "--batch", "10",
            "--budget", "40", "--cache-dir", str(tmp_path / "c")]
    on_ray = _cli(*args, "--out", str(tmp_path / "ray"), "--ray", ray_cluster)
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    local = _cli(*args, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr[-3000:]
    r = json.loads((tmp_path / "ray" / "results.json").read_text())
    lo = json.loads((tmp_path / "local" / "results.json").read_text())
    assert r["ray"]["tasks"] == 4, "2 seeds x 2 strategies, one Ray task each"
    assert r["labels"] == lo["labels"]
    for name in ("random", "margin"):
        assert r["strategies"][name]["mean"] == pytest.approx(lo["strategies"][name]["mean"], abs=2e-4)
    assert r["full_pool_accuracy"]["mean"] == pytest.approx(lo["full_pool_accuracy"]["mean"], abs=2e-4)


def test_a_big_pool_is_cut_into_blocks_a_worker_finishes_in_minutes() -> None:
    """Ray Data stops a job whose operators give no output for 30 minutes; a block's vectors come back only
    once it is done. 1,000,000 texts on 2 workers were cut into 125,000-text blocks (over 30 minutes each on
    one CPU) and the job was stopped with nothing embedded."""
    from suggest.distributed import BLOCK_TEXTS_MAX, block_texts

    assert block_texts(1_000_000, 2, 256) == BLOCK_TEXTS_MAX
    assert block_texts(20_000, 2, 256) == 2500, "four blocks a worker while they are small"
    assert block_texts(300, 2, 256) == 256, "never below one worker batch"
