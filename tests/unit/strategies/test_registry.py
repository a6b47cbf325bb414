"""suggest.strategies.registry: strategies by name, "auto", and the certainty measure they are given."""

from __future__ import annotations

import numpy as np
import pytest

from suggest.strategies import (
    STRATEGIES,
    CertaintyStrategy,
    DiverseUncertainty,
    ModalQuery,
    certainty,
    make_strategy,
    rank_pool,
    strategy_for,
)


def test_make_strategy_names_and_errors() -> None:
    assert set(STRATEGIES) == {"random", "margin", "least_confidence", "entropy", "diverse", "dense", "coldstart",
                               "auto", "auto-image"}
    assert make_strategy().name == "dense"
    assert make_strategy("diverse").method == "margin"
    assert make_strategy("entropy").name == "entropy"
    with pytest.raises(ValueError, match="unknown strategy 'bald'.*diverse.*modal:<module>:<function>"):
        make_strategy("bald")
    with pytest.raises(ValueError, match="cannot import"):
        make_strategy("modal:no_such_module_xyz:fn")
    with pytest.raises(ValueError, match="unknown diversity"):
        DiverseUncertainty(diversity="nope")



def test_auto_blends_margin_with_dense_for_text_and_spreads_margin_for_images() -> None:
    assert strategy_for("auto") == strategy_for("auto", "text") == "auto"
    assert strategy_for("auto", "image") == "auto-image"
    assert strategy_for("margin", "image") == "margin"
    assert make_strategy("auto").name == "auto" and make_strategy("auto").structured == "dense"
    assert make_strategy("auto-image").name == "auto-image" and make_strategy("auto-image").candidates == 3


def test_make_strategy_hands_the_measure_to_strategies_that_weigh_one() -> None:
    for name in ("dense", "diverse"):
        assert make_strategy(name).method == "margin"
        assert make_strategy(name, method="entropy").method == "entropy"
        assert make_strategy(name, method="least_confidence").method == "least_confidence"
    for name in ("margin", "least_confidence", "entropy"):  # named after a measure: they pick the batch by it
        other = "margin" if name != "margin" else "entropy"
        assert make_strategy(name, method=other).method == name
    assert make_strategy("random", method="entropy").method is None
    assert make_strategy("coldstart", method="entropy").method is None
    assert isinstance(make_strategy("modal:numpy:argsort", method="entropy"), ModalQuery)
    with pytest.raises(ValueError, match="unknown certainty method 'bald'"):
        make_strategy("dense", method="bald")


class FirstRows(CertaintyStrategy):
    """A strategy someone adds: the first unlabeled rows whose certainty is below `below` (by `method`)."""

    name = "first"

    def __init__(self, method: str = "margin", below: float = 0.5, *, random_state=None) -> None:
        super().__init__(random_state=random_state)
        self.method, self.below = method, below

    def _select(self, cert, X, available, batch_size, rng):
        return np.flatnonzero(available & (cert < self.below))[:batch_size]


def test_a_new_strategy_is_one_class_and_one_registry_line(monkeypatch, pool) -> None:
    proba, X = pool
    monkeypatch.setitem(STRATEGIES, "first", FirstRows)  # the one line: "first": FirstRows,
    strategy = make_strategy("first", method="entropy", random_state=0)
    assert isinstance(strategy, FirstRows) and strategy.method == "entropy"  # it gets the measure by taking one
    scores, batch = rank_pool(proba, X, batch_size=5, strategy=strategy)
    np.testing.assert_array_equal(batch, np.flatnonzero(certainty(proba, "entropy") < 0.5)[:5])
    assert scores[batch].max() < np.delete(scores, batch).min()
    monkeypatch.delitem(STRATEGIES, "first")
    with pytest.raises(ValueError, match="unknown strategy 'first'"):
        make_strategy("first")
