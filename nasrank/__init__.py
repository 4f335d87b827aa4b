"""nasrank: find good neural architectures while training as few of them as possible.

Subpackages: :mod:`nasrank.spaces` (what an architecture is), :mod:`nasrank.supernet` (everything
that runs a CNN: supernets, weak labels, proxies), :mod:`nasrank.predictor` (the DGCNN ranking
predictor) and :mod:`nasrank.search` (oracles, search loops, the ``nasrank`` command). This module
imports nothing heavy, so ``nasrank --help`` starts fast: even ``__version__`` is read from the
installed metadata (``importlib.metadata``) only when first asked for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    """``__version__``, looked up on first use and then cached in the module (issue 19)."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("nasrank")
        except PackageNotFoundError:  # running from a checkout that was never installed
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
