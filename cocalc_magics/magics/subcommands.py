"""All ``%cocalc`` subcommands, registered by importing their modules.

The order of the imports is the order of the overview in ``%cocalc?``.
"""

from cocalc_magics.magics import (
    exec_command,
    kernel_command,
    project_commands,
    setup_commands,
)
from cocalc_magics.magics.exec_command import run_exec
from cocalc_magics.magics.registry import SUBCOMMANDS, LineContext, overview

__all__ = [
    "SUBCOMMANDS",
    "LineContext",
    "exec_command",
    "kernel_command",
    "overview",
    "project_commands",
    "run_exec",
    "setup_commands",
]
