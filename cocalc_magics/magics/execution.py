"""Running one remote command: the project start, then an async job.

This is the one place where a command meets the client. Every command runs as an
async job through :func:`cocalc_magics.jobs.run_job`, and
``cocalc_magics.jobs.BLOCKING_MAX_TIMEOUT_S`` is 0. Only a job can stream its
output while it runs, be stopped by Ctrl-C (SIGINT, SIGTERM, then SIGKILL to its
process group), run in the background, and be recorded in the job ledger.

- No HTTP request is held open for more than about a minute, because the job is
  followed with short polls and long-polls (see :mod:`cocalc_magics.jobs.follow`).
- A project that is not running is started first, with a visible notice, and the
  command is then sent once. Starting counts against the command's timeout.
- An interrupt either stops the job and raises ``JobInterrupted`` with the output
  so far, or (``--detach``) leaves the job running and names its id.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from IPython.display import display

from cocalc_magics.magics.errors import CoCalcMagicError
from cocalc_magics.magics.rendering import show_notice
from cocalc_magics.magics.results import CommandResult

if TYPE_CHECKING:
    from cocalc_magics.api import Connection
    from cocalc_magics.jobs import Job

logger = logging.getLogger(__name__)

PING_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ExecRequest:
    """Everything needed to run one command; ``timeout`` is in seconds."""

    command: str
    project_id: str
    timeout: float
    max_output: int
    path: str | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    compute_server_id: int = 0

    def exec_keywords(self, timeout: float) -> dict:
        """Keyword arguments for ``Connection.exec_async`` and ``run_job``."""
        return {
            "path": self.path,
            "cwd": self.cwd,
            "env": self.env,
            "timeout": timeout,
            "max_output": self.max_output,
            "project_id": self.project_id,
            "compute_server_id": self.compute_server_id,
        }


@dataclass(frozen=True)
class JobOptions:
    """Options for following the job of one command.

    ``grace_s`` contains the seconds waited after SIGINT, SIGTERM and SIGKILL when
    Ctrl-C stops the job. ``output_budget`` is in bytes of streamed output.
    ``show`` False follows the job without streaming (``--quiet``). The status
    line (elapsed time, CPU %, memory) appears once the job has run for
    ``status_delay_s`` seconds, so a quick command shows only its output.
    """

    background: bool = False
    detach: bool = False
    grace_s: Sequence[float] = field(default=(2.0, 3.0, 5.0))
    output_budget: int = 1_000_000
    show: bool = True
    status_delay_s: float = 1.0


def describe_first_request(connection: Connection, request: ExecRequest) -> dict:
    """Return the first request ``run_command`` would send, with the key masked."""
    return connection.describe_exec(
        request.command,
        async_call=True,
        bash=True,
        **request.exec_keywords(request.timeout),
    )


def run_command(
    connection: Connection,
    request: ExecRequest,
    *,
    where: str,
    start_stopped: bool,
    running_projects: set[str],
    job_options: JobOptions | None = None,
) -> CommandResult:
    """Run ``request`` in its project as an async job and return its result.

    ``running_projects`` contains the projects already seen running in this session.
    The first command in any other project checks its state with one hub call and
    starts it visibly if needed. Without that check CoCalc would start the project
    silently inside the exec request, which can take minutes.

    With ``job_options.background`` the result is returned at once, while the job
    runs; its ``wait()`` method waits for the end.

    Raises
    ------
    cocalc_magics.api.CoCalcError
        Any failure of the client, for the caller to present.
    CoCalcMagicError
        When the project could not be started in time.
    cocalc_magics.jobs.JobInterrupted
        When Ctrl-C stopped the job; its ``job`` has the output so far.
    """
    from cocalc_magics.api import NotListeningError, ProjectNotRunningError

    job_options = job_options or JobOptions()
    started = time.monotonic()
    deadline = started + request.timeout
    if request.project_id not in running_projects:
        if not is_running(connection, request.project_id):
            if not start_stopped:
                # Sending the exec anyway would start the project, because every
                # project-endpoint call starts a stopped project on CoCalc.
                raise not_running_error("project exec", request.project_id, where)
            start_project(
                connection, request.project_id, deadline=deadline, where=where
            )
        running_projects.add(request.project_id)

    try:
        return _send(connection, request, request.timeout, started, where, job_options)
    except (ProjectNotRunningError, NotListeningError) as error:
        # Neither error means the command ran, so sending it again is safe.
        if isinstance(error, ProjectNotRunningError) and not start_stopped:
            raise
        if request.compute_server_id and isinstance(error, NotListeningError):
            # Starting the project does not start one of its compute servers.
            raise compute_server_error(request, where) from None
        logger.info("project %s not ready (%s); starting it", request.project_id, error)

    start_project(connection, request.project_id, deadline=deadline, where=where)
    remaining = max(deadline - time.monotonic(), 1.0)
    return _send(connection, request, remaining, started, where, job_options)


def compute_server_error(request: ExecRequest, where: str) -> CoCalcMagicError:
    """Build the error for a compute server that does not respond."""
    number = request.compute_server_id
    return CoCalcMagicError(
        "project exec",
        f"compute server {number} of the project does not answer, so the command "
        "was not run",
        hint=f"check that compute server {number} exists and is running (the "
        "project's Compute Servers page lists them), or leave out --compute-server "
        "to run in the project itself.",
        project_id=request.project_id,
        where=where,
    )


def not_running_error(operation: str, project_id: str, where: str) -> CoCalcMagicError:
    """Build the error for a stopped project that the magics may not start."""
    return CoCalcMagicError(
        operation,
        "the project is not running and CoCalcMagics.start_stopped_projects is "
        "False, so the command was not sent",
        hint="start it with %cocalc start, or set "
        "%config CoCalcMagics.start_stopped_projects = True.",
        project_id=project_id,
        where=where,
    )


def is_running(connection: Connection, project_id: str) -> bool:
    """Return whether the hub reports the project running.

    Returns True when the key may not ask the hub, and the exec goes ahead.
    """
    from cocalc_magics.api import AuthenticationError, PermissionDeniedError

    try:
        return connection.project_state(project_id=project_id).state == "running"
    except (AuthenticationError, PermissionDeniedError) as error:
        # A project-scoped key cannot call the hub; the exec itself will tell.
        logger.debug("cannot read the state of project %s: %s", project_id, error)
        return True


def _send(
    connection: Connection,
    request: ExecRequest,
    timeout: float,
    started: float,
    where: str,
    job_options: JobOptions,
) -> CommandResult:
    from cocalc_magics.jobs import run_job

    # Round up to whole milliseconds, so that a tiny remainder left over from a
    # start never becomes a zero timeout, which CoCalc reads as no limit.
    timeout = math.ceil(timeout * 1000) / 1000
    job = run_job(
        connection,
        request.command,
        background=job_options.background,
        on_interrupt="detach" if job_options.detach else "stop",
        grace_s=tuple(job_options.grace_s),
        output_budget=job_options.output_budget,
        show=job_options.show,
        status_delay_s=job_options.status_delay_s,
        **request.exec_keywords(timeout),
    )
    return result_of_job(job, request=request, started=started, where=where)


def result_of_job(
    job: Job, *, request: ExecRequest | None, started: float | None, where: str
) -> CommandResult:
    """Return the ``CommandResult`` of ``job``, which follows the job from then on."""
    duration = time.monotonic() - started if started is not None else None
    return CommandResult.from_job(
        job,
        command=request.command if request is not None else job.command or "",
        duration_s=duration,
        site=where,
    )


def start_project(
    connection: Connection, project_id: str, *, deadline: float, where: str
) -> None:
    """Start ``project_id`` and wait until it responds to pings, showing progress.

    Raises ``CoCalcMagicError`` when the project does not respond by ``deadline``
    (a ``time.monotonic()`` value).
    """
    handle = display(
        {"text/plain": f"Starting project {project_id} on {where} ..."},
        raw=True,
        display_id=True,
    )
    started = time.monotonic()
    connection.start_project(project_id, timeout=max(deadline - started, 1.0))
    _wait_until_listening(connection, project_id, deadline=deadline, where=where)

    elapsed = time.monotonic() - started
    message = f"Project {project_id} on {where} started in {elapsed:.1f} s."
    if handle is not None:
        handle.update({"text/plain": message}, raw=True)
    else:
        show_notice(message)


def _wait_until_listening(
    connection: Connection, project_id: str, *, deadline: float, where: str
) -> None:
    from cocalc_magics.api import (
        BridgeTimeoutError,
        NotListeningError,
        ProjectNotRunningError,
    )

    while True:
        try:
            # Not idempotent on purpose: the client would retry a 503 itself at
            # shorter intervals, and this loop paces the pings at one per second.
            connection.project_call("system.ping", [], project_id=project_id)
            return
        except (NotListeningError, ProjectNotRunningError, BridgeTimeoutError) as error:
            logger.debug("project %s does not respond yet: %s", project_id, error)
        if time.monotonic() + PING_INTERVAL_S > deadline:
            raise CoCalcMagicError(
                "project start",
                "the project did not answer before the timeout ran out",
                hint="start it with %cocalc start, then run the command again, or "
                "pass a longer --timeout.",
                project_id=project_id,
                where=where,
            )
        time.sleep(PING_INTERVAL_S)
