"""The panel base class: background refresh, background actions, errors, static views.

A panel is an ipywidgets ``VBox``. Its refresher thread makes the HTTP requests and
sets widget traits. ipywidgets sends each change over the widget's comm, and
ipykernel's IOPub thread delivers it, so panels keep updating while the kernel is
idle and while another cell runs. Buttons start their work in a worker thread, so a
click never blocks the kernel, and a progress bar shows how long the work has taken.

NOTE: button clicks reach the kernel as comm messages on the shell channel, so a
click made while a cell runs is handled when that cell finishes. Refreshing does not
wait for it.

Errors end up in the panel's message line as one short text, never as a traceback
in another cell, and the connection's API key is removed from any text shown.
"""

from __future__ import annotations

import html
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from traitlets import observe

from cocalc_magics.api.errors import CoCalcError
from cocalc_magics.panels.snapshot import ProjectSnapshot, fetch_project
from cocalc_magics.panels.summary import Section, render_html, render_text

if TYPE_CHECKING:
    from cocalc_magics.api import Connection

__all__ = ["FIRST_REFRESH_WAIT_S", "Panel", "check_refresh_interval"]

logger = logging.getLogger(__name__)

#: Seconds ``_repr_mimebundle_`` waits for the first refresh, so that the static
#: text and HTML views carry data rather than "loading".
FIRST_REFRESH_WAIT_S = 10.0
# Seconds between updates of the progress bar of a running action.
_PROGRESS_TICK_S = 0.5


def check_refresh_interval(value: Any) -> float | None:
    """Validate a refresh interval in seconds; 0 or None turns refreshing off."""
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"refresh_interval must be a number of seconds, not {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0.1:
        raise ValueError(
            f"refresh_interval must be at least 0.1 seconds, or 0 to turn off "
            f"refreshing, not {value!r}"
        )
    return float(value)


def _refresh_loop(
    panel_ref: weakref.ref, stop: threading.Event, wake: threading.Event
) -> None:
    # The loop holds only a weak reference between rounds, so a panel that nothing
    # else references can be collected and the loop then ends.
    while not stop.is_set():
        panel = panel_ref()
        if panel is None:
            return
        panel.refresh()
        interval = panel.refresh_interval
        del panel
        if interval is None:
            return
        wake.wait(interval)
        wake.clear()


class Panel(widgets.VBox):
    """Base class of the CoCalc panels.

    Parameters
    ----------
    connection : Connection
        Client of the CoCalc site; it is shared, not closed by the panel.
    project_id : str, optional
        Project to show; by default the connection's project.
    refresh_interval : float or None
        Seconds between background refreshes; 0 or None refreshes only on
        :meth:`refresh`.
    **kwargs
        Passed to :class:`ipywidgets.VBox`, for example ``layout``.

    Subclasses build their widgets in :meth:`_build`, fetch data in :meth:`_collect`
    (in a background thread) and show it in :meth:`_apply`.
    """

    #: Heading of the panel and of its static summary.
    heading = "CoCalc"

    def __init__(
        self,
        connection: Connection,
        project_id: str | None = None,
        refresh_interval: float | None = 5.0,
        *,
        _driven: bool = False,
        **kwargs: Any,
    ) -> None:
        # Made first: close() needs them even when a check below raises.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._first_refresh = threading.Event()
        self._action_thread: threading.Thread | None = None
        self._refresh_thread: threading.Thread | None = None

        self.connection = connection
        self.project_id = _project_of(connection, project_id)
        self.refresh_interval = check_refresh_interval(refresh_interval)
        self.snapshot: ProjectSnapshot | None = None
        self.previous_snapshot: ProjectSnapshot | None = None
        #: The last refresh error shown, and the last failed action's error.
        self.last_error: str | None = None
        self.last_action_error: str | None = None
        #: The composite panel that refreshes this one, if any.
        self.owner: Panel | None = None

        self._title = widgets.HTML(layout=widgets.Layout(margin="0 0 4px 0"))
        self._message = widgets.HTML()
        self._progress = widgets.FloatProgress(
            min=0.0, max=1.0, layout=widgets.Layout(width="160px", display="none")
        )
        self._progress_label = widgets.Label()
        self._action_message = widgets.HTML()
        # Shown from the first action on.
        self._progress_row = widgets.VBox(
            [widgets.HBox([self._progress, self._progress_label]), self._action_message],
            layout=widgets.Layout(display="none"),
        )
        body = self._build()
        super().__init__(
            children=[self._title, *body, self._progress_row, self._message],
            **kwargs,
        )
        self.add_class("cocalc-panel")
        self._set_title()

        # A sub-panel of a composite panel is refreshed by its owner.
        if not _driven:
            self._start_refreshing()

    # -- subclass hooks ------------------------------------------------------------

    def _build(self) -> list[widgets.Widget]:
        """Create the panel's widgets and return them in display order."""
        return []

    def _collect(self, snapshot: ProjectSnapshot) -> Any:
        """Fetch what the panel shows besides *snapshot*; runs in a background thread."""
        return None

    def _apply(self, snapshot: ProjectSnapshot, data: Any) -> None:
        """Show *snapshot* and the collected *data* in the widgets."""

    def _summary_sections(self) -> list[Section]:
        """Sections of the static summary, from the last data shown."""
        return []

    def _action_buttons(self) -> list[widgets.Button]:
        """Buttons disabled while an action runs."""
        return []

    def _enable_buttons(self) -> None:
        """Enable the action buttons that fit the current state."""
        for button in self._action_buttons():
            button.disabled = False

    # -- refreshing ------------------------------------------------------------------

    def _start_refreshing(self) -> None:
        if self.refresh_interval is None:
            self.refresh()
            return
        self._refresh_thread = threading.Thread(
            target=_refresh_loop,
            args=(weakref.ref(self), self._stop, self._wake),
            name=f"cocalc-{type(self).__name__}-refresh",
            daemon=True,
        )
        self._refresh_thread.start()

    @property
    def refreshing(self) -> bool:
        """True while the background refresh thread runs."""
        thread = self._refresh_thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    def refresh(self) -> bool:
        """Fetch the current data and show it now; return whether it succeeded.

        Errors are shown in the panel's message line and are not raised.
        """
        if self._stop.is_set():
            return False
        try:
            snapshot = fetch_project(self.connection, self.project_id)
        except CoCalcError as error:
            self._report(error, "Refresh")
            self._first_refresh.set()
            return False
        except Exception as error:  # noqa: BLE001 - a refresh bug must not kill the thread
            self._report_internal(error)
            self._first_refresh.set()
            return False
        return self.update_from(snapshot)

    def update_from(self, snapshot: ProjectSnapshot) -> bool:
        """Collect this panel's own data and show it with *snapshot*."""
        try:
            data = self._collect(snapshot)
            with self._lock, self.hold_sync():
                self.previous_snapshot = self.snapshot
                self.snapshot = snapshot
                self._apply(snapshot, data)
        except CoCalcError as error:
            self._report(error, "Refresh")
            return False
        except Exception as error:  # noqa: BLE001 - a refresh bug must not kill the thread
            self._report_internal(error)
            return False
        finally:
            self._first_refresh.set()
        if self.last_error is not None:
            self._show_message(None)
        return True

    def request_refresh(self) -> None:
        """Make the refresh thread refresh now instead of at the next interval."""
        if self.owner is not None:
            self.owner.request_refresh()
        elif self.refreshing:
            self._wake.set()
        elif not self._stop.is_set():
            threading.Thread(target=self.refresh, daemon=True).start()

    def wait_for_refresh(self, timeout: float = FIRST_REFRESH_WAIT_S) -> bool:
        """Wait until the first refresh has finished; return False on timeout."""
        return self._first_refresh.wait(timeout)

    # -- actions ---------------------------------------------------------------------

    @property
    def action_running(self) -> bool:
        """True while a button's work runs in the background."""
        thread = self._action_thread
        return thread is not None and thread.is_alive()

    def _run_action(
        self,
        description: str,
        work: Callable[[], str | None],
        *,
        expected_s: float = 10.0,
    ) -> threading.Thread | None:
        """Run *work* in a worker thread and show its progress.

        *work* returns a short success text (or None). *expected_s* shapes the
        progress bar, which approaches full as the elapsed time passes it.
        """
        if self.action_running:
            self._show_action_outcome(
                "Another action is still running; wait for it to end."
            )
            return None
        with self._lock:
            for button in self._action_buttons():
                button.disabled = True
            self._progress.bar_style = "info"
            self._progress.value = 0.0
            self._progress.layout.display = None
            self._progress_row.layout.display = None
            self._progress_label.value = f"{description}…"
            self._action_message.value = ""
        thread = threading.Thread(
            target=self._action_body,
            args=(description, work, expected_s),
            name=f"cocalc-{type(self).__name__}-action",
            daemon=True,
        )
        self._action_thread = thread
        thread.start()
        return thread

    def _action_body(
        self, description: str, work: Callable[[], str | None], expected_s: float
    ) -> None:
        done = threading.Event()
        ticker = threading.Thread(
            target=self._tick_progress,
            args=(description, done, expected_s),
            daemon=True,
        )
        started = time.monotonic()
        ticker.start()
        outcome: str | None = None
        failed = False
        try:
            outcome = work()
        except CoCalcError as error:
            failed = True
            self._report(error, description, action=True)
        except Exception as error:  # noqa: BLE001 - shown in the panel instead
            failed = True
            self._report_internal(error, description, action=True)
        finally:
            done.set()
            ticker.join()
        elapsed = time.monotonic() - started
        with self._lock:
            self._progress.value = 1.0
            self._progress.bar_style = "danger" if failed else "success"
            verdict = "failed" if failed else "done"
            self._progress_label.value = f"{description}: {verdict} after {elapsed:.1f} s"
            self._action_thread = None
            self._enable_buttons()
        if not failed:
            self._show_action_outcome(outcome)
        self.request_refresh()

    def _tick_progress(
        self, description: str, done: threading.Event, expected_s: float
    ) -> None:
        started = time.monotonic()
        while not done.wait(_PROGRESS_TICK_S):
            elapsed = time.monotonic() - started
            with self._lock:
                # The length of the work is unknown: the bar approaches full as
                # the elapsed time passes the expected time, and never reaches it.
                self._progress.value = 1.0 - math.exp(-elapsed / expected_s)
                self._progress_label.value = f"{description}… {elapsed:.1f} s"

    # -- messages ----------------------------------------------------------------------

    def _report(self, error: CoCalcError, operation: str, *, action: bool = False) -> None:
        logger.debug("%s of %s failed: %s", operation, self.project_id, error)
        text = f"{operation} failed: {error}"
        show = self._show_action_outcome if action else self._show_message
        show(text, hint=error.hint, is_error=True)

    def _report_internal(
        self, error: Exception, operation: str = "Refresh", *, action: bool = False
    ) -> None:
        logger.debug("%s of the panel failed", operation, exc_info=True)
        text = f"{operation} failed inside the panel: {type(error).__name__}: {error}"
        show = self._show_action_outcome if action else self._show_message
        show(text, is_error=True)

    def _show_message(
        self, text: str | None, *, hint: str | None = None, is_error: bool = False
    ) -> None:
        """Show one short message below the panel, or clear it with None."""
        with self._lock:
            self.last_error = self._scrub(text) if text and is_error else None
            self._message.value = self._format_message(text, hint, is_error)

    def _show_action_outcome(
        self, text: str | None, *, hint: str | None = None, is_error: bool = False
    ) -> None:
        """Show how the last button action ended, next to its progress bar."""
        with self._lock:
            self.last_action_error = self._scrub(text) if text and is_error else None
            self._action_message.value = self._format_message(text, hint, is_error)

    def _format_message(self, text: str | None, hint: str | None, is_error: bool) -> str:
        if not text:
            return ""
        color = "#b00020" if is_error else "#1b5e20"
        shown = f"<span style='color:{color}'>{html.escape(self._scrub(text))}</span>"
        if hint:
            shown += f"<br><small>{html.escape(self._scrub(hint))}</small>"
        return shown

    def _scrub(self, text: str) -> str:
        # The client never puts the key in its messages; this also covers messages
        # that quote server text or user input verbatim.
        key = getattr(self.connection.settings, "api_key", None)
        if key and key in text:
            text = text.replace(key, "[API key hidden]")
        return text

    def _set_title(self, detail: str = "") -> None:
        title = f"<b>{html.escape(self.heading)}</b>"
        if detail:
            title += f" <span>{html.escape(detail)}</span>"
        self._title.value = title

    # -- static views and closing -----------------------------------------------------

    def summary_title(self) -> str:
        """First line of the static summary: heading, project and site."""
        where = self.connection.label or self.connection.host
        return f"{self.heading}: project {self.project_id} on {where}"

    def summary_sections(self) -> list[Section]:
        """Return the sections of the static summary, the last errors included."""
        sections = self._summary_sections()
        errors = [
            (label, text)
            for label, text in (
                ("refresh", self.last_error),
                ("action", self.last_action_error),
            )
            if text
        ]
        if errors:
            sections.append(Section("Errors", errors))
        return sections

    def summary_text(self) -> str:
        """Plain-text summary of what the panel shows."""
        return self._scrub(render_text(self.summary_title(), self.summary_sections()))

    def summary_html(self) -> str:
        """HTML summary of what the panel shows, every value escaped."""
        return self._scrub(render_html(self.summary_title(), self.summary_sections()))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        # Saved notebooks keep the text and HTML next to the widget view, so they
        # stay readable where the widget state is gone (reload, nbconvert, GitHub).
        self.wait_for_refresh()
        data = super()._repr_mimebundle_(**kwargs) or {}
        data["text/plain"] = self.summary_text()
        data["text/html"] = self.summary_html()
        return data

    def __repr__(self) -> str:
        state = self.snapshot.state.state if self.snapshot else None
        return (
            f"<{type(self).__name__} project_id={self.project_id!r} "
            f"state={state!r} refresh_interval={self.refresh_interval!r}>"
        )

    def pause(self, message: str | None = None) -> None:
        """Stop refreshing but keep the panel shown, with *message* below it."""
        self._stop_refreshing()
        if message:
            self._show_message(message)

    def close(self) -> None:
        """Stop refreshing and close the panel's widgets in the frontend."""
        self._stop.set()
        self._wake.set()
        self._first_refresh.set()
        thread = self._refresh_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        for widget in _descendants(self):
            widget.close()
        super().close()

    @observe("comm")
    def _watch_comm(self, change: dict) -> None:
        # A frontend that closes the comm (for example on a kernel-side
        # Widget.close_all) ends the refreshing too.
        comm = change["new"]
        if comm is not None and hasattr(comm, "on_close"):
            comm.on_close(lambda _message: self._stop_refreshing())

    def _stop_refreshing(self) -> None:
        self._stop.set()
        self._wake.set()


def _descendants(widget: widgets.Widget) -> list[widgets.Widget]:
    found = []
    for child in getattr(widget, "children", ()):
        found.extend(_descendants(child))
        found.append(child)
    return found


def _project_of(connection: Connection, project_id: str | None) -> str:
    target = project_id or getattr(connection, "project_id", None)
    if not target:
        raise ValueError(
            "no project to show: pass project_id, or use a connection with a "
            "default project (COCALC_PROJECT_ID, or %cocalc connect --project)"
        )
    from cocalc_magics.api.settings import normalize_project_id

    return normalize_project_id(target)
