"""suggest.strategies.registry: strategies by name, "auto", and the certainty measure they are given."""

from __future__ import annotations

import pytest

from suggest.strategies import STRATEGIES, DiverseUncertainty, make_strategy


def test_make_strategy_names_and_errors() -> None:
    assert set(STRATEGIES) == {"random", "margin", "least_confidence", "entropy", "diverse", "dense", "coldstart"}
    assert make_strategy().name == "dense"
    assert make_strategy("diverse").method == "margin"
    assert make_strategy("entropy").name == "entropy"
    with pytest.raises(ValueError, match="unknown strategy 'bald'.*diverse.*modal:<module>:<function>"):
        make_strategy("bald")
    with pytest.raises(ValueError, match="cannot import"):
        make_strategy("modal:no_such_module_xyz:fn")
    with pytest.raises(ValueError, match="unknown diversity"):
        DiverseUncertainty(diversity="nope")

