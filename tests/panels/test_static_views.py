"""Panels where no widget frontend runs: nbclient, exports, terminal IPython, no ipywidgets.

Saved notebooks must keep a readable text and HTML view of each panel next to the
widget view, so the result survives a reload without widget state and shows in
nbconvert exports. Without ipywidgets, or outside a kernel, the same call prints or
displays a summary instead of failing.
"""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def server_environment(server, ledger_dir) -> dict[str, str]:
    return {
        "COCALC_HOST": server.url,
        "COCALC_API_KEY": server.api_key,
        "COCALC_PROJECT_ID": server.project_id,
        "COCALC_MAGICS_DATA_DIR": str(ledger_dir),
    }


def execute(sources: list[str], environment: dict[str, str], tmp_path):
    """Run the cells in a fresh kernel with nbclient, without saving widget state."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    saved = dict(os.environ)
    os.environ.update(environment)
    try:
        client = NotebookClient(
            notebook,
            timeout=120,
            kernel_name="python3",
            store_widget_state=False,
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    path = tmp_path / "saved.ipynb"
    nbformat.write(notebook, str(path))
    return nbformat.read(str(path), as_version=4), path


def display_outputs(cell) -> list[dict]:
    return [
        output
        for output in cell.outputs
        if output.output_type in ("display_data", "execute_result")
    ]


PANEL_SOURCES = [
    "from cocalc_magics.api import Connection\n"
    "from cocalc_magics.panels import show_panel\n"
    "connection = Connection(label='local server')\n"
    "connection.start_project()\n"
    "job = connection.exec_async('echo persisted-result')\n"
    "connection.async_get(job.job_id, wait=True);",
    "panel = show_panel(connection, 'project', jobs=[job], ledger=None)",
    "panel.close()",
]


def test_saved_notebook_keeps_summary(local_server, tmp_path):
    environment = server_environment(local_server, tmp_path / "ledger")
    notebook, path = execute(PANEL_SOURCES, environment, tmp_path)

    nbformat.validate(notebook)
    outputs = display_outputs(notebook.cells[1])
    assert len(outputs) == 1
    data = outputs[0].data
    assert WIDGET_VIEW in data
    assert data["text/plain"].startswith("CoCalc project: project ")
    assert "Box(" not in data["text/plain"]
    assert "completed, exit 0" in data["text/plain"]
    assert "echo persisted-result" in data["text/plain"]
    assert "last output: persisted-result" in data["text/plain"]
    assert "last output: persisted-result" in data["text/html"]
    assert "<table>" in data["text/html"]
    assert local_server.api_key not in path.read_text()

    for exporter in ("html", "markdown"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "nbconvert",
                "--to",
                exporter,
                "--stdout",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "last output: persisted-result" in result.stdout, exporter
        assert "Error displaying widget" not in result.stdout


def test_without_ipywidgets_in_kernel(local_server, tmp_path):
    environment = server_environment(local_server, tmp_path / "ledger")
    sources = [
        "import sys\nsys.modules['ipywidgets'] = None",
        "from cocalc_magics.api import Connection\n"
        "from cocalc_magics.panels import show_panel\n"
        "connection = Connection(label='local server')",
        "show_panel(connection, 'project');",
        "show_panel(connection, 'jobs');",
    ]
    notebook, _ = execute(sources, environment, tmp_path)

    notices = []
    for cell in notebook.cells[2:]:
        outputs = display_outputs(cell)
        assert len(outputs) == 1
        assert WIDGET_VIEW not in outputs[0].data
        assert outputs[0].data["text/plain"].startswith("CoCalc ")
        assert "<strong>CoCalc " in outputs[0].data["text/html"]
        notices += [
            output.text
            for output in cell.outputs
            if output.output_type == "stream" and "need ipywidgets" in output.text
        ]
        assert not [o for o in cell.outputs if o.output_type == "error"]
    assert len(notices) == 1


def test_widget_class_without_ipywidgets_names_fix():
    code = (
        "import sys\n"
        "sys.modules['ipywidgets'] = None\n"
        "import cocalc_magics.panels as panels\n"
        "try:\n"
        "    panels.ProjectPanel\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "ProjectPanel needs ipywidgets" in result.stdout
    assert "pip install ipywidgets" in result.stdout


@pytest.mark.parametrize("kind", ["project", "quotas"])
def test_terminal_ipython_prints_text(local_server, tmp_path, kind):
    code = (
        "from cocalc_magics.api import Connection\n"
        "from cocalc_magics.panels import show_panel\n"
        f"show_panel(Connection(), {kind!r})\n"
    )
    environment = {
        **os.environ,
        **server_environment(local_server, tmp_path / "ledger"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    script = tmp_path / "show.ipy"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--quick", str(script)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Quotas:" in result.stdout
    assert "Memory" in result.stdout
    assert "<" not in result.stdout
    assert "Box(" not in result.stdout
    assert local_server.api_key not in result.stdout + result.stderr
