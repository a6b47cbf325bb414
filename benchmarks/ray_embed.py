"""Issue 17, Ray: pool embedding on a local Ray cluster against the local path, and a large pool end to end.

Starts a Ray head on loopback (its own temp dir, `--num-cpus` CPUs, no dashboard) and stops its
process group afterwards. Texts are Rotten Tomatoes snippets and numbered variants of them (new
content hashes, so every text is really embedded). Measures, each on a fresh cache:
- texts per second: the local path (`cached_encode`, one process), Ray with 1 worker, Ray with 2;
- identical output: the Ray vectors against the local ones (max abs difference) and the same ranking;
- a large pool end to end: embed on Ray (all workers) and rank it (`suggest.rank.rank_file`, margin,
  the batch of 50), with the peak RSS of each encoder worker (sampled every 0.5 s).

Run: nice -n 10 .venv/bin/python benchmarks/ray_embed.py --throughput 2000 --large 20000

A pool too big for one sitting (1,000,000 texts: ~2.2 h on 2 CPUs) runs in parts: `--cache DIR` keeps the
large pool's embedding cache between runs (a stopped run loses at most one `--chunk` of vectors), each run
embeds only what the cache lacks, and `DIR/parts.json` records every part (seconds, texts embedded,
peak RSS); the report sums them. `--large-only` skips the throughput runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.encoders import cached_encode, shared_text_encoder  # noqa: E402
from backends.schema import Item  # noqa: E402
from suggest.datasets import rotten_tomatoes  # noqa: E402
from suggest.distributed import embed_into_cache, local_cluster  # noqa: E402
from suggest.rank import rank_file  # noqa: E402
from suggest.store import Store  # noqa: E402


def texts_for(n: int, salt: str) -> list[str]:
    base, _ = rotten_tomatoes()
    return [base[i % len(base)] + ("" if i < len(base) and not salt else f" [{salt}{i // len(base)}]")
            for i in range(n)]


class RssSampler(threading.Thread):
    """Peak RSS (MiB) of each `ray::MapWorker` process while it runs, and of this driver process."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak: dict[int, float] = {}
        self.driver_peak = 0.0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop_flag.is_set():
            for p in psutil.process_iter(["pid", "cmdline", "memory_info"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if "MapWorker" in cmd and p.info["memory_info"] is not None:
                    self.peak[p.info["pid"]] = max(self.peak.get(p.info["pid"], 0.0),
                                                   p.info["memory_info"].rss / 2**20)
            self.driver_peak = max(self.driver_peak, psutil.Process().memory_info().rss / 2**20)
            time.sleep(0.5)


def steady_rate(timeline: list[tuple[float, int]]) -> float | None:
    """Texts per second between the first and the last progress line: the rate without the actors' start-up."""
    if len(timeline) < 2 or timeline[-1][0] <= timeline[0][0]:
        return None
    return round((timeline[-1][1] - timeline[0][1]) / (timeline[-1][0] - timeline[0][0]), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--throughput", type=int, default=2000, help="texts per throughput run")
    parser.add_argument("--large", type=int, default=20000, help="the end-to-end pool")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=10_000, help="vectors per cache write (and progress line)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray_embed.json")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the large pool's cache here between runs (resume a stopped run)")
    parser.add_argument("--large-only", action="store_true", help="skip the throughput and identity runs")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill PID` stops like Ctrl-C: the part is recorded
    work = Path(tempfile.mkdtemp(prefix="suggest-ray-"))
    encoder = shared_text_encoder().load()
    result: dict = {"cpus": args.cpus, "load_average_start": os.getloadavg()[0]}
    with local_cluster(args.cpus) as address:
        try:
            run(args, address, work, encoder, result)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {args.out}")


def run(args, address: str, work: Path, encoder, result: dict) -> None:
    if not args.large_only:
        throughput(args, address, work, encoder, result)
    large(args, address, args.cache or work / "large", result)


def throughput(args, address: str, work: Path, encoder, result: dict) -> None:
    texts = texts_for(args.throughput, "t")
    hashes = [Item(t).content_hash for t in texts]
    t0 = time.perf_counter()
    local = cached_encode(encoder, texts, hashes, Store(work / "local"))
    local_s = time.perf_counter() - t0
    result["local"] = {"texts": len(texts), "seconds": round(local_s, 1),
                       "texts_per_second": round(len(texts) / local_s, 1)}
    print(json.dumps(result["local"]), flush=True)
    for workers in (1, 2):
        cache = Store(work / f"ray{workers}")
        report = embed_into_cache(texts, cache, address=address, workers=workers)
        got = cache.get_embeddings(encoder.encoder_id, hashes)
        diff = float(np.max(np.abs(np.stack([got[h] for h in hashes]) - local)))
        result[f"ray_{workers}_workers"] = {**report.as_dict(), "max_abs_diff_vs_local": diff}
        print(json.dumps(result[f"ray_{workers}_workers"]), flush=True)
        cache.close()
    pool = work / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    same = [r["id"] for r in rank_file(pool, None, batch=50, strategy="margin", text_field="text",
                                       label_field="label", cache_dir=work / "local")]
    other = [r["id"] for r in rank_file(pool, None, batch=50, strategy="margin", text_field="text",
                                        label_field="label", cache_dir=work / "ray2")]
    result["identical_ranking"] = same == other


def load_parts(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def large(args, address: str, cache_dir: Path, result: dict) -> None:
    """Embed the large pool into `cache_dir` (what is there already is kept), then rank it from the cache."""
    big = texts_for(args.large, "L")
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts_path = cache_dir / "parts.json"
    parts = load_parts(parts_path)
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    cache = Store(cache_dir)
    timeline: list[tuple[float, int]] = []
    part = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average_start": os.getloadavg()[0]}

    def record(status: str) -> None:
        part.update(status=status, seconds=round(time.perf_counter() - t0, 1),
                    embedded=timeline[-1][1] if timeline else 0, progress_seconds_embedded=timeline,
                    peak_rss_mib_per_worker=[round(v) for v in sampler.peak.values()],
                    driver_peak_rss_mib=round(sampler.driver_peak))
        parts_path.write_text(json.dumps([*parts, part], indent=1) + "\n")

    def progress(done: int) -> None:
        timeline.append((round(time.perf_counter() - t0, 1), done))
        rate = done / timeline[-1][0] if timeline[-1][0] else 0.0
        print(f"  {timeline[-1][0]:8.1f} s  {done:>9,} embedded  ({rate:.1f} texts/s so far)", flush=True)

    try:
        report = embed_into_cache(big, cache, address=address, workers=args.cpus, chunk=args.chunk,
                                  progress=progress)
    except BaseException:  # stopped (Ctrl-C, SIGTERM) or failed: the cache keeps every chunk written
        record("stopped")
        raise
    finally:
        cache.close()
    embed_s = time.perf_counter() - t0
    record("done")
    pool = cache_dir / "large.jsonl"
    pool.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(big)))
    t1 = time.perf_counter()
    ranked = rank_file(pool, None, batch=50, strategy="margin", text_field="text", label_field="label",
                       cache_dir=cache_dir)
    rank_s = time.perf_counter() - t1
    sampler.stop_flag.set()
    all_parts = load_parts(parts_path)
    embed_total = sum(p["seconds"] for p in all_parts)
    embedded_total = sum(p["embedded"] for p in all_parts)
    rate = embedded_total / embed_total if embed_total else report.embedded / embed_s
    result["large"] = {
        "texts": len(big), "embed": report.as_dict(), "rank_seconds": round(rank_s, 1),
        "parts": len(all_parts), "embed_seconds_all_parts": round(embed_total, 1),
        "embedded_all_parts": embedded_total,
        "end_to_end_seconds": round(embed_total + rank_s, 1), "ranked": len(ranked),
        "peak_rss_mib_per_worker_all_parts": max((p["peak_rss_mib_per_worker"] for p in all_parts),
                                                  key=lambda v: max(v, default=0), default=[]),
        "peak_rss_mib_per_worker": [round(v) for v in sampler.peak.values()],
        "driver_peak_rss_mib": round(sampler.driver_peak),  # embedding and ranking
        "progress_seconds_embedded": timeline,
        "steady_texts_per_second": steady_rate(timeline),
        "extrapolated_1m_hours_at_this_rate": round(1_000_000 / rate / 3600, 1) if rate else None,
        "parts_detail": all_parts,
    }
    result["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(result["large"]), flush=True)


if __name__ == "__main__":
    main()
