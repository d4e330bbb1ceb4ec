"""Registering the magics with a shell, and removing them again.

``%unload_ext`` and ``%reload_ext`` must leave nothing behind: the magics, the
configurable and the connection of the previous load are all removed, so a reload
never leaves two handlers or an open HTTP session.
"""

from __future__ import annotations

import logging

from cocalc_magics.magics.core import CoCalcMagics

logger = logging.getLogger(__name__)

_MAGIC_NAMES = {"line": "cocalc", "cell": "cocalc_exec"}


def load(shell) -> CoCalcMagics:
    """Register ``%cocalc`` and ``%%cocalc_exec`` with ``shell``.

    Loading twice without unloading first replaces the earlier instance.
    """
    unload(shell)
    magics = CoCalcMagics(shell=shell)
    shell.register_magics(magics)
    logger.debug("registered the CoCalc magics")
    return magics


def unload(shell) -> None:
    """Remove the magics, their configurable and their connection from ``shell``."""
    manager = shell.magics_manager
    magics = manager.registry.pop(CoCalcMagics.__name__, None)
    for kind, name in _MAGIC_NAMES.items():
        manager.magics[kind].pop(name, None)
    if magics is None:
        return

    if magics in shell.configurables:
        shell.configurables.remove(magics)
    _stop_job_threads()
    magics.session.close()
    logger.debug("unregistered the CoCalc magics")


def _stop_job_threads() -> None:
    """Stop the threads that follow background jobs, and the ledger's writer.

    The jobs keep running. Their ids stay in the job ledger, so ``%cocalc jobs``
    after the next load finds them and watches them again.
    """
    import sys

    # Only a session that ran a job has imported the job layer.
    if "cocalc_magics.jobs" not in sys.modules:
        return
    from cocalc_magics.jobs import stop_watchers
    from cocalc_magics.jobs.ledger import stop_writer

    stop_watchers()
    # After the watchers, so that their last ledger writes still land.
    stop_writer()
