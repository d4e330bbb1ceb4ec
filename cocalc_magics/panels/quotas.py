"""The quotas panel: memory, CPU, disk and idle time as bars against their quotas.

CPU use is a rate, computed from the cumulative CPU seconds of two refreshes, so the
CPU bar fills from the second refresh on. Network access is a yes/no quota and is
shown as text.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from cocalc_magics.panels.base import Panel
from cocalc_magics.panels.snapshot import ProjectSnapshot, QuotaUse, quota_uses
from cocalc_magics.panels.summary import Section, quotas_section

__all__ = ["QuotasPanel"]

_BARS = {
    "memory": "Memory",
    "cpu": "CPU",
    "disk": "Disk",
    "idle_timeout": "Idle timeout",
}
# Fractions of a quota from which a bar turns orange, then red.
_WARNING_FRACTION = 0.7
_DANGER_FRACTION = 0.9


def _bar_style(fraction: float | None) -> str:
    if fraction is None:
        return ""
    if fraction >= _DANGER_FRACTION:
        return "danger"
    if fraction >= _WARNING_FRACTION:
        return "warning"
    return "success"


class QuotasPanel(Panel):
    """Quotas and current use of a project, as bars.

    Parameters
    ----------
    connection : Connection
        Client of the CoCalc site.
    project_id : str, optional
        Project to show; by default the connection's project.
    refresh_interval : float or None
        Seconds between background refreshes; 0 or None turns them off.

    Notes
    -----
    Memory and disk use come from ``projects.status`` and exist only while the
    project runs. Quotas come from the run quota of a running project, else from
    its base settings.
    """

    heading = "Quotas"

    def _build(self) -> list[widgets.Widget]:
        self.bars: dict[str, widgets.FloatProgress] = {}
        self.bar_labels: dict[str, widgets.Label] = {}
        rows: list[widgets.Widget] = []
        for name, caption_text in _BARS.items():
            self.bars[name] = widgets.FloatProgress(
                min=0.0, max=1.0, layout=widgets.Layout(width="220px")
            )
            self.bar_labels[name] = widgets.Label("unknown")
            caption = widgets.Label(caption_text)
            caption.layout.width = "100px"
            rows.append(widgets.HBox([caption, self.bars[name], self.bar_labels[name]]))
        self.network_label = widgets.Label("unknown")
        network_caption = widgets.Label("Network", layout=widgets.Layout(width="100px"))
        rows.append(widgets.HBox([network_caption, self.network_label]))
        self.uses: list[QuotaUse] = []
        return rows

    def _apply(self, snapshot: ProjectSnapshot, data: Any) -> None:
        self.uses = quota_uses(snapshot, self.previous_snapshot)
        for use in self.uses:
            if use.name == "network":
                self.network_label.value = use.text
                continue
            fraction = use.fraction
            bar = self.bars[use.name]
            bar.value = min(1.0, fraction) if fraction is not None else 0.0
            bar.bar_style = _bar_style(fraction)
            self.bar_labels[use.name].value = use.text

    def _summary_sections(self) -> list[Section]:
        return [quotas_section(self.uses)]
