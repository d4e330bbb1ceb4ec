"""The result object that ``%cocalc exec`` returns and ``--out VAR`` stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cocalc_magics.api import StatsSample
    from cocalc_magics.jobs import Job


def _size(text: str) -> str:
    count = len(text.encode("utf-8", "surrogateescape"))
    return f"{count} B" if count < 10_000 else f"{count / 1024:.0f} KiB"


@dataclass(repr=False)
class CommandResult:
    """The complete outcome of one remote command.

    The display of a command may be cut to the output budget; this object always
    contains the full text that the server returned. A command that ran as an
    async job keeps its :class:`~cocalc_magics.jobs.Job` in ``job``; then
    :meth:`refresh`, :meth:`wait` and :meth:`kill` act on the job and copy its
    new state into this object.

    Attributes
    ----------
    stdout, stderr
        The command's output as the server returned it.
    exit_code
        The exit code, or ``None`` when the job has none: it was killed by a
        signal, timed out, was lost, or still runs.
    duration_s
        Wall-clock seconds from sending the request to the final reply.
    project_id
        The project the command ran in.
    command
        The command text sent to the server.
    job_id
        The async job id when the command ran as an async job, else ``None``.
    stdout_truncated, stderr_truncated
        Whether the server cut the stream at ``max_output`` characters.
    site
        Where it ran: ``"local server"`` or the site URL.
    status
        The job's status: ``"completed"``, ``"running"``, ``"failed"``,
        ``"timed out"``, ``"killed"`` or ``"lost"``.
    job
        The job the command ran as, or ``None``.
    """

    stdout: str
    stderr: str
    exit_code: int | None
    duration_s: float
    project_id: str | None
    command: str
    job_id: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    site: str = field(default="")
    status: str = "completed"
    job: Job | None = field(default=None, compare=False)

    @classmethod
    def from_job(
        cls,
        job: Job,
        *,
        command: str,
        duration_s: float | None = None,
        site: str = "",
    ) -> CommandResult:
        """Return the result of ``job`` as it is now."""
        result = cls(
            stdout="",
            stderr="",
            exit_code=None,
            duration_s=0.0,
            project_id=job.project_id,
            command=command,
            job_id=job.job_id,
            site=site,
            job=job,
        )
        result._copy_job(duration_s)
        return result

    def _copy_job(self, duration_s: float | None = None) -> None:
        job = self.job
        if job is None:
            return
        self.stdout = job.stdout
        self.stderr = job.stderr
        self.exit_code = job.exit_code
        self.status = job.status
        self.stdout_truncated = job.stdout_truncated
        self.stderr_truncated = job.stderr_truncated
        elapsed = job.elapsed()
        if duration_s is not None:
            self.duration_s = duration_s
        elif elapsed is not None:
            self.duration_s = elapsed

    @property
    def ok(self) -> bool:
        """Whether the command completed with exit code 0."""
        return self.status == "completed" and self.exit_code == 0

    @property
    def running(self) -> bool:
        """Whether the command's job still ran at the last poll."""
        return self.status == "running"

    @property
    def elapsed_s(self) -> float | None:
        """Seconds the job ran (so far, while it runs)."""
        if self.job is not None:
            return self.job.elapsed()
        return self.duration_s

    @property
    def stats(self) -> list[StatsSample]:
        """CPU and memory samples of the job (``mem_rss_mib`` in MiB)."""
        return list(self.job.stats) if self.job is not None else []

    def summary(self) -> str:
        """Return one line: the job's summary, or the exit code and duration."""
        if self.job is not None:
            return self.job.summary()
        return f"exit {self.exit_code} ({self.duration_s:.1f} s)"

    def refresh(self) -> CommandResult:
        """Poll the job once and return this result, updated."""
        self._require_job("refresh").refresh()
        self._copy_job()
        return self

    def wait(self, timeout: float | None = None) -> CommandResult:
        """Wait (at most ``timeout`` seconds) until the job ends; return this result."""
        self._require_job("wait").wait(timeout)
        self._copy_job()
        return self

    def kill(self, grace_s: tuple[float, float, float] | None = None) -> CommandResult:
        """Stop the job with SIGINT, SIGTERM, then SIGKILL; return this result.

        ``grace_s`` contains the seconds waited after each signal.
        """
        self._require_job("kill").kill(grace_s=grace_s)
        self._copy_job()
        return self

    def _require_job(self, action: str) -> Any:
        if self.job is None:
            raise RuntimeError(
                f"cannot {action}: this command did not run as an async job"
            )
        return self.job

    def __repr__(self) -> str:
        # Short on purpose: the output was already shown, and a bare
        # `%cocalc exec ...` line displays this repr as the cell's result. The
        # job id is left out because it changes on every run (see .job_id).
        if self.exit_code is None:
            parts = [f"status={self.status}"]
        else:
            parts = [f"exit_code={self.exit_code}"]
        parts += [
            f"{self.duration_s:.2f} s",
            f"stdout {_size(self.stdout)}",
            f"stderr {_size(self.stderr)}",
        ]
        if self.site:
            parts.append(f"on {self.site}")
        return f"<CommandResult {', '.join(parts)}>"
