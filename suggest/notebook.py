"""Label in a notebook, in the engine's order (issue 18), in the spirit of Pigeon.

    from suggest.notebook import Labeler
    labeler = Labeler(texts, choices=["fresh", "rotten"], retrain_every=5)
    labeler.widget      # display it; click a choice, or "accept" for the preselected suggestion
    labeler.labels      # {position in texts: label}, filled as you go

Texts come in the order `suggest rank` would give them: for coverage before two labels exist (with a
zero-shot suggestion from the choice names, as `suggest serve` makes before the first label), then
uncertain and diverse first. Every `retrain_every` labels the engine's model (the packaged MiniLM and
a class-balanced logistic head, as in `suggest serve`) is refitted and the rest re-ranked, and its
suggestion is preselected (the button marked "success"). Texts are embedded once. Needs ipywidgets:
`pip install "suggest[notebook]"`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from suggest.schema import BadInput


def _widgets():
    try:
        import ipywidgets
    except ImportError:
        raise BadInput('the notebook labeler needs ipywidgets: pip install "suggest[notebook]"') from None
    return ipywidgets


class Labeler:
    """A labeling loop over `texts` with one `choice` each; see the module docstring.

    `labeled`: labels known before (position -> label); `batch`: how many texts are queued per ranking;
    `on_done(labels)`: called when every text is labelled or skipped. `label(choice)`, `accept()` and
    `skip()` do what the buttons do, for scripts and tests.
    """

    def __init__(self, texts: Sequence[str], choices: Sequence[str], *, labeled: dict[int, str] | None = None,
                 retrain_every: int = 5, batch: int = 10, strategy: str = "dense",
                 on_done: Callable[[dict[int, str]], Any] | None = None, cache_dir: str | None = None):
        self.texts = [str(t) for t in texts]
        self.choices = [str(c) for c in choices]
        if not self.texts:
            raise BadInput("Labeler: no texts to label")
        if len(self.choices) < 2 or len(set(self.choices)) != len(self.choices):
            raise BadInput(f"Labeler: give at least two distinct choices, got {self.choices}")
        if retrain_every < 1 or batch < 1:
            raise BadInput("Labeler: retrain_every and batch must be at least 1")
        self.labels: dict[int, str] = dict(labeled or {})
        bad = [y for y in self.labels.values() if y not in self.choices]
        if bad:
            raise BadInput(f"Labeler: label {bad[0]!r} is not one of the choices {self.choices}")
        self.retrain_every, self.batch, self.strategy, self.on_done = retrain_every, batch, strategy, on_done
        self.skipped: set[int] = set()
        self.current: int | None = None
        self.suggestion: str | None = None
        self.retrains = 0
        self._since = 0
        self._queue: list[int] = []
        self._proba: dict[int, np.ndarray] = {}
        self._model = self._make_model(cache_dir)
        from suggest.schema import Item

        self._X = self._model.embed([Item(t) for t in self.texts])
        self._build()
        self._rank()
        self._next()

    # the engine ---------------------------------------------------------------------------------

    def _make_model(self, cache_dir: str | None = None):
        from backends.embedding import EmbeddingClassifier
        from suggest.store import Store

        if not hasattr(self, "_memory"):
            self._cache = Store(cache_dir) if cache_dir is not None else None
            self._memory: dict = {}
        model = EmbeddingClassifier(self.choices, cache=self._cache)
        model._memory = self._memory  # one embedding memory for every refit: texts are embedded once
        return model

    def _rank(self) -> None:
        """Refit on the labels so far and queue the next batch of the rest: for coverage, with zero-shot
        suggestions from the choice names, until two classes are labelled; by the strategy after."""
        from suggest.schema import Item
        from suggest.strategies import make_strategy, rank_pool

        rest = np.asarray([i for i in range(len(self.texts)) if i not in self.labels and i not in self.skipped])
        self._queue = []
        if not len(rest):
            return
        trained = len(set(self.labels.values())) >= 2
        if trained:
            done = sorted(self.labels)
            self._model = self._make_model()
            self._model.fit([Item(self.texts[i]) for i in done], [self.labels[i] for i in done])
            self.retrains += 1
        proba = self._model.predict_proba_embedded(self._X[rest])
        strategy = make_strategy(self.strategy if trained else "coldstart", random_state=0)
        _, picked = rank_pool(proba if trained else None, self._X[rest], batch_size=min(self.batch, len(rest)),
                              strategy=strategy)
        self._queue = [int(rest[p]) for p in picked]
        self._proba = {int(i): row for i, row in zip(rest, proba, strict=True)}

    def _next(self) -> None:
        while self._queue and (self._queue[0] in self.labels or self._queue[0] in self.skipped):
            self._queue.pop(0)
        if not self._queue:
            self._rank()
        if not self._queue:
            self.current, self.suggestion = None, None
            self._show()
            if self.on_done is not None:
                self.on_done(self.labels)
            return
        self.current = self._queue.pop(0)
        p = self._proba.get(self.current)
        self.suggestion = None if p is None else self.choices[int(np.argmax(p))]
        self._show()

    # actions ------------------------------------------------------------------------------------

    def label(self, choice: str) -> None:
        """Label the text shown with `choice` and show the next one."""
        if self.current is None:
            raise BadInput("Labeler: nothing left to label")
        if choice not in self.choices:
            raise BadInput(f"Labeler: {choice!r} is not one of the choices {self.choices}")
        self.labels[self.current] = choice
        self._since += 1
        if self._since >= self.retrain_every:
            self._since = 0
            self._rank()
        self._next()

    def accept(self) -> None:
        """Take the preselected suggestion (nothing happens before the model makes one)."""
        if self.suggestion is not None:
            self.label(self.suggestion)

    def skip(self) -> None:
        """Leave the text shown unlabelled and show the next one."""
        if self.current is not None:
            self.skipped.add(self.current)
            self._next()

    # the widget ---------------------------------------------------------------------------------

    def _build(self) -> None:
        w = _widgets()
        self.progress = w.HTML()
        self.text = w.HTML(layout=w.Layout(border="1px solid #ddd", padding="8px"))
        self.buttons = {c: w.Button(description=c, tooltip=f"label: {c}") for c in self.choices}
        for choice, button in self.buttons.items():
            button.on_click(lambda _b, c=choice: self.label(c))
        self.accept_button = w.Button(description="accept", tooltip="take the suggestion", icon="check")
        self.accept_button.on_click(lambda _b: self.accept())
        self.skip_button = w.Button(description="skip")
        self.skip_button.on_click(lambda _b: self.skip())
        row = w.HBox([*self.buttons.values(), self.accept_button, self.skip_button])
        self.widget = w.VBox([self.progress, self.text, row])

    def _show(self) -> None:
        done = len(self.labels)
        left = len(self.texts) - done - len(self.skipped)
        if self.current is None:
            self.progress.value = f"<b>done</b>: {done} labelled, {len(self.skipped)} skipped"
            self.text.value = ""
            for b in [*self.buttons.values(), self.accept_button, self.skip_button]:
                b.disabled = True
            return
        suggestion = f", suggestion <b>{html.escape(self.suggestion)}</b>" if self.suggestion else ""
        self.progress.value = (f"{done} labelled, {left} left{suggestion} (model refitted {self.retrains}x)")
        self.text.value = f"<div style='white-space: pre-wrap'>{html.escape(self.texts[self.current])}</div>"
        for choice, button in self.buttons.items():
            button.button_style = "success" if choice == self.suggestion else ""
        self.accept_button.disabled = self.suggestion is None


__all__ = ["Labeler"]
