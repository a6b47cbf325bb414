"""`suggest embed` (issue 17): fill the embedding cache for a pool, on a Ray cluster (`--ray`) or locally.

`suggest.cli` registers it on its app; `--ray` on `simulate` and `rank` lives there and calls
`suggest.distributed` the same way: Ray when an address is given and it answers, else one clear line
and the local path.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_CACHE = Path.home() / ".cache" / "suggest"
RayOption = Annotated[str | None, typer.Option(
    "--ray", help="A Ray cluster's address (auto, host:port, ray://host:10001): embed as a Ray Data job "
    "(env SUGGEST_RAY_ADDRESS); without Ray or an answering cluster: the local path")]


def ray_address(flag: str | None) -> str | None:
    """--ray, else SUGGEST_RAY_ADDRESS (the setting), else None."""
    from suggest.cli import _settings

    return _settings(ray_address=flag).ray_address


def read_pool_texts(path: Path, text_field: str) -> list[str]:
    """Texts of a JSONL or CSV pool file (one object or row per item)."""
    from suggest.rank import _read_jsonl
    from suggest.schema import BadInput

    if path.suffix.lower() == ".csv":
        from suggest.simulate import read_labelled

        try:
            texts, _ = read_labelled(path, text_field, text_field)
        except BadInput:
            raise
        return texts
    return [row[text_field] for row in _read_jsonl(path, text_field)]


def embed(
    pool: Annotated[Path, typer.Option(help="JSONL (or CSV) of items to embed")],
    text_field: Annotated[str, typer.Option(help="Key (column) holding the text")] = "text",
    cache_dir: Annotated[Path, typer.Option(help="The embedding cache to fill (the store's folder: MODEL_DIR for "
                                            "a server, ~/.cache/suggest for rank and simulate)")] = DEFAULT_CACHE,
    ray: RayOption = None,
    workers: Annotated[int | None, typer.Option(help="Encoder workers on the cluster (default: its CPUs, "
                                                "or GPUs, at most 8)")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N items")] = None,
) -> None:
    """Embed a pool into the embedding cache, so a later rank, simulate or server push re-embeds nothing.
    Prints one JSON line: texts, already cached, embedded, seconds, texts per second, and where."""
    from suggest.cli import _fail, console
    from suggest.distributed import RayUnavailable, embed_into_cache
    from suggest.schema import BadInput
    from suggest.store import Store

    try:
        texts = read_pool_texts(pool, text_field)
    except BadInput as exc:
        _fail(str(exc))
    if limit:
        texts = texts[:limit]
    address = ray_address(ray)
    cache = Store(cache_dir)
    try:
        report, where = None, "local"
        if address:
            try:
                report = embed_into_cache(texts, cache, address=address, workers=workers).as_dict()
                where = "ray"
            except RayUnavailable as exc:
                console.print(f"suggest: {exc}; embedding locally instead")
        if report is None:
            report = _embed_locally(texts, cache)
    finally:
        cache.close()
    print(json.dumps({**report, "where": where}))


def _embed_locally(texts: list[str], cache, chunk: int = 2048) -> dict:
    from backends.encoders import cached_encode, shared_text_encoder
    from backends.schema import Item

    started = time.perf_counter()
    encoder = shared_text_encoder()
    hashes = [Item(t).content_hash for t in texts]
    cached = len(cache.get_embeddings(encoder.encoder_id, list(dict.fromkeys(hashes))))
    for start in range(0, len(texts), chunk):
        cached_encode(encoder, texts[start : start + chunk], hashes[start : start + chunk], cache)
    seconds = time.perf_counter() - started
    embedded = len(set(hashes)) - cached
    return {"texts": len(texts), "cached": cached, "embedded": embedded, "workers": 1, "seconds": round(seconds, 2),
            "texts_per_second": round(embedded / seconds, 1) if seconds > 0 else 0.0}


def register(app: typer.Typer) -> None:
    app.command()(embed)
