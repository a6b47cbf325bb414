"""suggest: an active-learning label suggestion engine behind Label Studio.

The Python API (suggest/api.py, docs/python-api.md): `suggest.rank`, `simulate`, `export`, `labels`,
`stats`, `quality`, loaded on first use, so `import suggest` stays light (no torch).

Some of these names are also modules of this package (suggest/simulate.py, suggest/rank.py,
suggest/quality/): `suggest.<name>` is always the API function, which also hands out the module's
attributes, so `from suggest.quality import report` and `import suggest.quality.report` work as before.
"""

import functools
import sys
import types

__version__ = "0.1.0"

_API = ("rank", "simulate", "export", "labels", "stats", "quality", "notebook_labeler")
_TYPES = ("BadInput", "Label", "Span")
__all__ = [*_API, *_TYPES, "__version__"]


class _ApiFunction:
    """An API function that also answers, attribute by attribute, for the submodule of the same name, so
    `suggest.quality(...)` calls the API and `import suggest.quality.report as r` still finds the module."""

    def __init__(self, function, package: types.ModuleType, name: str):
        functools.update_wrapper(self, function)
        self._package, self._name = package, name

    def __call__(self, *args, **kwargs):
        return self.__wrapped__(*args, **kwargs)

    def __getattr__(self, attr: str):
        module = self._package.__dict__.get("_module_" + self._name)
        if module is None:
            raise AttributeError(f"suggest.{self._name} (the API function) has no attribute {attr!r}")
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<suggest API function {self._name}>"


def _api_name(name: str) -> property:
    def get(package: types.ModuleType):
        from suggest import api

        return _ApiFunction(getattr(api, name), package, name)

    def keep_submodule(package: types.ModuleType, module: object) -> None:
        package.__dict__["_module_" + name] = module  # the import system attaches a submodule of that name here

    return property(get, keep_submodule, doc=f"suggest.api.{name}")


class _Package(types.ModuleType):
    """`suggest` itself: the API names win over submodules that share them (see the module docstring)."""


for _name in _API:
    setattr(_Package, _name, _api_name(_name))
sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _TYPES:
        from suggest import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'suggest' has no attribute {name!r}")
