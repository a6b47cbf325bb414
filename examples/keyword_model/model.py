"""A word-count (naive Bayes) text classifier written in the LabelStudioMLBase shape, hosted by suggest.

Run it: `PYTHONPATH=. suggest serve --model examples.keyword_model.model:KeywordModel` (or set
SUGGEST_MODEL_CLASS). It needs nothing but the standard library and suggest's small base class; the
same class body works on label_studio_ml's LabelStudioMLBase (swap the import).

Before any annotation it votes with each choice's `hint` words (`<Choice value="fresh" hint="good great"/>`);
`fit` counts the words of every labeled task per choice and keeps the counts with `set`, so the next
version starts from them. `score` is the probability of the suggested choice: suggest puts the
tasks with the lowest scores first in Label Studio's queue.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from suggest.mlbase import SuggestMLBase

WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class KeywordModel(SuggestMLBase):
    """Multinomial naive Bayes over words, one control (the first <Choices> on a <Text>)."""

    def setup(self) -> None:
        self.from_name, self.to_name, self.value = self.get_first_tag_occurence("Choices", "Text")
        control = self.label_interface.get_control(self.from_name)
        self.choices = list(control.labels)
        self.hints = {label: words(str(tag.attr.get("hint", "")))
                      for label, tag in (control.labels_attrs or {}).items()}

    def _counts(self) -> dict[str, Counter]:
        stored = self.get("counts")
        if stored:
            return {label: Counter(stored.get(label, {})) for label in self.choices}
        return {label: Counter({w: 3 for w in self.hints.get(label, [])}) for label in self.choices}

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs) -> list[dict]:
        counts = self._counts()
        vocab = set().union(*counts.values()) or {""}
        totals = {label: sum(c.values()) for label, c in counts.items()}
        priors = self.get("priors") or {label: 1.0 / len(self.choices) for label in self.choices}
        out = []
        for task in tasks:
            text = str(task["data"].get(self.value, ""))
            logp = {label: math.log(priors.get(label, 1e-3)) + sum(
                math.log((counts[label][w] + 1) / (totals[label] + len(vocab))) for w in words(text) if w in vocab)
                for label in self.choices}
            top = max(logp.values())
            norm = sum(math.exp(v - top) for v in logp.values())
            best = max(logp, key=logp.get)
            score = 1.0 / norm
            out.append({"result": [{"from_name": self.from_name, "to_name": self.to_name, "type": "choices",
                                    "value": {"choices": [best]}, "score": score}],
                        "score": score, "model_version": self.model_version})
        return out

    def fit(self, event: str, data: dict, **kwargs) -> None:
        counts = {label: Counter() for label in self.choices}
        seen = Counter()
        for task in kwargs.get("tasks") or data.get("tasks") or []:
            text = str(task["data"].get(self.value, ""))
            for annotation in task.get("annotations") or []:
                for result in annotation.get("result") or []:
                    if result.get("from_name") != self.from_name:
                        continue
                    for label in result["value"].get("choices", []):
                        if label in counts:
                            counts[label].update(words(text))
                            seen[label] += 1
        total = sum(seen.values())
        self.set("counts", {label: dict(c) for label, c in counts.items()})
        self.set("priors", {label: (seen[label] + 1) / (total + len(self.choices)) for label in self.choices})
        self.set("trained_on", total)
        self.set_model_version(f"keywords-{total}")
