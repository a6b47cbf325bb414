"""Image embedding throughput of the EfficientNet-Lite0 encoder: images/s by input size and batch size.

Two kinds of input, both as the encoder really receives them (encoded files, decoded inside):
"photo" = 640x427 JPEG photos (crops and flips of scikit-learn's two sample photos, re-encoded), and
"fashion" = 28x28 greyscale PNGs from Fashion-MNIST (when Debian's dataset-fashion-mnist is there).
Times cover decode + resize + forward pass + L2 norm, after one warm-up batch; `decode_share` is
the part of that spent in Pillow. Runs unchanged on a CUDA machine (`--device auto` picks it).

`--accuracy` adds the other half of the input-size trade-off: Fashion-MNIST test accuracy of the
logistic-regression head (class-balanced, several C) at 100, 400 and 2,000 labels for each size
(3,000 stratified train images, 2,000 to learn from and 1,000 to test; fixed seeds).

    .venv/bin/python benchmarks/image_throughput.py                       # CPU, 2 threads
    .venv/bin/python benchmarks/image_throughput.py --device cuda --batch-sizes 32,128,256 --n 2048
    .venv/bin/python benchmarks/image_throughput.py --accuracy --kinds none
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "image_throughput.json"


def photos(n: int, seed: int = 0) -> list[bytes]:
    """n distinct 640x427 JPEGs (quality 90) cut from scikit-learn's sample photos."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    base = [Image.fromarray(a) for a in load_sample_images().images]
    out = []
    for i in range(n):
        img = base[i % len(base)]
        w, h = img.size
        left, top = int(rng.integers(0, w // 5)), int(rng.integers(0, h // 5))
        crop = img.crop((left, top, left + w * 4 // 5, top + h * 4 // 5)).resize((640, 427))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        crop.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def fashion(n: int) -> list[bytes] | None:
    from suggest.datasets import DatasetMissing, fashion_mnist

    try:
        return fashion_mnist("test", limit=n)[0]
    except DatasetMissing:
        return None


def measure(payloads: list[bytes], size: int, batch: int, device: str | None, threads: int) -> dict:
    from backends.images import ImageEncoder, decode_image

    encoder = ImageEncoder(size, batch_size=batch, device=device, threads=threads).load()
    encoder.encode(payloads[:batch])  # warm-up: first-call allocations, cuDNN autotune
    if encoder._torch_device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    started = time.perf_counter()
    X = encoder.encode(payloads)
    seconds = time.perf_counter() - started
    t0 = time.perf_counter()
    for p in payloads:
        decode_image(p, size)
    decode_s = time.perf_counter() - t0
    assert X.shape == (len(payloads), 1280)
    return {"size": size, "batch": batch, "images": len(payloads), "seconds": round(seconds, 3),
            "images_per_s": round(len(payloads) / seconds, 1), "decode_share": round(min(decode_s / seconds, 1), 3),
            "device": str(encoder._torch_device)}


def size_accuracy(sizes: list[int], device: str | None, threads: int) -> dict:
    """Head accuracy on Fashion-MNIST per input size: what a smaller, faster input costs."""
    from sklearn.linear_model import LogisticRegression

    from backends.images import ImageEncoder
    from suggest.datasets import fashion_mnist

    payloads, labels = fashion_mnist("train", limit=3000, seed=1)
    y = np.asarray(labels)
    perm = np.random.default_rng(0).permutation(len(y))
    train, test = perm[:2000], perm[2000:]
    out = {}
    for size in sizes:
        encoder = ImageEncoder(size, batch_size=32, device=device, threads=threads).load()
        started = time.perf_counter()
        X = encoder.encode(payloads)
        row = {"images_per_s": round(len(payloads) / (time.perf_counter() - started), 1)}
        for n in (100, 400, 2000):
            for C in (0.3, 1, 3, 10):
                head = LogisticRegression(C=C, class_weight="balanced", max_iter=2000).fit(X[train[:n]], y[train[:n]])
                row[f"labels_{n}_C_{C}"] = round(float((head.predict(X[test]) == y[test]).mean()), 4)
        out[str(size)] = row
        print(size, json.dumps(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,160,224", help="input sides in pixels (multiples of 32)")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--n", type=int, default=192, help="images per measurement")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--kinds", default="photo,fashion")
    ap.add_argument("--accuracy", action="store_true", help="also measure Fashion-MNIST accuracy per size")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import torch

    device = None if args.device == "auto" else args.device
    load_before = list(os.getloadavg())  # the machine may be shared: read the figures with this in mind
    inputs = {"photo": photos(args.n) if "photo" in args.kinds else None,
              "fashion": fashion(args.n) if "fashion" in args.kinds else None}
    rows = []
    for kind, payloads in inputs.items():
        if payloads is None:
            continue
        for size in (int(s) for s in args.sizes.split(",")):
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                row = {"kind": kind, **measure(payloads, size, batch, device, args.threads)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {
        "what": "EfficientNet-Lite0 image embeddings (decode + resize + forward + L2 norm), images per second",
        "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "python": platform.python_version(), "load_average_before": load_before,
                    "load_average_after": list(os.getloadavg())},
        "rows": rows,
    }
    if args.accuracy:
        result["fashion_mnist_accuracy_by_size"] = size_accuracy(
            [int(s) for s in args.sizes.split(",")], device, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
