"""Public functions that share their name with an internal module (``cnnspec.train`` the
function, ``cnnspec/train/`` the package; also build, evaluate, predict, export).

Python sets ``cnnspec.<name>`` to the submodule whenever that submodule is first imported,
which would replace the function. ``Package`` (the class of the ``cnnspec`` module) keeps the
function; ``Entry`` wraps it so that attribute access still reaches the module, so
``import cnnspec.build.model as m`` and ``cnnspec.export.REGISTRY`` go on working.
"""

from __future__ import annotations

import functools
import importlib
import types
from collections.abc import Callable
from typing import Any


class Entry:
    """A public function (called as itself) that leads to the internal module of its name."""

    def __init__(self, function: Callable[..., Any], module: str) -> None:
        functools.update_wrapper(self, function)  # name, doc, __wrapped__: signature, help
        self.module_name = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # probes (inspect, pickle, pytest, IPython): no import
            raise AttributeError(name)
        return getattr(importlib.import_module(self.module_name), name)

    def __repr__(self) -> str:
        return f"<function {self.__module__}.{self.__qualname__}>"


class Package(types.ModuleType):
    """The ``cnnspec`` module: importing a submodule leaves the public function of its name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and isinstance(self.__dict__.get(name), Entry):
            return
        super().__setattr__(name, value)
