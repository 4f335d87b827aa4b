"""The registry of ranking losses (fine-tuning objectives of the predictor).

``RANKING_LOSSES.make(name, values).build()`` returns ``loss(scores, targets, mask=None) -> scalar``.
"""

from __future__ import annotations

from nasrank.registry import Registry, import_package_modules

RANKING_LOSSES: Registry = Registry("ranking loss",
                                    loader=import_package_modules("nasrank.predictor"))
