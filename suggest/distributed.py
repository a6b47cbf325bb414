"""Ray, optional (issue 17): embed a large pool as a Ray Data job, spread simulations over a cluster.

With a Ray address (SUGGEST_RAY_ADDRESS or `--ray ADDRESS`), embedding a pool runs as a Ray Data
`map_batches` job whose workers each load the text encoder once (a callable class) and write nothing
themselves: the driver streams their vectors back into the same embedding cache (encoder id, content
hash) that the local path fills, so everything downstream (ranking, the loop, `/predict`) is the
same code whichever path embedded. Without Ray installed, or with the cluster unreachable, callers get
`RayUnavailable` with one clear line and run the local path.

Install: `pip install "suggest[ray]"`; a cluster's workers need suggest installed as well.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import subprocess

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "suggest[ray]"'


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster at the address cannot be reached; the message says which."""


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailable(f"Ray is not installed ({exc.name or exc}): {INSTALL_HINT}") from None
    return ray


_connected: str | None = None  # the address this process joined


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """A host:port (or ray://host:port) that refuses connections fails in seconds, not after Ray's own retries
    (minutes: seen 5.5 min for a closed port)."""
    import socket

    if address in ("auto", "local") or ":" not in address:
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            return
    except OSError as exc:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}") from None


def connect(address: str):
    """Join the cluster at `address` ("auto", "host:port", "ray://host:10001"); returns the ray module."""
    global _connected
    ray = _import_ray()
    if ray.is_initialized():
        if _connected == address:
            return ray
        ray.shutdown()  # joined another cluster before: this call names a different one
    _connected = None
    _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                 include_dashboard=False, configure_logging=False)
    except Exception as exc:  # ConnectionError, a timeout, a bad address: all mean "not reachable"
        raise RayUnavailable(f"cannot reach the Ray cluster at {address!r}: {str(exc).splitlines()[0]}") from None
    _connected = address
    try:  # quiet the per-operator progress bars of Ray Data in a CLI or a server log
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
    except Exception:  # pragma: no cover - older Ray
        pass
    return ray


def disconnect() -> None:
    try:
        import ray
    except ImportError:
        return
    global _connected
    _connected = None
    if ray.is_initialized():
        ray.shutdown()


class _Encode:
    """A Ray Data worker: loads the text encoder once, then embeds batch after batch."""

    def __init__(self, model_path: str | None, layers: tuple[int, ...], threads: int):
        from backends.encoders import TextEncoder, set_thread_budget

        set_thread_budget(threads)
        self.encoder = TextEncoder(model_path, layers=layers).load()

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch["text"]]
        # one 2-D float32 column (a fixed-shape tensor in Arrow): a list of arrays is an object column, which the
        # driver then unpacks row by row
        return {"hash": batch["hash"], "vector": np.asarray(self.encoder.encode(texts), dtype=np.float32)}


@dataclass(frozen=True)
class EmbedReport:
    texts: int  # asked for
    cached: int  # already in the cache
    embedded: int  # embedded by the cluster's workers
    workers: int
    seconds: float

    @property
    def texts_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"texts": self.texts, "cached": self.cached, "embedded": self.embedded, "workers": self.workers,
                "seconds": round(self.seconds, 2), "texts_per_second": round(self.texts_per_second, 1)}


BLOCK_TEXTS_MAX = 5000  # texts per Ray Data block: one CPU worker embeds it in about a minute


def block_texts(missing: int, workers: int, batch_size: int) -> int:
    """Texts per block: four blocks a worker, at most BLOCK_TEXTS_MAX. Why the cap: a block's vectors come
    back only once it is done, and Ray Data stops a job whose operators give no output for 30 minutes; at
    1,000,000 texts on 2 CPU workers four blocks a worker were 125,000 texts each, and the job was stopped
    with nothing embedded. Small blocks also stream progress and cache writes through the whole job."""
    return max(batch_size, min(BLOCK_TEXTS_MAX, -(-missing // (max(1, workers) * 4))))


def embed_into_cache(texts: list[str], cache, *, address: str, encoder=None, workers: int | None = None,
                     batch_size: int = 256, chunk: int = 10_000,
                     progress: Callable[[int], None] | None = None) -> EmbedReport:
    """Embed the texts missing from `cache` (a Store) on the Ray cluster; vectors go into the cache.

    `encoder` names the model and pooling (default: the process's configured text encoder, so the cache
    keys are the ones the local path reads). `workers`: how many encoder actors (default: the cluster's
    CPUs, or GPUs when it has them, at most 8).
    """
    from backends.encoders import shared_text_encoder
    from backends.schema import Item

    started = time.perf_counter()
    encoder = encoder or shared_text_encoder()
    hashes = [Item(t).content_hash for t in texts]
    first: dict[str, str] = {}
    for h, t in zip(hashes, texts, strict=True):
        first.setdefault(h, t)
    held: set[str] = set()
    unique = list(first)
    for start in range(0, len(unique), 50_000):
        held |= set(cache.get_embeddings(encoder.encoder_id, unique[start : start + 50_000]))
    missing = [h for h in unique if h not in held]
    if not missing:
        return EmbedReport(len(texts), len(held), 0, 0, time.perf_counter() - started)
    ray = connect(address)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    n = workers or max(1, min(8, gpus or int(resources.get("CPU", 1))))
    import pyarrow as pa

    # longest first: each worker batch then holds texts of about one length and pads little (the local path
    # sorts its whole input; unsorted 256-text batches ran at half its speed), and the slowest blocks start first
    missing.sort(key=lambda h: -len(first[h]))
    table = pa.table({"hash": missing, "text": [first[h] for h in missing]})
    # blocks cut on the driver: a repartition would need CPU for its own tasks while the encoder actors hold
    # every CPU of a small cluster (a deadlock seen on 2 CPUs)
    step = block_texts(len(missing), n, batch_size)
    ds = ray.data.from_arrow([table.slice(i, step) for i in range(0, len(missing), step)])
    out = ds.map_batches(
        _Encode, fn_constructor_kwargs={"model_path": getattr(encoder, "model_path", None),
                                        "layers": tuple(encoder.layers), "threads": 1},
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=n), num_cpus=0 if gpus else 1,
        num_gpus=1 if gpus else 0,
        batch_format="numpy")
    done = 0
    pending: dict[str, np.ndarray] = {}
    for batch in out.iter_batches(batch_size=chunk, batch_format="numpy"):
        for h, v in zip(batch["hash"], batch["vector"], strict=True):
            pending[str(h)] = np.asarray(v, dtype=np.float32)
        if len(pending) >= chunk:
            cache.put_embeddings(encoder.encoder_id, pending)
            done += len(pending)
            pending = {}
            if progress:
                progress(done)
    if pending:
        cache.put_embeddings(encoder.encoder_id, pending)
        done += len(pending)
        if progress:
            progress(done)
    seconds = time.perf_counter() - started
    log.info("ray: embedded %d texts with %d workers in %.1f s (%.0f texts/s)", done, n, seconds,
             done / seconds if seconds else 0)
    return EmbedReport(len(texts), len(held), done, n, seconds)


def embed_or_local(texts: list[str], cache, address: str | None, *, warn: Callable[[str], None] = log.warning,
                   **kwargs) -> EmbedReport | None:
    """`embed_into_cache` when an address is given and Ray answers; otherwise None after one clear line
    (the caller's local path then embeds, through the same cache)."""
    if not address:
        return None
    try:
        return embed_into_cache(texts, cache, address=address, **kwargs)
    except RayUnavailable as exc:
        warn(f"{exc}; embedding locally instead")
        return None


def map_on_ray(fn: Callable, args: Iterable[tuple], *, address: str, num_cpus: float = 1) -> list:
    """`[fn(*a) for a in args]`, each call a Ray task on the cluster (results in order)."""
    ray = connect(address)
    remote = ray.remote(num_cpus=num_cpus)(fn)
    return ray.get([remote.remote(*a) for a in args])


def _simulate_one(examples: list[str], labels: list[str], config, seed: int, strategy: str, cache_dir: str) -> dict:
    """One (seed, strategy) of `suggest simulate`, on a Ray worker: embeddings come from the shared cache."""
    from dataclasses import replace

    from suggest.simulate import default_model_factory, run_simulation
    from suggest.store import Store

    cache = Store(cache_dir)
    try:
        one = replace(config, seeds=1, first_seed=seed, strategies=(strategy,))
        return run_simulation(examples, labels, one, make_model=default_model_factory(cache))
    finally:
        cache.close()


def simulate_on_ray(examples: list[str], labels: list[str], config, cache, cache_dir, *, address: str,
                    progress: Callable[[str, int, int], None] | None = None) -> dict:
    """`run_simulation` with its seeds x strategies spread over the cluster, one Ray task each.

    The texts are embedded first (a Ray Data job into the cache every task reads), so no task embeds;
    the cluster's workers must see `cache_dir` (a local cluster, or a shared file system). The
    result has the same shape as the local one: per-seed curves are merged, then summarized.
    """
    from suggest.simulate import summarize

    embed_into_cache(list(examples), cache, address=address)
    ray = connect(address)
    examples_ref, labels_ref = ray.put(list(examples)), ray.put(list(labels))
    remote = ray.remote(num_cpus=1)(_simulate_one)
    jobs = [(seed, name) for seed in range(config.first_seed, config.first_seed + config.seeds)
            for name in config.strategies]
    refs = [remote.remote(examples_ref, labels_ref, config, seed, name, str(cache_dir)) for seed, name in jobs]
    results = []
    for i, ref in enumerate(refs):
        results.append(ray.get(ref))
        if progress:
            progress("simulate", i + 1, len(refs))
    curves: dict[str, list[list[float]]] = {}
    full: dict[int, float] = {}
    for (seed, _), result in zip(jobs, results, strict=True):
        for name, entry in result["strategies"].items():
            curves.setdefault(name, []).append(entry["mean"])
        full[seed] = result["full_pool_accuracy"]["mean"]
    from dataclasses import replace

    merged = replace(config, strategies=tuple(curves))
    out = summarize(curves, results[0]["labels"], list(full.values()), merged)
    for key in ("examples", "classes", "encoder_id"):
        if key in results[0]:
            out[key] = results[0][key]
    out["ray"] = {"address": address, "tasks": len(jobs)}
    return out


def _stop_group(proc: subprocess.Popen[bytes], *, grace: float) -> None:
    """SIGTERM a process group and give its leader `grace` s; then SIGKILL whatever of the group is left."""
    import os
    import signal
    import subprocess

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextmanager
def local_cluster(cpus: int = 2, *, timeout: float = 120.0) -> Iterator[str]:
    """A Ray head on loopback for tests and benchmarks; yields its address and stops only its own processes.

    `ray start --head --block` runs in its own process group with a fresh temp dir and no dashboard;
    leaving ends that group (never `ray stop`, which would stop every cluster on the host).
    """
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        raise RayUnavailable(f"no ray command next to {sys.executable}: {INSTALL_HINT}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    log_path = Path(temp) / "head.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", str(cpus), "--num-gpus", "0", "--temp-dir", temp, "--include-dashboard", "false",
             "--disable-usage-stats"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RayUnavailable(f"ray start exited with {proc.returncode}: "
                                     f"{log_path.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RayUnavailable(f"the Ray head did not listen within {timeout:.0f} s") from None
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    except (KeyboardInterrupt, SystemExit):
        # stopped by a signal (Ray's SIGTERM handler raises SystemExit): the head is killed at once. Its raylet
        # going down aborts this driver (SIGABRT), and so does ray.shutdown() here; a head told to stop with
        # SIGTERM needs seconds, and outlived the driver (and its ray start and GCS stayed up)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    finally:
        try:
            disconnect()
        finally:
            _stop_group(proc, grace=30.0)
            shutil.rmtree(temp, ignore_errors=True)
