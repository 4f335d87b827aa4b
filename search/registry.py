"""The registry of search methods.

``SEARCH_METHODS.make(name, values).build()`` returns a search function taking the keyword
arguments every search shares (``space``, ``oracle``, ``budget``, ``seed``, ``record``, ...).
"""

from __future__ import annotations

from nasrank.registry import Registry, import_package_modules

SEARCH_METHODS: Registry = Registry("search method",
                                    loader=import_package_modules("nasrank.search"))

#: ``nasrank`` subcommands: each entry's fields are the command's flags and TOML keys, generated
#: by ``search/cli.py``; a new command is its own module (no edit in ``cli.py``).
COMMANDS: Registry = Registry("command", loader=import_package_modules("nasrank.search"))
