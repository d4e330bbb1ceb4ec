"""Remote Jupyter execution: ``--kernel`` of the exec magics, and ``%cocalc session``.

``%%cocalc_exec --kernel NAME`` sends the cell to ``system.jupyterExecute`` and
shows what the remote kernel produced through IPython's display system, using
:mod:`cocalc_magics.remote`. The call is stateless on the server, so ``--session``
keeps a client-side history that is replayed on every call, and ``--path`` is
sent on every call.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from cocalc_magics.magics.errors import from_client_error
from cocalc_magics.magics.registry import reported, subcommand
from cocalc_magics.magics.rendering import show_notice, show_table

if TYPE_CHECKING:
    from cocalc_magics.api import Connection
    from cocalc_magics.magics.core import CoCalcMagics
    from cocalc_magics.remote import OutputLimits

# Options of the exec magics that have no meaning for a kernel, with what to use.
_BASH_ONLY_OPTIONS = (
    ("cwd", "--cwd", "use --path, relative to the project's home"),
    ("env", "--env", "set variables in the code, e.g. with os.environ"),
    (
        "max_output",
        "--max-output",
        (
            "the display is capped by CoCalcMagics.remote_max_stream_bytes and "
            "the other remote_max_* options"
        ),
    ),
)

# Start of CoCalc's error text when a kernel cannot be started.
_SPAWN_FAILURE = "Unable to Spawn Jupyter Kernel"

# The bridge waits for a kernel start, the replay of the history and the input,
# each run being limited by the server separately.
KERNEL_START_MARGIN_MS = 30_000

# Output caps the server applies when no `limits` are sent. They are sent along
# with --timeout, because any `limits` object lowers the missing caps otherwise.
NO_LIMITS_OUTPUT_CAPS = {"max_output_per_cell": 1_000_000, "max_output": 5_000_000}


class ProjectKernels:
    """A connection bound to one project and compute server, for remote runs.

    :func:`cocalc_magics.remote.run_remote_cell` calls ``jupyter_execute`` without
    a project, and keys sessions by ``host`` and ``project_id``; this passes the
    project of ``--project`` and ``--compute-server`` through.
    """

    def __init__(
        self, connection: Connection, project_id: str, compute_server_id: int = 0
    ) -> None:
        self.connection = connection
        self.project_id = project_id
        self.compute_server_id = compute_server_id

    @property
    def host(self) -> str:
        return self.connection.host

    def jupyter_execute(self, input: str, **keywords: Any):
        return self.connection.jupyter_execute(
            input,
            project_id=self.project_id,
            compute_server_id=self.compute_server_id,
            **keywords,
        )


def check_kernel_options(options: argparse.Namespace) -> None:
    """Reject invalid option combinations before anything is sent."""
    if options.session is not None and not options.kernel:
        raise UsageError(
            "--session needs --kernel NAME: sessions replay code on a Jupyter "
            "kernel, for example  %%cocalc_exec --kernel python3 --session work"
        )
    if not options.kernel:
        return
    for name, flag, advice in _BASH_ONLY_OPTIONS:
        if getattr(options, name) is not None:
            raise UsageError(f"{flag} does not apply with --kernel; {advice}.")


def output_limits(magics: CoCalcMagics) -> OutputLimits:
    """Build the display limits of a remote cell from the magics' options."""
    from cocalc_magics.remote import OutputLimits

    try:
        return OutputLimits(
            max_stream_bytes=magics.remote_max_stream_bytes,
            max_output_bytes=magics.remote_max_output_bytes,
            max_cell_bytes=magics.remote_max_cell_bytes,
            max_displays=magics.remote_max_displays,
            save_dir=magics.remote_save_dir,
        )
    except ValueError as error:
        raise UsageError(f"{error} Change it with %config CoCalcMagics.") from None


def server_limits(timeout: float | None) -> dict[str, Any] | None:
    """Return the ``limits`` object to send for ``--timeout`` seconds, or None."""
    if timeout is None:
        return None
    return {"timeout_ms_per_cell": round(timeout * 1000), **NO_LIMITS_OUTPUT_CAPS}


def bridge_timeout_ms(timeout: float | None) -> int:
    """Return the bridge timeout: history and input may each use the run limit."""
    from cocalc_magics.remote.run import DEFAULT_TIMEOUT_MS

    if timeout is None:
        return DEFAULT_TIMEOUT_MS
    return max(DEFAULT_TIMEOUT_MS, round(2 * timeout * 1000) + KERNEL_START_MARGIN_MS)


def run_kernel(magics: CoCalcMagics, options: argparse.Namespace, code: str) -> None:
    """Run ``code`` on ``options.kernel`` in the project and show its outputs.

    The result object is stored in ``_cocalc`` and in ``--out VAR``, also when the
    remote code raised. Returns None, because the outputs are already shown.

    Raises
    ------
    RemoteKernelError
        A subclass named after the remote error (``NameError``, ...), whose
        ``_render_traceback_`` shows the remote traceback; not with ``--no-raise``.
    CoCalcMagicError
        When the call failed, for example for an unknown kernel name.
    """
    from cocalc_magics.magics.exec_command import LAST_RESULT_NAME
    from cocalc_magics.remote import last_result, run_remote_cell

    check_kernel_options(options)
    operation = f"jupyter execute (kernel {options.kernel})"
    with reported(magics, operation):
        target = ProjectKernels(
            magics.session.connection,
            magics.session.project_id(options.project),
            options.compute_server,
        )
    if options.dry_run:
        _show_dry_run(magics, options, code, target)
        return

    limits = output_limits(magics)
    with reported(magics, "project start", target.project_id):
        _start_if_stopped(magics, target.project_id)
    previous = last_result()
    try:
        with _reported_call(magics, operation, target.project_id):
            run_remote_cell(
                target,
                code,
                kernel=options.kernel,
                session=options.session,
                path=options.path,
                no_raise=options.no_raise or not magics.raise_on_failure,
                out=options.out or LAST_RESULT_NAME,
                namespace=magics.shell.user_ns,
                output_limits=limits,
                server_limits=server_limits(options.timeout),
                timeout_ms=bridge_timeout_ms(options.timeout),
                show=not options.quiet,
            )
    except ValueError as error:
        raise UsageError(str(error)) from None
    except KeyboardInterrupt:
        # The server keeps no job for a kernel run, so there is no id to report.
        show_notice(
            f"Interrupted while waiting: the remote {options.kernel} kernel in project "
            f"{target.project_id} may run until the server's time limit per run "
            "(30 s by default, or --timeout). Its outputs are lost."
        )
        raise
    finally:
        result = last_result()
        if result is not previous:
            magics.shell.user_ns[LAST_RESULT_NAME] = result


def _start_if_stopped(magics: CoCalcMagics, project_id: str) -> None:
    """Start a stopped project visibly, as exec does, before the first kernel call.

    Without it the bridge would start the project silently inside the call.
    """
    from cocalc_magics.magics.execution import (
        is_running,
        not_running_error,
        start_project,
    )

    running_projects = magics.session.running_projects
    if project_id in running_projects:
        return
    connection = magics.session.connection
    if not is_running(connection, project_id):
        if not magics.start_stopped_projects:
            raise not_running_error(
                "jupyter execute", project_id, magics.session.where()
            )
        start_project(
            connection,
            project_id,
            deadline=time.monotonic() + magics.start_timeout,
            where=magics.session.where(),
        )
    running_projects.add(project_id)


@contextmanager
def _reported_call(
    magics: CoCalcMagics, operation: str, project_id: str
) -> Iterator[None]:
    """Report client errors like ``reported``, with a magics hint for kernel starts."""
    from cocalc_magics.api import CoCalcError, RemoteError

    try:
        yield
    except CoCalcError as error:
        if magics.show_tracebacks:
            raise
        hint = None
        if isinstance(error, RemoteError) and _SPAWN_FAILURE in (error.message or ""):
            hint = (
                "check the kernel name with %cocalc kernels. The server's message "
                "above gives the reason the kernel did not start."
            )
        raise from_client_error(
            error,
            operation,
            project_id=project_id,
            where=magics.session.where(),
            hint=hint,
        ) from None


def _show_dry_run(
    magics: CoCalcMagics,
    options: argparse.Namespace,
    code: str,
    target: ProjectKernels,
) -> None:
    from cocalc_magics.remote import find_sessions

    # NOTE: this mirrors the body that Connection.jupyter_execute builds, because
    # the client has no public way to describe that request yet.
    body: dict[str, Any] = {"kernel": options.kernel, "input": code}
    if options.session:
        found = find_sessions(target, options.session, options.kernel)
        if found and found[0].history:
            body["history"] = found[0].history
    if options.path is not None:
        body["path"] = options.path
    limits = server_limits(options.timeout)
    if limits is not None:
        body["limits"] = limits

    with reported(magics, "jupyter execute (dry run)", target.project_id):
        described = target.connection.describe_request(
            "project",
            "system.jupyterExecute",
            [body],
            project_id=target.project_id,
            compute_server_id=target.compute_server_id,
            timeout_ms=bridge_timeout_ms(options.timeout),
        )
    text = json.dumps(described, indent=2, ensure_ascii=False)
    show_notice(f"Dry run on {magics.session.where()}: nothing was sent.\n{text}")


@subcommand(
    "session",
    summary="show or reset a remote kernel session (--session of --kernel runs)",
    example="%cocalc session work --reset",
)
@magic_arguments("cocalc session")
@argument(
    "--project",
    metavar="PROJECT_ID",
    help="project of the session (default: the connected project).",
)
@argument("--kernel", metavar="NAME", help="only the session of this kernel.")
@argument(
    "--reset",
    action="store_true",
    help="forget the session's inputs, so the next call starts a clean kernel.",
)
@argument(
    "name",
    nargs="?",
    help="session name; without it, list the sessions of the project.",
)
def session(magics: CoCalcMagics, options):
    """Show a session: its inputs, its call count and how long a replay takes.

    Sessions live in this Python process only: the server keeps nothing between
    calls, and restarting the notebook's kernel deletes them.
    """
    from cocalc_magics.remote import find_sessions, reset_sessions, session_store

    with reported(magics, "session"):
        target = ProjectKernels(
            magics.session.connection, magics.session.project_id(options.project)
        )
    if options.name is None:
        if options.reset:
            raise UsageError(
                "--reset needs a session name: %cocalc session NAME --reset"
            )
        return _list_sessions(magics, target, session_store())

    if options.reset:
        count = reset_sessions(target, options.name, options.kernel)
        if not count:
            raise UsageError(_no_session(magics, target, options))
        kernels = "1 kernel" if count == 1 else f"{count} kernels"
        show_notice(
            f"Session {options.name!r} reset on {kernels}; its next call starts a "
            "clean kernel."
        )
        return None

    found = find_sessions(target, options.name, options.kernel)
    if not found:
        raise UsageError(_no_session(magics, target, options))
    for found_session in found:
        display(found_session)
    return None


def _list_sessions(magics: CoCalcMagics, target: ProjectKernels, store) -> None:
    rows = [
        (
            found.name,
            found.key.kernel,
            len(found.inputs),
            len(found.calls),
            "" if found.replay_estimate_s is None else f"{found.replay_estimate_s:.1f}",
        )
        for found in store
        if (found.key.site, found.key.project_id) == (target.host, target.project_id)
    ]
    show_table(
        rows,
        ("session", "kernel", "inputs", "calls", "replay estimate (s)"),
        title=f"Remote kernel sessions of project {target.project_id}",
    )


def _no_session(
    magics: CoCalcMagics, target: ProjectKernels, options: argparse.Namespace
) -> str:
    kernel = f" on kernel {options.kernel}" if options.kernel else ""
    return (
        f"no session {options.name!r}{kernel} in project {target.project_id} on "
        f"{magics.session.where()}; a session starts with its first successful "
        f"cell, e.g.  %%cocalc_exec --kernel python3 --session {options.name}"
    )
