"""The registry of search methods.

``SEARCH_METHODS.make(name, values).build()`` returns a search function taking the keyword
arguments every search shares (``space``, ``oracle``, ``budget``, ``seed``, ``record``, ...).
"""

from __future__ import annotations

from nasrank.registry import Registry, import_package_modules

SEARCH_METHODS: Registry = Registry("search method",
                                    loader=import_package_modules("nasrank.search"))
