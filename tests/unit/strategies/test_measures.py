"""The certainty measures as the strategies see them (backends/uncertainty.py, re-exported by suggest.strategies):
values, their order, and the checks on class probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from suggest.strategies import CERTAINTY_METHODS, certainty
from tests.unit.strategies.data import binary_proba

BINARY = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [1.0, 0.0]])
TERNARY = np.array([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]])


def _h(*p: float) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


@pytest.mark.parametrize(
    ("method", "proba", "expected"),
    [
        ("margin", BINARY, [0.0, 0.8, 0.6, 1.0]),
        ("least_confidence", BINARY, [0.0, 0.8, 0.6, 1.0]),
        ("entropy", BINARY, [0.0, 1 - _h(0.9, 0.1) / math.log(2), 1 - _h(0.2, 0.8) / math.log(2), 1.0]),
        ("margin", TERNARY, [0.0, 0.2, 0.2, 1.0]),
        ("least_confidence", TERNARY, [0.0, 0.25, 0.4, 1.0]),
        ("entropy", TERNARY, [0.0, 1 - _h(0.5, 0.3, 0.2) / math.log(3), 1 - _h(0.6, 0.4) / math.log(3), 1.0]),
    ],
)
def test_certainty_values(method: str, proba: np.ndarray, expected: list[float]) -> None:
    got = certainty(proba, method)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("method", CERTAINTY_METHODS)
def test_certainty_orders_uniform_lowest_onehot_highest(method: str) -> None:
    proba = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.45, 0.45, 0.1]])
    c = certainty(proba, method)
    assert np.argmin(c) == 1 and np.argmax(c) == 2
    assert c[3] < c[0]  # a near-tie between two classes is less certain than a clear winner
    assert ((c >= 0) & (c <= 1)).all()


def test_certainty_default_is_margin() -> None:
    np.testing.assert_array_equal(certainty(TERNARY), certainty(TERNARY, "margin"))


@pytest.mark.parametrize("method", CERTAINTY_METHODS)
def test_certainty_single_class_is_certain(method: str) -> None:
    np.testing.assert_array_equal(certainty(np.ones((4, 1)), method), np.ones(4))


def test_certainty_empty_pool() -> None:
    assert certainty(np.empty((0, 3))).shape == (0,)


def test_certainty_is_float64_and_resolves_confident_rows() -> None:
    """float64 keeps apart confident rows that float32 would tie at margin 1.0."""
    proba = binary_proba(np.array([1 - 1e-9, 1 - 1e-10, 1 - 1e-11]))
    c = certainty(proba)
    assert c.dtype == np.float64
    assert c[0] < c[1] < c[2]
    assert certainty(proba.astype(np.float32)).dtype == np.float64


@pytest.mark.parametrize(
    ("proba", "message"),
    [
        (np.array([0.5, 0.5]), "2-D"),
        (np.ones((2, 2, 2)) / 2, "2-D"),
        (np.array([[0.5, np.nan], [0.5, 0.5]]), "NaN"),
        (np.array([[0.5, 0.5], [np.inf, 0.0]]), "NaN or inf"),
        (np.array([[1.5, -0.5]]), r"\[0, 1\]"),
        (np.array([[0.5, 0.4]]), "sum to 1"),
        (np.empty((3, 0)), "no class columns"),
        (np.array([["a", "b"]]), "numeric"),
        (None, "None"),
    ],
)
def test_certainty_rejects_bad_proba(proba: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        certainty(proba)  # type: ignore[arg-type]


def test_certainty_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown certainty method 'bald'.*margin, least_confidence, entropy"):
        certainty(BINARY, "bald")
