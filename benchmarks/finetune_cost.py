"""Cost of SetFit-style fine-tuning (issue 16): one tuning at 100 and 400 labels, pool re-embedding, memory.

    nice -n 10 .venv/bin/python benchmarks/finetune_cost.py                 # full tunings (defaults)
    nice -n 10 .venv/bin/python benchmarks/finetune_cost.py --steps 8       # time 8 steps, extrapolate

Rotten Tomatoes snippets. A tuning is `contrastive_finetune` with the family's defaults
(min(20 x labels, 2000) pairs, batch 16, one epoch), on the GPU when torch sees one. `--steps N`
caps the pairs at N batches and reports seconds per step with the full tuning's step count, for a
machine where a full tuning does not fit the time at hand. Re-embedding: `--embed N` texts with the
tuned encoder, extrapolated to 10,000. Memory: this process's resident set (psutil) with the
encoder loaded (what a server holds), and its peak while tuning (sampled every 0.2 s).
Writes benchmarks/results/finetune_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", default="100,400")
    ap.add_argument("--steps", type=int, default=None, help="time this many steps and extrapolate")
    ap.add_argument("--embed", type=int, default=1000, help="texts re-embedded with the tuned encoder")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune_cost.json"))
    args = ap.parse_args()

    import torch

    from backends.encoders import shared_text_encoder
    from backends.finetune import FineTunedEncoder, contrastive_finetune
    from suggest.datasets import rotten_tomatoes

    proc = psutil.Process()
    texts, labels = rotten_tomatoes()
    base = shared_text_encoder().load()
    base.encode(texts[:64])
    rss_loaded = proc.memory_info().rss
    out: dict = {"device": "cuda" if torch.cuda.is_available() else "cpu", "torch_threads": torch.get_num_threads(),
                 "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                 "rss_mib_encoder_loaded": round(rss_loaded / 2**20), "tunings": {}}
    rng = np.random.default_rng(0)
    for n in (int(v) for v in args.labels.split(",")):
        idx = rng.choice(len(texts), n, replace=False)
        full_pairs = min(20 * n, 2000)
        batch = 16
        pairs = full_pairs if args.steps is None else min(full_pairs, args.steps * batch)
        peak = [proc.memory_info().rss]
        stop = threading.Event()

        def sample(peak=peak, stop=stop) -> None:
            while not stop.wait(0.2):
                peak[0] = max(peak[0], proc.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        model, stats = contrastive_finetune(base, [texts[i] for i in idx], [labels[i] for i in idx],
                                            max_pairs=pairs, batch_size=batch)
        stop.set()
        sampler.join()
        per_step = stats["seconds"] / stats["steps"]
        full_steps = int(np.ceil(full_pairs / batch))
        entry = {"pairs": stats["pairs"], "steps": stats["steps"], "seconds": stats["seconds"],
                 "seconds_per_step": round(per_step, 2), "full_tuning_pairs": full_pairs,
                 "full_tuning_steps": full_steps, "full_tuning_seconds": round(per_step * full_steps, 1),
                 "measured_whole": stats["steps"] == full_steps, "load_average": os.getloadavg(),
                 "peak_rss_mib_while_tuning": round(peak[0] / 2**20),
                 "rss_mib_over_loaded_encoder": round((peak[0] - rss_loaded) / 2**20)}
        encoder = FineTunedEncoder(model, base._tokenizer, base_id=base.base_id, tuning=f"cost{n}", layers=base.layers)
        sample_texts = texts[: args.embed]
        t = time.perf_counter()
        encoder.encode(sample_texts)
        seconds = time.perf_counter() - t
        entry.update(embed_texts=len(sample_texts), embed_seconds=round(seconds, 1),
                     reembed_10k_seconds_extrapolated=round(seconds * 10_000 / len(sample_texts), 1))
        out["tunings"][str(n)] = entry
        print(n, entry, flush=True)
        del model, encoder
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
