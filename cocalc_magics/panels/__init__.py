"""Widget panels that watch and control a CoCalc project from a notebook.

>>> from cocalc_magics.api import Connection                 # doctest: +SKIP
>>> from cocalc_magics.panels import ProjectPanel            # doctest: +SKIP
>>> ProjectPanel(Connection(), refresh_interval=5.0)         # doctest: +SKIP

``ProjectPanel`` is the whole dashboard; ``StatePanel``, ``QuotasPanel``,
``KernelsPanel`` and ``JobsPanel`` are its parts, usable alone. Each is an
ipywidgets ``VBox`` that refreshes itself in a background thread until closed.
:func:`show_panel` is what ``%cocalc panel`` calls: it falls back to a text or HTML
summary (:func:`summarize_panel`) where widgets cannot run.

The widget classes are imported on first use, so this package can be imported, and
summaries made, without ipywidgets. The summary functions are imported on first
use too, so importing the package (as ``%load_ext`` does) does not import the
client.
"""

from __future__ import annotations

from typing import Any

from cocalc_magics.panels.kinds import PANEL_KINDS

__all__ = [
    "PANEL_KINDS",
    "JobsPanel",
    "KernelsPanel",
    "Panel",
    "PanelSummary",
    "ProjectPanel",
    "QuotasPanel",
    "StatePanel",
    "show_panel",
    "summarize_panel",
    "widget_frontend_available",
    "widgets_importable",
]

# Names served by the text-summary modules, which import the client (and so
# requests); they are loaded on first use, like the widget classes.
_SUMMARY_NAMES = {
    "PanelSummary",
    "show_panel",
    "summarize_panel",
    "widget_frontend_available",
    "widgets_importable",
}

_WIDGET_CLASSES = {
    "Panel": "cocalc_magics.panels.base",
    "StatePanel": "cocalc_magics.panels.state",
    "QuotasPanel": "cocalc_magics.panels.quotas",
    "KernelsPanel": "cocalc_magics.panels.kernels",
    "JobsPanel": "cocalc_magics.panels.jobs",
    "ProjectPanel": "cocalc_magics.panels.project",
}


def __getattr__(name: str) -> Any:
    if name in _SUMMARY_NAMES:
        from cocalc_magics.panels import display

        return getattr(display, name)
    home = _WIDGET_CLASSES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(home)
    except ImportError as error:
        raise ImportError(
            f"{name} needs ipywidgets ({error}); install it with "
            "'pip install ipywidgets', or use summarize_panel() for a text summary"
        ) from error
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(__all__)
