"""One name per zero-cost proxy, and the other spellings accepted for it on input.

The canonical names are those of the published benchmark columns (NAS-Bench-Suite-Zero, the
``zc_<proxy>`` columns of ``nb201.csv``): ``jacov``, ``nwot``, ``epe_nas``... Every writer uses
them; every reader (CLI flags, the Python API, label tables written before the rename) also
accepts the aliases below. This module imports nothing heavy, so every package may use it.
"""

from __future__ import annotations

__all__ = ["PROXY_ALIASES", "canonical_proxy", "canonical_column"]

#: alias -> canonical proxy name. ``jacob_cov``: zero-cost-nas's name (and nasrank's before
#: issue 19); ``naswot``: the NASWOT paper's name of the score NAS-Bench-Suite-Zero calls nwot.
PROXY_ALIASES: dict[str, str] = {"jacob_cov": "jacov", "naswot": "nwot"}

ZC_PREFIX = "zc_"


def canonical_proxy(name: str) -> str:
    """The canonical name of proxy ``name`` (``jacob_cov`` -> ``jacov``); others unchanged."""
    return PROXY_ALIASES.get(name, name)


def canonical_column(column: str) -> str:
    """The canonical name of a label column (``zc_jacob_cov`` -> ``zc_jacov``); columns that
    are not proxy columns are returned unchanged."""
    if column.startswith(ZC_PREFIX):
        return ZC_PREFIX + canonical_proxy(column[len(ZC_PREFIX):])
    return column
