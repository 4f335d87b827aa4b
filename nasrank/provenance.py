"""What produced an output file: the versions of nasrank and its main libraries, and the git
commit of the checkout when there is one. Written into every ``config.json`` / ``results.json``
under :data:`KEY`; never part of the "same settings?" comparison of a resumed run (upgrading
torch must not lock a user out of their own run folder)."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["KEY", "versions", "without_provenance"]

#: the key of the provenance entry in the JSON files
KEY = "provenance"

_PACKAGES = {"nasrank": "nasrank", "torch": "torch", "torch_geometric": "torch-geometric",
             "optuna": "optuna"}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(folder: Path) -> str | None:
    """``git rev-parse HEAD`` in ``folder``; None without git or outside a repository."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and len(out) == 40 else None


def versions() -> dict[str, Any]:
    """``{"nasrank": "0.x", "torch": ..., "torch_geometric": ..., "optuna": ..., "git_commit":
    sha or None}`` (a library that is not installed is None). Read once per process."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, Any]:
    info: dict[str, Any] = {key: _version(dist) for key, dist in _PACKAGES.items()}
    info["git_commit"] = _git_commit(Path(__file__).resolve().parent)
    return info


def without_provenance(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` less the provenance entry (what a resumed run compares)."""
    return {k: v for k, v in settings.items() if k != KEY}
