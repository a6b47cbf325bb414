"""`auto`: margin and a structure-aware strategy in one batch, so no data set pays for the wrong guess.

For text `AutoStrategy` (half `dense`, half margin); for images `AutoImage` (margin's shortlist, spread).

Why a blend and not one winner: `dense` (margin x density) was chosen on Rotten Tomatoes, where it
beats margin, and lost to margin on a review set nobody here tuned on; `diverse` won on Fashion-MNIST.
No single strategy wins on every set (issue 16; benchmarks/label_efficiency_sets.py). `AutoStrategy`
fills `share` of each batch with the structure-aware strategy's picks and the rest with plain margin's
(least certain first), alternating so both head the queue, and never picks a row twice. Margin's half
keeps the batch on the decision boundary where density pulls it into crowded but settled regions; the
dense half keeps margin from spending a whole batch on odd, unrepresentative rows.

Stateless on purpose: the live loop builds the strategy afresh for every re-rank, so a choice that
depends only on the pool, the model's certainties and the labelled mask behaves the same in the
server and in `suggest simulate`.
"""

from __future__ import annotations

import numpy as np

from backends.uncertainty import _check_method
from suggest.strategies.base import CertaintyStrategy, RandomStateLike, _lowest
from suggest.strategies.diversity import DenseUncertainty, DiverseUncertainty

IMAGE_SHORTLIST = 3  # images: candidates per batch slot (AutoImage)


class AutoStrategy(CertaintyStrategy):
    """A batch of `share` structure-aware picks (`structured`: "dense" or "diverse") and margin's picks."""

    name = "auto"

    def __init__(self, method: str = "margin", *, structured: str = "dense", share: float = 0.5,
                 random_state: RandomStateLike = None) -> None:
        super().__init__(random_state=random_state)
        self.method = _check_method(method)
        if structured not in ("dense", "diverse"):
            raise ValueError(f"structured must be 'dense' or 'diverse'; got {structured!r}")
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1]; got {share!r}")
        self.structured = structured
        self.share = share
        factory = DenseUncertainty if structured == "dense" else DiverseUncertainty
        self._inner = factory(method=self.method, random_state=random_state)

    def _select(self, cert, X, available, batch_size, rng):
        k = int(round(self.share * batch_size))
        if k == 0:
            return _lowest(np.where(available, cert, np.inf), batch_size)
        structured = self._inner._select(cert, X, available, min(k, int(available.sum())), rng)
        rest = available.copy()
        rest[structured] = False
        plain = _lowest(np.where(rest, cert, np.inf), min(batch_size - len(structured), int(rest.sum())))
        order: list[int] = []
        for pair in zip(structured, plain, strict=False):
            order.extend(int(i) for i in pair)
        longer = structured if len(structured) > len(plain) else plain
        order.extend(int(i) for i in longer[min(len(structured), len(plain)):])
        return np.asarray(order[:batch_size], dtype=np.intp)


class AutoImage(DiverseUncertainty):
    """Images' `auto`: the 3 x batch least certain rows, spread with k-means (one pick per cluster).

    Why not the text blend: half `diverse` (k-means over a 10 x shortlist) and half margin beat margin on
    Fashion-MNIST but needed two batches more than margin to reach 95% of full-pool accuracy on both digit
    sets (20 seeds each, issue 16). A tight shortlist keeps margin's signal, which is hard to beat on
    digits, and spends the batch on distinct confusions instead of near-copies of one, in the spirit of
    Cluster-Margin (Citovsky et al., 2021). Measured on the three image sets over 20 seeds, then confirmed
    on 20 fresh seeds (other splits and seed labels) before it was adopted: benchmarks/results/issue16_notes.md.
    """

    name = "auto-image"

    def __init__(self, method: str = "margin", *, random_state: RandomStateLike = None) -> None:
        super().__init__(method, IMAGE_SHORTLIST, random_state=random_state)
