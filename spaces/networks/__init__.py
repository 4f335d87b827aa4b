"""The torch networks of the search spaces: the ``nn.Module`` classes and their builders, one
module per space (``networks/nb201.py`` for :mod:`nasrank.spaces.nb201`...).

Imported only when a network is built (``space.build``, a supernet): the space modules import
torch inside the methods that need it and the registry loader skips subpackages, so listing or
describing the spaces (``nasrank spaces``, ``nasrank --help``) imports no torch. The old names
stay importable from the space modules (``from nasrank.spaces.nb201 import NB201Network``)
through :func:`lazy_names`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(space: str, names: tuple[str, ...]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``nasrank.spaces.<space>`` that imports ``names``
    from ``nasrank.spaces.networks.<space>`` when first asked for."""

    def __getattr__(attr: str) -> Any:
        if attr in names:
            return getattr(importlib.import_module(f"{__name__}.{space}"), attr)
        raise AttributeError(f"module 'nasrank.spaces.{space}' has no attribute {attr!r}")

    return __getattr__
