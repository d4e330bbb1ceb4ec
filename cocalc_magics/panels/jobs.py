"""The jobs panel: async jobs with status, progress, elapsed time, CPU, memory, kill.

Progress is the last percentage or ``done/total`` count in the job's output, as
progress bars print them. A job that prints none shows its elapsed time only. A
finished job is not polled again, so a panel left open costs one request per
running job and refresh.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from cocalc_magics.panels.base import Panel
from cocalc_magics.panels.snapshot import ProjectSnapshot, format_duration
from cocalc_magics.panels.summary import Section, jobs_section
from cocalc_magics.jobs.job import FINAL_STATUSES, Job
from cocalc_magics.jobs.render import progress_details
from cocalc_magics.panels.tracking import JobTracker, job_progress, last_output_line

__all__ = ["JobsPanel"]

_STATUS_COLORS = {
    "running": "#1565c0",
    "completed": "#2e7d32",
    "failed": "#b00020",
    "timed out": "#b00020",
    "killed": "#6a1b9a",
    "lost": "#757575",
}
_BAR_STYLES = {
    "completed": "success",
    "failed": "danger",
    "timed out": "danger",
    "killed": "warning",
}
_COMMAND_CHARS = 60


def _default_ledger() -> Any:
    from cocalc_magics.jobs.ledger import JobLedger

    return JobLedger()


class _JobRow:
    """The widgets of one job's row."""

    def __init__(self, panel: JobsPanel, job: Job) -> None:
        self.status = widgets.HTML(layout=widgets.Layout(width="90px"))
        self.command = widgets.HTML(layout=widgets.Layout(width="260px"))
        self.progress = widgets.FloatProgress(
            min=0.0, max=1.0, layout=widgets.Layout(width="140px")
        )
        self.numbers = widgets.Label()
        self.kill = widgets.Button(
            description="Kill",
            icon="times",
            button_style="danger",
            layout=widgets.Layout(width="70px"),
        )
        self.kill.on_click(lambda _button: panel.kill(job.job_id))
        self.box = widgets.HBox(
            [self.kill, self.status, self.command, self.progress, self.numbers],
            layout=widgets.Layout(align_items="center"),
        )
        self.box.add_class("cocalc-job-row")

    def show(self, job: Job, busy: bool, error: str | None) -> None:
        status = job.status
        color = _STATUS_COLORS.get(status, "#757575")
        label = status
        if status == "completed" and job.exit_code is not None:
            label = f"{status} ({job.exit_code})"
        self.status.value = (
            f"<span class='cocalc-job-status' data-status='{html.escape(status)}' "
            f"style='color:{color};font-weight:bold'>{html.escape(label)}</span>"
        )
        command = job.command or "(command unknown)"
        if len(command) > _COMMAND_CHARS:
            command = command[: _COMMAND_CHARS - 1] + "…"
        detail = error or (job.message if status != "running" else None)
        detail = detail or last_output_line(job)
        self.command.value = (
            f"<code>{html.escape(command)}</code><br><small>{html.escape(job.job_id)}"
            f"  {html.escape(detail[:200])}</small>"
        )
        progress = job_progress(job)
        self.progress.value = progress if progress is not None else 0.0
        self.progress.bar_style = _BAR_STYLES.get(status, "info")
        self.progress.description = f"{progress:.0%}" if progress is not None else ""
        self.numbers.value = progress_details(job) if job.running else _ended_text(job)
        self.kill.disabled = busy or not job.running

    def close(self) -> None:
        for child in self.box.children:
            child.close()
        self.box.close()


def _ended_text(job: Job) -> str:
    elapsed = job.elapsed()
    return format_duration(elapsed) if elapsed is not None else ""


class JobsPanel(Panel):
    """Async jobs of a project, with progress, elapsed time, CPU, memory and Kill.

    Parameters
    ----------
    connection : Connection
        Client of the CoCalc site.
    project_id : str, optional
        Project to show; by default the connection's project.
    refresh_interval : float or None
        Seconds between background refreshes; 0 or None turns them off.
    jobs : iterable, optional
        Jobs to show from the start: :class:`~cocalc_magics.jobs.Job` handles,
        :class:`~cocalc_magics.api.AsyncJob` records or job ids. More can be added
        with :meth:`track`.
    ledger : JobLedger, "default" or None
        The job ledger whose jobs of this site and project are listed too:
        ``"default"`` (the default) opens the user's ledger, None lists only the
        jobs given here.
    max_jobs : int
        Maximum number of ledger jobs listed, newest first.
    """

    heading = "Jobs"

    def __init__(
        self,
        connection: Any,
        project_id: str | None = None,
        refresh_interval: float | None = 5.0,
        *,
        jobs: Any = None,
        ledger: Any = "default",
        max_jobs: int = 20,
        **kwargs: Any,
    ) -> None:
        if ledger == "default":
            ledger = _default_ledger()
        self._ledger = ledger
        self._max_jobs = max_jobs
        self._initial_jobs = list(jobs or [])
        super().__init__(connection, project_id, refresh_interval, **kwargs)

    def _build(self) -> list[widgets.Widget]:
        self.tracker = JobTracker(
            self.connection, self.project_id, ledger=self._ledger, max_jobs=self._max_jobs
        )
        for job in self._initial_jobs:
            self.tracker.add(job)
        self._rows: dict[str, _JobRow] = {}
        self.job_rows = widgets.VBox()
        self.empty_label = widgets.Label("loading…")
        return [self.empty_label, self.job_rows]

    def track(self, job: Any) -> Job:
        """Show *job* (a ``Job``, an ``AsyncJob`` or a job id) and refresh."""
        tracked = self.tracker.add(job)
        self.request_refresh()
        return tracked

    @property
    def jobs(self) -> list[Job]:
        """The jobs shown, newest first."""
        return self.tracker.jobs

    def _action_buttons(self) -> list[widgets.Button]:
        return [row.kill for row in self._rows.values()]

    def _enable_buttons(self) -> None:
        for job in self.tracker.jobs:
            row = self._rows.get(job.job_id)
            if row is not None:
                row.show(job, False, self.tracker.errors.get(job.job_id))

    def _collect(self, snapshot: ProjectSnapshot) -> None:
        self.tracker.load_ledger()
        self.tracker.poll(project_running=snapshot.running)

    def _apply(self, snapshot: ProjectSnapshot, data: Any) -> None:
        jobs = self.tracker.jobs
        busy = self.action_running
        for job in jobs:
            row = self._rows.get(job.job_id)
            if row is None:
                row = self._rows[job.job_id] = _JobRow(self, job)
            row.show(job, busy, self.tracker.errors.get(job.job_id))
        boxes = [self._rows[job.job_id].box for job in jobs]
        if list(self.job_rows.children) != boxes:
            self.job_rows.children = boxes
        running = sum(1 for job in jobs if job.status not in FINAL_STATUSES)
        if not jobs:
            self.empty_label.value = "No async jobs."
        else:
            self.empty_label.value = f"{len(jobs)} jobs, {running} running"

    def kill(self, job_id: str) -> Any:
        """Stop the job in the background (SIGINT, SIGTERM, SIGKILL); return the thread."""
        def work() -> str:
            return self.tracker.kill(job_id).summary()

        return self._run_action(f"Killing job {job_id[:8]}", work, expected_s=3.0)

    def close(self) -> None:
        """Stop refreshing and close the panel's widgets in the frontend."""
        super().close()
        for row in self._rows.values():
            row.close()

    def _summary_sections(self) -> list[Section]:
        return [jobs_section(self.tracker.jobs)]
