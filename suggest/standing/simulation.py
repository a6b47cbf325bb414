"""The stopping signal in offline simulations (`suggest simulate`): where it fires against the learning curve.

Per seed and strategy a StopTracker compares each step's model with the previous one on a fixed stop set
sampled once from the pool (Cohen's kappa of their predictions), and notes the first step where the
stopping rule holds (3 consecutive comparisons at kappa >= 0.99). The report sets that beside where the
curve reaches 95% and 99% of full-pool accuracy: the labels saved (positive: the signal stopped earlier)
and the accuracy given up by stopping there.
"""

from __future__ import annotations

import numpy as np

from suggest.standing.stopping import STOP_KAPPA, STOP_SET_SIZE, STOP_WINDOW, cohen_kappa, stop_signal


def stop_set_rows(pool_size: int, seed: int, size: int = STOP_SET_SIZE) -> np.ndarray:
    """Pool positions of the stop set (its own generator: the simulation's own draws are unchanged)."""
    rng = np.random.default_rng([seed, 14])
    return np.sort(rng.choice(pool_size, min(size, pool_size), replace=False))


class StopTracker:
    def __init__(self, X_stop: np.ndarray):
        self.X = X_stop
        self.previous: np.ndarray | None = None
        self.kappas: list[float | None] = []
        self.steps: list[int] = []
        self.fired_at: int | None = None

    def observe(self, model, step: int) -> None:
        pred = model.predict_proba_embedded(self.X).argmax(axis=1)
        kappa = None if self.previous is None else cohen_kappa(self.previous, pred)
        self.previous = pred
        self.kappas.append(kappa)
        self.steps.append(step)
        fired = stop_signal(self.kappas, STOP_KAPPA, STOP_WINDOW)["first_fired_at"]
        if fired is not None and self.fired_at is None:
            self.fired_at = self.steps[fired]


def _first_reaching(steps: list[int], curve, level: float) -> int | None:
    return next((s for s, a in zip(steps, curve, strict=True) if a >= level), None)


def stopping_report(curves: dict[str, list[list[float]]], stops: dict[str, list[int | None]], steps: list[int],
                    full: list[float], kappas: dict[str, list[list[float | None]]] | None = None) -> dict:
    """Per strategy: where the signal fired (per seed, mean), where the mean curve reaches 95% and 99% of
    full-pool accuracy, the labels saved against each and the accuracy given up at the stop."""
    full_mean = float(np.mean(full))
    out: dict = {"rule": f"stop after {STOP_WINDOW} consecutive steps with kappa >= {STOP_KAPPA} between successive "
                         f"models' predictions on a stop set of up to {STOP_SET_SIZE} pool items",
                 "strategies": {}}
    for name, runs in curves.items():
        arr = np.asarray(runs)
        mean = arr.mean(axis=0)
        at95 = _first_reaching(steps, mean, 0.95 * full_mean)
        at99 = _first_reaching(steps, mean, 0.99 * full_mean)
        fired = stops.get(name, [])
        given_up = [full[i] - arr[i][steps.index(f)] for i, f in enumerate(fired) if f is not None]
        acc_at = [arr[i][steps.index(f)] for i, f in enumerate(fired) if f is not None]
        done = [f for f in fired if f is not None]
        mean_stop = float(np.mean(done)) if done else None
        out["strategies"][name] = {
            "fires_at": fired,
            "fired_in": f"{len(done)} of {len(fired)} runs within {steps[-1]} labels",
            "fires_at_mean": None if mean_stop is None else round(mean_stop, 1),
            "labels_to_95": at95, "labels_to_99": at99,
            "saved_vs_95": None if mean_stop is None or at95 is None else round(at95 - mean_stop, 1),
            "saved_vs_99": None if mean_stop is None or at99 is None else round(at99 - mean_stop, 1),
            "accuracy_at_stop": None if not acc_at else round(float(np.mean(acc_at)), 4),
            "accuracy_given_up": None if not given_up else round(float(np.mean(given_up)), 4),
            "full_pool_accuracy": round(full_mean, 4),
        }
        runs_k = [[k for k in run if k is not None] for run in (kappas or {}).get(name, [])]
        if any(runs_k):  # how close the runs came: the last comparison, and the best three in a row
            out["strategies"][name]["kappa_last_mean"] = round(float(np.mean([r[-1] for r in runs_k if r])), 4)
            best = [max(min(r[i:i + STOP_WINDOW]) for i in range(max(1, len(r) - STOP_WINDOW + 1)))
                    for r in runs_k if r]
            out["strategies"][name]["kappa_best_run_of_3_mean"] = round(float(np.mean(best)), 4)
    return out


__all__ = ["StopTracker", "stop_set_rows", "stopping_report"]
