"""Model families: which Backend serves a control, built-ins in a fixed order, plug-ins from entry points.

A family is one small object: a `name`, `supports(schema) -> bool`, `make(schema, context)` (a fresh,
unfitted model for a control: zero-shot, bootstrap or untrained) and `load(schema, folder, context)`
(a fitted model back from what its `save` wrote). `Family.of_class` builds one from a Backend class
that follows the built-ins' constructor convention (`Class(labels, cache=..., **params)`). The first
family in registry order whose `supports` says yes serves the control; a control no family supports
is a SchemaError (a 422 at /setup), never a crash.

Plug-ins: a distribution declares its family in the `suggest.backends` entry-point group, e.g.

    [project.entry-points."suggest.backends"]
    keywords = "suggest_keywords:family"      # a backends.registry.Family object

The order rule: plug-ins with `first=True` (they specialize a control a built-in also serves), in
entry-point name order; then the built-ins, in `BUILTINS` order; then the other plug-ins, by name.
A plug-in that fails to import, or names no Family, is logged and skipped, and so is one that takes
a built-in's name (this distribution's own metadata, before the registry, listed the built-in
classes under those names). Entry points are read once per process (`default_registry`).

Why in `backends` and not in `suggest`: the registry maps the shared vocabulary (a Schema) to a
Backend and knows nothing of projects, stores or HTTP; here, a plug-in author imports one package,
and backends/checks.py can test every registered family without importing the engine.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from backends.base import Backend
from backends.encoders import EmbeddingCache
from backends.schema import Schema, SchemaError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "suggest.backends"


@dataclass(frozen=True)
class Context:
    """What the host shares with every model it makes or loads (more may join; families take what they use)."""

    cache: EmbeddingCache | None = None  # the store's (encoder id, content hash) -> vector cache


@dataclass(frozen=True)
class Family:
    """One model family: which controls it serves, and how to make a fresh model or load a saved one."""

    name: str
    supports: Callable[[Schema], bool]
    make: Callable[[Schema, Context], Backend]
    load: Callable[[Schema, Path, Context], Backend]
    first: bool = False  # a plug-in tried before the built-ins (it specializes what a built-in serves)

    @classmethod
    def of_class(
        cls, name: str, supports: Callable[[Schema], bool], target: str,
        params: Callable[[Schema], dict] | None = None, *, first: bool = False,
    ) -> Family:
        """A family for a Backend class named "module:Class", imported on first use.

        `make` calls `Class(list(schema.labels), cache=context.cache, **params(schema))` and `load`
        calls `Class.load(folder, cache=context.cache)`: the built-ins' convention, open to plug-ins.
        """

        def backend_class() -> type[Backend]:
            module, _, attr = target.partition(":")
            return getattr(importlib.import_module(module), attr)

        def make(schema: Schema, context: Context) -> Backend:
            extra = params(schema) if params is not None else {}
            return backend_class()(list(schema.labels), cache=context.cache, **extra)

        def load(schema: Schema, folder: Path, context: Context) -> Backend:
            return backend_class().load(folder, cache=context.cache)

        return cls(name, supports, make, load, first)


class Registry:
    """An ordered list of families; the first that supports a control serves it."""

    def __init__(self, families: Iterable[Family]):
        self.families: tuple[Family, ...] = tuple(families)
        names = [f.name for f in self.families]
        if len(set(names)) != len(names):
            raise ValueError(f"family names must be unique, got {names}")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.families]

    def family_for(self, schema: Schema) -> Family:
        """The family that serves a control; SchemaError naming the families when none does."""
        for family in self.families:
            try:
                if family.supports(schema):
                    return family
            except SchemaError:  # the family is the one for this control, and refuses it as configured
                raise
            except Exception as exc:  # a plug-in's bug must not take down the controls others serve
                log.warning("model family %r: supports(%r) failed (%s); skipping it", family.name,
                            schema.from_name, exc)
        raise SchemaError(
            f"no model family serves <{'Labels' if schema.control == 'labels' else 'Choices'} "
            f"name={schema.from_name!r}{' choice=multiple' if schema.multiple else ''}> on a {schema.object_type} "
            f"object (families: {', '.join(self.names)})"
        )

    def make(self, schema: Schema, context: Context) -> Backend:
        return self.family_for(schema).make(schema, context)

    def load(self, schema: Schema, folder: Path, context: Context) -> Backend:
        """Load with the family that serves the control now, or, for a folder a family of the same kind
        saved (`SAME_KIND`: the fine-tuned classifier after SUGGEST_FINETUNE_MIN_LABELS went back to 0),
        with that family: a published version must still load when a setting changes."""
        family = self.family_for(schema)
        saved = _saved_family(Path(folder))
        if saved and saved != family.name and saved in SAME_KIND.get(family.name, ()):
            family = next((f for f in self.families if f.name == saved), family)
        return family.load(schema, Path(folder), context)


def _saved_family(folder: Path) -> str | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("family") if isinstance(meta, dict) and isinstance(meta.get("family"), str) else None


# built-ins: one line each; modules import lazily, so a project loads only the families its controls need --


def _is(kind: str, object_type: str) -> Callable[[Schema], bool]:
    return lambda schema: schema.task_kind == kind and schema.object_type == object_type


def _hints(schema: Schema) -> dict:
    return {"hints": schema.hints}


def spacy_map(schema: Schema) -> dict[str, str]:
    """Overrides of the bootstrap's default spaCy type -> label map from the config's `entity` attributes:
    a label that names its types gets exactly those ("" drops a type the default map gave it)."""
    if not schema.entities:
        return {}
    from backends.spans import default_entity_map

    override = {etype: "" for etype, label in default_entity_map(list(schema.labels)).items()
                if label in schema.entities}
    return override | {etype: label for label, types in schema.entities.items() for etype in types}


def _pipeline(schema: Schema) -> bool:
    """A text classifier (SUGGEST_TEXT_CLASSIFIER) serves this control; raises SchemaError if its labels do not map."""
    if schema.task_kind != "classification" or schema.object_type != "text":
        return False
    from backends.pipeline import supports

    return supports(schema)


def _pipeline_spans(schema: Schema) -> bool:
    """A token classifier (SUGGEST_TEXT_CLASSIFIER) bootstraps this <Labels>; SchemaError if its labels do not map."""
    if schema.task_kind != "spans" or schema.object_type != "text":
        return False
    from backends.pipeline import classifier_for, map_labels
    from backends.pipeline_spans import shared_token_pipeline

    folder = classifier_for(schema)
    if folder is None:
        return False
    map_labels(schema.labels, shared_token_pipeline(folder).model_labels, schema.model_labels, schema.from_name)
    return True


def _pipeline_params(schema: Schema) -> dict:
    from backends.pipeline import classifier_for

    return {"model": classifier_for(schema), "label_map": schema.model_labels, "hints": schema.hints}


def _finetune_on(schema: Schema) -> bool:
    from backends.finetune import supports

    return supports(schema)


def _finetune_min() -> int:
    from backends.finetune import finetune_min_labels

    return finetune_min_labels()


SAME_KIND = {"embedding": ("finetune",), "finetune": ("embedding",)}  # may serve each other's saved versions

BUILTINS: tuple[Family, ...] = (
    Family.of_class("pipeline", _pipeline, "backends.pipeline:PipelineClassifier", _pipeline_params),
    # issue 16: SUGGEST_FINETUNE_MIN_LABELS > 0 puts the SetFit-style family before the frozen one
    Family.of_class("finetune", lambda schema: _finetune_on(schema), "backends.finetune:FineTuneClassifier",
                    lambda schema: {"hints": schema.hints, "min_labels": _finetune_min()}),
    Family.of_class("embedding", _is("classification", "text"), "backends.embedding:EmbeddingClassifier", _hints),
    Family.of_class("multilabel", _is("multilabel", "text"), "backends.multilabel:MultiLabelClassifier", _hints),
    Family.of_class("pipeline-spans", _pipeline_spans, "backends.pipeline_spans:PipelineTagger",
                    lambda schema: {"model": _pipeline_params(schema)["model"], "label_map": schema.model_labels}),
    Family.of_class("spans", _is("spans", "text"), "backends.spans:SpanTagger",
                    lambda schema: {"entity_map": spacy_map(schema)}),
    Family.of_class("images", _is("classification", "image"), "backends.images:ImageClassifier"),
    Family.of_class("images-multilabel", _is("multilabel", "image"),
                    "backends.multilabel_images:MultiLabelImageClassifier"),
)


# plug-ins ----------------------------------------------------------------------------------------------


def plugin_families(group: str = ENTRY_POINT_GROUP, reserved: Iterable[str] = ()) -> list[Family]:
    """The Family objects installed distributions declare in `group`, by entry-point name; the broken skipped."""
    reserved = set(reserved)
    found: dict[str, Family] = {}
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
        if ep.name in reserved:
            log.debug("model family entry point %r (%s) has a built-in's name; ignored", ep.name, ep.value)
            continue
        if ep.name in found:
            log.warning("model family entry point %r (%s): the name is taken; ignored", ep.name, ep.value)
            continue
        try:
            family = ep.load()
        except Exception as exc:  # a broken plug-in must never keep the server from starting
            log.warning("model family plug-in %r (%s) does not import, skipped: %s: %s", ep.name, ep.value,
                        type(exc).__name__, exc)
            continue
        if not isinstance(family, Family):
            log.warning("model family plug-in %r (%s) is a %s, not a backends.registry.Family; skipped", ep.name,
                        ep.value, type(family).__name__)
            continue
        if family.name != ep.name:
            log.warning("model family plug-in %r (%s) calls itself %r; skipped (the two names must agree)",
                        ep.name, ep.value, family.name)
            continue
        found[ep.name] = family
    return list(found.values())


def ordered(builtins: Iterable[Family], plugins: Iterable[Family]) -> Registry:
    """The order rule: plug-ins marked `first`, the built-ins, then the other plug-ins (each group as given)."""
    plugins = list(plugins)
    return Registry([*(p for p in plugins if p.first), *builtins, *(p for p in plugins if not p.first)])


def discover(group: str = ENTRY_POINT_GROUP) -> Registry:
    """Built-ins plus the plug-ins installed now (reads the entry points every call)."""
    registry = ordered(BUILTINS, plugin_families(group, reserved=[f.name for f in BUILTINS]))
    extra = [f.name for f in registry.families if f not in BUILTINS]
    if extra:
        log.info("model families: %s (plug-ins: %s)", ", ".join(registry.names), ", ".join(extra))
    return registry


@functools.cache
def default_registry() -> Registry:
    """The process's registry: entry points are read once (`default_registry.cache_clear()` to re-read)."""
    return discover()
