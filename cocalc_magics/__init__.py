"""Drive CoCalc projects from Jupyter notebooks through CoCalc's HTTP API.

Importing this package has no side effects: it registers no magics, starts no
threads and opens no connections. ``%load_ext cocalc_magics`` does the registering.
"""

import logging

__version__ = "0.1.0"

# Library convention: log records go nowhere until the application configures
# logging, so that a warning from a background thread never lands in a cell.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def load_ipython_extension(ipython) -> None:
    """Register ``%cocalc`` and ``%%cocalc_exec`` (called by ``%load_ext``)."""
    from cocalc_magics.magics import load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """Remove the magics and close their connection (called by ``%unload_ext``)."""
    from cocalc_magics.magics import unload

    unload(ipython)
