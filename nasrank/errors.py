"""The one exception family of nasrank: bad input raises a subclass of :class:`NasrankError`.

Every message names the bad value and what was expected, so a user can fix the input without
reading the source.
"""

from __future__ import annotations

__all__ = [
    "NasrankError", "InvalidArchitectureError", "LabelTableError", "SpaceMismatchError",
    "ConfigError", "OutputLockedError", "DiskFullError", "UnsafePathError",
]


class NasrankError(ValueError):
    """Bad input to nasrank (malformed architecture, wrong file, wrong space...)."""


class InvalidArchitectureError(NasrankError):
    """An architecture string or value that is not part of the search space."""


class LabelTableError(NasrankError):
    """A label table or benchmark file that is missing, malformed or inconsistent."""


class SpaceMismatchError(NasrankError):
    """An object (checkpoint, label table, supernet) that belongs to another search space."""


class ConfigError(NasrankError):
    """A configuration value (flag, TOML key, registered config field) that is not allowed."""


class OutputLockedError(NasrankError):
    """An output folder (or shard file) that another running nasrank process is writing."""


class DiskFullError(NasrankError):
    """A write that failed for lack of space (ENOSPC / EDQUOT); the run resumes once there is
    space."""


class UnsafePathError(NasrankError):
    """A file nasrank would write through that is a symlink or not of its own format."""
