"""Text and HTML summaries of the panels, for places where widgets do not render.

Saved notebooks, nbconvert exports, papermill runs and terminal IPython show these
instead of the live widgets. Every value is HTML-escaped. A summary is a title plus
sections, each a heading and ``(label, value)`` rows.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cocalc_magics.panels.snapshot import (
    ProjectSnapshot,
    QuotaUse,
    format_duration,
    state_label,
)

if TYPE_CHECKING:
    from cocalc_magics.api.jupyter_results import RunningKernel
    from cocalc_magics.jobs.job import Job

__all__ = [
    "Section",
    "jobs_section",
    "kernels_note",
    "kernels_section",
    "quotas_section",
    "render_html",
    "render_text",
    "since_text",
    "state_section",
]


@dataclass
class Section:
    """A heading and its labelled rows; ``note`` is shown when there are no rows."""

    heading: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    note: str | None = None


def render_text(title: str, sections: list[Section]) -> str:
    """Render a plain-text summary: the title, then each section indented."""
    lines = [title]
    for section in sections:
        lines.append(f"  {section.heading}:")
        if not section.rows and section.note:
            lines.append(f"    {section.note}")
        width = max((len(label) for label, _ in section.rows), default=0)
        for label, value in section.rows:
            lines.append(f"    {label.ljust(width)}  {value}")
    return "\n".join(lines)


def render_html(title: str, sections: list[Section]) -> str:
    """Render an HTML summary: a bold title and one small table per section."""
    parts = [
        "<div class='cocalc-panel-summary'>",
        f"<strong>{html.escape(title)}</strong>",
    ]
    for section in sections:
        parts.append(f"<div><em>{html.escape(section.heading)}</em></div>")
        if not section.rows:
            if section.note:
                parts.append(f"<div>{html.escape(section.note)}</div>")
            continue
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(label)}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for label, value in section.rows
        )
        parts.append(f"<table>{rows}</table>")
    parts.append("</div>")
    return "".join(parts)


def state_section(snapshot: ProjectSnapshot | None) -> Section:
    """Build the section of the project's state, its last change, title and error."""
    if snapshot is None:
        return Section("State", note="not loaded yet")
    rows = [("state", state_label(snapshot.state.state))]
    since = since_text(snapshot)
    if since:
        rows.append(("changed", since))
    if snapshot.title:
        rows.append(("title", snapshot.title))
    if snapshot.state.error:
        rows.append(("error", snapshot.state.error))
    return Section("State", rows)


def quotas_section(uses: list[QuotaUse]) -> Section:
    """Build the section listing each quota with its current use."""
    if not uses:
        return Section("Quotas", note="not loaded yet")
    return Section("Quotas", [(use.label, use.text) for use in uses])


def kernels_section(kernels: list[RunningKernel] | None, note: str) -> Section:
    """Build the section of running kernels; *note* explains an empty list."""
    if not kernels:
        return Section("Kernels", note=note)
    return Section(
        "Kernels", [(f"pid {kernel.pid}", kernel.kernel_name) for kernel in kernels]
    )


def kernels_note(snapshot: ProjectSnapshot, kernels: list | None) -> str:
    """Return why the kernel list is empty, or the number of kernels."""
    if kernels is None:
        return f"The project is {state_label(snapshot.state.state)}; no kernels run."
    if not kernels:
        return "No kernels are running."
    return f"{len(kernels)} running:"


def jobs_section(jobs: list[Job], command_chars: int = 60) -> Section:
    """Build the jobs section: each job's summary line, command and last output."""
    from cocalc_magics.panels.tracking import last_output_line

    rows = []
    for job in jobs:
        line = job.summary().split(": ", 1)[-1]
        if job.command:
            line = f"{line}: {job.command[:command_chars]}"
        last_line = last_output_line(job)
        if last_line:
            line = f"{line} | last output: {last_line[:command_chars]}"
        rows.append((job.job_id, line))
    return Section("Jobs", rows, note="No async jobs.")


def since_text(snapshot: ProjectSnapshot) -> str:
    """Format when the state last changed, in UTC and as a duration ago."""
    since = snapshot.state_since_s
    if since is None:
        return ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
    ago = format_duration(snapshot.fetched_at - since)
    return f"since {stamp} ({ago} ago)"
