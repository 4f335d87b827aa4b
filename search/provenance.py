"""What a pretrained ``predictor.pt`` was trained on (``predictor.json`` next to it), so that
``nasrank pretrain`` reuses a checkpoint only for the same label table, columns and settings."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasrank.errors import ConfigError

SIDECAR = "predictor.json"


def labels_digest(table: Any, columns: Sequence[str]) -> str:
    """SHA-256 of the keys and of the chosen columns' values (float64, key order): the same for
    the same labels however the file was written, different when any trained-on value differs."""
    h = hashlib.sha256()
    h.update(json.dumps([list(table.keys), list(columns)]).encode("utf-8"))
    for c in columns:
        h.update(np.ascontiguousarray(table.column(c), dtype="<f8").tobytes())
    return h.hexdigest()


def pretrain_settings(table: Any, columns: Sequence[str], *, space: str, epochs: int,
                      seed: int) -> dict[str, Any]:
    """The settings a pretrained predictor depends on (its label table by content, not path)."""
    return {"space": space, "columns": list(columns), "rows": len(table.keys),
            "labels_sha256": labels_digest(table, columns), "epochs": int(epochs),
            "seed": int(seed)}


def check_or_record(out: Path, settings: dict[str, Any]) -> None:
    """Refuse ``out/predictor.pt`` trained on anything else than ``settings`` (one line naming
    the first difference); record ``settings`` before a training starts."""
    side, ckpt = Path(out) / SIDECAR, Path(out) / "predictor.pt"
    old: Any = None
    if side.exists():
        try:
            old = json.loads(side.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            old = None
        if not isinstance(old, dict):
            raise ConfigError(f"{str(side)!r} is damaged; delete it and {str(ckpt)!r} to "
                              f"pretrain again, or use another --out")
    elif ckpt.exists():
        raise ConfigError(f"{str(ckpt)!r} has no record of what it was trained on "
                          f"({SIDECAR} missing); delete it to pretrain again, or use another --out")
    if old is not None:
        diff = [k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
        if diff:
            k = diff[0]
            what = ("a label table with other keys or values" if k in ("labels_sha256", "rows")
                    else f"{k}={old.get(k)!r}, this run has {k}={settings.get(k)!r}")
            raise ConfigError(f"--out {str(out)!r} holds a predictor pretrained on {what}; use "
                              f"another --out or delete {str(ckpt)!r} (nothing was changed)")
        return
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    os.replace(tmp, side)
