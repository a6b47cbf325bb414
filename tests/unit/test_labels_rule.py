"""The several-annotators rule and the labeled-set fingerprint."""

from __future__ import annotations

from suggest.project import labels_fingerprint, resolve_labels
from suggest.schema import Label


def test_ground_truth_wins_over_a_majority():
    anns = [Label(1, 1, "a", "t", updated_at="1"), Label(1, 2, "a", "t", updated_at="2"),
            Label(1, 3, "b", "t", ground_truth=True, updated_at="0")]
    assert resolve_labels(anns)[1].label == "b"


def test_majority_then_latest_breaks_ties():
    anns = [Label(1, 1, "a", "t", updated_at="1"), Label(1, 2, "b", "t", updated_at="2"),
            Label(1, 3, "a", "t", updated_at="3"), Label(2, 4, "a", "u", updated_at="1"),
            Label(2, 5, "b", "u", updated_at="2")]
    resolved = resolve_labels(anns)
    assert resolved[1].label == "a"  # 2 votes to 1
    assert resolved[2].label == "b"  # 1 to 1: the most recently updated


def test_fingerprint_changes_with_a_label_and_not_with_order():
    a = {1: Label(1, 1, "a", "t"), 2: Label(2, 2, "b", "u")}
    b = {2: Label(2, 2, "b", "u"), 1: Label(1, 1, "a", "t")}
    c = {1: Label(1, 1, "b", "t"), 2: Label(2, 2, "b", "u")}
    assert labels_fingerprint(a) == labels_fingerprint(b) != labels_fingerprint(c)
