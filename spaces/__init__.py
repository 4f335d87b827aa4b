"""Search spaces, label tables and benchmarks (see DESIGN.md)."""

from __future__ import annotations

from .base import SearchSpace, sample_unique
from nasrank.errors import (
    InvalidArchitectureError,
    LabelTableError,
    NasrankError,
    SpaceMismatchError,
)
from .labels import LabelTable, LabelWriter

SPACE_NAMES = ("nb201", "cvpr2021", "nb101")


def get_space(name: str) -> SearchSpace:
    """The search space called ``name`` (one of :data:`SPACE_NAMES`)."""
    if name == "nb201":
        from .nb201 import NB201Space

        return NB201Space()
    if name == "cvpr2021":
        from .cvpr2021 import CVPR2021Space

        return CVPR2021Space()
    if name == "nb101":
        from .nb101 import NB101Space

        return NB101Space()
    raise NasrankError(f"unknown search space {name!r}; expected one of {list(SPACE_NAMES)}")


__all__ = [
    "SPACE_NAMES", "SearchSpace", "get_space", "sample_unique", "LabelTable", "LabelWriter",
    "NasrankError", "InvalidArchitectureError", "LabelTableError", "SpaceMismatchError",
]
