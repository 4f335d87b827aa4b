"""The registries of this package: supernets, architecture samplers and step strategies.

The entries live in ``supernet/configs.py``, the one module the loader imports (the first time a
registry is read): the other modules of this package are torch modules, which the help of
``nasrank run`` and the other training commands must not load (issue 19). A new strategy is its
config there, whose ``build()`` imports its implementation module, plus its test.

* ``SUPERNETS.make(name, values).build(space, num_classes=..., in_channels=...)`` -> Supernet
* ``SAMPLERS.make(name, values).build(supernet)`` -> ArchSampler
* ``STEP_STRATEGIES.make(name, values).build(supernet)`` -> StepStrategy
"""

from __future__ import annotations

from nasrank.registry import Registry


def _load() -> None:
    import importlib

    importlib.import_module("nasrank.supernet.configs")


SUPERNETS: Registry = Registry("supernet", loader=_load)
SAMPLERS: Registry = Registry("sampler", loader=_load)
STEP_STRATEGIES: Registry = Registry("step strategy", loader=_load)
