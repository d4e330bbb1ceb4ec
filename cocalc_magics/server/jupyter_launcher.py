"""Apply the process limits of stateless-API kernels, then exec the kernel command.

The service starts every kernel as ``python -I -S jupyter_launcher.py -- <argv>``.
This script sets the limits with :func:`resource.setrlimit` and replaces itself with
the kernel through :func:`os.execvp`, so the kernel keeps the pid and the process
group that jupyter_client created. Doing this in a separate process avoids a
``preexec_fn``, which is unsafe in the threaded server process.

The script imports only the standard library because it runs with ``-S`` (no site
packages), which keeps its start-up cost at a few milliseconds.
"""

from __future__ import annotations

import os
import resource
import sys

# The limits CoCalc gives its stateless kernels, in the units of setrlimit. CoCalc
# writes them as `ulimit -t 30 -v 3000000 -n 1000 -f 10485760`, and bash counts -v in
# KiB and -f in 1024-byte blocks.
KERNEL_RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 30,
    "RLIMIT_AS": 3000000 * 1024,
    "RLIMIT_NOFILE": 1000,
    "RLIMIT_FSIZE": 10485760 * 1024,
}


def apply_limits() -> None:
    """Set each limit as soft and hard limit, never above the current hard limit."""
    for name, value in KERNEL_RLIMITS.items():
        which = getattr(resource, name)
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def main(argv: list[str]) -> None:
    """Apply the limits and exec ``argv`` after the ``--`` separator."""
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        sys.exit("usage: jupyter_launcher.py -- KERNEL_COMMAND [ARGS...]")
    command = argv[argv.index("--") + 1 :]
    apply_limits()
    try:
        os.execvp(command[0], command)
    except OSError as error:
        sys.exit(f"failed to run the kernel command {command[0]!r}: {error.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
