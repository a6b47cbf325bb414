"""The notebook labeler (issue 18), driven through its widget objects: buttons clicked from Python."""

from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")

from suggest.notebook import Labeler  # noqa: E402
from suggest.schema import BadInput  # noqa: E402


@pytest.fixture(scope="module")
def sample(rt_sample):
    return rt_sample[:24]


def click(labeler, name):
    button = labeler.accept_button if name == "accept" else labeler.skip_button if name == "skip" \
        else labeler.buttons[name]
    assert not button.disabled, name
    button.click()


def test_clicks_label_in_the_engines_order_and_learn(sample):
    texts = [t for t, _ in sample]
    truth = dict(enumerate(y for _, y in sample))
    finished = []
    labeler = Labeler(texts, ["fresh", "rotten"], retrain_every=4, batch=6, on_done=finished.append)
    assert labeler.widget.children[1] is labeler.text
    seen = []
    first = labeler.current
    assert texts[first] in labeler.text.value.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")
    # zero-shot suggestion before any label, preselected on its button
    assert labeler.suggestion in ("fresh", "rotten")
    assert labeler.buttons[labeler.suggestion].button_style == "success"
    while labeler.current is not None and len(labeler.labels) < 12:
        seen.append(labeler.current)
        click(labeler, truth[labeler.current])
    assert len(set(seen)) == 12 and labeler.labels == {i: truth[i] for i in seen}
    assert labeler.retrains >= 2  # learned as we labelled
    styled = [c for c, b in labeler.buttons.items() if b.button_style == "success"]
    assert styled == [labeler.suggestion]
    taken = labeler.current
    click(labeler, "accept")
    assert labeler.labels[taken] == styled[0]
    skipped = labeler.current
    click(labeler, "skip")
    assert skipped in labeler.skipped and skipped not in labeler.labels
    while labeler.current is not None:
        click(labeler, truth[labeler.current])
    assert finished == [labeler.labels] and len(labeler.labels) == 23
    assert "done" in labeler.progress.value and all(b.disabled for b in labeler.buttons.values())
    with pytest.raises(BadInput, match="nothing left"):
        labeler.label("fresh")


def test_the_order_follows_the_engine(sample):
    """The first text shown is the engine's cold-start pick (`suggest rank` with no labels)."""
    from suggest.rank import rank_texts

    texts = [t for t, _ in sample]
    labeler = Labeler(texts, ["fresh", "rotten"], batch=5)
    assert labeler.current == rank_texts(texts, [], batch=5)[0]["index"]


def test_bad_input_names_the_problem(sample):
    texts = [t for t, _ in sample]
    for kwargs, message in (({"choices": ["a"]}, "two distinct choices"),
                            ({"choices": ["a", "b"], "labeled": {0: "c"}}, "not one of the choices"),
                            ({"choices": ["a", "b"], "retrain_every": 0}, "at least 1")):
        with pytest.raises(BadInput, match=message):
            Labeler(texts, **kwargs)
    with pytest.raises(BadInput, match="no texts"):
        Labeler([], ["a", "b"])
    labeler = Labeler(texts[:3], ["a", "b"])
    with pytest.raises(BadInput, match="'c' is not one of"):
        labeler.label("c")
