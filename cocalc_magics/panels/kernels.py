"""The kernels panel: the Jupyter kernel processes a project runs, with stop buttons.

Listing kernels is a project call, which would start a stopped project, so the list
is fetched only while the project runs.

NOTE: the list includes the pool kernels of the stateless Jupyter API; stopping one
makes the next stateless call that picks it up fail.
"""

from __future__ import annotations

import os
from typing import Any

import ipywidgets as widgets

from cocalc_magics.api.jupyter_results import RunningKernel
from cocalc_magics.panels.base import Panel
from cocalc_magics.panels.snapshot import ProjectSnapshot
from cocalc_magics.panels.summary import Section, kernels_note, kernels_section

__all__ = ["KernelsPanel"]


class KernelsPanel(Panel):
    """Running Jupyter kernels of a project, each with a Stop button.

    Parameters
    ----------
    connection : Connection
        Client of the CoCalc site.
    project_id : str, optional
        Project to show; by default the connection's project.
    refresh_interval : float or None
        Seconds between background refreshes; 0 or None turns them off.
    """

    heading = "Kernels"

    def _build(self) -> list[widgets.Widget]:
        self.kernels: list[RunningKernel] | None = None
        self.kernel_rows = widgets.VBox()
        self.empty_label = widgets.Label("loading…")
        self._stop_buttons: dict[int, widgets.Button] = {}
        return [self.empty_label, self.kernel_rows]

    def _action_buttons(self) -> list[widgets.Button]:
        return list(self._stop_buttons.values())

    def _collect(self, snapshot: ProjectSnapshot) -> list[RunningKernel] | None:
        if not snapshot.running:
            return None
        return self.connection.running_kernels(project_id=self.project_id)

    def _apply(self, snapshot: ProjectSnapshot, data: Any) -> None:
        self.kernels = data
        self.empty_label.value = kernels_note(snapshot, data)
        self._show_rows(data or [])

    def _show_rows(self, kernels: list[RunningKernel]) -> None:
        pids = [kernel.pid for kernel in kernels]
        if pids == list(self._stop_buttons):
            return
        old_rows = list(self.kernel_rows.children)
        self._stop_buttons = {}
        rows = []
        for kernel in kernels:
            button = widgets.Button(
                description="Stop",
                icon="stop",
                button_style="danger",
                layout=widgets.Layout(width="80px"),
                disabled=self.action_running,
            )
            button.on_click(lambda _button, pid=kernel.pid: self.stop_kernel(pid))
            self._stop_buttons[kernel.pid] = button
            file_name = os.path.basename(kernel.connection_file or "") or "-"
            text = f"{kernel.kernel_name}  pid {kernel.pid}  {file_name}"
            rows.append(widgets.HBox([button, widgets.Label(text)]))
        self.kernel_rows.children = rows
        for row in old_rows:
            for child in row.children:
                child.close()
            row.close()

    def stop_kernel(self, pid: int) -> Any:
        """Stop the kernel process *pid* in the background; return the worker thread."""
        def work() -> str:
            stopped = self.connection.stop_kernel(pid, project_id=self.project_id)
            if not stopped:
                return f"The project did not start a kernel with pid {pid}."
            return f"Stopped the kernel with pid {pid}."

        return self._run_action(f"Stopping kernel {pid}", work, expected_s=3.0)

    def _summary_sections(self) -> list[Section]:
        note = self.empty_label.value if self.snapshot else "not loaded yet"
        return [kernels_section(self.kernels, note)]
