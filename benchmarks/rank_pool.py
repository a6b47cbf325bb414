"""How long and how much memory `rank_pool` needs for a big pool of cached embeddings.

Builds `--n` realistic 384-d L2-normalised float32 embeddings (a shared offset, topic clusters and
noise, like sentence embeddings), fits a 2-class LogisticRegression head on a few thousand of
them, then times `rank_pool(clf.predict_proba, X, batch_size=50)` with the default strategy:
probabilities computed chunk by chunk, diverse batch, a score for every row.

The measurement runs in a fresh child process so its peak RSS is this job's alone. Targets for
1,000,000 x 384 on 2 cores: under 3 s, peak RSS under 2 GB (the embeddings alone are 1.54 GB).

    .venv/bin/python benchmarks/rank_pool.py              # 1M rows
    .venv/bin/python benchmarks/rank_pool.py --n 100000 --strategy margin
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "rank_pool.json"
TARGET_S, TARGET_RSS_MB = 3.0, 2000.0


def _rss_mb() -> float:
    """Current resident set size, from /proc (Linux) so no psutil is needed."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # Linux reports KiB


class RssSampler(threading.Thread):
    """Polls RSS every few ms: a cross-check on ru_maxrss, which is a lifetime high-water mark."""

    def __init__(self, every_s: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.every_s, self.peak_mb, self._done = every_s, _rss_mb(), threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every_s):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __enter__(self) -> RssSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


class Timed:
    """Wraps predict_proba to add up the time spent inside the model (not in rank_pool itself)."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, X):
        t0 = time.perf_counter()
        try:
            return self.fn(X)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def make_embeddings(n: int, dim: int, topics: int, seed: int, chunk: int = 32_768):
    """(n, dim) float32 unit rows, filled chunk by chunk so building them costs no extra peak."""
    import numpy as np

    rng = np.random.default_rng(seed)
    offset = rng.standard_normal(dim).astype(np.float32)
    offset *= 0.5 / np.linalg.norm(offset)  # shared direction: mean cosine similarity ~0.2, as in MiniLM
    centers = rng.standard_normal((topics, dim)).astype(np.float32)
    centers *= 0.6 / np.linalg.norm(centers, axis=1, keepdims=True)
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = X[start : start + chunk]
        rng.standard_normal(block.shape, dtype=np.float32, out=block)
        block *= 0.7 / np.sqrt(dim)
        block += centers[rng.integers(topics, size=len(block))]
        block += offset
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return X


def fit_head(X, n_train: int, seed: int):
    """A 2-class LogisticRegression on n_train rows labelled by a hidden direction plus noise."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(len(X), size=min(n_train, len(X)), replace=False)
    w = rng.standard_normal(X.shape[1]).astype(np.float32)
    z = X[rows] @ w
    y = (z - np.median(z) + rng.normal(0, z.std() * 0.5, len(rows)) > 0).astype(int)
    return LogisticRegression(max_iter=1000).fit(X[rows], y)


def child(args: argparse.Namespace) -> dict:
    """Build the pool, then time one rank_pool call; everything measured in this process."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from suggest.strategies import make_strategy, rank_pool

    t0 = time.perf_counter()
    X = make_embeddings(args.n, args.dim, args.topics, args.seed)
    clf = fit_head(X, args.train, args.seed)
    setup_s = time.perf_counter() - t0
    rss_before, peak_before = _rss_mb(), _peak_rss_mb()
    strategy = make_strategy(args.strategy, random_state=0)
    head = Timed(clf.predict_proba)
    with RssSampler() as sampler:
        t0 = time.perf_counter()
        scores, batch = rank_pool(head, X, batch_size=args.batch, strategy=strategy, chunk_size=args.chunk)
        wall = time.perf_counter() - t0
    peak = max(_peak_rss_mb(), sampler.peak_mb)
    assert scores.shape == (args.n,) and np.unique(batch).size == min(args.batch, args.n)
    return {
        "n": args.n, "dim": args.dim, "batch_size": args.batch, "strategy": strategy.name,
        "chunk_size": args.chunk, "cpu_count": os.cpu_count(),
        "embeddings_mb": X.nbytes / 1e6, "setup_s": round(setup_s, 2),
        "rank_wall_s": round(wall, 3), "rows_per_s": round(args.n / wall),
        "of_which_predict_proba_s": round(head.seconds, 3), "predict_proba_calls": head.calls,
        "of_which_rank_pool_own_s": round(wall - head.seconds, 3),
        "rss_before_rank_mb": round(rss_before, 1), "peak_rss_mb": round(peak, 1),
        "rank_peak_sampled_mb": round(sampler.peak_mb, 1),
        "rank_extra_mb": round(sampler.peak_mb - rss_before, 1),
        "setup_peak_rss_mb": round(peak_before, 1),
        "within_targets": bool(wall < TARGET_S and peak < TARGET_RSS_MB),
    }  # fmt: skip


def show(result: dict) -> None:
    rows = [(k, str(v)) for k, v in result.items()]
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table("metric", "value", title=f"rank_pool on {result['n']:,} x {result['dim']}")
        for row in rows:
            table.add_row(*row)
        Console(width=max(120, Console().width)).print(table)
    except ImportError:
        for k, v in rows:
            print(f"{k:<28} {v}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    from suggest.strategies import DEFAULT_CHUNK_SIZE, DEFAULT_STRATEGY

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="pool rows (default: 1,000,000)")
    p.add_argument("--dim", type=int, default=384, help="embedding size (default: 384, MiniLM)")
    p.add_argument("--batch", type=int, default=50, help="batch to pick (default: 50)")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, help="strategy name (default: %(default)s)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK_SIZE, help="rows per predict_proba call")
    p.add_argument("--topics", type=int, default=200, help="clusters in the synthetic embeddings")
    p.add_argument("--train", type=int, default=5000, help="rows the LogisticRegression head is fitted on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT, help="JSON result (default: benchmarks/out/rank_pool.json)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    args = parse(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    cmd = [sys.executable, __file__, "--child", *(argv if argv is not None else sys.argv[1:])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return proc.returncode
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    show(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
