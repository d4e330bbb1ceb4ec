"""The project dashboard: state, quotas, kernels and jobs in one panel.

One refresh thread serves the whole dashboard. It reads the project's state, status
and quotas with one hub request and passes that snapshot to each sub-panel. A
sub-panel then fetches only its own extra data (kernels, job records), and only
while the project runs.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from cocalc_magics.panels.base import Panel
from cocalc_magics.panels.jobs import JobsPanel
from cocalc_magics.panels.kernels import KernelsPanel
from cocalc_magics.panels.quotas import QuotasPanel
from cocalc_magics.panels.snapshot import ProjectSnapshot
from cocalc_magics.panels.state import StatePanel
from cocalc_magics.panels.summary import Section

__all__ = ["ProjectPanel"]

_SECTION_LAYOUT = {"border": "1px solid #e0e0e0", "padding": "4px", "margin": "2px 0"}


class ProjectPanel(Panel):
    """A project dashboard: state with start / stop / restart, quotas, kernels, jobs.

    Parameters
    ----------
    connection : Connection
        Client of the CoCalc site; shared, not closed by the panel.
    project_id : str, optional
        Project to show; by default the connection's project.
    refresh_interval : float or None
        Seconds between background refreshes (default 5); 0 or None refreshes only
        on :meth:`refresh`.
    jobs : iterable, optional
        Async jobs to show besides those of the job ledger: job ids,
        :class:`~cocalc_magics.api.AsyncJob` records or job handles.
    ledger : JobLedger, "default" or None
        Job ledger listing the user's jobs; None lists only *jobs*.
    start_timeout : float
        Seconds the Start and Restart buttons wait for the project to run.

    Examples
    --------
    >>> from cocalc_magics.api import Connection              # doctest: +SKIP
    >>> from cocalc_magics.panels import ProjectPanel         # doctest: +SKIP
    >>> panel = ProjectPanel(Connection(), refresh_interval=10)  # doctest: +SKIP
    >>> panel                                                 # doctest: +SKIP
    >>> panel.close()   # stops the refreshing                # doctest: +SKIP
    """

    heading = "CoCalc project"

    def __init__(
        self,
        connection: Any,
        project_id: str | None = None,
        refresh_interval: float | None = 5.0,
        *,
        jobs: Any = None,
        ledger: Any = "default",
        start_timeout: float = 150.0,
        **kwargs: Any,
    ) -> None:
        self._part_options = {
            "jobs": jobs,
            "ledger": ledger,
            "start_timeout": start_timeout,
        }
        super().__init__(connection, project_id, refresh_interval, **kwargs)

    def _build(self) -> list[widgets.Widget]:
        connection, project_id = self.connection, self.project_id
        options = self._part_options
        self.state_panel = StatePanel(
            connection,
            project_id,
            None,
            start_timeout=options["start_timeout"],
            _driven=True,
        )
        self.quotas_panel = QuotasPanel(connection, project_id, None, _driven=True)
        self.kernels_panel = KernelsPanel(connection, project_id, None, _driven=True)
        self.jobs_panel = JobsPanel(
            connection,
            project_id,
            None,
            jobs=options["jobs"],
            ledger=options["ledger"],
            _driven=True,
        )
        # The dashboard's own title names the project; the state part needs none.
        self.state_panel._title.layout.display = "none"
        for part in self.parts:
            part.layout = widgets.Layout(**_SECTION_LAYOUT)
            part.owner = self
        return list(self.parts)

    @property
    def parts(self) -> tuple[Panel, ...]:
        """The sub-panels: state, quotas, kernels and jobs."""
        return (self.state_panel, self.quotas_panel, self.kernels_panel, self.jobs_panel)

    def _collect(self, snapshot: ProjectSnapshot) -> None:
        for part in self.parts:
            part.update_from(snapshot)

    def _apply(self, snapshot: ProjectSnapshot, data: Any) -> None:
        title = snapshot.title or ""
        self._set_title(f"{title} ({self.project_id})" if title else self.project_id)

    def track(self, job: Any) -> Any:
        """Show an async job in the jobs part; see :meth:`JobsPanel.track`."""
        tracked = self.jobs_panel.tracker.add(job)
        self.request_refresh()
        return tracked

    def start(self) -> Any:
        """Start the project in the background (the Start button)."""
        return self.state_panel.start()

    def stop(self) -> Any:
        """Stop the project in the background (the Stop button)."""
        return self.state_panel.stop()

    def restart(self) -> Any:
        """Restart the project in the background (the Restart button)."""
        return self.state_panel.restart()

    def _summary_sections(self) -> list[Section]:
        sections: list[Section] = []
        for part in self.parts:
            sections.extend(part.summary_sections())
        return sections

    def close(self) -> None:
        """Stop refreshing and close the dashboard and its parts."""
        super().close()
        for part in self.parts:
            part.close()
