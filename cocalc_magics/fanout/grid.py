"""The live status grid of a fan-out: one row per project, updated in place.

Three views share one small interface (``update`` while running, ``finish`` once):

- :class:`WidgetGrid`, in a Jupyter kernel with ipywidgets: an ``HTML`` widget whose
  value is replaced on each update. The display also carries ``text/plain`` and
  ``text/html`` copies, and the final update replaces the widget with a static
  table, so the result survives a reload, nbconvert and a frontend without widgets.
- :class:`DisplayGrid`, in a kernel without ipywidgets: one display with a
  ``display_id``, updated with ``update_display_data``.
- :class:`TextProgress`, in terminal IPython or plain Python: one progress line
  rewritten with a carriage return when the stream is a terminal, and the final
  table printed once.

Every view gets at most one update per ``refresh_interval`` seconds from the runner,
and each update is the whole table, so a frontend never receives a flood of outputs.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol, TextIO

from cocalc_magics.fanout.results import (
    FanoutResult,
    Operation,
    ProjectRun,
    render_html,
    render_text,
    summarize,
)

__all__ = [
    "DisplayGrid",
    "NullView",
    "StatusView",
    "TextProgress",
    "WidgetGrid",
    "choose_view",
]

logger = logging.getLogger(__name__)

VIEW_MODES = ("auto", "widget", "html", "text", "none")


class StatusView(Protocol):
    """The interface the runner calls to show progress, always from one thread."""

    def update(self, rows: list[ProjectRun], elapsed_s: float) -> None:
        """Show a snapshot of *rows*, *elapsed_s* seconds after the start."""

    def finish(self, result: FanoutResult, notice: str | None = None) -> None:
        """Show the final table and an optional notice (for example after Ctrl-C)."""


class NullView:
    """Shows nothing."""

    def update(self, rows: list[ProjectRun], elapsed_s: float) -> None:
        pass

    def finish(self, result: FanoutResult, notice: str | None = None) -> None:
        pass


def _bundle(operation: Operation, rows, elapsed_s, notice: str | None = None) -> dict:
    text = render_text(operation, rows, elapsed_s)
    markup = render_html(operation, rows, elapsed_s)
    if notice:
        import html

        text = f"{text}\n{notice}"
        markup = f"{markup}<p><b>{html.escape(notice)}</b></p>"
    return {"text/plain": text, "text/html": markup}


class DisplayGrid:
    """A grid shown as one display that is updated in place (needs IPython)."""

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self._handle: Any = None

    def update(self, rows: list[ProjectRun], elapsed_s: float) -> None:
        self._show(_bundle(self.operation, rows, elapsed_s))

    def finish(self, result: FanoutResult, notice: str | None = None) -> None:
        self._show(_bundle(self.operation, result.rows, result.wall_s, notice))

    def _show(self, bundle: dict) -> None:
        from IPython.display import display

        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


class WidgetGrid:
    """A grid drawn by an ipywidgets ``HTML`` widget while the fan-out runs."""

    def __init__(self, operation: Operation) -> None:
        import ipywidgets

        self.operation = operation
        self._widget = ipywidgets.HTML()
        self._handle: Any = None

    def update(self, rows: list[ProjectRun], elapsed_s: float) -> None:
        bundle = _bundle(self.operation, rows, elapsed_s)
        self._widget.value = bundle["text/html"]
        if self._handle is None:
            from IPython.display import display

            view = {
                "model_id": self._widget.model_id,
                "version_major": 2,
                "version_minor": 0,
            }
            bundle["application/vnd.jupyter.widget-view+json"] = view
            self._handle = display(bundle, raw=True, display_id=True)

    def finish(self, result: FanoutResult, notice: str | None = None) -> None:
        from IPython.display import display

        # The final output is static HTML and text, so that the table does not
        # live only in widget state, which notebooks often do not save.
        bundle = _bundle(self.operation, result.rows, result.wall_s, notice)
        if self._handle is None:
            display(bundle, raw=True)
        else:
            self._handle.update(bundle, raw=True)
        # Close the style and layout models too, or each fan-out would leave two
        # models behind in the kernel and in the notebook's saved widget state.
        for model in (self._widget.style, self._widget.layout, self._widget):
            model.close()


class TextProgress:
    """A one-line progress report for terminals, and the final table as text."""

    def __init__(self, operation: Operation, stream: TextIO | None = None) -> None:
        self.operation = operation
        self.stream = stream if stream is not None else sys.stdout
        self._live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._width = 0

    def update(self, rows: list[ProjectRun], elapsed_s: float) -> None:
        if not self._live:
            return
        line = summarize(self.operation, rows, elapsed_s)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def finish(self, result: FanoutResult, notice: str | None = None) -> None:
        if self._live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
        self.stream.write(
            render_text(self.operation, result.rows, result.wall_s) + "\n"
        )
        if notice:
            self.stream.write(notice + "\n")
        self.stream.flush()


def choose_view(mode: str | StatusView, operation: Operation) -> StatusView:
    """Return the view for *mode*: one of :data:`VIEW_MODES`, or a view object.

    ``"auto"`` picks the widget grid in a Jupyter kernel with ipywidgets, the
    display grid in a kernel without it, and text elsewhere.
    """
    if not isinstance(mode, str):
        return mode
    if mode not in VIEW_MODES:
        raise ValueError(
            f"display must be one of {', '.join(VIEW_MODES)}, not {mode!r}"
        )
    if mode == "auto":
        mode = _automatic_mode()
    if mode == "none":
        return NullView()
    if mode == "text":
        return TextProgress(operation)
    if mode == "html":
        return DisplayGrid(operation)
    try:
        return WidgetGrid(operation)
    except ImportError:
        logger.info("ipywidgets is not installed; showing the grid as HTML updates")
        return DisplayGrid(operation)


def _automatic_mode() -> str:
    # Do not import IPython here: plain Python scripts should not pay for it.
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return "text"
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return "html"
    return "widget"
