"""Stopping a job: SIGINT, then SIGTERM, then SIGKILL, to its whole process group.

An async job's pid leads the process group of everything it started, so each
signal goes to the negated pid. After each signal a long-poll of the grace period
waits for the end, which it reports at once. A process that ignores SIGINT
(``trap '' INT``) gets SIGTERM, and one that ignores both gets SIGKILL, which
cannot be ignored.

The job records each signal before sending it, because CoCalc reports a death by
signal as ``completed`` with exit code 0. Only that record distinguishes the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cocalc_magics.jobs.follow import poll_once

if TYPE_CHECKING:
    from cocalc_magics.jobs.job import Job

__all__ = ["DEFAULT_GRACE_S", "ESCALATION", "stop_job"]

logger = logging.getLogger(__name__)

ESCALATION = ("SIGINT", "SIGTERM", "SIGKILL")
#: Seconds to wait for the end after SIGINT, after SIGTERM and after SIGKILL.
DEFAULT_GRACE_S = (2.0, 3.0, 5.0)


def stop_job(
    job: Job,
    *,
    grace_s: Sequence[float] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> str | None:
    """Send SIGINT, SIGTERM and SIGKILL in turn until *job* ends.

    Parameters
    ----------
    grace_s : sequence of 3 floats, optional
        Seconds to wait after each signal; :data:`DEFAULT_GRACE_S` by default.
    on_step : callable, optional
        Called with a line of text before each signal, for progress messages.

    Returns
    -------
    str or None
        The signal after which the job ended, or None when it had already ended
        (or still runs after SIGKILL, which ``job.running`` then shows).

    A further Ctrl-C while waiting skips to the next signal at once.
    """
    from cocalc_magics.api import CoCalcError

    grace = _check_grace(grace_s)
    job.refresh()
    if not job.running:
        return None
    if job.pid is None:
        raise RuntimeError(
            f"job {job.job_id} has no process id, so it cannot be signalled"
        )

    connection = job._client()
    for name, seconds in zip(ESCALATION, grace):
        if on_step is not None:
            on_step(f"sending {name} to job {job.short_id}… (process group {job.pid})")
        try:
            job.signal(name)
            poll_once(job, connection, seconds)
        except KeyboardInterrupt:
            logger.info("interrupted while stopping job %s; escalating", job.job_id)
            continue
        except CoCalcError as error:
            # The process may have ended between the poll and the signal.
            logger.warning("stopping job %s: %s failed: %s", job.job_id, name, error)
            job.refresh()
        if not job.running:
            logger.info("job %s ended after %s", job.job_id, name)
            return name

    job.refresh()
    return job.signals_sent[-1] if job.status == "killed" else None


def _check_grace(grace_s: Sequence[float] | None) -> tuple[float, float, float]:
    if grace_s is None:
        return DEFAULT_GRACE_S
    values = tuple(float(value) for value in grace_s)
    if len(values) != len(ESCALATION) or any(value <= 0 for value in values):
        raise ValueError(
            "grace_s must be three positive numbers of seconds (after SIGINT, "
            f"SIGTERM and SIGKILL), not {grace_s!r}"
        )
    return values  # type: ignore[return-value]
