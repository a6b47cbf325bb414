"""`suggest simulate --model frozen,finetune`: the fine-tuned encoder against the frozen one, on the same labels.

The active-learning loop runs as always (frozen encoder + head: the labels any strategy picks are
those the server would pick between tunings). At the label counts in `at`, the labelled rows of
that run are also used to tune the encoder SetFit-style (backends/finetune.py) and fit the head on
the tuned vectors; both the tuned model and the frozen one are scored on the same test rows (all of
the split, or a fixed sample of `test_limit` when embedding the whole split with every tuned encoder
costs too much on a CPU). The result's "finetune" entry holds, per strategy and label count, the
mean and per-seed accuracies of both and the seconds each tuning took.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from suggest.schema import Item

MODELS = ("frozen", "finetune")


def parse_models(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [n for n in names if n not in MODELS]
    if bad or not names:
        raise ValueError(f"--model takes {' or '.join(MODELS)} (comma-separated); got {value!r}")
    return names


class FineTuneProbe:
    """The `on_step` hook of run_simulation: tunes and scores at the chosen label counts."""

    def __init__(self, texts: list[str], labels: list[str], *, at: Sequence[int] = (100, 400),
                 test_limit: int | None = None, finetune_params: dict | None = None, cache=None,
                 progress: Callable[[str], None] | None = None):
        self.texts, self.y = texts, np.asarray(labels)
        self.classes = sorted(set(labels))
        self.at = tuple(at)
        self.test_limit = test_limit
        self.finetune_params = dict(finetune_params or {})
        self.cache = cache
        self.progress = progress
        self.runs: dict[str, dict[int, list[dict]]] = {}

    def __call__(self, *, seed: int, strategy: str, labels: int, rows: np.ndarray, test: np.ndarray) -> None:
        if labels not in self.at:
            return
        from backends.finetune import FineTuneClassifier

        if self.test_limit and len(test) > self.test_limit:
            test = np.sort(np.random.default_rng(seed).choice(test, size=self.test_limit, replace=False))
        train_items = [Item(self.texts[i]) for i in rows]
        test_items = [Item(self.texts[i]) for i in test]
        frozen = FineTuneClassifier(self.classes, cache=self.cache, finetune_params=self.finetune_params)
        frozen.fit(train_items, list(self.y[rows]))
        tuned = frozen.finetuned(train_items, list(self.y[rows]), seed=seed, fit_head=False)
        tuned.cache = None  # a tuning's vectors are not worth keeping in the store
        tuned.fit(train_items, list(self.y[rows]))
        y_test = self.y[test]
        acc = {name: float((np.asarray(m.labels)[m.predict_proba(test_items).argmax(1)] == y_test).mean())
               for name, m in (("frozen", frozen), ("finetune", tuned))}
        entry = {"seed": seed, **acc, "finetune_seconds": tuned.finetune_stats_["seconds"],
                 "pairs": tuned.finetune_stats_["pairs"], "test_rows": len(test),
                 **{k: tuned.finetune_stats_[k] for k in ("loss_first", "loss_last") if k in tuned.finetune_stats_}}
        self.runs.setdefault(strategy, {}).setdefault(labels, []).append(entry)
        if self.progress:
            self.progress(f"{strategy} seed {seed} @{labels}: frozen {acc['frozen']:.3f} finetune {acc['finetune']:.3f}"
                          f" ({entry['finetune_seconds']:.0f} s)")

    def summary(self) -> dict:
        out: dict = {"at": list(self.at), "test_limit": self.test_limit, "finetune_params": self.finetune_params,
                     "strategies": {}}
        for strategy, by_n in self.runs.items():
            out["strategies"][strategy] = {
                str(n): {"frozen": round(float(np.mean([r["frozen"] for r in rs])), 4),
                         "finetune": round(float(np.mean([r["finetune"] for r in rs])), 4),
                         "seeds": len(rs),
                         "finetune_seconds": round(float(np.mean([r["finetune_seconds"] for r in rs])), 1),
                         "runs": rs}
                for n, rs in sorted(by_n.items())}
        return out
