"""The dashboard notebook, validated with nbval against an isolated local server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOK = REPOSITORY / "notebooks" / "dashboard.ipynb"
SANITIZE = REPOSITORY / "notebooks" / "sanitize.cfg"


@pytest.fixture
def local_dir(tmp_path):
    """An isolated data dir for the notebook's local server, stopped afterwards."""
    from cocalc_magics.server import stop_local_server

    data_dir = tmp_path / "local-server"
    yield data_dir
    stop_local_server(data_dir)


def test_dashboard_passes_nbval(local_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            str(NOTEBOOK),
            "--nbval-sanitize-with",
            str(SANITIZE),
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        env={
            **os.environ,
            "COCALC_MAGICS_LOCAL_DIR": str(local_dir),
            "COCALC_MAGICS_DATA_DIR": str(tmp_path / "ledger"),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_dashboard_saved_outputs_are_readable():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    panel_outputs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "text/html" in output.get("data", {})
    ]
    assert panel_outputs
    for output in panel_outputs:
        assert "Box(" not in output.data["text/plain"]
        assert "cocalc-panel-summary" in output.data["text/html"]
    assert not re.search(r"sk-[A-Za-z0-9_]{5,}", NOTEBOOK.read_text(encoding="utf-8"))
    assert "widgets" not in notebook.metadata
