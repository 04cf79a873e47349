"""Lazy package faces (PEP 562): a subpackage's public names, imported on first use.

A face that imports every module of its stage makes importing any one of them import the
whole stage, and can close an import cycle (``rectune.recommender`` needs the ranking
kernel of :mod:`rectune.evaluation`, whose evaluation stage needs the recommender).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_face(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``'s face.

    Parameters
    ----------
    package : str
        The package's name, e.g. ``"rectune.tuning"``.
    exports : mapping
        Submodule name -> the public names it defines, all re-exported by the face.
    """
    owner = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = owner.get(name)
        if module is not None:
            value = getattr(importlib.import_module(f"{package}.{module}"), name)
            setattr(importlib.import_module(package), name, value)  # looked up once
            return value
        try:  # a submodule, e.g. rectune.tuning.loop
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    def __dir__() -> list[str]:
        return sorted(owner)

    return __getattr__, __dir__
