"""Apply a project's admin quotas, then exec the command of a ``system.exec`` call.

The server runs ``python -I -S exec_launcher.py --memory-bytes N --cpus 0,1 -- argv``
for projects with admin quotas. Setting the limits here, before ``os.execvp``,
means they hold from the command's first instruction and pass to every child, with
no ``preexec_fn`` (unsafe in the threaded server) and no race with a limit set from
outside after the start. The pid, process group and session stay the same across
the exec. Only the standard library is imported, because ``-S`` skips site packages.
"""

from __future__ import annotations

import os
import resource
import sys

# The exit code when the command itself cannot be started, as in a shell.
NOT_STARTED = 127


def main(argv: list[str]) -> None:
    separator = argv.index("--")
    options, command = argv[:separator], argv[separator + 1 :]
    values = dict(zip(options[::2], options[1::2]))

    if "--memory-bytes" in values:
        limit = int(values["--memory-bytes"])
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if "--cpus" in values:
        os.sched_setaffinity(0, {int(cpu) for cpu in values["--cpus"].split(",")})

    try:
        os.execvp(command[0], command)
    except OSError as error:
        sys.stderr.write(f"{command[0]}: {error.strerror}\n")
        os._exit(NOT_STARTED)


if __name__ == "__main__":
    main(sys.argv[1:])
