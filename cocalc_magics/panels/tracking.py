"""Async jobs as the jobs panel follows them, without ipywidgets.

A :class:`JobTracker` keeps :class:`~cocalc_magics.jobs.Job` handles from two
sources: jobs added explicitly (a ``Job``, an :class:`~cocalc_magics.api.AsyncJob`
or a job id), and the user's job ledger filtered to one site and project. It polls
each running job with ``Job.refresh`` (stats included), which also keeps the ledger
up to date, and stops polling a job once it has ended or is lost.

Polling a job is a project call, and every project call starts a stopped project.
The tracker therefore polls only while the caller says the project runs. It marks
the running jobs of a stopped project lost, because CoCalc drops job records when a
project stops.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any

from cocalc_magics.api.errors import CoCalcError
from cocalc_magics.api.results import AsyncJob
from cocalc_magics.jobs.job import FINAL_STATUSES, Job
from cocalc_magics.jobs.ledger import site_of

if TYPE_CHECKING:
    from cocalc_magics.api import Connection
    from cocalc_magics.jobs.ledger import JobLedger

__all__ = ["JobTracker", "job_progress", "last_output_line", "output_progress"]

logger = logging.getLogger(__name__)

# Only the end of the output is searched for a progress figure.
_PROGRESS_TAIL_CHARS = 2000
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s?%")
_FRACTION = re.compile(r"(?<![\d/])(\d+)\s?/\s?(\d+)(?![\d/])")
# Statuses whose progress bar shows full: the job ran to an end.
_ENDED = ("completed", "failed", "timed out", "killed")


def output_progress(text: str) -> float | None:
    """Return the last progress figure in a job's output, as a fraction 0..1.

    Recognizes a percentage (``42%``, ``42.5 %``) or a count (``3/10``), whichever
    comes last in the output, as progress bars such as tqdm print them.
    """
    tail = text[-_PROGRESS_TAIL_CHARS:]
    found: list[tuple[int, float]] = []
    for match in _PERCENT.finditer(tail):
        value = float(match.group(1))
        if value <= 100:
            found.append((match.end(), value / 100))
    for match in _FRACTION.finditer(tail):
        done, total = int(match.group(1)), int(match.group(2))
        if 0 < total and done <= total:
            found.append((match.end(), done / total))
    if not found:
        return None
    return max(found)[1]


def job_progress(job: Job) -> float | None:
    """Return the progress of *job* (0..1), read from its output, or 1 once ended."""
    if job.status in _ENDED:
        return 1.0
    return output_progress(job.stdout + job.stderr)


def last_output_line(job: Job) -> str:
    """Return the last non-empty line of stdout, or of stderr if stdout has none."""
    for text in (job.stdout, job.stderr):
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines()]
        lines = [line for line in lines if line]
        if lines:
            return lines[-1]
    return ""


class JobTracker:
    """The jobs of one project that a panel shows, and their polling.

    Parameters
    ----------
    connection : Connection
        Client used to poll and signal the jobs.
    project_id : str
        Project whose jobs are shown.
    ledger : JobLedger or None
        Job ledger to list the user's jobs from, and that polls update; None shows
        only added jobs and records nothing.
    max_jobs : int
        Maximum number of ledger jobs shown, newest first.
    """

    def __init__(
        self,
        connection: Connection,
        project_id: str,
        *,
        ledger: JobLedger | None = None,
        max_jobs: int = 20,
    ) -> None:
        self.connection = connection
        self.project_id = project_id
        self.ledger = ledger
        self.max_jobs = max_jobs
        self.site = site_of(connection.host)
        #: The last polling error of each job id, shown next to the job.
        self.errors: dict[str, str] = {}
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    @property
    def jobs(self) -> list[Job]:
        """The tracked jobs, newest first."""
        with self._lock:
            jobs = list(self._jobs.values())
        return sorted(jobs, key=lambda job: job.start_ms or 0, reverse=True)

    def get(self, job_id: str) -> Job:
        """Return the tracked job *job_id*; raise ``KeyError`` when not tracked."""
        with self._lock:
            return self._jobs[job_id]

    def add(self, job: Any) -> Job:
        """Track *job*: a :class:`Job`, an :class:`AsyncJob` record, or a job id."""
        if isinstance(job, Job):
            handle = job
        elif isinstance(job, AsyncJob):
            handle = self._new_job(job.job_id, job.project_id)
            handle.pid, handle.start_ms, handle.command = job.pid, job.start_ms, job.command
            handle.apply(job)
        elif isinstance(job, str) and job.strip():
            handle = self._new_job(job.strip(), None)
        else:
            raise TypeError(
                "track a Job, an AsyncJob or a job id (a non-empty str), "
                f"not {type(job).__name__} {job!r}"
            )
        with self._lock:
            return self._jobs.setdefault(handle.job_id, handle)

    def _new_job(self, job_id: str, project_id: str | None) -> Job:
        return Job(
            job_id=job_id,
            project_id=project_id or self.project_id,
            site=self.site,
            connection=self.connection,
            ledger=self.ledger,
        )

    def load_ledger(self) -> None:
        """Add the ledger's newest jobs of this site and project, if a ledger is set.

        A job that another part (a magic's background watcher) finished in the
        ledger replaces the tracked copy, so it is not polled again.
        """
        if self.ledger is None:
            return
        entries = self.ledger.entries(site=self.site, limit=self.max_jobs * 4)
        entries = [e for e in entries if e.project_id == self.project_id]
        with self._lock:
            for entry in entries[: self.max_jobs]:
                known = self._jobs.get(entry.job_id)
                if known is None or (entry.final and known.running):
                    self._jobs[entry.job_id] = Job.from_entry(
                        entry, connection=self.connection, ledger=self.ledger
                    )

    def poll(self, project_running: bool) -> None:
        """Poll every running job once.

        With *project_running* False nothing is requested (that would start the
        project) and running jobs are marked lost.
        """
        for job in self.jobs:
            if job.status in FINAL_STATUSES:
                continue
            if not project_running:
                job.mark_lost()
                continue
            self._refresh(job)

    def _refresh(self, job: Job) -> None:
        try:
            job.refresh(stats=True)
        except CoCalcError as error:
            self.errors[job.job_id] = str(error)
            logger.debug("polling job %s failed: %s", job.job_id, error)
            return
        self.errors.pop(job.job_id, None)

    def kill(self, job_id: str) -> Job:
        """Stop the job: SIGINT, SIGTERM, then SIGKILL, each after a grace period.

        Blocks until the job ended or the last grace period passed; call it from a
        background thread. See :func:`cocalc_magics.jobs.stop_job`.
        """
        job = self.get(job_id)
        if job.pid is None:
            self._refresh(job)
        if job.pid is None:
            raise ValueError(f"job {job_id} has no process id, so it cannot be signalled")
        return job.kill()
