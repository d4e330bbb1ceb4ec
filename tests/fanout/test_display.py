"""The status grid: text for terminals, and one updating display in a real kernel.

The kernel tests run a notebook with nbclient against this module's local server
and count the IOPub messages the grid sends. The display must update in place, with
one output per cell and never a flood. The saved output must be a static table that
survives without widget state.
"""

from __future__ import annotations

import io
import json

import nbformat
import pytest
from nbclient import NotebookClient

from cocalc_magics.fanout import exec_many, start_many
from cocalc_magics.fanout.grid import DisplayGrid, NullView, TextProgress, choose_view
from cocalc_magics.fanout.results import Operation

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def projects(connection) -> list[str]:
    ids = [connection.create_project(f"Grid <b>{number}</b>") for number in range(4)]
    assert start_many(connection, ids, display="none").ok
    return ids


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_view_prints_table_once(connection, projects, monkeypatch):
    stream = io.StringIO()
    view = TextProgress(Operation("exec", "echo hi"), stream)

    result = exec_many(
        connection, projects, "echo hi", display=view, refresh_interval=0.05
    )

    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == result.summary()
    assert len(lines) == 2 + len(projects)
    assert all("done" in line for line in lines[2:])


def test_text_view_rewrites_one_line_on_terminal(connection, projects):
    stream = TerminalStream()
    view = TextProgress(Operation("exec", "sleep 0.5"), stream)

    exec_many(connection, projects, "sleep 0.5", display=view, refresh_interval=0.1)

    output = stream.getvalue()
    progress, _, table = output.rpartition("\r")
    assert output.count("\r") >= 3
    assert "\n" not in progress
    assert table.splitlines()[0].startswith("exec 'sleep 0.5': 4 done of 4 projects")


def test_html_is_escaped(connection, projects):
    result = exec_many(
        connection, projects, "echo '<script>x</script>'", display="none"
    )

    markup = result._repr_html_()
    assert "<script>" not in markup
    assert "&lt;script&gt;x&lt;/script&gt;" in markup
    assert "Grid &lt;b&gt;0&lt;/b&gt;" in markup


def test_choose_view_outside_kernel():
    operation = Operation("status")
    assert isinstance(choose_view("auto", operation), TextProgress)
    assert isinstance(choose_view("html", operation), DisplayGrid)
    assert isinstance(choose_view("none", operation), NullView)
    with pytest.raises(ValueError, match="display must be one of"):
        choose_view("fancy", operation)


class CountingClient(NotebookClient):
    """An nbclient that counts IOPub messages by type, per cell."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.counts: dict[int, dict[str, int]] = {}

    def process_message(self, msg, cell, cell_index):
        kind = msg["msg_type"]
        per_cell = self.counts.setdefault(cell_index, {})
        per_cell[kind] = per_cell.get(kind, 0) + 1
        return super().process_message(msg, cell, cell_index)


def run_notebook(module_server, projects, monkeypatch, tmp_path, display: str):
    monkeypatch.setenv("COCALC_HOST", module_server.url)
    monkeypatch.setenv("COCALC_API_KEY", module_server.api_key)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "from cocalc_magics.api import Connection\n"
            "from cocalc_magics.fanout import exec_many\n"
            "cocalc = Connection(label='local server')"
        ),
        nbformat.v4.new_code_cell(
            f"result = exec_many(cocalc, {projects!r}, 'sleep 0.6; echo hi', "
            f"concurrency=2, refresh_interval=0.1, display={display!r})"
        ),
        nbformat.v4.new_code_cell("print(result.summary().split(' in ')[0])"),
    ]
    client = CountingClient(notebook, timeout=60, kernel_name="python3")
    client.execute(cwd=str(tmp_path))
    return notebook, client.counts


def test_kernel_html_grid_updates_one_display(
    module_server, projects, monkeypatch, tmp_path
):
    notebook, counts = run_notebook(
        module_server, projects, monkeypatch, tmp_path, "html"
    )

    outputs = notebook.cells[1].outputs
    assert len(outputs) == 1
    assert counts[1]["display_data"] == 1
    assert counts[1]["update_display_data"] >= 3
    data = outputs[0]["data"]
    assert data["text/plain"].startswith(
        "exec 'sleep 0.6; echo hi': 4 done of 4 projects"
    )
    assert "<table>" in data["text/html"]
    assert notebook.cells[2].outputs[0]["text"] == (
        "exec 'sleep 0.6; echo hi': 4 done of 4 projects\n"
    )


def test_kernel_widget_grid_leaves_static_table(
    module_server, projects, monkeypatch, tmp_path
):
    notebook, counts = run_notebook(
        module_server, projects, monkeypatch, tmp_path, "auto"
    )

    outputs = notebook.cells[1].outputs
    assert len(outputs) == 1
    # Live updates travel as widget state; the display itself changes once, at the end.
    assert counts[1]["comm_msg"] >= 3
    assert counts[1]["update_display_data"] == 1
    data = outputs[0]["data"]
    assert WIDGET_VIEW not in data
    assert data["text/plain"].startswith(
        "exec 'sleep 0.6; echo hi': 4 done of 4 projects"
    )
    assert "<table>" in data["text/html"]
    saved = json.dumps(nbformat.writes(notebook))
    assert module_server.api_key not in saved


def test_kernel_interrupt_cancels_fanout(
    module_server, projects, monkeypatch, tmp_path
):
    from jupyter_client.manager import start_new_kernel

    monkeypatch.setenv("COCALC_HOST", module_server.url)
    monkeypatch.setenv("COCALC_API_KEY", module_server.api_key)
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        client.execute_interactive(
            "from cocalc_magics.api import Connection\n"
            "from cocalc_magics.fanout import exec_many\n"
            "cocalc = Connection(label='local server')",
            timeout=30,
        )
        messages = []
        message_id = client.execute(
            f"exec_many(cocalc, {projects!r}, 'sleep 30', concurrency=2, "
            "display='html')"
        )
        # Wait until both jobs run, then press the kernel's interrupt button.
        while True:
            message = client.get_iopub_msg(timeout=30)
            messages.append(message)
            displayed = message["msg_type"] in ("display_data", "update_display_data")
            if displayed and "2 running" in message["content"]["data"]["text/plain"]:
                break
        manager.interrupt_kernel()
        while True:
            message = client.get_iopub_msg(timeout=30)
            messages.append(message)
            content = message["content"]
            if (
                message["parent_header"].get("msg_id") == message_id
                and message["msg_type"] == "status"
                and content["execution_state"] == "idle"
            ):
                break
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    updates = [
        m["content"]["data"]["text/plain"]
        for m in messages
        if m["msg_type"] == "update_display_data"
    ]
    assert [error["ename"] for error in errors] == ["FanoutInterrupted"]
    assert (
        "sent SIGINT to 2 running job(s); no job was left running"
        in errors[0]["evalue"]
    )
    assert updates[-1].startswith("exec 'sleep 30': 4 cancelled of 4 projects")
    assert "Interrupted: sent SIGINT to 2 running job(s)" in updates[-1]
