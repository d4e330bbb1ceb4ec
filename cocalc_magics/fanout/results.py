"""Results of a fan-out: one row per project, and the table that contains them.

:class:`FanoutResult` keeps the rows in the order the projects were given, whatever
order they finished in. Its ``repr`` and ``_repr_html_`` show a bounded excerpt of
each row's output, so a class of 200 chatty projects cannot flood a notebook; the
full stdout and stderr stay on the rows.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cocalc_magics.api import Connection

__all__ = [
    "CANCELLED",
    "DONE",
    "FAILED",
    "FINAL_STATUSES",
    "QUEUED",
    "RUNNING",
    "STARTING",
    "FanoutResult",
    "Operation",
    "ProjectRun",
]

QUEUED = "queued"
STARTING = "starting"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
FINAL_STATUSES = frozenset({DONE, FAILED, CANCELLED})

# Characters of output or error text shown per row in repr and HTML.
_EXCERPT_CHARS = 60
_TITLE_CHARS = 32


@dataclass(frozen=True)
class Operation:
    """What a fan-out does in each project.

    ``kind`` is ``"exec"``, ``"start"``, ``"stop"`` or ``"status"``. For exec,
    ``command`` is the bash script and ``options`` contains ``path``, ``cwd``,
    ``env``, ``timeout`` (seconds), ``max_output`` (characters) and
    ``start_stopped``.
    """

    kind: str
    command: str | None = None
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        """Return a short label such as ``exec 'ls -la'``."""
        if self.kind != "exec":
            return self.kind
        first_line = (self.command or "").strip().splitlines()[0:1]
        text = first_line[0] if first_line else ""
        if len(text) > 40:
            text = text[:39] + "…"
        return f"exec {text!r}"


@dataclass
class ProjectRun:
    """The outcome of one project of a fan-out.

    ``status`` is one of ``queued``, ``starting``, ``running``, ``done``,
    ``failed`` or ``cancelled``. A command that exits with a non-zero code is
    ``failed`` with that ``exit_code``. ``exit_code`` is None when no exit code is
    known: the command never ran, was cancelled, or the operation is not exec.
    ``duration_s`` counts from the moment a worker took the project, so it includes
    starting a stopped project. ``state`` is the project's run state as last seen
    (``opened`` means stopped). ``job_id`` is the async exec job, which can still
    be polled with ``Connection.async_get`` for about an hour. ``signalled`` names
    the signal sent to the job on cancel, and ``job_running`` is True while the job
    may still be running (also after a cancel or timeout that could not confirm
    its end). ``detail`` is the outcome of a start, stop or status operation, such
    as ``"state: running"``.
    """

    project_id: str
    title: str | None = None
    status: str = QUEUED
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float | None = None
    error: str | None = None
    job_id: str | None = None
    state: str | None = None
    started_project: bool = False
    signalled: str | None = None
    detail: str | None = None
    job_running: bool = False
    pid: int | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the project's work finished successfully."""
        return self.status == DONE

    @property
    def finished(self) -> bool:
        """True once the row has reached ``done``, ``failed`` or ``cancelled``."""
        return self.status in FINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        """Return the row's public fields as a dict (for tables and JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}

    def note(self) -> str:
        """Return the short text shown in a grid cell: the error, or the output."""
        if self.error:
            return self.error
        if self.detail:
            return self.detail
        text = self.stdout.strip() or self.stderr.strip()
        return text.splitlines()[-1] if text else ""


class FanoutResult:
    """The rows of a fan-out, in the order the projects were given.

    Parameters
    ----------
    rows : list of ProjectRun
    operation : Operation
        What ran, so that :func:`~cocalc_magics.fanout.retry_failed` can run it again.
    connection : Connection, optional
        The connection used, the default for a retry.
    wall_s : float, optional
        Wall-clock seconds of the whole fan-out.
    interrupted : bool
        True when the fan-out was cancelled with Ctrl-C.
    """

    def __init__(
        self,
        rows: list[ProjectRun],
        operation: Operation,
        *,
        connection: Connection | None = None,
        wall_s: float | None = None,
        interrupted: bool = False,
    ) -> None:
        self.rows = rows
        self.operation = operation
        self.connection = connection
        self.wall_s = wall_s
        self.interrupted = interrupted

    # Access.

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ProjectRun]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> ProjectRun:
        return self.rows[index]

    @property
    def ok(self) -> bool:
        """True when every row is ``done``."""
        return all(row.ok for row in self.rows)

    def failed(self, *, include_cancelled: bool = True) -> FanoutResult:
        """Return the rows that did not finish successfully, as a new result.

        Cancelled rows count as failed unless ``include_cancelled=False``, because
        their work did not complete either.
        """
        unwanted = {FAILED, CANCELLED} if include_cancelled else {FAILED}
        return self._subset([row for row in self.rows if row.status in unwanted])

    def succeeded(self) -> FanoutResult:
        """Return the ``done`` rows as a new result."""
        return self._subset([row for row in self.rows if row.ok])

    def left_running(self) -> list[ProjectRun]:
        """Rows whose remote job may still run (cancel or timeout could not stop it)."""
        return [row for row in self.rows if row.job_running]

    def merged(self, newer: FanoutResult) -> FanoutResult:
        """Return this result with rows of the same project replaced by *newer*'s.

        Useful after :func:`~cocalc_magics.fanout.retry_failed`, which returns only
        the retried rows.
        """
        replacements = {row.project_id: row for row in newer.rows}
        rows = [replacements.pop(row.project_id, row) for row in self.rows]
        rows.extend(replacements.values())
        return FanoutResult(
            rows, self.operation, connection=self.connection, wall_s=None
        )

    def counts(self) -> dict[str, int]:
        """Return the number of rows per status."""
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def summary(self) -> str:
        """Return one line such as ``exec 'ls': 98 done, 2 failed of 100 in 12.3 s``."""
        return summarize(self.operation, self.rows, self.wall_s)

    def to_dataframe(self):
        """Return the rows as a pandas DataFrame, one row per project.

        Raises
        ------
        ImportError
            If pandas is not installed; ``[row.as_dict() for row in result]`` gives
            the same data as plain dicts.
        """
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "to_dataframe() needs pandas, which is not installed; run "
                "'pip install pandas', or use [row.as_dict() for row in result]"
            ) from None
        return pandas.DataFrame([row.as_dict() for row in self.rows])

    def _subset(self, rows: list[ProjectRun]) -> FanoutResult:
        return FanoutResult(
            [replace(row) for row in rows], self.operation, connection=self.connection
        )

    # Display.

    def __repr__(self) -> str:
        return render_text(self.operation, self.rows, self.wall_s)

    def _repr_html_(self) -> str:
        return render_html(self.operation, self.rows, self.wall_s)


def summarize(
    operation: Operation, rows: list[ProjectRun], wall_s: float | None
) -> str:
    """Return the one-line summary of *rows*, counting each status present."""
    order = (DONE, FAILED, CANCELLED, RUNNING, STARTING, QUEUED)
    counts = {status: 0 for status in order}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    parts = [f"{counts[status]} {status}" for status in order if counts[status]]
    timing = f" in {wall_s:.1f} s" if wall_s is not None else ""
    projects = "project" if len(rows) == 1 else "projects"
    return (
        f"{operation.describe()}: {', '.join(parts)} of {len(rows)} {projects}{timing}"
    )


def _cells(row: ProjectRun) -> list[str]:
    exit_code = "" if row.exit_code is None else str(row.exit_code)
    duration = "" if row.duration_s is None else f"{row.duration_s:.1f} s"
    return [
        row.project_id[:8],
        _shorten_middle(row.title or "", _TITLE_CHARS),
        row.status,
        exit_code,
        duration,
        _excerpt(row.note(), _EXCERPT_CHARS),
    ]


_HEADERS = ["project", "title", "status", "exit", "duration", "output / error"]


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shorten_middle(text: str, limit: int) -> str:
    # Titles of a course share their start ("Lab 3 - ..."), so keep both ends.
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = (limit - 1) // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def render_text(
    operation: Operation, rows: list[ProjectRun], wall_s: float | None
) -> str:
    """Return *rows* as a plain-text table under a summary line."""
    table = [_HEADERS] + [_cells(row) for row in rows]
    widths = [
        max(len(line[column]) for line in table) for column in range(len(_HEADERS))
    ]
    lines = [summarize(operation, rows, wall_s)]
    for line in table:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
        )
    return "\n".join(lines)


_STATUS_COLORS = {
    DONE: "#2e7d32",
    FAILED: "#c62828",
    CANCELLED: "#6d4c41",
    RUNNING: "#1565c0",
    STARTING: "#ef6c00",
    QUEUED: "#757575",
}


def render_html(
    operation: Operation, rows: list[ProjectRun], wall_s: float | None
) -> str:
    """Return *rows* as an HTML table, every value escaped."""
    head = "".join(f"<th style='text-align:left'>{name}</th>" for name in _HEADERS)
    body = []
    for row in rows:
        cells = _cells(row)
        cells[0] = (
            f"<code title='{html.escape(row.project_id)}'>"
            f"{html.escape(cells[0])}</code>"
        )
        for index in (1, 3, 4, 5):
            cells[index] = html.escape(cells[index])
        color = _STATUS_COLORS.get(row.status, "inherit")
        cells[2] = f"<span style='color:{color}'>{html.escape(row.status)}</span>"
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    summary = html.escape(summarize(operation, rows, wall_s))
    return (
        f"<div class='cocalc-fanout'><p>{summary}</p>"
        f"<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
