"""nasrank: find good neural architectures while training as few of them as possible.

Subpackages: :mod:`nasrank.spaces` (what an architecture is), :mod:`nasrank.supernet` (everything
that runs a CNN: supernets, weak labels, proxies), :mod:`nasrank.predictor` (the DGCNN ranking
predictor) and :mod:`nasrank.search` (oracles, search loops, the ``nasrank`` command). This module
imports nothing heavy, so ``nasrank --help`` starts fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nasrank")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
