"""The dashboard notebook, validated with nbval against an isolated local server."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from tests.support.notebooks import assert_nbval_passed, run_nbval

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOK = REPOSITORY / "notebooks" / "dashboard.ipynb"


def test_dashboard_passes_nbval(tmp_path):
    assert_nbval_passed(run_nbval(NOTEBOOK, tmp_path))


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
