"""The IPython magics ``%cocalc`` and ``%%cocalc_exec``.

Importing this package imports IPython; the top-level ``cocalc_magics`` package
imports it only inside ``load_ipython_extension``.
"""

from cocalc_magics.magics.core import CoCalcMagics
from cocalc_magics.magics.extension import load, unload
from cocalc_magics.magics.results import CommandResult

__all__ = ["CoCalcMagics", "CommandResult", "load", "unload"]
