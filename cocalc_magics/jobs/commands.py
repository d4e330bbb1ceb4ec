"""What ``%cocalc jobs`` and ``%cocalc job ID`` do, as plain functions.

The magics parse the line and call these; Python code can call them directly.
Jobs come from the ledger, so the list survives kernel restarts. Listing polls
the running jobs of the connected site once and then follows them in the
background, so that their output is stored as soon as they end.
"""

from __future__ import annotations

import html
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cocalc_magics.jobs.job import Job
from cocalc_magics.jobs.ledger import JobLedger, site_of
from cocalc_magics.jobs.render import format_seconds, summary_line
from cocalc_magics.jobs.runner import resume_watching, watched_job

if TYPE_CHECKING:
    from cocalc_magics.api import Connection, StatsSample

__all__ = [
    "JobReferenceError",
    "JobStats",
    "JobTable",
    "find_job",
    "job_stats",
    "list_jobs",
    "show_job",
]

logger = logging.getLogger(__name__)

_UUID = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_COMMAND_WIDTH = 40


class JobReferenceError(LookupError):
    """A job id or prefix that names no job, or more than one."""


@dataclass
class JobTable:
    """The jobs of ``%cocalc jobs``, newest first, as a text and an HTML table."""

    jobs: list[Job]

    def _rows(self) -> list[tuple[str, ...]]:
        rows = []
        for job in self.jobs:
            started = "?"
            if job.start_ms:
                started = datetime.fromtimestamp(job.start_ms / 1000).strftime(
                    "%Y-%m-%d %H:%M:%S"
                )
            command = " ".join((job.command or "").split())
            if len(command) > _COMMAND_WIDTH:
                command = command[: _COMMAND_WIDTH - 1] + "…"
            exit_code = "" if job.exit_code is None else str(job.exit_code)
            rows.append(
                (
                    job.short_id,
                    job.status,
                    exit_code,
                    started,
                    format_seconds(job.elapsed()),
                    command,
                )
            )
        return rows

    _HEADER = ("job", "status", "exit", "started", "elapsed", "command")

    def __repr__(self) -> str:
        if not self.jobs:
            return "No CoCalc jobs recorded yet."
        rows = [self._HEADER, *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEADER))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in rows
        ]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        if not self.jobs:
            return "<p>No CoCalc jobs recorded yet.</p>"
        head = "".join(f"<th>{name}</th>" for name in self._HEADER)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in self._rows()
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    def __len__(self) -> int:
        return len(self.jobs)


def list_jobs(
    connection: Connection | None = None,
    *,
    ledger: JobLedger | None = None,
    all_sites: bool = False,
    limit: int | None = 50,
    refresh: bool = True,
) -> JobTable:
    """List the jobs in the ledger, newest first.

    Parameters
    ----------
    connection : Connection, optional
        The current connection: only its site's jobs are listed (unless
        *all_sites*), and its running jobs are polled once and then watched.
    all_sites : bool
        List the jobs of every site in the ledger.
    limit : int, optional
        At most this many jobs.
    refresh : bool
        Poll the running jobs of the connection's site.
    """
    ledger = ledger if ledger is not None else JobLedger()
    site = site_of(connection.host) if connection is not None else None
    entries = ledger.entries(site=None if all_sites else site, limit=limit)
    jobs = [
        Job.from_entry(
            entry,
            connection=connection if entry.site == site else None,
            ledger=ledger,
        )
        for entry in entries
    ]
    if refresh and connection is not None:
        _refresh_running(jobs)
        resume_watching(connection, ledger)
    return JobTable(jobs)


def _refresh_running(jobs: Sequence[Job]) -> None:
    from cocalc_magics.api import CoCalcError

    for job in jobs:
        if not job.running or job.connection is None:
            continue
        try:
            job.refresh()
        except CoCalcError as error:
            logger.warning("could not poll job %s: %s", job.job_id, error)


def find_job(
    connection: Connection | None,
    reference: str,
    *,
    ledger: JobLedger | None = None,
) -> Job:
    """Return the job named by *reference*: a job id or a unique prefix of one.

    The ledger is searched first (this site's jobs, then all). A job that a
    watcher of this process follows is returned as that same object. A full job
    id that the ledger does not know is looked up on the server and added.

    Raises
    ------
    JobReferenceError
        No job or several jobs match.
    """
    reference = (reference or "").strip().rstrip("…")
    if not reference:
        raise JobReferenceError("no job id given; %cocalc jobs lists the known jobs")
    ledger = ledger if ledger is not None else JobLedger()
    site = site_of(connection.host) if connection is not None else None

    matches = ledger.find(reference, site=site) if site else []
    if not matches:
        matches = ledger.find(reference)
    if len(matches) > 1:
        listed = ", ".join(entry.job_id for entry in matches[:5])
        raise JobReferenceError(
            f"job id prefix {reference!r} matches {len(matches)} jobs ({listed}); "
            "give more characters of the id"
        )
    if matches:
        entry = matches[0]
        live = watched_job(entry.site, entry.project_id, entry.job_id)
        if live is not None:
            return live
        usable = connection if connection is not None and entry.site == site else None
        return Job.from_entry(entry, connection=usable, ledger=ledger)

    if connection is not None and _UUID.match(reference.lower()):
        return Job.attach(connection, reference.lower(), ledger=ledger)
    raise JobReferenceError(
        f"no job {reference!r} in the job ledger ({ledger.path}); %cocalc jobs lists "
        "the known jobs, and a full job id is also looked up in the project"
    )


def show_job(
    connection: Connection | None,
    reference: str,
    *,
    ledger: JobLedger | None = None,
    wait: bool = False,
    kill: bool = False,
    grace_s: Sequence[float] | None = None,
) -> Job:
    """Find a job, poll it once if it runs, and optionally wait for it or stop it.

    With *wait*, the output is streamed until the job ends. With *kill*, the job
    gets SIGINT, SIGTERM and SIGKILL in turn until it ends. A job whose record the
    project dropped is returned as ``lost``, with what the ledger contains.
    """
    job = find_job(connection, reference, ledger=ledger)
    if job.running and job.connection is None:
        logger.info("job %s is on %s, not the connected site", job.job_id, job.site)
        return job
    if job.running:
        job.refresh()
    if kill and job.running:
        job.kill(grace_s=grace_s)
    elif wait and job.running:
        job.wait(live=True)
    return job


@dataclass
class JobStats:
    """The CPU and memory samples of a job: a plot if matplotlib is there, a table."""

    job: Job

    @property
    def samples(self) -> list[StatsSample]:
        return list(self.job.stats)

    def _rows(self) -> list[tuple[str, str, str, str]]:
        start = self.job.start_ms or (
            self.samples[0].timestamp_ms if self.samples else 0
        )
        return [
            (
                f"{(sample.timestamp_ms - start) / 1000:.1f}",
                f"{sample.cpu_pct:.1f}",
                f"{sample.mem_rss_mib:.1f}",
                f"{sample.cpu_secs:.2f}",
            )
            for sample in self.samples
        ]

    _HEADER = ("time s", "CPU %", "memory MiB", "CPU s")

    def __repr__(self) -> str:
        title = f"CPU and memory of {summary_line(self.job)}"
        if not self.samples:
            return (
                f"{title}\nNo samples: CoCalc takes the first one about 1 s after the "
                "start, so shorter jobs have none."
            )
        rows = [self._HEADER, *self._rows()]
        lines = ["  ".join(cell.rjust(12) for cell in row) for row in rows]
        return "\n".join([title, *lines])

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{name}</th>" for name in self._HEADER)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
            for row in self._rows()
        )
        title = html.escape(f"CPU and memory of {summary_line(self.job)}")
        if not self.samples:
            return f"<p>{title}: no samples yet.</p>"
        return (
            f"<div><strong>{title}</strong><table><tr>{head}</tr>{body}</table></div>"
        )

    def _repr_png_(self) -> bytes | None:
        """Plot CPU % and memory over time as PNG; None without matplotlib or samples."""
        if len(self.samples) < 2:
            return None
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            return None

        rows = self._rows()
        seconds = [float(row[0]) for row in rows]
        figure = Figure(figsize=(6, 3.2), dpi=80)
        FigureCanvasAgg(figure)
        cpu, memory = figure.subplots(2, 1, sharex=True)
        cpu.plot(seconds, [float(row[1]) for row in rows], color="tab:blue")
        cpu.set_ylabel("CPU %")
        memory.plot(seconds, [float(row[2]) for row in rows], color="tab:orange")
        memory.set_ylabel("memory MiB")
        memory.set_xlabel("seconds since start")
        figure.suptitle(f"CoCalc job {self.job.short_id}…", fontsize=10)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()


def job_stats(job: Job) -> JobStats:
    """Return the CPU and memory history of *job* for display."""
    return JobStats(job)
