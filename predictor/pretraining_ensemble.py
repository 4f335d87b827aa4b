"""An ensemble over pretrainings: several pretrained predictors (e.g. one per pretraining seed)
fine-tuned on the same labels, their scores averaged.

One pretraining seed moves the fine-tuned Kendall tau by about +-0.01 on NB201 and CVPR 2021;
averaging three pretrainings raised held-out tau by ~0.01 on NB201 (BENCHMARKS.md, issue 15).
``RankingPredictor.fit(ensemble=K)`` averages members of *one* pretraining; this averages
pretrainings. Each member's scores are standardised with their mean and std on the fit set (as
``fit(ensemble=K)`` does), so an architecture's score does not depend on what else is scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nasrank.errors import NasrankError

from .model import RankingPredictor


class PretrainingEnsemble:
    """``fit`` fine-tunes every member on the same labels; ``predict`` averages their
    standardised scores (after an MSE fit, their raw scores: those share the units of ``y``)."""

    def __init__(self, members: Sequence[RankingPredictor]) -> None:
        members = list(members)
        if not members:
            raise NasrankError("PretrainingEnsemble needs at least one predictor, got none")
        for k, m in enumerate(members):
            if not isinstance(m, RankingPredictor):
                raise NasrankError(f"member {k} is a {type(m).__name__}, not a RankingPredictor")
        names = {m.space.name for m in members}
        if len(names) > 1:
            raise NasrankError(f"members serve different spaces {sorted(names)}; expected one")
        self.members = members
        self._scale: list[tuple[float, float]] | None = None

    @classmethod
    def load(cls, paths: Sequence[Any], *, space: Any = None,
             device: str = "cpu") -> "PretrainingEnsemble":
        """Members from checkpoint files (``RankingPredictor.load`` of each)."""
        return cls([RankingPredictor.load(p, space=space, device=device) for p in paths])

    def fit(self, archs: Sequence[Any], y: Sequence[float], **fit_kwargs: Any) -> "PretrainingEnsemble":
        """``RankingPredictor.fit(archs, y, **fit_kwargs)`` for every member (each keeps its own
        seed), then each member's (mean, std) of scores on ``archs``."""
        for m in self.members:
            m.fit(archs, y, **fit_kwargs)
        if fit_kwargs.get("loss", "lambdarank") == "mse":
            self._scale = [(0.0, 1.0)] * len(self.members)
        else:
            space = self.members[0].space
            unique = list({space.key(a): a for a in archs}.values())  # each fit arch once
            self._scale = []
            for m in self.members:
                s = m.predict(unique)
                self._scale.append((float(s.mean()), float(s.std()) or 1.0))
        return self

    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        """Mean over members of ``(score - mean) / std`` (one float per architecture)."""
        if self._scale is None:
            raise NasrankError("PretrainingEnsemble.predict before fit: call fit(archs, y) first")
        out = np.zeros(len(archs))
        for m, (mean, std) in zip(self.members, self._scale):
            out += (m.predict(archs) - mean) / std
        return out / len(self.members)
