"""Running one operation in many projects with a fixed-size pool of worker threads.

Each project is one task for a :class:`~concurrent.futures.ThreadPoolExecutor` of
``concurrency`` threads, so at most that many projects are worked on at once and the
thread count never grows with the number of projects. Tasks start in the order the
projects were given; the result keeps that order.

An exec in one project takes three steps. The hub's ``projects.state``, which does
not start anything, returns whether the project runs. A stopped project is started
with the hub's ``projects.start``. Then the command runs as an async exec job,
waited for with long-polls of at most :data:`LONG_POLL_S` seconds. The async job
has a process group id, so Ctrl-C can reach it: the main thread cancels the queued
tasks, sends
SIGINT to the process group of every running job through ``system.signal``, then
SIGKILL to those still running after ``interrupt_grace`` seconds, and finally raises
:class:`FanoutInterrupted`, which names any job it could not confirm stopped.

Every worker has its own :class:`~cocalc_magics.api.Connection` (a requests session
is not meant to be shared between threads) with the client's own retries off, so
that one :class:`~cocalc_magics.fanout.pacing.Pacer` decides all rate limiting and
back-off. Progress goes to a status view from the main thread only, because
IPython's display machinery expects to be called from the thread running the cell.
"""

from __future__ import annotations

import concurrent.futures
import logging
import signal as signals
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cocalc_magics.api import (
    DEFAULT_MAX_OUTPUT,
    CoCalcError,
    JobNotFoundError,
    ProjectNotRunningError,
)
from cocalc_magics.fanout.grid import StatusView, choose_view
from cocalc_magics.fanout.pacing import Cancelled, Pacer
from cocalc_magics.fanout.results import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    STARTING,
    FanoutResult,
    Operation,
    ProjectRun,
)
from cocalc_magics.fanout.targets import ProjectTarget, resolve_projects

if TYPE_CHECKING:
    from cocalc_magics.api import AsyncJob, Connection

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_RATE",
    "FanoutInterrupted",
    "FanoutRunner",
    "run_fanout",
]

logger = logging.getLogger(__name__)

#: Projects worked on at once by default. CoCalc publishes no API rate limit, so
#: this is an estimate of a modest load: at about one second per quick command,
#: 200 projects take about 20 s.
DEFAULT_CONCURRENCY = 10
#: Requests per second of one fan-out by default (long-polls excluded). An estimate
#: of a polite load for cocalc.com, not a documented limit.
DEFAULT_MAX_RATE = 50.0
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_START_TIMEOUT_S = 150.0
#: Maximum seconds of one long-poll for an async job, because proxies may cut
#: longer requests.
LONG_POLL_S = 20.0
#: Seconds a job may report "running" past its own timeout before the worker stops
#: waiting for it (the project kills it at its timeout, so this is a safety net).
POLL_MARGIN_S = 30.0
REFRESH_INTERVAL_S = 0.5
#: Seconds after which the grid is redrawn even without a change, so that the
#: durations of running rows keep counting.
TICK_INTERVAL_S = 1.0
INTERRUPT_GRACE_S = 2.0


class FanoutInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a fan-out; ``result`` contains the rows as they were left.

    It is a ``KeyboardInterrupt``, so "Run All" stops as after any interrupt. The
    message names every job that may still be running.
    """

    def __init__(self, result: FanoutResult, message: str) -> None:
        super().__init__(message)
        self.result = result


class FanoutRunner:
    """Run *operation* in every project of *targets*; see :func:`run_fanout`."""

    def __init__(
        self,
        connection: Connection,
        targets: list[ProjectTarget],
        operation: Operation,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        max_rate: float | None = DEFAULT_MAX_RATE,
        pacer: Pacer | None = None,
        display: str | StatusView = "auto",
        refresh_interval: float = REFRESH_INTERVAL_S,
        interrupt_grace: float = INTERRUPT_GRACE_S,
    ) -> None:
        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or concurrency < 1
        ):
            raise ValueError(
                f"concurrency must be a whole number of 1 or more, not {concurrency!r}"
            )
        if not start_timeout > 0:
            raise ValueError(
                f"start_timeout must be above 0 seconds, not {start_timeout!r}"
            )
        self.connection = connection
        self.operation = operation
        self.concurrency = concurrency
        self.start_timeout = float(start_timeout)
        self.pacer = pacer if pacer is not None else Pacer(max_rate)
        self.view = choose_view(display, operation)
        self.refresh_interval = refresh_interval
        self.interrupt_grace = interrupt_grace

        self.rows = [ProjectRun(t.project_id, t.title) for t in targets]
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._version = 0
        self._began: dict[int, float] = {}
        self._local = threading.local()
        self._connections: list[Connection] = []

    # The main thread.

    def run(self) -> FanoutResult:
        """Run every task and return the result; raise FanoutInterrupted on Ctrl-C."""
        started = time.monotonic()
        workers = min(self.concurrency, len(self.rows)) or 1
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="cocalc-fanout"
        )
        futures: dict[concurrent.futures.Future, int] = {}
        try:
            for index in range(len(self.rows)):
                futures[executor.submit(self._work, index)] = index
            self._watch(set(futures), started)
        except KeyboardInterrupt:
            notice = self._cancel(futures, executor)
            result = self._result(started, interrupted=True)
            self._show_final(result, notice)
            if all(future.done() for future in futures):
                self._close_connections()
            # NOTE: otherwise a worker is still inside a request, such as a project
            # start that can take minutes. Its thread ends when that request does,
            # and its connection is closed when garbage-collected.
            raise FanoutInterrupted(result, notice) from None

        executor.shutdown(wait=True)
        result = self._result(started, interrupted=False)
        self._show_final(result, None)
        self._close_connections()
        return result

    def _watch(self, pending: set, started: float) -> None:
        shown_version = -1
        shown_at = 0.0
        while pending:
            _, pending = concurrent.futures.wait(
                pending,
                timeout=self.refresh_interval,
                return_when=concurrent.futures.FIRST_COMPLETED,
            )
            now = time.monotonic()
            changed = self._version != shown_version
            due = now - shown_at >= max(self.refresh_interval, TICK_INTERVAL_S)
            if (changed and now - shown_at >= self.refresh_interval) or due:
                shown_version = self._version
                shown_at = now
                self._show(self.snapshot(), now - started)

    def snapshot(self) -> list[ProjectRun]:
        """Return copies of the rows, with the running time of unfinished ones."""
        now = time.monotonic()
        with self._lock:
            rows = []
            for index, row in enumerate(self.rows):
                copy = replace(row)
                if not row.finished and index in self._began:
                    copy.duration_s = now - self._began[index]
                rows.append(copy)
        return rows

    def _show(self, rows: list[ProjectRun], elapsed_s: float) -> None:
        try:
            self.view.update(rows, elapsed_s)
        except Exception:
            # A display problem must not stop work in a hundred projects.
            logger.exception("the fan-out status view failed to update")

    def _show_final(self, result: FanoutResult, notice: str | None) -> None:
        try:
            self.view.finish(result, notice)
        except Exception:
            logger.exception("the fan-out status view failed to show the result")

    def _result(self, started: float, *, interrupted: bool) -> FanoutResult:
        with self._lock:
            rows = [replace(row) for row in self.rows]
        return FanoutResult(
            rows,
            self.operation,
            connection=self.connection,
            wall_s=time.monotonic() - started,
            interrupted=interrupted,
        )

    # Cancelling.

    def _cancel(self, futures: dict, executor) -> str:
        """Cancel queued tasks, signal running jobs, and describe what is left."""
        self.cancelled.set()
        for future in futures:
            future.cancel()
        executor.shutdown(wait=False, cancel_futures=True)

        running = [future for future in futures if not future.done()]
        try:
            self._signal_jobs(signals.SIGINT)
            concurrent.futures.wait(running, timeout=self.interrupt_grace)
            self._signal_jobs(signals.SIGKILL)
            concurrent.futures.wait(running, timeout=self.interrupt_grace)
        except KeyboardInterrupt:
            # A second Ctrl-C: stop waiting, but still kill what can be killed.
            self._signal_jobs(signals.SIGKILL)

        self._mark_unfinished()
        return self._interrupt_notice()

    def _signal_jobs(self, signal_number: int) -> None:
        name = signals.Signals(signal_number).name
        with self._lock:
            targets = []
            for row in self.rows:
                if not row.job_running or row.pid is None:
                    continue
                if signal_number == signals.SIGINT and row.signalled:
                    continue
                row.signalled = name
                targets.append((row.project_id, row.pid, row.job_id))
            self._version += 1

        for project_id, pid, job_id in targets:
            try:
                self.connection.signal(
                    pid, signal_number, group=True, project_id=project_id
                )
                logger.info("sent %s to job %s in project %s", name, job_id, project_id)
            except CoCalcError as error:
                logger.warning(
                    "could not send %s to job %s in project %s: %s",
                    name,
                    job_id,
                    project_id,
                    error,
                )

    def _mark_unfinished(self) -> None:
        with self._lock:
            for row in self.rows:
                if row.finished:
                    continue
                if row.status == QUEUED:
                    row.status = CANCELLED
                    row.error = "cancelled before it started"
                elif row.job_id is None:
                    row.status = CANCELLED
                    row.error = "cancelled before the command was sent"
                else:
                    row.error = (
                        f"interrupted; async job {row.job_id} may still be running"
                    )
            self._version += 1

    def _interrupt_notice(self) -> str:
        with self._lock:
            left = [row for row in self.rows if row.job_running]
            signalled = sum(1 for row in self.rows if row.signalled)
        parts = [f"Interrupted: sent SIGINT to {signalled} running job(s)"]
        if left:
            jobs = ", ".join(
                f"{row.job_id} in project {row.project_id}" for row in left
            )
            parts.append(
                f"these may still be running: {jobs}; poll one with "
                "Connection.async_get(job_id, project_id=...)"
            )
        else:
            parts.append("no job was left running")
        return "; ".join(parts) + "."

    # Worker threads.

    def _work(self, index: int) -> None:
        if self.cancelled.is_set():
            return
        row = self.rows[index]
        began = time.monotonic()
        with self._lock:
            self._began[index] = began
        handlers: dict[str, Callable[[Any, ProjectRun], None]] = {
            "exec": self._run_exec,
            "start": self._run_start,
            "stop": self._run_stop,
            "status": self._run_status,
        }
        try:
            handlers[self.operation.kind](self._worker_connection(), row)
        except Cancelled:
            sent = (
                "cancelled" if row.job_id else "cancelled before the command was sent"
            )
            self._update(row, status=CANCELLED, error=sent)
        except CoCalcError as error:
            self._update(row, status=FAILED, error=describe_error(error))
        except Exception as error:
            logger.exception("fan-out task for project %s failed", row.project_id)
            self._update(row, status=FAILED, error=f"{type(error).__name__}: {error}")
        finally:
            with self._lock:
                if row.finished:
                    row.duration_s = time.monotonic() - began
                self._version += 1

    def _update(self, row: ProjectRun, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(row, name, value)
            self._version += 1

    def _worker_connection(self) -> Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = clone_connection(self.connection)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _close_connections(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def _call(
        self, function: Callable[[], Any], *, idempotent: bool, exempt: bool = False
    ):
        if self.cancelled.is_set():
            raise Cancelled()
        return self.pacer.call(
            function, idempotent=idempotent, cancelled=self.cancelled, exempt=exempt
        )

    def _ensure_running(
        self, connection: Connection, row: ProjectRun, start: bool
    ) -> None:
        project_id = row.project_id
        state = self._call(
            lambda: connection.project_state(project_id), idempotent=True
        )
        self._update(row, state=state.state)
        if state.running:
            return
        if not start:
            raise ProjectNotRunningError(
                "projects.state",
                f"project {project_id} is not running "
                f"(state {state.state or 'unknown'})",
                hint="Start it first (start_many, or %cocalc start), or allow starting "
                "stopped projects.",
                project_id=project_id,
            )
        self._start(connection, row)

    def _start(self, connection: Connection, row: ProjectRun) -> None:
        self._update(row, status=STARTING)
        project_id = row.project_id
        self._call(
            lambda: connection.start_project(project_id, timeout=self.start_timeout),
            idempotent=True,
        )
        self._update(row, state="running", started_project=True)

    def _run_exec(self, connection: Connection, row: ProjectRun) -> None:
        options = self.operation.options
        self._ensure_running(connection, row, options.get("start_stopped", True))
        if self.cancelled.is_set():
            raise Cancelled()

        self._update(row, status=RUNNING)
        job = self._start_job(connection, row)
        self._record_job(connection, row, job)
        job = self._wait_for_job(connection, row, job)
        self._finish_exec(row, job)

    def _start_job(self, connection: Connection, row: ProjectRun) -> AsyncJob:
        options = self.operation.options
        project_id = row.project_id

        def start_job() -> AsyncJob:
            return connection.exec_async(
                self.operation.command,
                bash=True,
                path=options.get("path"),
                cwd=options.get("cwd"),
                env=options.get("env"),
                timeout=options.get("timeout", DEFAULT_TIMEOUT_S),
                max_output=options.get("max_output", DEFAULT_MAX_OUTPUT),
                project_id=project_id,
            )

        try:
            return self._call(start_job, idempotent=False)
        except ProjectNotRunningError:
            # It stopped between the state check and the exec; the exec did not run.
            if not options.get("start_stopped", True):
                raise
            self._start(connection, row)
            self._update(row, status=RUNNING)
            return self._call(start_job, idempotent=False)

    def _record_job(
        self, connection: Connection, row: ProjectRun, job: AsyncJob
    ) -> None:
        with self._lock:
            row.job_id = job.job_id
            row.pid = job.pid
            row.job_running = job.running
            self._version += 1
            # Cancelled while the start request was in flight: the main thread did
            # not know this job, so this worker stops it.
            late = self.cancelled.is_set() and job.pid is not None and not row.signalled
            if late:
                row.signalled = "SIGINT"
        if late:
            try:
                connection.signal(
                    job.pid, signals.SIGINT, group=True, project_id=row.project_id
                )
            except CoCalcError as error:
                logger.warning("could not interrupt job %s: %s", job.job_id, error)

    def _wait_for_job(
        self, connection: Connection, row: ProjectRun, job: AsyncJob
    ) -> AsyncJob:
        timeout = self.operation.options.get("timeout", DEFAULT_TIMEOUT_S)
        deadline = time.monotonic() + (timeout or 0) + POLL_MARGIN_S
        project_id = row.project_id
        while job.running:
            remaining = deadline - time.monotonic()
            if timeout and remaining <= 0:
                raise StillRunning(job.job_id, timeout)
            wait = min(LONG_POLL_S, max(remaining, 1.0)) if timeout else LONG_POLL_S
            job_id = job.job_id
            try:
                job = self.pacer.call(
                    lambda job_id=job_id, wait=wait: connection.async_get(
                        job_id, wait=True, wait_timeout=wait, project_id=project_id
                    ),
                    idempotent=True,
                    exempt=True,
                )
            except JobNotFoundError:
                # A lost record means the project restarted, which ends its jobs.
                self._update(row, job_running=False)
                raise LostJob(job_id) from None
            # Keep the output so far: CoCalc's final record of a killed job drops it.
            self._update(
                row, stdout=job.stdout or row.stdout, stderr=job.stderr or row.stderr
            )
        return job

    def _finish_exec(self, row: ProjectRun, job: AsyncJob) -> None:
        timeout = self.operation.options.get("timeout", DEFAULT_TIMEOUT_S)
        changes: dict[str, Any] = {
            "stdout": job.stdout or row.stdout,
            "stderr": job.stderr,
            "job_running": False,
        }
        if row.signalled:
            # A job killed by a signal reports "completed" with exit code 0.
            changes.update(
                status=CANCELLED,
                exit_code=None,
                error=f"interrupted with {row.signalled} (job {job.job_id})",
            )
        elif job.status == "error":
            killed = "killed command" in job.stderr
            changes.update(
                status=FAILED,
                exit_code=None if killed else job.exit_code,
                error=(
                    f"timed out after {timeout:g} s; the project killed the command"
                    if killed
                    else f"the command could not run: {job.stderr.strip()[:200]}"
                ),
            )
        elif job.exit_code:
            changes.update(
                status=FAILED,
                exit_code=job.exit_code,
                error=f"exit code {job.exit_code}",
            )
        else:
            changes.update(status=DONE, exit_code=job.exit_code)
        self._update(row, **changes)

    def _run_start(self, connection: Connection, row: ProjectRun) -> None:
        self._ensure_running(connection, row, start=True)
        detail = "started" if row.started_project else "already running"
        self._update(row, status=DONE, detail=detail)

    def _run_stop(self, connection: Connection, row: ProjectRun) -> None:
        project_id = row.project_id
        self._update(row, status=RUNNING)
        self._call(lambda: connection.stop_project(project_id), idempotent=True)
        state = self._call(
            lambda: connection.project_state(project_id), idempotent=True
        )
        self._update(
            row, status=DONE, state=state.state, detail=f"state: {state.state}"
        )

    def _run_status(self, connection: Connection, row: ProjectRun) -> None:
        project_id = row.project_id
        state = self._call(
            lambda: connection.project_state(project_id), idempotent=True
        )
        detail = f"state: {state.state or 'never started'}"
        if state.error:
            detail += f" ({state.error})"
        self._update(row, status=DONE, state=state.state, detail=detail)


class StillRunning(CoCalcError):
    """A job still reported "running" well past its timeout; it may still run."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(
            "system.exec",
            f"async job {job_id} still reported running {POLL_MARGIN_S:g} s after "
            f"its {timeout:g} s timeout; it may still be running",
        )
        self.job_id = job_id


class LostJob(CoCalcError):
    """The project forgot the job (it restarted, or the record expired)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            "system.exec",
            f"async job {job_id} is no longer known to the project (it restarted, or "
            "the record expired); its outcome is unknown",
        )


def describe_error(error: CoCalcError) -> str:
    """Return the one-line text of a row's error: the message and, if any, the hint."""
    if error.hint and not isinstance(error, (StillRunning, LostJob)):
        return f"{error.message} ({error.hint})"
    return error.message


def clone_connection(connection: Connection) -> Connection:
    """Return a new connection with the same settings and no automatic retries."""
    from cocalc_magics.api import Connection

    return Connection(
        connection.settings,
        allow_insecure_http=connection.allow_insecure_http,
        connect_timeout=connection.connect_timeout,
        cold_start_margin=connection.cold_start_margin,
        label=connection.label,
        max_retries=0,
    )


def run_fanout(
    connection: Connection,
    projects: Any,
    operation: Operation,
    **options: Any,
) -> FanoutResult:
    """Run *operation* in every project named by *projects*.

    Parameters
    ----------
    connection : Connection
        Used to resolve *projects* and to signal jobs on Ctrl-C; each worker
        thread gets its own copy.
    projects
        Anything :func:`~cocalc_magics.fanout.resolve_projects` accepts.
    operation : Operation
    **options
        ``concurrency`` (projects at once, default :data:`DEFAULT_CONCURRENCY`),
        ``start_timeout`` (seconds to wait for a stopped project),
        ``max_rate`` (requests per second, None for no limit), ``pacer``,
        ``display`` (``"auto"``, ``"widget"``, ``"html"``, ``"text"``, ``"none"``
        or a view object), ``refresh_interval`` and ``interrupt_grace`` (seconds).

    Raises
    ------
    FanoutInterrupted
        On Ctrl-C, after queued work was cancelled and running jobs were signalled.
    ProjectsOptionError
        If *projects* names no usable project.
    """
    targets = resolve_projects(projects, connection)
    return FanoutRunner(connection, targets, operation, **options).run()
