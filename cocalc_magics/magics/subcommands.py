"""All ``%cocalc`` subcommands, registered by importing their modules.

The order of the imports is the order of the overview in ``%cocalc?``.
"""

# Not sorted on purpose, because this order is the overview's order.
# isort: off
from cocalc_magics.magics import exec_command, kernel_command, project_commands
from cocalc_magics.magics import job_commands, retry_command
import cocalc_magics.panels.magic  # noqa: F401 - registers %cocalc panel
from cocalc_magics.magics import setup_commands

# isort: on
from cocalc_magics.magics.exec_command import run_exec
from cocalc_magics.magics.registry import SUBCOMMANDS, LineContext, overview

__all__ = [
    "SUBCOMMANDS",
    "LineContext",
    "exec_command",
    "job_commands",
    "kernel_command",
    "overview",
    "project_commands",
    "retry_command",
    "run_exec",
    "setup_commands",
]
