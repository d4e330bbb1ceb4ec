"""Following a running job: output as it grows, and the result as soon as it ends.

CoCalc offers two ways to read a job. A poll (``async_get``) returns the record
at once, with the output so far. A long-poll (``async_await``) keeps the request
open until the job ends, so the result arrives without delay. But it returns
nothing while the job runs. Neither alone streams output and reports the end at once.

So each cycle here is one long-poll whose bridge timeout is the current poll
interval (1 s at first). If the job ends within it, the reply carries the final
record immediately. Otherwise the bridge answers 408 after the interval, and the
client (``Connection.async_get(wait=True)``) then polls once for the output so
far, with the CPU and memory samples. That is two requests per interval, so at
most 2 requests per second at the 1 s minimum. The interval grows by half up to
:attr:`PollPolicy.max_interval_s` while the output does not change, and drops
back to the minimum when it does.

Timed polling is only the fallback: a cycle that returns early while the job
still runs (a server that ignores ``async_await``, or a proxy that answers at
once) is padded with a sleep to the interval, so the rate stays bounded whatever
the server does. Requests that fail in a way a retry can fix (no connection, a
proxy error, 503, 408) are retried with doubling pauses, up to ``max_failure_s``
seconds in a row; then the error is raised naming the job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cocalc_magics.api import Connection
    from cocalc_magics.jobs.job import Job

__all__ = [
    "BACKGROUND_POLICY",
    "FOREGROUND_POLICY",
    "JobFollowError",
    "PollPolicy",
    "follow",
    "poll_once",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollPolicy:
    """Pacing of the poll cycles of one job, in seconds.

    Attributes
    ----------
    min_interval_s : float
        Minimum length of a cycle (the long-poll's bridge timeout), used while
        output grows.
    max_interval_s : float
        Maximum length of a cycle, reached after several cycles without new
        output.
    growth : float
        Factor applied to the interval after a cycle without new output.
    max_failure_s : float
        How long requests may fail in a row before the error is raised.
    """

    min_interval_s: float = 1.0
    max_interval_s: float = 2.0
    growth: float = 1.5
    max_failure_s: float = 300.0

    def next_interval(self, interval: float, output_grew: bool) -> float:
        if output_grew:
            return self.min_interval_s
        return min(interval * self.growth, self.max_interval_s)


#: A job whose output the user is watching: new output within 1 to 2 s.
FOREGROUND_POLICY = PollPolicy()
#: A background job: quiet ones are polled every 5 s; the end is still seen at once.
BACKGROUND_POLICY = PollPolicy(max_interval_s=5.0)

_MAX_FAILURE_PAUSE_S = 30.0


class JobFollowError(RuntimeError):
    """Requests for a job kept failing; the job itself may still be running."""


def poll_once(job: Job, connection: Connection, wait_s: float) -> bool:
    """Run one cycle: a long-poll of *wait_s* seconds, with stats; apply the record.

    Returns whether the output grew. A job whose record the project dropped is
    marked lost.
    """
    from cocalc_magics.api import JobNotFoundError

    try:
        record = connection.async_get(
            job.job_id,
            wait=True,
            stats=True,
            wait_timeout=wait_s,
            project_id=job.project_id,
            compute_server_id=job.compute_server_id,
        )
    except JobNotFoundError as error:
        job.mark_lost(error)
        return False
    return job.apply(record)


def follow(
    job: Job,
    *,
    connection: Connection | None = None,
    policy: PollPolicy = FOREGROUND_POLICY,
    on_update: Callable[[Job], None] | None = None,
    stop: threading.Event | None = None,
    timeout: float | None = None,
) -> Job:
    """Poll *job* until it ends, calling ``on_update(job)`` after every cycle.

    Parameters
    ----------
    connection : Connection, optional
        The connection to poll with; by default the job's own. A background
        thread passes its own, because one HTTP session should not be shared
        between threads.
    stop : threading.Event, optional
        Set it to stop following within one cycle; the job keeps running.
    timeout : float, optional
        Seconds after which ``TimeoutError`` is raised; the job keeps running.

    Raises
    ------
    JobFollowError
        Requests failed for ``policy.max_failure_s`` seconds in a row.
    """
    from cocalc_magics.api import BridgeTimeoutError, NotListeningError, TransportError

    # Errors after which the same poll may succeed; others (a rejected key, say)
    # are raised at once.
    transient = (TransportError, NotListeningError, BridgeTimeoutError)
    connection = connection or job._client()
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = policy.min_interval_s
    failing_since: float | None = None
    failures = 0

    while job.running:
        if stop is not None and stop.is_set():
            return job
        wait_s = interval
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"job {job.job_id} still runs after {timeout} s; it keeps running"
                )
            wait_s = max(min(interval, left), 0.05)

        started = time.monotonic()
        try:
            grew = poll_once(job, connection, wait_s)
        except transient as error:
            failing_since = failing_since or started
            failures += 1
            _check_failures(job, error, failing_since, policy)
            pause = min(2.0 ** (failures - 1), _MAX_FAILURE_PAUSE_S)
            logger.warning(
                "polling job %s failed (%s); retry %d in %.0f s",
                job.job_id,
                error,
                failures,
                pause,
            )
            _sleep(pause, stop)
            continue

        failing_since, failures = None, 0
        if on_update is not None:
            on_update(job)
        interval = policy.next_interval(interval, grew)
        if job.running:
            _sleep(wait_s - (time.monotonic() - started), stop)
    return job


def _check_failures(
    job: Job, error: Exception, failing_since: float, policy: PollPolicy
) -> None:
    if time.monotonic() - failing_since < policy.max_failure_s:
        return
    raise JobFollowError(
        f"requests for job {job.job_id} in project {job.project_id} failed for "
        f"{policy.max_failure_s:.0f} s (last error: {error}); the job may still be "
        f"running: check it later with %cocalc job {job.job_id}"
    ) from error


def _sleep(seconds: float, stop: threading.Event | None) -> None:
    if seconds <= 0:
        return
    if stop is not None:
        stop.wait(seconds)
    else:
        time.sleep(seconds)
