"""The result object that ``%cocalc exec`` returns and ``--out VAR`` stores."""

from __future__ import annotations

from dataclasses import dataclass, field


def _size(text: str) -> str:
    count = len(text.encode("utf-8", "surrogateescape"))
    return f"{count} B" if count < 10_000 else f"{count / 1024:.0f} KiB"


@dataclass(repr=False)
class CommandResult:
    """The complete outcome of one remote command.

    The display of a command may be cut to the output budget; this object always
    contains the full text that the server returned.

    Attributes
    ----------
    stdout, stderr
        The command's output as the server returned it.
    exit_code
        The exit code. CoCalc reports a process killed by a signal as 0.
    duration_s
        Wall-clock seconds from sending the request to the final answer.
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
    """

    stdout: str
    stderr: str
    exit_code: int
    duration_s: float
    project_id: str | None
    command: str
    job_id: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    site: str = field(default="")

    @property
    def ok(self) -> bool:
        """Whether the command exited with code 0."""
        return self.exit_code == 0

    def __repr__(self) -> str:
        # Short on purpose: the output was already shown, and a bare
        # `%cocalc exec ...` line displays this repr as the cell's result.
        parts = [
            f"exit_code={self.exit_code}",
            f"{self.duration_s:.2f} s",
            f"stdout {_size(self.stdout)}",
            f"stderr {_size(self.stderr)}",
        ]
        if self.job_id:
            parts.append(f"job {self.job_id}")
        if self.site:
            parts.append(f"on {self.site}")
        return f"<CommandResult {', '.join(parts)}>"
