"""The job object: one async exec job, its latest state, and what was done to it.

A :class:`Job` is what ``%cocalc exec --bg`` and :func:`~cocalc_magics.jobs.run_job`
return, and what Python code can wait for, refresh and kill. It turns CoCalc's
job record into an outcome a user can trust:

- CoCalc reports a process killed by a signal as ``completed`` with exit code 0.
  The job remembers each signal it sent (in memory and in the ledger), and a job
  that ends after one is reported as ``killed`` with that signal named.
- The final record of a job killed by its exec timeout has an empty stdout. The
  output that earlier polls saw is kept instead and marked as partial.
- A job whose record the project dropped (expired, evicted, project restarted)
  becomes ``lost``, keeping whatever the ledger contains.

Every change of status is written to the ledger, and the partial output at most
every :data:`PARTIAL_SAVE_INTERVAL_S` seconds while the job runs.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

from cocalc_magics.jobs.ledger import JobLedger, LedgerEntry, site_of

if TYPE_CHECKING:
    from cocalc_magics.api import AsyncJob, Connection, StatsSample

__all__ = [
    "FINAL_STATUSES",
    "SIGNALS",
    "Job",
    "signal_number",
]

logger = logging.getLogger(__name__)

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
TIMED_OUT = "timed out"
KILLED = "killed"
LOST = "lost"
FINAL_STATUSES = (COMPLETED, FAILED, TIMED_OUT, KILLED, LOST)

#: Signal numbers by name, as on Linux (CoCalc projects run on Linux).
SIGNALS = {"SIGINT": 2, "SIGTERM": 15, "SIGKILL": 9, "SIGHUP": 1, "SIGQUIT": 3}

PARTIAL_SAVE_INTERVAL_S = 5.0
# Samples kept per job; CoCalc itself returns at most the 100 newest.
MAX_STATS_SAMPLES = 1000

# system.exec appends this to a stream that reached max_output (characters).
_TRUNCATION_SUFFIX = re.compile(r" \(truncated at (\d+) characters\)\Z")
_TIMEOUT_MARK = "killed command"


def signal_number(signal: int | str) -> tuple[str, int]:
    """Return ``(name, number)`` for a signal given as a name or a number."""
    if isinstance(signal, str):
        name = signal.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name not in SIGNALS:
            known = ", ".join(SIGNALS)
            raise ValueError(
                f"unknown signal {signal!r}; use one of {known} or a number"
            )
        return name, SIGNALS[name]
    if isinstance(signal, bool) or not isinstance(signal, int) or signal <= 0:
        raise ValueError(f"signal must be a positive number or a name, not {signal!r}")
    for name, number in SIGNALS.items():
        if number == signal:
            return name, number
    return f"signal {signal}", signal


def _split_truncation(text: str) -> tuple[str, bool]:
    match = _TRUNCATION_SUFFIX.search(text)
    if match is None:
        return text, False
    return text[: match.start()], True


class Job:
    """An async exec job in a CoCalc project, as last seen by this process.

    Create one with :meth:`start` or :meth:`attach`, or from a ledger entry with
    :meth:`from_entry`. The attributes are updated by :meth:`refresh`,
    :meth:`wait` and :meth:`kill`, and by a background watcher when one follows
    the job.

    Attributes
    ----------
    job_id, project_id, site : str
        The job's handle, its project, and the site URL.
    status : str
        ``"running"``, ``"completed"`` (exit code valid), ``"failed"`` (could not
        run; see ``message``), ``"timed out"`` (killed by its exec timeout),
        ``"killed"`` (ended after a signal this process sent) or ``"lost"`` (the
        project no longer has its record).
    exit_code : int or None
        The exit code once completed. None while running and when no real code
        exists: a death by signal, a timeout, a lost job.
    stdout, stderr : str
        Output so far, without CoCalc's truncation suffix.
    output_partial : bool
        True when the final output is what polls saw before the end, because the
        final record had none (timeouts) or the job was lost.
    stats : list of StatsSample
        CPU and memory samples collected so far (``mem_rss_mib`` in MiB).
    signals_sent : list of str
        Names of the signals sent to the job's process group, in order.
    message : str or None
        The server's explanation of a failure or timeout.
    """

    def __init__(
        self,
        *,
        job_id: str,
        project_id: str,
        site: str,
        connection: Connection | None = None,
        ledger: JobLedger | None = None,
        pid: int | None = None,
        command: str | None = None,
        start_ms: int | None = None,
        compute_server_id: int = 0,
    ) -> None:
        self.job_id = job_id
        self.project_id = project_id
        self.site = site
        self.pid = pid
        self.command = command
        self.start_ms = start_ms
        self.compute_server_id = compute_server_id
        self.connection = connection
        self.ledger = ledger

        self.status = RUNNING
        self.server_status: str | None = None
        self.exit_code: int | None = None
        self.elapsed_s: float | None = None
        self.stdout = ""
        self.stderr = ""
        self.stdout_truncated = False
        self.stderr_truncated = False
        self.output_partial = False
        self.message: str | None = None
        self.stats: list[StatsSample] = []
        self.signals_sent: list[str] = []
        self.last_poll: float | None = None

        self._lock = threading.RLock()
        self._saved_at = 0.0
        self._watcher: Any = None
        self._start_record: AsyncJob | None = None
        self._open_default_ledger = False

    # Creating jobs.

    @classmethod
    def start(cls, connection: Connection, command: str, **options: Any) -> Job:
        """Start *command* as an async job and record it in the ledger.

        Takes the options of :meth:`launch`.
        """
        job = cls.launch(connection, command, **options)
        job.register()
        return job

    @classmethod
    def launch(
        cls,
        connection: Connection,
        command: str,
        *,
        ledger: JobLedger | None = None,
        project_id: str | None = None,
        bash: bool | None = True,
        path: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        max_output: int | None = None,
        compute_server_id: int = 0,
    ) -> Job:
        """Start *command* as an async job without recording it yet.

        Parameters are those of ``Connection.exec_async``; ``timeout`` is in
        seconds (0 for no limit). The ledger defaults to :class:`JobLedger` at its
        default path. Call :meth:`register` to record the job.
        """
        record = connection.exec_async(
            command,
            bash=bash,
            path=path,
            cwd=cwd,
            env=env,
            timeout=timeout,
            max_output=max_output,
            project_id=project_id,
            compute_server_id=compute_server_id,
        )
        return cls.from_start_reply(
            connection,
            record,
            command=command,
            ledger=ledger,
            project_id=project_id,
            compute_server_id=compute_server_id,
        )

    @classmethod
    def from_start_reply(
        cls,
        connection: Connection,
        record: AsyncJob,
        *,
        command: str,
        ledger: JobLedger | None = None,
        project_id: str | None = None,
        compute_server_id: int = 0,
    ) -> Job:
        """Build the job for the start reply *record*, without any I/O.

        Call :meth:`register` next, which opens the default ledger when *ledger*
        is None. Keeping the two apart lets a caller that catches Ctrl-C hold the
        job (and its id) as soon as the start returned.
        """
        job = cls(
            job_id=record.job_id,
            project_id=record.project_id or project_id or connection.project_id or "",
            site=site_of(connection.host),
            connection=connection,
            ledger=ledger,
            pid=record.pid,
            command=command,
            start_ms=record.start_ms,
            compute_server_id=compute_server_id,
        )
        job._start_record = record
        job._open_default_ledger = ledger is None
        return job

    def register(self) -> None:
        """Add the job to the ledger and apply its start record.

        The entry is queued for the ledger's writer thread. A ledger that cannot
        be opened (a read-only home directory, say) is logged and left out, and
        a failed write is logged by the writer. The job itself still works.
        """
        logger.info("started job %s in project %s", self.job_id, self.project_id)
        try:
            if self._open_default_ledger:
                self.ledger = JobLedger.default()
        except (OSError, sqlite3.Error) as error:
            logger.warning(
                "job %s is not recorded: the job ledger failed: %s", self.job_id, error
            )
            self.ledger = None
        if self.ledger is not None:
            # Queued: the writer thread stores it while the first poll is sent.
            self.ledger.add_later(self.to_entry())
            self._saved_at = time.monotonic()
        record = self._start_record
        if record is not None:
            self._start_record = None
            self.apply(record)

    @classmethod
    def from_entry(
        cls,
        entry: LedgerEntry,
        *,
        connection: Connection | None = None,
        ledger: JobLedger | None = None,
    ) -> Job:
        """Rebuild a job from its ledger entry, without asking the server."""
        from cocalc_magics.api import StatsSample

        job = cls(
            job_id=entry.job_id,
            project_id=entry.project_id,
            site=entry.site,
            connection=connection,
            ledger=ledger,
            pid=entry.pid,
            command=entry.command,
            start_ms=entry.start_ms,
        )
        job.status = entry.status
        job.exit_code = entry.exit_code
        job.elapsed_s = entry.elapsed_s
        job.stdout = entry.stdout
        job.stderr = entry.stderr
        job.message = entry.message
        job.signals_sent = list(entry.signals)
        job.output_partial = entry.status in (TIMED_OUT, LOST)
        job.stats = [StatsSample.from_reply(sample) for sample in entry.stats]
        return job

    @classmethod
    def attach(
        cls,
        connection: Connection,
        job_id: str,
        *,
        project_id: str | None = None,
        ledger: JobLedger | None = None,
    ) -> Job:
        """Re-attach to job *job_id*: from the ledger if known, then one poll.

        A job missing from the ledger is added to it. A job missing from both the
        ledger and the project raises ``JobNotFoundError``.
        """
        ledger = ledger if ledger is not None else JobLedger()
        site = site_of(connection.host)
        project_id = project_id or connection.project_id or ""
        entry = ledger.get(site, project_id, job_id)
        if entry is not None:
            job = cls.from_entry(entry, connection=connection, ledger=ledger)
            if job.running:
                job.refresh()
            return job

        record = connection.async_get(job_id, stats=True, project_id=project_id)
        job = cls(
            job_id=job_id,
            project_id=project_id,
            site=site,
            connection=connection,
            ledger=ledger,
            pid=record.pid,
            start_ms=record.start_ms,
        )
        ledger.add(job.to_entry())
        job.apply(record)
        return job

    # State.

    @property
    def running(self) -> bool:
        """True while the job runs, as of the last poll."""
        return self.status == RUNNING

    @property
    def ok(self) -> bool:
        """True when the job completed with exit code 0 and no signal was sent."""
        return self.status == COMPLETED and self.exit_code == 0

    @property
    def short_id(self) -> str:
        """The first 8 characters of the job id, enough to name it in commands."""
        return self.job_id[:8]

    @property
    def stopped_by(self) -> str | None:
        """The last signal sent before the job ended, for a killed job."""
        return self.signals_sent[-1] if self.status == KILLED else None

    def elapsed(self) -> float | None:
        """Seconds the job ran: final value once ended, else counted from its start.

        While running this uses the local clock against the server's start time,
        so a clock difference between the two shows up here.
        """
        if self.elapsed_s is not None:
            return self.elapsed_s
        if self.start_ms is None or not self.running:
            return None
        return max(time.time() - self.start_ms / 1000, 0.0)

    def apply(self, record: AsyncJob) -> bool:
        """Update from a job record of the server; return whether output grew.

        Thread-safe: the background watcher and the caller may both poll.
        """
        with self._lock:
            if self.status in FINAL_STATUSES:
                return False
            before = (len(self.stdout), len(self.stderr))
            self.server_status = record.status
            if record.pid is not None:
                self.pid = record.pid
            if record.start_ms is not None:
                self.start_ms = record.start_ms
            self._merge_stats(record.stats)
            self.last_poll = time.monotonic()

            if record.running:
                self.stdout = record.stdout
                self.stderr = record.stderr
            else:
                self._finish(record)
            grew = (len(self.stdout), len(self.stderr)) != before
        self._save()
        return grew

    def _finish(self, record: AsyncJob) -> None:
        self.elapsed_s = record.elapsed_s
        if record.status == "error":
            if _TIMEOUT_MARK in record.stderr:
                self.status = TIMED_OUT
            else:
                self.status = FAILED
            # CoCalc drops the output of a failed job; keep what the polls saw.
            self.message = record.stderr
            self.output_partial = bool(self.stdout or self.stderr)
            self.exit_code = None
            return

        self.stdout, self.stdout_truncated = _split_truncation(record.stdout)
        self.stderr, self.stderr_truncated = _split_truncation(record.stderr)
        if self.signals_sent:
            # A death by signal reads as exit code 0; a non-zero code is real.
            self.status = KILLED
            self.exit_code = record.exit_code or None
        else:
            self.status = COMPLETED
            self.exit_code = record.exit_code

    def _merge_stats(self, samples: list[StatsSample]) -> None:
        if not samples:
            return
        seen = {sample.timestamp_ms for sample in self.stats}
        self.stats.extend(s for s in samples if s.timestamp_ms not in seen)
        self.stats.sort(key=lambda sample: sample.timestamp_ms)
        del self.stats[:-MAX_STATS_SAMPLES]

    def mark_lost(self, error: Exception | None = None) -> None:
        """Mark the job lost, because the project no longer has its record."""
        with self._lock:
            if self.status in FINAL_STATUSES:
                return
            self.status = LOST
            self.output_partial = True
            self.message = (
                "the project no longer has this job's record: it expired (one hour "
                "after the last poll), was evicted (at most 100 are kept), or the "
                "project restarted"
            )
            if error is not None:
                # The server's own words, e.g. "Async operation '…' does not exist."
                server_text = getattr(error, "message", None) or str(error)
                self.message += f" (server: {server_text})"
        logger.warning("job %s is lost: %s", self.job_id, error)
        self._save(force=True)

    def note_signal(self, name: str) -> None:
        """Remember that signal *name* was sent, before sending it."""
        with self._lock:
            self.signals_sent.append(name)
        if self.ledger is not None:
            self.ledger.update(
                self.site, self.project_id, self.job_id, signals=self.signals_sent
            )

    # Ledger.

    def to_entry(self) -> LedgerEntry:
        """Return the ledger entry of the job's current state."""
        now = int(time.time() * 1000)
        return LedgerEntry(
            site=self.site,
            project_id=self.project_id,
            job_id=self.job_id,
            created_ms=now,
            updated_ms=now,
            **self._state_columns(),
        )

    def _state_columns(self) -> dict[str, Any]:
        """Return the ledger columns that change while the job runs."""
        return {
            "status": self.status,
            "pid": self.pid,
            "command": self.command,
            "start_ms": self.start_ms,
            "exit_code": self.exit_code,
            "elapsed_s": self.elapsed_s,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "message": self.message,
            "signals": list(self.signals_sent),
            "final": self.status in FINAL_STATUSES,
            "stats": [_sample_dict(sample) for sample in self.stats],
        }

    def _save(self, *, force: bool = False) -> None:
        if self.ledger is None:
            return
        final = self.status in FINAL_STATUSES
        now = time.monotonic()
        if not (final or force or now - self._saved_at >= PARTIAL_SAVE_INTERVAL_S):
            return
        self._saved_at = now
        with self._lock:
            values = self._state_columns()
        self.ledger.update_later(self.site, self.project_id, self.job_id, **values)

    # Actions.

    def _client(self) -> Connection:
        if self.connection is None:
            raise RuntimeError(
                f"job {self.job_id} has no connection; re-attach it with "
                "Job.attach(connection, job_id) or %cocalc job ID"
            )
        return self.connection

    def refresh(self, *, stats: bool = True) -> Job:
        """Poll the job once and return it; a job the project forgot becomes lost."""
        from cocalc_magics.api import JobNotFoundError

        if not self.running:
            return self
        try:
            record = self._client().async_get(
                self.job_id,
                stats=stats,
                project_id=self.project_id,
                compute_server_id=self.compute_server_id,
            )
        except JobNotFoundError as error:
            self.mark_lost(error)
            return self
        self.apply(record)
        return self

    def wait(self, timeout: float | None = None, *, live: bool = False) -> Job:
        """Wait until the job ends and return it.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most; ``TimeoutError`` (naming the job) after that.
            The job keeps running.
        live : bool
            Show output and progress while waiting, in IPython or on stdout.

        A background watcher of the job pauses while a live wait polls, so the
        job is not polled twice. The watcher resumes if the wait ends first.
        """
        from cocalc_magics.jobs.follow import follow

        watcher = self._watcher
        if watcher is not None and watcher.is_alive() and not live:
            watcher.join(timeout)
            if watcher.is_alive():
                raise TimeoutError(
                    f"job {self.job_id} still runs after {timeout} s; it keeps running"
                )
            return self

        background_view = None
        if watcher is not None:
            watcher.stop()
            background_view = watcher.view
        view = None
        if live:
            from cocalc_magics.jobs.views import foreground_view

            view = foreground_view(self)
        try:
            follow(self, on_update=view.update if view else None, timeout=timeout)
        finally:
            if self.running and watcher is not None:
                from cocalc_magics.jobs.runner import watch

                watch(self, view=background_view)
        if view is not None:
            view.finish(self)
        if background_view is not None:
            background_view.finish(self)
        return self

    def signal(self, signal: int | str = "SIGTERM") -> None:
        """Send *signal* (a name such as ``"SIGINT"`` or a number) to the job's group."""
        name, number = signal_number(signal)
        if self.pid is None:
            raise RuntimeError(f"job {self.job_id} has no process id to signal")
        self.note_signal(name)
        self._client().signal(
            self.pid,
            number,
            group=True,
            project_id=self.project_id,
            compute_server_id=self.compute_server_id,
        )

    def kill(self, *, grace_s: tuple[float, float, float] | None = None) -> Job:
        """Stop the job: SIGINT, then SIGTERM, then SIGKILL, each after a grace period.

        See :func:`cocalc_magics.jobs.stopping.stop_job`.
        """
        from cocalc_magics.jobs.stopping import stop_job

        stop_job(self, grace_s=grace_s)
        return self

    # Display.

    def summary(self) -> str:
        """Return one line such as ``CoCalc job 1a2b3c4d…: completed, exit 0 (2.1 s)``."""
        from cocalc_magics.jobs.render import summary_line

        return summary_line(self)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary())

    def _repr_html_(self) -> str:
        from cocalc_magics.jobs.render import job_html

        return job_html(self)


def _sample_dict(sample: StatsSample) -> dict[str, Any]:
    return {
        "timestamp": sample.timestamp_ms,
        "mem_rss": sample.mem_rss_mib,
        "cpu_pct": sample.cpu_pct,
        "cpu_secs": sample.cpu_secs,
    }
