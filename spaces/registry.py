"""The registries of this package: search spaces and benchmark loaders.

Entries live next to what they build (``@SPACES.register("nb201")`` in ``spaces/nb201.py``); the
loader imports every module of the package the first time a registry is read, so a new space is
its own file.
"""

from __future__ import annotations

from nasrank.registry import Registry, import_package_modules

_load = import_package_modules("nasrank.spaces")

#: search spaces; ``SPACES.make(name, values).build()`` returns a :class:`~nasrank.spaces.SearchSpace`
SPACES: Registry = Registry("search space", loader=_load)
#: benchmark tables with ground truth; ``BENCHMARKS.make(name, {"path": ...}).build()``
BENCHMARKS: Registry = Registry("benchmark", loader=_load)
