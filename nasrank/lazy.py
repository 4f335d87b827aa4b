"""Names imported on first use (PEP 562), so light modules stay light.

``import nasrank.predictor`` or listing a registry must not import torch, PyG or Optuna (``nasrank
--help`` and ``nasrank spaces`` start in well under a second): packages and modules that re-export
heavy names install the ``__getattr__`` made here instead of importing them at the top.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(module_globals: dict[str, Any],
                 exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for the module whose ``globals()`` is ``module_globals``:
    ``exports`` maps each public name to the submodule that defines it, relative to that module's
    package (``"model"``, ``"networks.nb201"``). The submodule is imported when the name is first
    asked for, and the value is stored in the module, so later look-ups skip the hook."""
    owner, package = module_globals["__name__"], module_globals["__package__"]

    def __getattr__(name: str) -> Any:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {owner!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{submodule}", package), name)
        module_globals[name] = value
        return value

    return __getattr__
