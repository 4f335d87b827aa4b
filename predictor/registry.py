"""The registry of ranking losses (fine-tuning objectives of the predictor).

``RANKING_LOSSES.make(name, values).build()`` returns ``loss(scores, targets, mask=None) -> scalar``.

The entries live in ``predictor/loss_configs.py``, the one module the loader imports: the other
modules of this package are torch / PyG modules, which ``nasrank finetune --help`` must not load
(issue 19). A new loss registers its config there.
"""

from __future__ import annotations

from nasrank.registry import Registry


def _load() -> None:
    import importlib

    importlib.import_module("nasrank.predictor.loss_configs")


RANKING_LOSSES: Registry = Registry("ranking loss", loader=_load)

#: ``torch.compile`` modes ``RankingPredictor.pretrain(compile=...)`` accepts (``True`` is
#: ``"default"``); here, torch-free, so that ``nasrank pretrain --help`` lists them too.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
