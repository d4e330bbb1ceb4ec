"""Running one remote command: blocking exec, async jobs, and stopped projects.

This is the one place where a command meets the client, so that the async job
layer (live output, interrupts, background jobs) can replace ``run_command``
without touching the grammar or the rendering.

- A command whose timeout is at most ``BLOCKING_LIMIT_S`` seconds runs as one
  blocking ``system.exec`` request.
- A longer one runs as an async job, waited for with long-polls of at most
  ``ASYNC_WAIT_S`` seconds each, so no HTTP request is held open for more than
  about a minute. An interrupt (Ctrl-C) names the job id before re-raising, so the
  job is never silently abandoned.
- A project that is not running is started first, with a visible notice, and the
  command is then sent once. Starting counts against the command's timeout.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from IPython.display import display

from cocalc_magics.magics.config import BLOCKING_LIMIT_S
from cocalc_magics.magics.errors import CoCalcMagicError
from cocalc_magics.magics.rendering import show_notice
from cocalc_magics.magics.results import CommandResult

if TYPE_CHECKING:
    from cocalc_magics.api import Connection

logger = logging.getLogger(__name__)

ASYNC_WAIT_S = 45.0
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
        """Keyword arguments for ``Connection.exec`` and ``exec_async``."""
        return {
            "bash": True,
            "path": self.path,
            "cwd": self.cwd,
            "env": self.env,
            "timeout": timeout,
            "max_output": self.max_output,
            "project_id": self.project_id,
            "compute_server_id": self.compute_server_id,
        }


def describe_first_request(connection: Connection, request: ExecRequest) -> dict:
    """Return the first request ``run_command`` would send, with the key masked."""
    blocking = request.timeout <= BLOCKING_LIMIT_S
    return connection.describe_exec(
        request.command,
        async_call=not blocking,
        **request.exec_keywords(request.timeout),
    )


def run_command(
    connection: Connection,
    request: ExecRequest,
    *,
    where: str,
    start_stopped: bool,
    running_projects: set[str],
) -> CommandResult:
    """Run ``request`` in its project and return the complete result.

    ``running_projects`` contains the projects already seen running in this session.
    The first command in any other project checks its state with one hub call and
    starts it visibly if needed. Without that check CoCalc would start the project
    silently inside the exec request, which can take minutes.

    Raises
    ------
    cocalc_magics.api.CoCalcError
        Any failure of the client, for the caller to present.
    CoCalcMagicError
        When the project could not be started in time.
    """
    from cocalc_magics.api import NotListeningError, ProjectNotRunningError

    started = time.monotonic()
    deadline = started + request.timeout
    if start_stopped and request.project_id not in running_projects:
        if not is_running(connection, request.project_id):
            start_project(
                connection, request.project_id, deadline=deadline, where=where
            )
        running_projects.add(request.project_id)

    try:
        return _send(connection, request, request.timeout, started, where)
    except (ProjectNotRunningError, NotListeningError) as error:
        # Neither error means the command ran, so sending it again is safe.
        if isinstance(error, ProjectNotRunningError) and not start_stopped:
            raise
        logger.info("project %s not ready (%s); starting it", request.project_id, error)

    start_project(connection, request.project_id, deadline=deadline, where=where)
    remaining = max(deadline - time.monotonic(), 1.0)
    return _send(connection, request, remaining, started, where)


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
) -> CommandResult:
    # Round up to whole milliseconds, so that a tiny remainder left over from a
    # start never becomes a zero timeout, which CoCalc reads as no limit.
    timeout = math.ceil(timeout * 1000) / 1000
    if timeout <= BLOCKING_LIMIT_S:
        result = _run_blocking(connection, request, timeout, where)
        job_id = None
    else:
        result, job_id = _run_as_job(connection, request, timeout, where)

    return CommandResult(
        stdout=result.stdout,
        stderr=result.stderr,
        exit_code=result.exit_code,
        duration_s=time.monotonic() - started,
        project_id=request.project_id,
        command=request.command,
        job_id=job_id,
        stdout_truncated=getattr(result, "stdout_truncated", False),
        stderr_truncated=getattr(result, "stderr_truncated", False),
        site=where,
    )


def _run_blocking(connection: Connection, request: ExecRequest, timeout, where):
    try:
        return connection.exec(request.command, **request.exec_keywords(timeout))
    except KeyboardInterrupt:
        # A blocking exec has no job id to report; CoCalc kills it at its timeout.
        show_notice(
            f"Interrupted while waiting: the command may keep running in project "
            f"{request.project_id} on {where} until its {timeout:g} s timeout."
        )
        raise


def _run_as_job(connection: Connection, request: ExecRequest, timeout, where):
    job = connection.exec_async(request.command, **request.exec_keywords(timeout))
    logger.info("started async job %s in project %s", job.job_id, request.project_id)

    # The server kills the command at `timeout`; allow a margin for the final poll.
    deadline = time.monotonic() + timeout + 30.0
    try:
        while job.running:
            if time.monotonic() > deadline:
                raise CoCalcMagicError(
                    "project exec",
                    f"async job {job.job_id} still runs after its {timeout:.0f} s "
                    "timeout",
                    hint=f"check it later with %cocalc call system.exec "
                    f'\'[{{"async_get": "{job.job_id}"}}]\'',
                    project_id=request.project_id,
                    where=where,
                )
            wait = min(ASYNC_WAIT_S, max(deadline - time.monotonic(), 1.0))
            job = connection.async_get(
                job.job_id,
                wait=True,
                wait_timeout=wait,
                project_id=request.project_id,
                compute_server_id=request.compute_server_id,
            )
    except KeyboardInterrupt:
        show_notice(
            f"Interrupted while waiting: async job {job.job_id} keeps running in "
            f"project {request.project_id} on {where}. Poll it with "
            f'%cocalc call system.exec \'[{{"async_get": "{job.job_id}"}}]\'.'
        )
        raise
    if job.status == "error" and "killed command" in (job.stderr or ""):
        # CoCalc discards the output of a job killed at its timeout.
        raise CoCalcMagicError(
            "project exec",
            f"async job {job.job_id} was killed at its {timeout:g} s timeout",
            hint="pass a larger --timeout (in seconds).",
            project_id=request.project_id,
            where=where,
        )
    return job, job.job_id


def start_project(
    connection: Connection, project_id: str, *, deadline: float, where: str
) -> None:
    """Start ``project_id`` and wait until it responds to pings, showing progress.

    Raises ``CoCalcMagicError`` when the project does not answer by ``deadline``
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
