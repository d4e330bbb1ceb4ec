"""Text and HTML forms of jobs: summary lines, progress lines, tables.

Every form is plain data (``text/plain`` and escaped ``text/html``) so that a saved
notebook shows the job without a running kernel or a widget manager. The
``text/plain`` form always starts with a summary such as
``CoCalc job 1a2b3c4d…: completed, exit 0 (2.1 s)``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cocalc_magics.jobs.job import Job

__all__ = [
    "format_seconds",
    "job_html",
    "job_text",
    "progress_details",
    "summary_line",
    "tail",
]

# Characters of each stream shown in a job's HTML form and live display.
OUTPUT_DISPLAY_LIMIT = 20_000


def format_seconds(seconds: float | None) -> str:
    """Return ``"2.1 s"``, ``"3 min 4 s"`` or ``"1 h 2 min"``; ``"?"`` for None."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def progress_details(job: Job) -> str:
    """Return elapsed time and the latest CPU and memory sample, for a running job."""
    parts = [format_seconds(job.elapsed())]
    if job.stats:
        last = job.stats[-1]
        parts.append(f"CPU {last.cpu_pct:.0f} %")
        parts.append(f"{last.mem_rss_mib:.1f} MiB")
    return ", ".join(parts)


def _outcome(job: Job) -> str:
    if job.status == "running":
        return f"running, {progress_details(job)}"
    if job.status == "completed":
        return f"completed, exit {job.exit_code} ({format_seconds(job.elapsed_s)})"
    if job.status == "killed":
        code = f", exit {job.exit_code}" if job.exit_code is not None else ""
        sent = ", ".join(job.signals_sent)
        elapsed = format_seconds(job.elapsed_s)
        return (
            f"killed, stopped after {job.stopped_by} (sent: {sent}){code} ({elapsed})"
        )
    if job.status == "timed out":
        return (
            "timed out: the project killed it at its exec timeout "
            f"({format_seconds(job.elapsed_s)})"
        )
    if job.status == "failed":
        first_line = (job.message or "").strip().splitlines()[:1]
        return "failed: " + (first_line[0] if first_line else "no message")
    if job.status == "lost":
        return "lost: the project no longer knows this job"
    return job.status


def summary_line(job: Job) -> str:
    """Return the one-line summary of *job*."""
    line = f"CoCalc job {job.short_id}…: {_outcome(job)}"
    if job.output_partial and job.status != "running":
        line += "; output is partial (as last seen while it ran)"
    return line


def tail(text: str, limit: int) -> str:
    """Return the end of *text*, at most *limit* characters, marking a cut."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find("\n")
    if 0 <= newline < len(cut) - 1:
        cut = cut[newline + 1 :]
    return f"… {len(text) - len(cut)} earlier characters not shown …\n{cut}"


def job_text(job: Job, *, limit: int = OUTPUT_DISPLAY_LIMIT) -> str:
    """Return the summary, the job's details and the end of its output as text."""
    lines = [summary_line(job), f"  job id:  {job.job_id}"]
    if job.command:
        command = job.command.strip().replace("\n", "\n           ")
        lines.append(f"  command: {command}")
    lines.append(f"  project: {job.project_id} on {job.site}")
    if job.message and job.status != "lost":
        lines.append(f"  message: {job.message.strip()}")
    for label, text in (("stdout", job.stdout), ("stderr", job.stderr)):
        if text:
            lines.append(f"--- {label} ---")
            lines.append(tail(text, limit).rstrip("\n"))
    return "\n".join(lines)


def job_html(job: Job, *, limit: int = OUTPUT_DISPLAY_LIMIT) -> str:
    """Return an escaped HTML block: summary, details and the end of the output."""
    rows = [("job id", job.job_id), ("project", f"{job.project_id} on {job.site}")]
    if job.command:
        rows.append(("command", job.command.strip()))
    if job.message and job.status != "lost":
        rows.append(("message", job.message.strip()))
    table = "".join(
        f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
        f"<td style='text-align:left'><code>{html.escape(value)}</code></td></tr>"
        for name, value in rows
    )
    parts = [
        f"<div><strong>{html.escape(summary_line(job))}</strong>",
        f"<table>{table}</table>",
    ]
    for label, text in (("stdout", job.stdout), ("stderr", job.stderr)):
        if text:
            parts.append(
                f"<div>{label}:</div><pre style='white-space:pre-wrap'>"
                f"{html.escape(tail(text, limit))}</pre>"
            )
    parts.append("</div>")
    return "".join(parts)
