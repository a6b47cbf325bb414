"""Strategies by name. A new query strategy is one class (in its module) plus one line in `STRATEGIES`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from backends.uncertainty import _check_method
from suggest.strategies.auto import AutoImage, AutoStrategy
from suggest.strategies.base import QueryStrategy
from suggest.strategies.coldstart import ColdStart
from suggest.strategies.diversity import DenseUncertainty, DiverseUncertainty
from suggest.strategies.plugins import ModalQuery
from suggest.strategies.uncertainty import RandomSampling, UncertaintySampling

STRATEGIES: dict[str, Callable[..., QueryStrategy]] = {
    "random": RandomSampling,
    "margin": lambda **kw: UncertaintySampling("margin", **kw),
    "least_confidence": lambda **kw: UncertaintySampling("least_confidence", **kw),
    "entropy": lambda **kw: UncertaintySampling("entropy", **kw),
    "diverse": DiverseUncertainty,
    "dense": DenseUncertainty,
    "coldstart": ColdStart,
    "auto": AutoStrategy,  # text: half dense, half margin (suggest/strategies/auto.py)
    "auto-image": AutoImage,  # images: margin's 3 x batch shortlist spread with k-means
}
DEFAULT_STRATEGY = "dense"  # beat "diverse" and margin on Rotten Tomatoes (benchmarks/label_efficiency_rt.py)


AUTO = "auto"  # the measured best per kind of data: see `strategy_for`


def strategy_for(name: str, object_type: str = "text") -> str:
    """Resolve "auto": margin blended with dense for text ("auto"); for images ("auto-image") margin's
    shortlist spread with k-means.

    Issue 16: a default measured across every offline set, never tuned on one; see suggest/strategies/auto.py
    and benchmarks/results/label_efficiency_sets/."""
    if name != AUTO:
        return name
    return "auto-image" if object_type == "image" else AUTO


def make_strategy(name: str = DEFAULT_STRATEGY, *, method: str | None = None, **kwargs: Any) -> QueryStrategy:
    """Build a strategy by name; keyword arguments go to its constructor.

    Names: "random", "margin", "least_confidence", "entropy", "diverse" (margin shortlist +
    k-means spread), "dense" (default: margin x local density, near-duplicates skipped), "coldstart",
    and "modal:<module>:<function>", which imports
    any modAL-style query function by dotted path, e.g.
    `make_strategy("modal:modAL.uncertainty:margin_sampling")` or, with labeled rows as context,
    `make_strategy("modal:modAL.batch:uncertainty_batch_sampling")`; pass `classifier=` to let it
    call your model, otherwise it sees the proba given to `query`.

    `method` is the certainty measure (margin, least_confidence, entropy) the project scores tasks by;
    it goes to every strategy whose constructor takes a `method` (dense and diverse weigh it instead of
    margin). The strategies named after a measure keep theirs: that name is how they pick the batch
    (`make_strategy("margin", method="entropy")` picks by margin; `rank_pool` still scores the rest by
    entropy). random, coldstart and modal: weigh no measure and ignore it.
    """
    if method is not None:
        _check_method(method)
    if name.startswith("modal:"):
        return ModalQuery(name.removeprefix("modal:"), **kwargs)
    name = strategy_for(name)
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}, modal:<module>:<function>")
    factory = STRATEGIES[name]
    if method is not None and _takes_method(factory):
        kwargs["method"] = method
    return factory(**kwargs)


def _takes_method(factory: Callable[..., QueryStrategy]) -> bool:
    """Whether a registered factory has a `method` parameter: a new strategy gets the measure by declaring one."""
    return "method" in inspect.signature(factory).parameters
