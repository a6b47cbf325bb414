"""The live loop on an image project in a real Label Studio: how long each re-rank takes.

Starts Label Studio (its own venv, see tests/e2e) and `suggest serve`, uploads N Fashion-MNIST
images through Label Studio's import API (so tasks point at `/data/upload/...`, served behind the
project's token), connects the backend, and reports the loop's own timings (fetch, rank, push):
- the cold start: every image is downloaded from Label Studio and embedded once;
- two re-ranks after annotations (30, then 30 more): with the upload digests remembered, these
  read no image again, so "rank" is a cache lookup plus the model.
Run it on two commits to compare (before the digest memo, every re-rank downloaded every image).
Measured 2026-11-21, 1,000 images of ~250 kB (384 px): re-rank "rank" 9.6 / 8.9 s before the memo
(results/push_images_before_digest_memo.json, commit 18f611b) and 0.07 / 0.05 s after
(results/push_images.json); whole re-rank 11.9 / 10.9 s -> 2.3 / 2.2 s. The cold start (download
and embed every image once) is 21-23 s either way.

Run: .venv/bin/python benchmarks/push_images.py [--images 1000]
Needs Debian's dataset-fashion-mnist.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suggest.datasets import FASHION_MNIST_CLASSES, fashion_mnist  # noqa: E402
from tests.e2e.labelstudio_server import (  # noqa: E402
    HttpServer,
    LabelStudioServer,
    ensure_ls_venv,
    free_port,
    ls_venv_path,
    poll,
    suggest_argv,
)

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="item" toName="image">'
          + "".join(f'<Choice value="{c}"/>' for c in FASHION_MNIST_CLASSES) + "</Choices></View>")


def as_photo(png: bytes, side: int, seed: int) -> bytes:
    """The image upscaled to side x side RGB with Gaussian noise: a PNG about as heavy as a photo."""
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB").resize((side, side), Image.BICUBIC), dtype=float)
    noisy = np.clip(img + np.random.default_rng(seed).normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--photo-px", type=int, default=384, help="upscale each image to this side and add "
                        "sensor-like noise, so files weigh what photos do (~0.4 MB) and 1,000 of them outgrow "
                        "the loader's 128 MB in-memory cache; 0 keeps the 28 px originals (~1 kB)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "push_images.json")
    args = parser.parse_args()
    console = Console()
    pngs, labels = fashion_mnist(limit=args.images, seed=0)
    if args.photo_px:
        pngs = [as_photo(p, args.photo_px, seed) for seed, p in enumerate(pngs)]
    work = Path(tempfile.mkdtemp(prefix="suggest-push-images-"))
    venv = ls_venv_path()
    ensure_ls_venv(venv)
    ls = LabelStudioServer(venv, work / "ls")
    ls.launch()
    port = free_port()
    env = {**os.environ, "LOG_LEVEL": "WARNING", "SUGGEST_PUSH_INTERVAL_SECONDS": "1", "SUGGEST_KEEP_VERSIONS": "0"}
    sg = HttpServer("suggest", suggest_argv("127.0.0.1", port, work / "models"), port, work / "suggest.log", env)
    sg.launch()
    try:
        ls.wait_ready()
        sg.wait_ready()
        client = ls.client()
        pid = client.create_project("image push benchmark", CONFIG)["id"]
        started = time.perf_counter()
        for start in range(0, len(pngs), 100):
            files = [(f"file{i}", (f"{i:05d}-{labels[i].replace('/', '-')}.png", pngs[i], "image/png"))
                     for i in range(start, min(start + 100, len(pngs)))]
            client.request("POST", f"/api/projects/{pid}/import", files=files)
        upload_s = time.perf_counter() - started
        tasks = client.tasks(pid)
        truth = {t["id"]: labels[int(t["data"]["image"].rsplit("/", 1)[1].split("-", 2)[1])] for t in tasks}
        console.print(f"uploaded {len(tasks)} images in {upload_s:.1f} s")

        def metrics() -> dict:
            return sg.get("/metrics").json()["projects"][str(pid)]

        client.connect_ml(pid, f"http://127.0.0.1:{port}", "suggest")
        rounds = [poll("the cold-start push", metrics, lambda m: m["loop"].get("enabled"), 900, 0.2)["loop"]]
        console.print(f"cold start: {rounds[-1]['seconds']}")
        ids = sorted(truth)
        for batch in (ids[:30], ids[30:60]):
            before = rounds[-1]["version"]
            for tid in batch:
                client.annotate(tid, [{"from_name": "item", "to_name": "image", "type": "choices",
                                       "value": {"choices": [truth[tid]]}}])
            m = poll("a re-rank with a new version", metrics,
                     lambda m, before=before: m["model_version"].startswith("v") and m["model_version"] != before
                     and m["loop"].get("version") == m["model_version"] and not m["loop"].get("pushing")
                     and not m["training"], 900, 0.2)
            rounds.append(m["loop"])
            console.print(f"re-rank after {len(batch)} more labels: {rounds[-1]['seconds']}")
    finally:
        sg.stop()
        ls.stop()
    result = {
        "images": len(pngs),
        "image_mb": round(sum(map(len, pngs)) / 2**20, 1),
        "upload_s": round(upload_s, 1),
        "cold_start": rounds[0],
        "reranks": rounds[1:],
        "rerank_total_s": [r["seconds"]["total"] for r in rounds[1:]],
        "rerank_rank_s": [r["seconds"]["rank"] for r in rounds[1:]],
    }
    console.print_json(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
