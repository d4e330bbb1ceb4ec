"""The project state panel: state, time of the last change, start / stop / restart.

CoCalc has no restart method, so restart is a stop followed by a start. The buttons
fit the state: Start while the project is stopped, Stop and Restart while it runs or
starts.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from cocalc_magics.panels.base import Panel
from cocalc_magics.panels.snapshot import ProjectSnapshot, state_label
from cocalc_magics.panels.summary import Section, since_text, state_section

__all__ = ["StatePanel"]

# Colors of the state badge; other states (archived, pending ...) are grey.
_STATE_COLORS = {
    "running": "#2e7d32",
    "starting": "#f9a825",
    "stopping": "#f9a825",
    "opened": "#757575",
}
# Rough durations in seconds, used only to shape the progress bar.
_EXPECTED_START_S = 30.0
_EXPECTED_STOP_S = 10.0
_STOPPED_STATES = {"opened", "closed", None, "archived"}


class StatePanel(Panel):
    """A project's state and status, with start, stop and restart buttons.

    Parameters
    ----------
    connection : Connection
        Client of the CoCalc site.
    project_id : str, optional
        Project to show; by default the connection's project.
    refresh_interval : float or None
        Seconds between background refreshes; 0 or None turns them off.
    start_timeout : float
        Seconds the Start and Restart buttons wait for the project to run.
    """

    heading = "CoCalc project"

    def __init__(
        self,
        connection: Any,
        project_id: str | None = None,
        refresh_interval: float | None = 5.0,
        *,
        start_timeout: float = 150.0,
        **kwargs: Any,
    ) -> None:
        self.start_timeout = start_timeout
        super().__init__(connection, project_id, refresh_interval, **kwargs)

    def _build(self) -> list[widgets.Widget]:
        self.state_badge = widgets.HTML(value="<i>loading…</i>")
        self.state_since = widgets.Label()
        self.state_error = widgets.HTML()
        self.start_button = widgets.Button(
            description="Start", icon="play", button_style="success", disabled=True
        )
        self.stop_button = widgets.Button(
            description="Stop", icon="stop", button_style="danger", disabled=True
        )
        self.restart_button = widgets.Button(
            description="Restart", icon="refresh", button_style="warning", disabled=True
        )
        for button in self._action_buttons():
            button.layout.width = "100px"
            button.add_class(f"cocalc-{button.description.lower()}-project")
        self.start_button.on_click(lambda _button: self.start())
        self.stop_button.on_click(lambda _button: self.stop())
        self.restart_button.on_click(lambda _button: self.restart())
        state_row = widgets.HBox(
            [self.state_badge, self.state_since],
            layout=widgets.Layout(align_items="center"),
        )
        buttons = widgets.HBox(self._action_buttons())
        return [state_row, self.state_error, buttons]

    def _action_buttons(self) -> list[widgets.Button]:
        return [self.start_button, self.stop_button, self.restart_button]

    def _enable_buttons(self) -> None:
        state = self.snapshot.state.state if self.snapshot else None
        stopped = state in _STOPPED_STATES
        self.start_button.disabled = not stopped
        self.stop_button.disabled = stopped
        self.restart_button.disabled = stopped

    def _apply(self, snapshot: ProjectSnapshot, data: Any) -> None:
        state = snapshot.state.state
        color = _STATE_COLORS.get(state, "#757575")
        self.state_badge.value = (
            f"<span class='cocalc-state' data-state='{html.escape(state or '')}' "
            f"style='background:{color};color:white;padding:2px 8px;"
            f"border-radius:4px'>{html.escape(state_label(state))}</span>"
        )
        self.state_since.value = since_text(snapshot)
        error = snapshot.state.error
        self.state_error.value = (
            f"<span style='color:#b00020'>{html.escape(error)}</span>" if error else ""
        )
        title = snapshot.title or ""
        self._set_title(f"{title} ({self.project_id})" if title else self.project_id)
        if not self.action_running:
            self._enable_buttons()

    def _summary_sections(self) -> list[Section]:
        return [state_section(self.snapshot)]

    # -- actions -------------------------------------------------------------------

    def start(self) -> Any:
        """Start the project in the background; return the worker thread."""
        def work() -> str:
            self.connection.start_project(self.project_id, timeout=self.start_timeout)
            return "The project is running."

        return self._run_action("Starting", work, expected_s=_EXPECTED_START_S)

    def stop(self) -> Any:
        """Stop the project in the background; return the worker thread."""
        def work() -> str:
            self.connection.stop_project(self.project_id)
            return "The project is stopped."

        return self._run_action("Stopping", work, expected_s=_EXPECTED_STOP_S)

    def restart(self) -> Any:
        """Stop, then start the project in the background; return the worker thread."""
        def work() -> str:
            self.connection.stop_project(self.project_id)
            self.connection.start_project(self.project_id, timeout=self.start_timeout)
            return "The project restarted and is running."

        expected = _EXPECTED_START_S + _EXPECTED_STOP_S
        return self._run_action("Restarting", work, expected_s=expected)

