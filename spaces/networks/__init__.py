"""The torch networks of the search spaces: the ``nn.Module`` classes and their builders, one
module per space (``networks/nb201.py`` for :mod:`nasrank.spaces.nb201`...).

Imported only when a network is built (``space.build``, a supernet): the space modules import
torch inside the methods that need it and the registry loader skips subpackages, so listing or
describing the spaces (``nasrank spaces``, ``nasrank --help``) imports no torch. The old names
stay importable from the space modules (``from nasrank.spaces.nb201 import NB201Network``)
through :func:`nasrank.lazy.lazy_exports`.
"""
