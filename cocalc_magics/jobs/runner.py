"""Running commands as jobs: in the foreground with live output and Ctrl-C, or in
the background with a watcher thread.

:func:`run_job` is the exec step of the magics for every command that goes
through the async path (see :data:`BLOCKING_MAX_TIMEOUT_S`). Background jobs,
detached jobs and running jobs found in the ledger are followed by one daemon
thread each (:class:`JobWatcher`), with its own HTTP session, until they end;
that also harvests their final output into the ledger before the project
drops the record.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cocalc_magics.jobs.follow import (
    BACKGROUND_POLICY,
    FOREGROUND_POLICY,
    PollPolicy,
    follow,
)
from cocalc_magics.jobs.job import Job
from cocalc_magics.jobs.ledger import JobLedger, site_of
from cocalc_magics.jobs.stopping import stop_job
from cocalc_magics.jobs.views import (
    DEFAULT_STREAM_BUDGET,
    BackgroundView,
    background_view,
    foreground_view,
)

if TYPE_CHECKING:
    from cocalc_magics.api import Connection

__all__ = [
    "BLOCKING_MAX_TIMEOUT_S",
    "JobInterrupted",
    "JobWatcher",
    "active_watchers",
    "clone_connection",
    "resume_watching",
    "run_job",
    "stop_watchers",
    "watch",
    "watched_job",
]

logger = logging.getLogger(__name__)

#: Commands whose timeout is at most this many seconds may run as one blocking
#: ``system.exec``; longer ones must use the async path. It is 0, so every command
#: goes through the async path. Only there does Ctrl-C reach the remote process
#: (a blocking exec cannot be cancelled and has no pid to signal), does output
#: stream while it runs, and does the ledger record the command.
#: The cost is one more request and two ledger writes, which a background thread
#: commits together after the command. ``benchmarks/job_latency.py`` on loopback
#: against the local server (2 cores), median of 40 runs of ``echo hi``: blocking
#: 4.9 ms, async path 5.8 ms (ratio 1.19). On a remote site the extra request adds
#: one network round trip.
BLOCKING_MAX_TIMEOUT_S = 0.0


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a foreground job; ``job`` contains its output so far."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.summary())
        self.job = job

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback through the HTTP
        # library; what happened was already printed while the job was stopped.
        return [
            (
                f"\x1b[0;31m{type(self).__name__}\x1b[0m: Ctrl-C interrupted job "
                f"{self.job.job_id} (status: {self.job.status})"
            ),
            f"Hint: %cocalc job {self.job.short_id} shows its output so far.",
        ]


def clone_connection(connection: Connection) -> Connection:
    """Return a new connection with the same settings and its own HTTP session.

    A ``requests`` session is not meant to be shared between threads, and the
    magics may close or replace their connection while a watcher still runs.
    """
    from cocalc_magics.api import Connection

    if not isinstance(connection, Connection):
        return connection
    return connection.copy()


def _notice(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def _defer_first_interrupt() -> Iterator[list[int]]:
    """Defer the first Ctrl-C of the block; a second one interrupts it at once.

    Yields a list that contains the signal number once a Ctrl-C was deferred.
    Only the main thread receives signals, and a SIGINT handler other than
    Python's default (a debugger's, say) is left alone, so there nothing is deferred.
    """
    deferred: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield deferred
        return

    def defer(signum, frame) -> None:
        if deferred:
            raise KeyboardInterrupt
        deferred.append(signum)
        _notice(
            "Interrupt: waiting for the job id, so that the job can be stopped. "
            "Press Ctrl-C again to stop waiting."
        )

    signal.signal(signal.SIGINT, defer)
    try:
        yield deferred
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_job(
    connection: Connection,
    command: str,
    *,
    project_id: str | None = None,
    path: str | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    max_output: int | None = None,
    compute_server_id: int = 0,
    background: bool = False,
    on_interrupt: str = "stop",
    grace_s: Sequence[float] | None = None,
    output_budget: int = DEFAULT_STREAM_BUDGET,
    ledger: JobLedger | None = None,
    policy: PollPolicy = FOREGROUND_POLICY,
    show: bool = True,
    status_delay_s: float = 0.0,
) -> Job:
    """Run *command* as a bash script in an async job and follow it.

    Parameters
    ----------
    connection : Connection
        The client connection.
    command : str
        The bash script.
    project_id, path, cwd, env, max_output, compute_server_id
        As for ``Connection.exec_async``.
    timeout : float
        The exec timeout in seconds (0: none); the project kills the job after it.
    background : bool
        Return at once; a watcher thread updates the job's display until it ends.
    on_interrupt : {"stop", "detach"}
        What Ctrl-C does in the foreground: stop the job (SIGINT, SIGTERM, SIGKILL)
        and raise :class:`JobInterrupted`, or leave it running in the background
        and return it.
    grace_s : three floats, optional
        Seconds to wait after SIGINT, SIGTERM and SIGKILL.
    output_budget : int
        Bytes of output streamed to the cell; the job object keeps everything.
    ledger : JobLedger, optional
        Where the job is recorded; the default ledger file if None.
    show : bool
        Stream the output and show the progress; False follows the job silently
        (notices about interrupts are still printed).
    status_delay_s : float
        Seconds before the foreground status line (elapsed time, CPU, memory)
        appears; a job that ends sooner shows only its output.

    Returns
    -------
    Job
        Ended, unless *background* or a detach; check ``job.status``.

    Raises
    ------
    JobInterrupted
        Ctrl-C stopped the job; the exception's ``job`` has the output so far.
    """
    if on_interrupt not in ("stop", "detach"):
        raise ValueError(
            f"on_interrupt must be 'stop' or 'detach', not {on_interrupt!r}"
        )
    # A Ctrl-C during the start request would leave a job that started on the
    # server without its id reaching us, so the first one waits for the reply.
    with _defer_first_interrupt() as deferred:
        try:
            job = Job.launch(
                connection,
                command,
                ledger=ledger,
                project_id=project_id,
                bash=True,
                path=path,
                cwd=cwd,
                env=env,
                timeout=timeout,
                max_output=max_output,
                compute_server_id=compute_server_id,
            )
        except KeyboardInterrupt:
            # NOTE: the second Ctrl-C (or one outside the main thread's default
            # handler) still leaves such a job unrecorded, which the notice states.
            target = project_id or connection.project_id
            _notice(
                "Interrupted before the job id arrived: the command may have "
                f"started in project {target} without being recorded here. "
                "%cocalc exec -- ps -eo pid,etime,args shows the project's processes."
            )
            raise

    # From here on the job id is known, so a Ctrl-C at any later point stops
    # (or detaches) the job rather than leaving it unnamed.
    view = None
    try:
        job.register()
        if deferred:
            # The Ctrl-C deferred during the start takes effect now.
            raise KeyboardInterrupt
        if background:
            watch(job, view=background_view(job))
            return job
        if show:
            view = foreground_view(
                job, budget=output_budget, status_delay_s=status_delay_s
            )
        follow(job, policy=policy, on_update=view.update if view else None)
    except KeyboardInterrupt:
        return _interrupted(job, view, on_interrupt, grace_s)
    except Exception:
        _notice(
            f"Following job {job.job_id} failed; it may still be running. "
            f"%cocalc job {job.short_id} shows it."
        )
        raise
    if view is not None:
        view.finish(job)
    return job


def _interrupted(job: Job, view: Any, on_interrupt: str, grace_s) -> Job:
    """Detach or stop *job* after a Ctrl-C, and print what happened."""
    try:
        if on_interrupt == "detach":
            if view is not None:
                view.update(job)
            _notice(
                f"Detached: job {job.job_id} keeps running in project "
                f"{job.project_id}. %cocalc job {job.short_id} shows it; "
                f"%cocalc job {job.short_id} --kill stops it."
            )
            watch(job, view=background_view(job))
            return job

        _notice(f"Interrupted: stopping job {job.job_id} …")
        stop_job(job, grace_s=grace_s, on_step=_notice)
        if view is not None:
            view.finish(job)
        else:
            _notice(job.summary())
    except KeyboardInterrupt:
        _notice(
            f"Interrupted again: job {job.job_id} may still be running. "
            f"%cocalc job {job.short_id} --kill stops it."
        )
        raise
    if job.running:
        _notice(
            f"Job {job.job_id} still runs after SIGKILL; it is watched in the "
            f"background. %cocalc job {job.short_id} shows it."
        )
        watch(job)
    raise JobInterrupted(job)


class JobWatcher(threading.Thread):
    """A daemon thread that follows one job until it ends or is stopped.

    It polls with its own connection, updates the job (and so the ledger) and,
    when given one, the job's background view.
    """

    def __init__(
        self,
        job: Job,
        *,
        view: BackgroundView | None = None,
        policy: PollPolicy = BACKGROUND_POLICY,
    ) -> None:
        super().__init__(name=f"cocalc-job-{job.short_id}", daemon=True)
        self.job = job
        self.view = view
        self.policy = policy
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        connection = None
        update = self.view.update if self.view is not None else None
        try:
            connection = clone_connection(self.job._client())
            follow(
                self.job,
                connection=connection,
                policy=self.policy,
                on_update=update,
                stop=self.stop_event,
            )
        except Exception as error:
            # The job may still run; its id is in the ledger and the log.
            self.error = error
            logger.exception("watching job %s failed", self.job.job_id)
        finally:
            if connection is not None and connection is not self.job.connection:
                connection.close()
            _forget_watcher(self)
        if self.view is not None and not self.stop_event.is_set():
            self.view.finish(self.job)

    def stop(self, timeout: float | None = None) -> None:
        """Stop following the job (it keeps running) and wait for the thread."""
        self.stop_event.set()
        if self is not threading.current_thread():
            self.join(timeout)


_watchers: dict[tuple[str, str, str], JobWatcher] = {}
_watchers_lock = threading.Lock()


def _key(job: Job) -> tuple[str, str, str]:
    return (job.site, job.project_id, job.job_id)


def _forget_watcher(watcher: JobWatcher) -> None:
    with _watchers_lock:
        if _watchers.get(_key(watcher.job)) is watcher:
            del _watchers[_key(watcher.job)]
        watcher.job._watcher = None


def watch(
    job: Job,
    *,
    view: BackgroundView | None = None,
    policy: PollPolicy = BACKGROUND_POLICY,
) -> JobWatcher | None:
    """Follow *job* in a daemon thread until it ends; return the thread.

    A job that already has a watcher in this process keeps it (and None is
    returned when the job has ended).
    """
    if not job.running:
        if view is not None:
            view.finish(job)
        return None
    with _watchers_lock:
        watcher = _watchers.get(_key(job))
        if watcher is not None and watcher.is_alive():
            return watcher
        watcher = JobWatcher(job, view=view, policy=policy)
        _watchers[_key(job)] = watcher
        job._watcher = watcher
    watcher.start()
    return watcher


def watched_job(site: str, project_id: str, job_id: str) -> Job | None:
    """Return the job object that a watcher of this process follows, if any.

    Acting on that object (rather than on a copy made from the ledger) keeps its
    state, such as the signals sent to it, in one place.
    """
    with _watchers_lock:
        watcher = _watchers.get((site, project_id, job_id))
    if watcher is None or not watcher.is_alive():
        return None
    return watcher.job


def active_watchers() -> list[JobWatcher]:
    """Return the watcher threads that still run."""
    with _watchers_lock:
        return [w for w in _watchers.values() if w.is_alive()]


def stop_watchers(timeout: float = 5.0) -> None:
    """Stop every watcher (the jobs keep running), for example on unload."""
    for watcher in active_watchers():
        watcher.stop(timeout)


def resume_watching(connection: Connection, ledger: JobLedger | None = None) -> int:
    """Watch every job of this site that the ledger lists as running.

    Returns how many watchers were started. Their jobs' final output is then
    stored in the ledger as soon as they end.
    """
    ledger = ledger if ledger is not None else JobLedger()
    site = site_of(connection.host)
    started = 0
    for entry in ledger.entries(site=site, statuses=["running"]):
        job = Job.from_entry(entry, connection=connection, ledger=ledger)
        with _watchers_lock:
            known = _key(job) in _watchers
        if not known and watch(job) is not None:
            started += 1
    return started
