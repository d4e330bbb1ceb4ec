"""Showing a panel from a magic, with a text or HTML summary where widgets cannot run.

:func:`show_panel` displays a live widget panel inside a Jupyter kernel. Without
ipywidgets, or outside a kernel (terminal IPython, plain Python), it shows a
one-time :class:`PanelSummary` instead: plain text in a terminal, text and HTML in
a kernel. This module imports ipywidgets only when a widget panel is built.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cocalc_magics.panels.kinds import PANEL_KINDS
from cocalc_magics.panels.snapshot import fetch_project, quota_uses
from cocalc_magics.panels.summary import (
    Section,
    jobs_section,
    kernels_note,
    kernels_section,
    quotas_section,
    render_html,
    render_text,
    state_section,
)

if TYPE_CHECKING:
    from cocalc_magics.api import Connection

__all__ = [
    "PANEL_KINDS",
    "PanelSummary",
    "show_panel",
    "summarize_panel",
    "widget_frontend_available",
    "widgets_importable",
]

logger = logging.getLogger(__name__)

#: Panel kinds and the widget class of each, in ``cocalc_magics.panels``.
WIDGETS_NOTICE = (
    "Interactive CoCalc panels need ipywidgets (pip install ipywidgets); "
    "showing a summary instead."
)

_notice_lock = threading.Lock()
_notice_shown = False
# The panel each kind and project was last shown as, so that showing it again
# stops the refreshing of the older one.
_shown_panels: dict[tuple[str, str], Any] = {}


@dataclass
class PanelSummary:
    """A one-time text and HTML view of a panel, for places without widgets."""

    title: str
    sections: list[Section] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The plain-text summary."""
        return render_text(self.title, self.sections)

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return {"text/plain": self.text, "text/html": render_html(self.title, self.sections)}


def widgets_importable() -> bool:
    """True when ipywidgets can be imported."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def widget_frontend_available() -> bool:
    """True inside a Jupyter kernel, where a frontend may render widgets.

    Terminal IPython and plain Python have no widget frontend. nbconvert and
    papermill run a kernel without one, but the panels' text and HTML summaries
    are saved next to the widget view there.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _check_kind(kind: str) -> str:
    if kind not in PANEL_KINDS:
        raise ValueError(
            f"unknown panel {kind!r}; choose one of {', '.join(PANEL_KINDS)}"
        )
    return kind


def show_panel(
    connection: Connection,
    kind: str = "project",
    *,
    project_id: str | None = None,
    refresh_interval: float | None = 5.0,
    **options: Any,
) -> Any:
    """Display the panel *kind* for a project and return it.

    Parameters
    ----------
    connection : Connection
        Client of the CoCalc site.
    kind : str
        One of :data:`PANEL_KINDS`: ``project`` (the whole dashboard), ``state``,
        ``quotas``, ``kernels`` or ``jobs``.
    project_id : str, optional
        Project to show; by default the connection's project.
    refresh_interval : float or None
        Seconds between background refreshes of a widget panel.
    **options
        Passed to the panel class, for example ``jobs=[...]``.

    Returns
    -------
    Panel or PanelSummary
        The live panel, or the summary shown where widgets cannot run. Showing
        the same kind for the same project again stops the older panel's
        refreshing.
    """
    _check_kind(kind)
    if not widget_frontend_available() or not widgets_importable():
        if widget_frontend_available():
            _notify_widgets_missing()
        summary = summarize_panel(
            connection,
            kind,
            project_id=project_id,
            jobs=options.get("jobs"),
            ledger=options.get("ledger", "default"),
        )
        _display(summary)
        return summary

    import cocalc_magics.panels as panels

    panel_class = getattr(panels, PANEL_KINDS[kind])
    panel = panel_class(connection, project_id, refresh_interval, **options)
    _supersede(kind, panel)
    _display(panel)
    return panel


def _supersede(kind: str, panel: Any) -> None:
    key = (kind, panel.project_id)
    older = _shown_panels.get(key)
    _shown_panels[key] = panel
    if older is not None and older is not panel:
        older.pause("A newer panel for this project was shown; this one stopped refreshing.")


def _display(view: Any) -> None:
    if widget_frontend_available():
        from IPython.display import display

        display(view)
    else:
        print(view.text if isinstance(view, PanelSummary) else view)


def _notify_widgets_missing() -> None:
    global _notice_shown
    with _notice_lock:
        if _notice_shown:
            return
        _notice_shown = True
    print(WIDGETS_NOTICE, file=sys.stderr)


def summarize_panel(
    connection: Connection,
    kind: str = "project",
    *,
    project_id: str | None = None,
    jobs: Any = None,
    ledger: Any = "default",
) -> PanelSummary:
    """Fetch what the panel *kind* shows and return it as a :class:`PanelSummary`.

    Needs no ipywidgets. *jobs* and *ledger* are as for
    :class:`~cocalc_magics.panels.JobsPanel`. Errors of the requests are raised, as
    by the client.
    """
    from cocalc_magics.api.settings import normalize_project_id

    _check_kind(kind)
    target = project_id or connection.project_id
    if not target:
        raise ValueError(
            "no project to show: pass project_id, or use a connection with a "
            "default project"
        )
    target = normalize_project_id(target)
    snapshot = fetch_project(connection, target)
    sections: list[Section] = []
    if kind in ("project", "state"):
        sections.append(state_section(snapshot))
    if kind in ("project", "quotas"):
        sections.append(quotas_section(quota_uses(snapshot)))
    if kind in ("project", "kernels"):
        kernels = connection.running_kernels(project_id=target) if snapshot.running else None
        sections.append(kernels_section(kernels, kernels_note(snapshot, kernels)))
    if kind in ("project", "jobs"):
        tracked = _summary_jobs(connection, target, snapshot.running, jobs, ledger)
        sections.append(jobs_section(tracked))
    where = connection.label or connection.host
    title = f"CoCalc {kind}: project {target} on {where}"
    return PanelSummary(title, sections)


def _summary_jobs(
    connection: Connection, project_id: str, running: bool, jobs: Any, ledger: Any
) -> list:
    from cocalc_magics.panels.tracking import JobTracker

    if ledger == "default":
        from cocalc_magics.jobs.ledger import JobLedger

        ledger = JobLedger()
    tracker = JobTracker(connection, project_id, ledger=ledger)
    for job in jobs or []:
        tracker.add(job)
    tracker.load_ledger()
    tracker.poll(project_running=running)
    return tracker.jobs
