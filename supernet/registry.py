"""The registries of this package: supernets, architecture samplers and step strategies.

Entries live next to what they build; the loader imports every module of the package the first
time a registry is read, so a new strategy is its own file (plus its test).

* ``SUPERNETS.make(name, values).build(space, num_classes=..., in_channels=...)`` -> Supernet
* ``SAMPLERS.make(name, values).build(supernet)`` -> ArchSampler
* ``STEP_STRATEGIES.make(name, values).build(supernet)`` -> StepStrategy
"""

from __future__ import annotations

from nasrank.registry import Registry, import_package_modules

_load = import_package_modules("nasrank.supernet")

SUPERNETS: Registry = Registry("supernet", loader=_load)
SAMPLERS: Registry = Registry("sampler", loader=_load)
STEP_STRATEGIES: Registry = Registry("step strategy", loader=_load)
