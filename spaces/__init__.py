"""Search spaces, label tables and benchmarks (see docs/architecture.md)."""

from __future__ import annotations

from .base import SearchSpace, sample_unique
from nasrank.errors import (
    InvalidArchitectureError,
    LabelTableError,
    NasrankError,
    SpaceMismatchError,
)
from .labels import LabelTable, LabelWriter

def get_space(name: str) -> SearchSpace:
    """The search space called ``name`` with its default options (a view of
    :data:`~nasrank.spaces.registry.SPACES`; ``SPACES.make(name, options).build()`` for others)."""
    from .registry import SPACES

    return SPACES.make(name).build()


def __getattr__(attr: str):
    if attr == "SPACE_NAMES":  # the registered spaces, read when asked (new spaces included)
        from .registry import SPACES

        return tuple(SPACES.names())
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = [
    "SPACE_NAMES", "SearchSpace", "get_space", "sample_unique", "LabelTable", "LabelWriter",
    "NasrankError", "InvalidArchitectureError", "LabelTableError", "SpaceMismatchError",
]
