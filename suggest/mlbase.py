"""Your own model class, in the shape of label-studio-ml-backend's `LabelStudioMLBase`, hosted by suggest.

A class served with `suggest serve --model package.module:Class` (or SUGGEST_MODEL_CLASS) is made
with keyword arguments `project_id` and `label_config`; its `predict(tasks, context=None, **kwargs)`
returns Label Studio predictions (a list of `{"result": [...], "score": s, "model_version": v}` or an
object with a `predictions` list) and its optional `fit(event, data, **kwargs)` trains. suggest adds
what the reference framework does not: `fit` runs in the background, coalesced; each fit is a new
version (a new instance, its state carried over); the unlabeled pool is scored by the predictions'
`score` and pushed into Label Studio; `/metrics` shows it all (suggest/hosted.py is the adapter).

`SuggestMLBase` gives such classes the small helpers they use, with no dependency on the
`label-studio-ml` package: `get`/`set` of small JSON state (kept with each version), `model_version`,
`label_interface` (label-studio-sdk's parse of the config) and `get_first_tag_occurence`. A class
that subclasses label_studio_ml's own `LabelStudioMLBase` runs through the same adapter (its own
get/set cache is then its business).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
from typing import Any


class ModelClassError(ValueError):
    """SUGGEST_MODEL_CLASS (--model) does not name an importable class with a `predict` method."""


def import_model_class(target: str) -> type:
    """The class named "package.module:Class"; ModelClassError saying what is wrong."""
    module_name, sep, attr = target.strip().partition(":")
    if not sep or not module_name or not attr:
        raise ModelClassError(f"expected package.module:Class, got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any import error is theirs to read in one line
        raise ModelClassError(f"{module_name!r} does not import: {type(exc).__name__}: {exc}") from None
    cls = module
    for part in attr.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise ModelClassError(f"{module_name!r} has no {attr!r}")
    if not inspect.isclass(cls) or not callable(getattr(cls, "predict", None)):
        raise ModelClassError(f"{target!r} is not a class with a predict(tasks, context=None, **kwargs) method")
    return cls


class SuggestMLBase:
    """Base class for a model suggest hosts; override `predict` and, to learn, `fit` (both as in LabelStudioMLBase).

    `setup()` runs after `__init__`, as in the reference: set `model_version` or load weights there.
    State set with `set(key, value)` must be JSON (it is saved with the version and given back to the next
    instance, so a fit can start from the previous one's state).
    """

    INITIAL_VERSION = "0.0.1"

    def __init__(self, project_id: str | None = None, label_config: str | None = None, **kwargs: Any):
        self.project_id = project_id
        self.label_config = label_config or ""
        self.extra_params = kwargs
        self._state: dict[str, Any] = {}
        self.setup()

    def setup(self) -> None:
        """Called once per instance after `__init__`: set the model version, load what predict needs."""

    # state -------------------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.get(key, default)

    def set(self, key: str, value: Any) -> None:
        json.dumps(value)  # refuse what cannot be saved now, not when the version is written
        self._state[key] = value

    def has(self, key: str) -> bool:
        return key in self._state

    @property
    def model_version(self) -> str:
        return str(self.get("model_version", self.INITIAL_VERSION))

    def set_model_version(self, version: str) -> None:
        self.set("model_version", str(version))

    # the label config ----------------------------------------------------------------------------

    @functools.cached_property
    def label_interface(self):
        """label-studio-sdk's LabelInterface of this project's config (controls, objects, labels)."""
        from label_studio_sdk.label_interface import LabelInterface

        return LabelInterface(self.label_config)

    @functools.cached_property
    def parsed_label_config(self) -> dict:
        """{control name: {type, to_name, inputs, labels, labels_attrs}}, as LabelStudioMLBase gives it."""
        from label_studio_sdk._extensions.label_studio_tools.core.label_config import parse_config

        return parse_config(self.label_config)

    def bump_model_version(self) -> str:
        """0.0.1 -> 0.1.0 (the next minor version; a version that is not x.y.z gets '.1' appended)."""
        parts = self.model_version.split(".")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            version = f"{parts[0]}.{int(parts[1]) + 1}.0"
        else:
            version = f"{self.model_version}.1"
        self.set_model_version(version)
        return version

    def get_first_tag_occurence(self, control_type: str, object_type: str, **kwargs: Any) -> tuple:
        """(from_name, to_name, value) of the first `control_type` on an `object_type`, as in LabelStudioMLBase."""
        return self.label_interface.get_first_tag_occurence(control_type, object_type, **kwargs)

    # the model -----------------------------------------------------------------------------------

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        """One prediction per task: {"result": [...], "score": float in [0, 1], "model_version": str}."""
        raise NotImplementedError

    def fit(self, event: str, data: dict, **kwargs: Any) -> None:
        """Learn; `data["tasks"]` (and kwargs["tasks"]) holds every labeled task with its annotations."""
